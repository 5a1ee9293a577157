//! Rewind and fork at the middle of runs of 1,000 and 100,000 steps.
mod common;
use criterion::{criterion_group, criterion_main, Criterion};

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
        let mut step = steps / 2;
        g.bench_function(format!("rewind/run={steps}/step=middle"), |b| {
            b.iter(|| {
                step = if step == 0 { steps / 2 } else { step - 1 };
                store.run("r").resume_from(step).apply().unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, rewind);
criterion_main!(benches);
