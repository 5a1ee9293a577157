//! Summaries: of a whole run, and right after a rewind (a segment straddles the cutoff).
mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn summary(c: &mut Criterion) {
    let (_dir, store) = common::train_store(100_000);
    let mut g = c.benchmark_group("summary");
    g.bench_function("whole/run=100000", |b| {
        b.iter(|| store.summary("r").unwrap())
    });
    let archived = store
        .run("r")
        .resume_from(50_000)
        .apply()
        .unwrap()
        .archived
        .unwrap();
    g.bench_function("after_rewind/run=100000/step=50000", |b| {
        b.iter(|| store.summary("r").unwrap())
    });
    g.bench_function("archived/run=100000", |b| {
        b.iter(|| store.summary(archived).unwrap())
    });
    g.finish();
}

criterion_group!(benches, summary);
criterion_main!(benches);
