//! The latency of starting a rewind along the deep workload's 10,000 rewinds (DESIGN.md's
//! "rewind at depth 10,000 within 2× of depth 1"), with packs (the default fanout, or the
//! one given) and, for comparison, without (`0`): p50 near the root and at depth 10,000,
//! and the tail over all rewinds, where the starts that complete a pack are.
//!
//! `cargo run --release -p steplog-compare --example rewind_latency -- 16` (then `-- 0`).

use std::time::Instant;

fn main() {
    let fanout: usize = std::env::args()
        .nth(1)
        .map_or(16, |a| a.parse().expect("a pack fanout"));
    let dir = tempfile::tempdir().unwrap();
    let store = steplog::Options::new()
        .pack_fanout(fanout)
        .open(dir.path())
        .unwrap();
    let mut times = Vec::new();
    for k in 0..10_000u64 {
        let t = Instant::now();
        let start = if k == 0 {
            store.run("deep")
        } else {
            store.run("deep").resume_from(2 * k)
        };
        let mut w = start.start().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        for step in (2 * k + u64::from(k > 0))..=2 * k + 2 {
            w.log_at(step, [("x", k as f64)]).unwrap();
        }
        w.finish().unwrap();
    }
    let p50 = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut all = times[1..].to_vec();
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    println!(
        "fanout {fanout}: start of a rewind (µs): p50 at depth 1-100 {:.1}, at depth \
         9,900-10,000 {:.1}; over all: p50 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
        p50(&times[1..101]),
        p50(&times[9_900..]),
        at(0.5),
        at(0.99),
        at(0.999),
        all[all.len() - 1]
    );
}
