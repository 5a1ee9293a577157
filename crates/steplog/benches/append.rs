//! Appending rows: row by row with a commit each, in commit batches, as typed column
//! batches (`log_columns`), and sealing.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use steplog::{Batch, Store};
use steplog_workload::Train;

fn append(c: &mut Criterion) {
    let rows: Vec<_> = Train::new(10_000, 1).collect();
    let points: u64 = rows.iter().map(|r| r.1.len() as u64).sum();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(points));
    for commit_every in [1usize, 100, 10_000] {
        g.bench_function(
            format!("train/rows=10000/commit_every={commit_every}"),
            |b| {
                b.iter_batched(
                    || tempfile::tempdir().unwrap(),
                    |dir| {
                        let store = Store::open(dir.path()).unwrap();
                        let mut w = store.run("r").start().unwrap();
                        for (i, (step, row)) in rows.iter().enumerate() {
                            w.log_at(*step, row.iter().cloned()).unwrap();
                            if (i + 1) % commit_every == 0 {
                                w.commit().unwrap();
                            }
                        }
                        w.finish().unwrap(); // seals the head segment
                        dir
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    // The bulk path: the same number of points as 8 dense typed columns, 4,096 steps per call.
    let steps: Vec<u64> = (0..points / 8).collect();
    let floats: Vec<Vec<f64>> = (0..6)
        .map(|k| {
            steps
                .iter()
                .map(|&s| f64::from((s as f32 + k as f32) / 1e4))
                .collect()
        })
        .collect();
    let ints: Vec<i64> = steps.iter().map(|&s| s as i64 * 4096).collect();
    let names = ["a", "b", "c", "d", "e", "f"];
    g.bench_function(format!("columns/rows={}/batch=4096", steps.len()), |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let store = Store::open(dir.path()).unwrap();
                let mut w = store.run("r").start().unwrap();
                for start in (0..steps.len()).step_by(4096) {
                    let r = start..(start + 4096).min(steps.len());
                    let mut cols: Vec<(&str, Batch<'_>)> = names
                        .iter()
                        .zip(&floats)
                        .map(|(n, v)| (*n, Batch::F64(&v[r.clone()])))
                        .collect();
                    cols.push(("g", Batch::I64(&ints[r.clone()])));
                    cols.push(("h", Batch::I64(&ints[r.clone()])));
                    w.log_columns(&steps[r], &cols).unwrap();
                }
                w.finish().unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
