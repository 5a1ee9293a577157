//! Appending rows: row by row with a commit each, in batches, and sealing.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use steplog::workload::Train;
use steplog::Store;

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
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
