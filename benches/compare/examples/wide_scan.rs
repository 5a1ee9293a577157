//! One metric of the wide workload's run (20,000 steps × 500 keys, `steplog_workload::wide_row`)
//! read whole, again and again in one process: the minimum and the median of `REPEAT` reads,
//! and the first. For A/B comparisons of the read path on a noisy machine, where the minimum
//! of many reads moves least: the store is written once into `DIR` (kept, when it does not
//! exist yet), then read by each binary in turn.
//!
//! `cargo run --release -p steplog-compare --example wide_scan -- DIR [REPEAT]`

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("a store directory"));
    let repeat: usize = args.next().map_or(200, |a| a.parse().expect("a count"));
    if !dir.exists() {
        let store = steplog::Store::open(&dir).unwrap();
        steplog_workload::write_wide(&store, "w", 20_000).unwrap();
    }
    let store = steplog::Options::new()
        .create_if_missing(false)
        .open(&dir)
        .unwrap();
    let key = "layer050/grad_norm";
    let mut times: Vec<Duration> = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let s = store.metric("w", key, ..).unwrap();
        times.push(t.elapsed());
        assert_eq!(s.steps.len(), 20_000);
    }
    let first = times[0];
    times.sort();
    println!(
        "{key}: first {:.0} µs, min {:.0} µs, median {:.0} µs over {} reads",
        first.as_secs_f64() * 1e6,
        times[0].as_secs_f64() * 1e6,
        times[times.len() / 2].as_secs_f64() * 1e6,
        times.len()
    );
}
