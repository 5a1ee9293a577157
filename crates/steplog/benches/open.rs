//! Opening a store of many runs (the sweep shape).
use criterion::{criterion_group, criterion_main, Criterion};
use steplog::Store;
use steplog_workload::{sweep_row, Rng};

fn open(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = Rng::new(3);
    for r in 0..1000u64 {
        let mut w = store.run(&format!("run-{r}")).start().unwrap();
        for s in 0..100 {
            w.log_at(s, sweep_row(r, s, &mut rng)).unwrap();
        }
        w.finish().unwrap();
    }
    drop(store);
    let mut g = c.benchmark_group("open");
    g.bench_function("store/runs=1000", |b| {
        b.iter(|| Store::open(dir.path()).unwrap())
    });
    g.bench_function("store_and_list/runs=1000", |b| {
        b.iter(|| Store::open(dir.path()).unwrap().runs().unwrap().len())
    });
    g.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
