//! The many workload's ingest alone, for profiling: `RUNS` runs × 20 steps × 4 metrics (the
//! sweep row shape, a small config each) written through `Store::bulk`, committed every
//! 100,000 points, or with `writer` as the second argument a writer per run (`bulk`: the
//! default); a third argument is `Options::compression_level`. Prints the time spent building
//! the rows (shared by every peer) and the time in steplog, apart.
//!
//! `cargo run --release -p steplog-compare --example bulk_ingest -- 100000 [writer|bulk] [LEVEL]`
//! (`perf record -g` on the binary in `target/release/examples/` for a profile). With
//! `STEPLOG_BULK_DIR=DIR` the store is written to `DIR` (which must not exist) and kept, to
//! measure reads of a big store (`steplog --store DIR runs`); `STEPLOG_BULK_STEPS=100` gives
//! runs of the sweep's length (20 by default, the many workload's). It also counts the
//! allocations made while writing (by every thread; the rows were built before).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// The system allocator, counting allocations (what a short run costs in `malloc` calls).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract is `GlobalAlloc::alloc`'s, passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation is).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's, checked by its contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

use steplog_workload::{sweep_row, Rng};

/// One run: its name, its config and its rows.
type Run = (
    String,
    serde_json::Value,
    Vec<(u64, Vec<(&'static str, steplog::Value)>)>,
);

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: u64 = args
        .next()
        .map_or(100_000, |a| a.parse().expect("a run count"));
    let writer = args.next().is_some_and(|a| a == "writer");
    let level: i32 = args.next().map_or(3, |a| a.parse().expect("a zstd level"));
    let temp = tempfile::tempdir().unwrap();
    let dir = match std::env::var_os("STEPLOG_BULK_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => temp.path().to_owned(),
    };
    let mut options = steplog::Options::new().compression_level(level);
    if let Ok(b) = std::env::var("STEPLOG_COMPACTION_BYTES") {
        options = options.manifest_compaction_bytes(b.parse().expect("a byte count"));
    }
    let store = options.open(&dir).unwrap();
    let steps: u64 = std::env::var("STEPLOG_BULK_STEPS")
        .map_or(20, |s| s.parse().expect("STEPLOG_BULK_STEPS: a step count"));
    let mut rng = Rng::new(3);
    let t = Instant::now();
    let data: Vec<Run> = (0..runs)
        .map(|r| {
            let config = serde_json::json!({
                "lr": 1e-4 * ((r % 7) + 1) as f64, "batch_size": 32u64 << (r % 3),
                "seed": r, "optimizer": if r % 2 == 0 { "adam" } else { "sgd" },
            });
            let rows = (0..steps).map(|s| (s, sweep_row(r, s, &mut rng))).collect();
            (format!("run-{r}"), config, rows)
        })
        .collect();
    let built = t.elapsed();
    let t = Instant::now();
    let allocations = ALLOCATIONS.load(Relaxed);
    let cpu = thread_cpu();
    if writer {
        for (name, config, rows) in data {
            let mut w = store.run(&name).config(config).start().unwrap();
            for (s, row) in rows {
                w.log_at(s, row).unwrap();
            }
            w.finish().unwrap();
        }
    } else {
        let mut bulk = store.bulk();
        let mut points = 0;
        for (name, config, rows) in data {
            let mut run = bulk.run(&name);
            run.set_config(config);
            for (s, row) in rows {
                points += row.len();
                run.log_at(s, row).unwrap();
            }
            bulk.add(run).unwrap();
            if points >= 100_000 {
                bulk.commit().unwrap();
                points = 0;
            }
        }
        bulk.commit().unwrap();
    }
    // Closed, as the writing process would be: a compaction in flight is put in place.
    let closing = Instant::now();
    drop(store);
    let closing = closing.elapsed();
    let wrote = t.elapsed();
    let (run, queued) = thread_cpu();
    let (run, queued) = (run - cpu.0, queued - cpu.1);
    let allocations = ALLOCATIONS.load(Relaxed) - allocations;
    let points = runs * steps * 4;
    println!(
        "{runs} runs, {} ({}): rows built in {:.3} s, written in {:.3} s: {:.3} M points/s, \
         {:.3} bytes/point, {:.0} allocations/run (all threads); the writing thread ran \
         {:.0}% of the time, waited for a core {:.0}%, was blocked {:.0}%; closing the store \
         took {:.3} s",
        points,
        if writer { "a writer per run" } else { "bulk" },
        built.as_secs_f64(),
        wrote.as_secs_f64(),
        points as f64 / wrote.as_secs_f64() / 1e6,
        steplog_workload::tree_bytes(&dir) as f64 / points as f64,
        allocations as f64 / runs as f64,
        100.0 * run / wrote.as_secs_f64(),
        100.0 * queued / wrote.as_secs_f64(),
        100.0 * (1.0 - (run + queued) / wrote.as_secs_f64()),
        closing.as_secs_f64(),
    );
}

/// Seconds this thread has run on a core and waited in the run queue for one (Linux
/// `/proc/thread-self/schedstat`; zeros elsewhere).
fn thread_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|n| n.parse::<f64>().unwrap_or(0.0) / 1e9);
    (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0))
}
