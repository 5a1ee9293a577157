//! Rewind and fork at the middle of runs of 1,000 and 100,000 steps.
mod common;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

fn rewind(c: &mut Criterion) {
    let mut g = c.benchmark_group("rewind");
    for steps in [1_000u64, 100_000] {
        let (_dir, store) = common::train_store(steps);
        let mut n = 0u64;
        g.bench_function(format!("fork/run={steps}/step=middle"), |b| {
            b.iter(|| {
                n += 1;
                store
                    .run(&format!("f{n}"))
                    .fork_from("r", steps / 2)
                    .apply()
                    .unwrap()
                    .head
            })
        });
        // Each rewind on a run of its own holding every step (a fork of the whole run, made
        // outside the measurement): rewinding one run again and again would cut it shorter each
        // time, until there is no middle left to rewind to.
        let mut m = 0u64;
        g.bench_function(format!("rewind/run={steps}/step=middle"), |b| {
            b.iter_batched(
                || {
                    m += 1;
                    let name = format!("w{m}");
                    store.run(&name).fork_from("r", steps - 1).apply().unwrap();
                    name
                },
                |name| store.run(&name).resume_from(steps / 2).apply().unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, rewind);
criterion_main!(benches);
