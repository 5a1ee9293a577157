//! Reads: a range of 1,000 steps of one metric, a whole metric, rows with all keys.
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
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
