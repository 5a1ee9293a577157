//! The web view's API, handler and JSON included (the router called in process; loopback
//! TCP adds tens of microseconds): issue #15's targets.
//! - `series/steps=10M/width=1000`: exact M4 of a 10,000,000-step run at 1,000 px (target
//!   under 20 ms), the whole range, and a zoom to a tenth of it, with the default options
//!   (blocks of 1,024 rows of its one key: `Options::block_column_bytes`, 8 KiB);
//!   `…/block_column_bytes=off`: the same run written with blocks cut at 64 KiB alone
//!   (8,192 rows), the default before 2026-12-07;
//! - `runs/runs=10000/first_page`: the first page (50 runs, 3 metric columns with
//!   sparklines) of a 10,000-run store (target under 100 ms), by name and by a metric.
use axum::body::Body;
use axum::http::{header, Request};
use criterion::{criterion_group, criterion_main, Criterion};
use steplog::Store;
use steplog_serve::ServeOptions;
use tower::ServiceExt;

fn get(rt: &tokio::runtime::Runtime, app: &axum::Router, uri: &str) -> usize {
    rt.block_on(async {
        let req = Request::get(uri)
            .header(header::HOST, "localhost")
            .body(Body::empty())
            .unwrap();
        let r = app.clone().oneshot(req).await.unwrap();
        assert!(r.status().is_success(), "{uri}: {}", r.status());
        axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .len()
    })
}

/// The engine's chart bench's run (`downsample/steps=10M`), so the figures compare.
fn long_run(dir: &std::path::Path, options: steplog::Options) -> Store {
    let store = options.open(dir).unwrap();
    steplog_workload::write_long_metric(&store, "r", 10_000_000).unwrap();
    store
}

fn many_runs(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).unwrap();
    for batch in 0..10 {
        let mut bulk = store.bulk();
        for i in 0..1000 {
            let n = batch * 1000 + i;
            let mut r = bulk.run(&format!("sweep-{n:05}"));
            r.set_config(serde_json::json!({"lr": 10f64.powi(-(n % 5)), "seed": n}));
            for s in 0..20u64 {
                let x = s as f64 + n as f64 * 1e-4;
                r.log_at(
                    s,
                    [("loss", 1.0 / (1.0 + x)), ("acc", x / 40.0), ("lr", 0.1)],
                )
                .unwrap();
            }
            bulk.add(r).unwrap();
        }
        bulk.commit().unwrap();
    }
    store
}

fn api(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opts = ServeOptions::default();
    let mut g = c.benchmark_group("api");
    g.sample_size(20);

    let long = tempfile::tempdir().unwrap();
    let off = steplog::Options::new().block_column_bytes(usize::MAX);
    let app = steplog_serve::router(long_run(long.path(), off), &opts).unwrap();
    g.bench_function("series/steps=10M/width=1000/block_column_bytes=off", |b| {
        b.iter(|| get(&rt, &app, "/api/series?ref=r&key=loss&width=1000"))
    });
    drop(app);
    let long = tempfile::tempdir().unwrap();
    let app = steplog_serve::router(long_run(long.path(), steplog::Options::new()), &opts).unwrap();
    g.bench_function("series/steps=10M/width=1000", |b| {
        b.iter(|| get(&rt, &app, "/api/series?ref=r&key=loss&width=1000"))
    });
    g.bench_function("series/steps=10M/width=1000/zoom=1M", |b| {
        b.iter(|| {
            get(
                &rt,
                &app,
                "/api/series?ref=r&key=loss&from=4000000&to=4999999&width=1000",
            )
        })
    });
    drop(app);

    let many = tempfile::tempdir().unwrap();
    let app = steplog_serve::router(many_runs(many.path()), &opts).unwrap();
    g.bench_function("runs/runs=10000/first_page", |b| {
        b.iter(|| get(&rt, &app, "/api/runs?limit=50&keys=loss&keys=acc&keys=lr"))
    });
    g.bench_function("runs/runs=10000/first_page/sort=metric", |b| {
        b.iter(|| {
            get(
                &rt,
                &app,
                "/api/runs?limit=50&keys=loss&sort=metric%3Aloss&order=desc",
            )
        })
    });
    g.finish();
}

criterion_group!(benches, api);
criterion_main!(benches);
