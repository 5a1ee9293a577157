//! Charts of long runs: M4 downsampling of one metric to 960 buckets (a chart's pixel
//! columns) from block aggregates, exact and snapped (what `steplog plot` draws), against reading every point of the metric (what a chart
//! without aggregates would need before downsampling), on a 10,000,000-step run with one
//! metric, and right after a rewind of it (a segment straddles the cutoff).
use criterion::{criterion_group, criterion_main, Criterion};
use steplog::Options;

fn plot(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().open(dir.path()).unwrap();
    let n = 10_000_000u64;
    steplog_workload::write_long_metric(&store, "r", n).unwrap();

    let mut g = c.benchmark_group("plot");
    g.sample_size(20);
    g.bench_function("downsample/steps=10M/buckets=960", |b| {
        b.iter(|| store.downsample("r", "loss", .., 960).unwrap().unwrap())
    });
    g.bench_function("downsample_snapped/steps=10M/buckets=960", |b| {
        b.iter(|| {
            store
                .downsample_snapped("r", "loss", .., 960)
                .unwrap()
                .unwrap()
        })
    });
    g.bench_function("read_every_point/steps=10M", |b| {
        b.iter(|| store.metric("r", "loss", ..).unwrap())
    });
    for (name, d) in [
        (
            "exact",
            store.downsample("r", "loss", .., 960).unwrap().unwrap(),
        ),
        (
            "snapped",
            store
                .downsample_snapped("r", "loss", .., 960)
                .unwrap()
                .unwrap(),
        ),
    ] {
        eprintln!(
            "{name} downsample of 10M steps: {} pieces from aggregates, {} blocks decoded",
            d.from_aggregates, d.decoded
        );
    }
    store.run("r").resume_from(6_000_000).apply().unwrap();
    let d = store
        .downsample_snapped("r", "loss", .., 960)
        .unwrap()
        .unwrap();
    eprintln!(
        "snapped after the rewind: {} pieces from aggregates, {} blocks decoded",
        d.from_aggregates, d.decoded
    );
    g.bench_function("downsample/after_rewind/steps=6M/buckets=960", |b| {
        b.iter(|| store.downsample("r", "loss", .., 960).unwrap().unwrap())
    });
    g.bench_function(
        "downsample_snapped/after_rewind/steps=6M/buckets=960",
        |b| {
            b.iter(|| {
                store
                    .downsample_snapped("r", "loss", .., 960)
                    .unwrap()
                    .unwrap()
            })
        },
    );
    drop(store);

    // The same run with blocks cut at 64 KiB alone (8,192 rows), the default before
    // 2026-12-07 (the default now cuts a one-key run's blocks at 8 KiB: 1,024 rows).
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .block_column_bytes(usize::MAX)
        .open(dir.path())
        .unwrap();
    steplog_workload::write_long_metric(&store, "r", n).unwrap();
    g.bench_function(
        "downsample/steps=10M/buckets=960/block_column_bytes=off",
        |b| b.iter(|| store.downsample("r", "loss", .., 960).unwrap().unwrap()),
    );
    g.bench_function("read_every_point/steps=10M/block_column_bytes=off", |b| {
        b.iter(|| store.metric("r", "loss", ..).unwrap())
    });
    g.finish();
}

criterion_group!(benches, plot);
criterion_main!(benches);
