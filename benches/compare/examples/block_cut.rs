//! What `Options::block_column_bytes` costs on narrow long runs: the engine's chart bench's
//! run (one float key, `write_long_metric`, `STEPS` steps) and the harness's fuzz run (six
//! integer counters, `STEPS` / 5 steps), written at each per-key budget given (`max` for
//! `usize::MAX`, the default: blocks cut by `block_bytes` alone), each into a fresh store,
//! alternated over `REPEAT` rounds. Prints the write speed and the bytes per point, then, in
//! the store opened afresh, the time of the first summary (every segment's footer decoded)
//! and of the first summary right after a rewind to the middle (the footer's block
//! aggregates of the segment holding the cut decoded), as a fresh `steplog` process pays.
//!
//! `cargo run --release -p steplog-compare --example block_cut -- 10000000 2 max 8192`
//! (`STEPLOG_BLOCK_CUT_SHAPES=metric` for one shape)
//! (the M4 and scan times are `cargo bench -p steplog --bench plot`).

use std::time::{Duration, Instant};

use steplog_workload::{fuzz_row, tree_bytes, Rng};

fn main() {
    let mut args = std::env::args().skip(1);
    let steps: u64 = args
        .next()
        .map_or(10_000_000, |a| a.parse().expect("a step count"));
    let repeat: usize = args
        .next()
        .map_or(1, |a| a.parse().expect("a repeat count"));
    let budgets: Vec<usize> = args
        .map(|a| match a.as_str() {
            "max" => usize::MAX,
            n => n.parse().expect("a byte count or max"),
        })
        .collect();
    let budgets = if budgets.is_empty() {
        vec![usize::MAX, 8 << 10]
    } else {
        budgets
    };
    let shapes = std::env::var("STEPLOG_BLOCK_CUT_SHAPES");
    let shapes = shapes.as_deref().unwrap_or("metric,fuzz");
    for round in 0..repeat {
        for &b in &budgets {
            for shape in shapes.split(',') {
                let dir = tempfile::tempdir().unwrap();
                let store = steplog::Options::new()
                    .block_column_bytes(b)
                    .open(dir.path())
                    .unwrap();
                let t = Instant::now();
                let points = if shape == "metric" {
                    steplog_workload::write_long_metric(&store, "r", steps).unwrap();
                    steps
                } else {
                    let (mut rng, mut state) = (Rng::new(7), [0i64; 6]);
                    let mut w = store.run("f").start().unwrap();
                    for s in 0..steps / 5 {
                        w.log_at(s, fuzz_row(s, &mut rng, &mut state)).unwrap();
                    }
                    w.finish().unwrap();
                    steps / 5 * 6
                };
                let wrote = t.elapsed();
                drop(store);
                let (summary, after) = first_summaries(dir.path(), b);
                let budget = if b == usize::MAX {
                    "max".to_owned()
                } else {
                    b.to_string()
                };
                println!(
                    "round {round}: {shape:>6}, block_column_bytes {budget:>6}: {points} points \
                     in {:.3} s ({:.2} M points/s), {:.4} bytes/point; first summary {:.0} µs, \
                     first after a rewind {:.0} µs",
                    wrote.as_secs_f64(),
                    points as f64 / wrote.as_secs_f64() / 1e6,
                    tree_bytes(dir.path()) as f64 / points as f64,
                    summary.as_secs_f64() * 1e6,
                    after.as_secs_f64() * 1e6,
                );
            }
        }
    }
}

/// In the store at `dir` opened afresh: the first summary of its one run, then the first
/// right after a rewind to the middle of it.
fn first_summaries(dir: &std::path::Path, budget: usize) -> (Duration, Duration) {
    let store = steplog::Options::new()
        .block_column_bytes(budget)
        .open(dir)
        .unwrap();
    let run = store.run_names().unwrap().remove(0);
    let t = Instant::now();
    let last = store.summary(run.as_str()).unwrap().last_step.unwrap_or(0);
    let summary = t.elapsed();
    store.run(&run).resume_from(last / 2).apply().unwrap();
    let t = Instant::now();
    store.summary(run.as_str()).unwrap();
    (summary, t.elapsed())
}
