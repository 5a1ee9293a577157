//! Reads: a range of 1,000 steps of one metric, a whole metric, rows with all keys; and one
//! metric of the wide workload's run (20,000 steps × 500 keys, `steplog_workload::wide_row`).
mod common;
use criterion::{criterion_group, criterion_main, Criterion};
use steplog::Query;

fn read(c: &mut Criterion) {
    let (_dir, store) = common::train_store(100_000);
    let mut g = c.benchmark_group("read");
    let mut from = 0u64;
    g.bench_function("range/metric/steps=1000/run=100000", |b| {
        b.iter(|| {
            from = (from + 7919) % 99_000;
            store.metric("r", "train/loss", from..from + 1000).unwrap()
        })
    });
    g.bench_function("range/rows/steps=1000/run=100000", |b| {
        b.iter(|| {
            from = (from + 7919) % 99_000;
            store
                .history("r", &Query::new().steps(from..from + 1000))
                .unwrap()
                .count()
        })
    });
    g.bench_function("scan/metric/run=100000", |b| {
        b.iter(|| store.metric("r", "train/loss", ..).unwrap())
    });
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    let wide = steplog::Store::open(dir.path()).unwrap();
    steplog_workload::write_wide(&wide, "w", 20_000).unwrap();
    g.bench_function("scan/wide_metric/steps=20000/keys=500", |b| {
        b.iter(|| wide.metric("w", "layer050/grad_norm", ..).unwrap())
    });
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
