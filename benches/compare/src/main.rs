//! The comparison harness: DESIGN.md's workloads stored in steplog and in the systems its
//! users would pick instead, in one process run, on the same generated data, with every
//! read-back checked against that data.
//!
//! ```sh
//! cargo run --release -p steplog-compare               # full size (minutes)
//! cargo run --release -p steplog-compare -- --quick    # a smoke run (seconds)
//! cargo run --release -p steplog-compare -- --json results.json
//! ```

mod peers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use steplog::Value;
use steplog_workload::{fuzz_row, sweep_row, tree_bytes, wide_row, Rng, Train};

/// One workload as rows (for the loggers) and as columns: for each key, (steps, values).
pub struct Columns {
    pub keys: Vec<String>,
    pub cols: BTreeMap<String, (Vec<u64>, Vec<f64>)>,
    pub rows: Vec<(u64, Vec<(&'static str, Value)>)>,
    pub steps: u64,
}

impl Columns {
    pub fn points(&self) -> u64 {
        self.cols.values().map(|c| c.0.len() as u64).sum()
    }

    /// Columns of `rows`, numeric values only (every system stores the same points).
    fn from_rows(mut rows: Vec<(u64, Vec<(&'static str, Value)>)>, steps: u64) -> Columns {
        for (_, fields) in rows.iter_mut() {
            fields.retain(|(_, v)| matches!(v, Value::F64(_) | Value::I64(_)));
        }
        let mut cols: BTreeMap<String, (Vec<u64>, Vec<f64>)> = BTreeMap::new();
        for (step, fields) in &rows {
            for (k, v) in fields {
                let x = match v {
                    Value::F64(x) => *x,
                    Value::I64(i) => *i as f64,
                    Value::Bool(_) | Value::Str(_) => unreachable!("dropped by from_rows"),
                };
                let c = cols.entry((*k).to_string()).or_default();
                c.0.push(*step);
                c.1.push(x);
            }
        }
        Columns {
            keys: cols.keys().cloned().collect(),
            cols,
            rows,
            steps,
        }
    }
}

fn train(steps: u64) -> Columns {
    Columns::from_rows(Train::new(steps, 42).collect(), steps)
}

/// The `wide` workload (issue #14): 400 per-layer statistics every step, 100 eval keys every
/// 50 steps.
fn wide(steps: u64) -> Columns {
    let mut rng = Rng::new(5);
    Columns::from_rows(
        (0..steps).map(|s| (s, wide_row(s, &mut rng))).collect(),
        steps,
    )
}

fn fuzz(steps: u64) -> Columns {
    let mut rng = Rng::new(7);
    let mut state = [0i64; 6];
    Columns::from_rows(
        (0..steps)
            .map(|s| (s, fuzz_row(s, &mut rng, &mut state)))
            .collect(),
        steps,
    )
}

/// The measurements of one system on the train workload (and the others).
#[derive(Default, Debug, Clone)]
pub struct Figures {
    pub durability: String,
    pub ingest_pps: f64,
    pub bytes_per_point: f64,
    pub scan_ms: f64,
    pub scan_first_ms: f64,
    pub range_p50_us: f64,
    pub range_p99_us: f64,
    pub summary_us: f64,
    pub sweep_ingest_pps: f64,
    pub sweep_open_ms: f64,
    pub fuzz_bytes_per_point: f64,
    pub wide_ingest_pps: f64,
    pub wide_bytes_per_point: f64,
    pub wide_scan_first_ms: f64,
    pub wide_scan_ms: f64,
    pub rewind_small_us: f64,
    pub rewind_big_us: f64,
    pub fork_small_us: f64,
    pub fork_big_us: f64,
    pub summary_big_us: f64,
    pub summary_after_rewind_us: f64,
    pub many_ingest_pps: f64,
    /// Points per CPU second of the whole process (every thread) during the many ingest:
    /// what decides the rate where the system cannot have a core to itself.
    pub many_ingest_cpu_pps: f64,
    pub many_bytes_per_point: f64,
    pub many_allocated_per_point: f64,
    pub many_files: f64,
    pub many_list_ms: f64,
    pub many_list_fresh_ms: f64,
    pub many_summary_ms: f64,
    pub many_summary_rss_mib: f64,
    /// Deep (head of a run rewound `depth` times) and flat (same rows), fresh processes.
    pub deep_build_s: f64,
    /// The deep store (both runs), every file counted.
    pub deep_kib: f64,
    pub deep_read_ms: f64,
    pub deep_rss_mib: f64,
    pub flat_read_ms: f64,
    pub flat_rss_mib: f64,
}

/// A system under test.
pub trait System {
    fn name(&self) -> &'static str;
    fn durability(&self) -> &'static str;
    /// Stores the workload as run `run` in `dir`; returns nothing, timed by the caller.
    fn ingest(&mut self, dir: &Path, data: &Columns);
    /// Stores many short runs (the sweep shape).
    fn ingest_sweep(&mut self, dir: &Path, runs: u64, steps: u64);
    /// Opens the sweep store and counts its runs.
    fn open_sweep(&mut self, dir: &Path) -> u64;
    /// One metric, whole run.
    fn scan(&mut self, dir: &Path, key: &str) -> (Vec<u64>, Vec<f64>);
    /// One metric, steps `from..from + len`.
    fn range(&mut self, dir: &Path, key: &str, from: u64, len: u64) -> (Vec<u64>, Vec<f64>);
    /// count, min, max, mean of every key.
    fn summary(&mut self, dir: &Path) -> BTreeMap<String, (u64, f64, f64, f64)>;
    /// The summary of the whole run, then the summary right after a rewind at `step`, each
    /// timed; `None` where there is no rewind.
    fn summary_around_rewind(&mut self, _dir: &Path, _step: u64) -> Option<(Duration, Duration)> {
        None
    }
    /// Rewind at `step` then fork at `step`, each timed; `None` where unsupported.
    fn rewind_fork(&mut self, _dir: &Path, _step: u64) -> Option<(Duration, Duration)> {
        None
    }
    /// Builds the `deep` workload in `dir`: run `deep` rewound `depth` times, 2 rows per
    /// version, and run `flat` with the head's rows. False where there is no rewind.
    fn build_deep(&mut self, _dir: &Path, _depth: u64) -> bool {
        false
    }
    /// In a fresh process (`--child-deep`): reads run `run` of the deep store whole
    /// (history) and summarizes it; the rows and the summary's count.
    fn read_deep(&mut self, _dir: &Path, _run: &str) -> (u64, u64) {
        (0, 0)
    }
    /// Stores the `many` workload: `runs` runs of `steps` steps, run `r` named `run-{r}` with
    /// the config `many_config(r)`. False where the system does not take part.
    fn ingest_many(&mut self, _dir: &Path, _runs: u64, _steps: u64) -> bool {
        false
    }
    /// Opens the many store (afresh) and lists every run by name.
    fn list_many(&mut self, _dir: &Path) -> Vec<String> {
        Vec::new()
    }
    /// The config and summary (count, min, max, mean of every key) of run `run-{run}` of the
    /// many store. Called in a fresh process (`--child-summary`), so that opening is counted.
    fn many_summary(&mut self, _dir: &Path, _run: u64) -> (String, SummaryMap) {
        (String::new(), SummaryMap::new())
    }
}

pub type SummaryMap = BTreeMap<String, (u64, f64, f64, f64)>;

/// The small config of run `r` of the many workload, as JSON text (what SQLite and Parquet
/// store).
pub fn many_config(r: u64) -> String {
    many_config_value(r).to_string()
}

/// The same config as a JSON value (what steplog takes, as a tracker would pass it).
pub fn many_config_value(r: u64) -> serde_json::Value {
    serde_json::json!({
        "lr": 1e-4 * ((r % 7) + 1) as f64,
        "batch_size": 32u64 << (r % 3),
        "seed": r,
        "optimizer": if r.is_multiple_of(2) { "adam" } else { "sgd" },
    })
}

/// Bytes the file system allocated for everything under `dir` (blocks, not lengths), and the
/// number of files.
fn dir_allocated(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(it) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    it.filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_allocated(&e.path()),
            Ok(m) => (m.blocks() * 512, 1),
            Err(_) => (0, 0),
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

fn check_series(system: &str, what: &str, got: &(Vec<u64>, Vec<f64>), want: (&[u64], &[f64])) {
    assert_eq!(
        got.0.len(),
        want.0.len(),
        "{system} {what}: wrong number of points"
    );
    assert!(got.0 == want.0, "{system} {what}: wrong steps");
    let same = got
        .1
        .iter()
        .zip(want.1)
        .all(|(a, b)| a.to_bits() == b.to_bits() || a == b);
    assert!(same, "{system} {what}: wrong values");
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

struct Sizes {
    /// Runs of the `many` workload (0: skipped).
    many_runs: u64,
    /// `--only many|wide|deep`: that workload alone.
    only: Option<String>,
    /// Rewinds of the `deep` workload.
    deep: u64,
    train: u64,
    sweep_runs: u64,
    fuzz: u64,
    wide: u64,
    rewind_small: u64,
    rewind_big: u64,
    range_reads: usize,
}

fn run_system(
    sys: &mut dyn System,
    sizes: &Sizes,
    train: &Columns,
    fuzz: &Columns,
    wide: &Columns,
    root: &Path,
) -> Figures {
    let mut f = Figures {
        durability: sys.durability().to_string(),
        ..Figures::default()
    };
    let name = sys.name();
    match sizes.only.as_deref() {
        Some("many") => {
            run_many(sys, sizes.many_runs, root, &mut f);
            return f;
        }
        Some("wide") => {
            run_wide(sys, wide, root, &mut f);
            run_deep(sys, sizes.deep, root, &mut f);
            return f;
        }
        Some("deep") => {
            run_deep(sys, sizes.deep, root, &mut f);
            return f;
        }
        _ => {}
    }
    if sizes.many_runs > 0 {
        run_many(sys, sizes.many_runs, root, &mut f);
    }
    let key = "train/loss";
    let want = &train.cols[key];

    let dir = root.join(format!("{name}-train"));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    sys.ingest(&dir, train);
    f.ingest_pps = train.points() as f64 / t.elapsed().as_secs_f64();
    f.bytes_per_point = tree_bytes(&dir) as f64 / train.points() as f64;

    (f.scan_first_ms, f.scan_ms) = scan_times(sys, &dir, key, want);

    let mut rng = Rng::new(11);
    let len = 1000.min(train.steps);
    let mut lat = Vec::with_capacity(sizes.range_reads);
    for _ in 0..sizes.range_reads {
        let from = rng.next_u64() % (train.steps - len + 1);
        let t = Instant::now();
        let got = sys.range(&dir, key, from, len);
        lat.push(t.elapsed());
        let (a, b) = (from as usize, (from + len) as usize);
        check_series(name, "range", &got, (&want.0[a..b], &want.1[a..b]));
    }
    f.range_p50_us = percentile(&mut lat, 0.5);
    f.range_p99_us = percentile(&mut lat, 0.99);

    let t = Instant::now();
    let summary = sys.summary(&dir);
    f.summary_us = t.elapsed().as_secs_f64() * 1e6;
    for (k, (steps, values)) in &train.cols {
        let (count, min, max, mean) = summary[k];
        let wmin = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let wmax = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let wmean = values.iter().sum::<f64>() / values.len() as f64;
        assert_eq!(count, steps.len() as u64, "{name} summary count of {k}");
        assert!(min == wmin && max == wmax, "{name} summary min/max of {k}");
        assert!(
            (mean - wmean).abs() <= 1e-9 * wmean.abs().max(1.0),
            "{name} summary mean of {k}: {mean} vs {wmean}"
        );
    }

    let dir = root.join(format!("{name}-sweep"));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    sys.ingest_sweep(&dir, sizes.sweep_runs, 100);
    f.sweep_ingest_pps = (sizes.sweep_runs * 100 * 4) as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let runs = sys.open_sweep(&dir);
    f.sweep_open_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(runs, sizes.sweep_runs, "{name}: sweep runs");

    let dir = root.join(format!("{name}-fuzz"));
    std::fs::create_dir_all(&dir).unwrap();
    sys.ingest(&dir, fuzz);
    f.fuzz_bytes_per_point = tree_bytes(&dir) as f64 / fuzz.points() as f64;
    let got = sys.scan(&dir, "execs");
    let want = &fuzz.cols["execs"];
    check_series(name, "fuzz scan", &got, (&want.0, &want.1));

    run_wide(sys, wide, root, &mut f);

    for (steps, small) in [(sizes.rewind_small, true), (sizes.rewind_big, false)] {
        let dir = root.join(format!("{name}-rewind-{steps}"));
        std::fs::create_dir_all(&dir).unwrap();
        let data = single_metric(steps);
        sys.ingest(&dir, &data);
        if !small {
            if let Some((whole, after)) = sys.summary_around_rewind(&dir, steps / 2) {
                f.summary_big_us = whole.as_secs_f64() * 1e6;
                f.summary_after_rewind_us = after.as_secs_f64() * 1e6;
            }
        }
        if let Some((rewind, fork)) = sys.rewind_fork(&dir, steps / 2) {
            let (r, k) = (rewind.as_secs_f64() * 1e6, fork.as_secs_f64() * 1e6);
            if small {
                (f.rewind_small_us, f.fork_small_us) = (r, k);
            } else {
                (f.rewind_big_us, f.fork_big_us) = (r, k);
            }
        }
    }
    f
}

/// The `wide` workload: ingest, size, and one metric's scan (first and median).
fn run_wide(sys: &mut dyn System, wide: &Columns, root: &Path, f: &mut Figures) {
    let dir = root.join(format!("{}-wide", sys.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    sys.ingest(&dir, wide);
    f.wide_ingest_pps = wide.points() as f64 / t.elapsed().as_secs_f64();
    f.wide_bytes_per_point = tree_bytes(&dir) as f64 / wide.points() as f64;
    let key = "layer050/grad_norm";
    (f.wide_scan_first_ms, f.wide_scan_ms) = scan_times(sys, &dir, key, &wide.cols[key]);
}

/// The CPU seconds this process has used so far, user and system, every thread counted,
/// those that ended too (`getrusage(RUSAGE_SELF)`); 0 if it cannot say.
fn process_cpu_secs() -> f64 {
    // SAFETY: `rusage` is a C struct of integers, for which all zero bytes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `getrusage` only writes the struct it is given, which lives through the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Steps per run of the `many` workload.
const MANY_STEPS: u64 = 20;

/// The `many` workload (issue #14): `runs` runs × 20 steps × 4 metrics, each with a small
/// config. Ingest, size (file lengths, and blocks allocated), listing every run from a fresh
/// open, and one run's config and summary in a fresh process (wall time of the process and
/// its peak resident memory, as `/usr/bin/time -v` counts it), checked against the data.
fn run_many(sys: &mut dyn System, runs: u64, root: &Path, f: &mut Figures) {
    let name = sys.name();
    let dir = root.join(format!("{name}-many"));
    std::fs::create_dir_all(&dir).unwrap();
    let (t, cpu) = (Instant::now(), process_cpu_secs());
    if !sys.ingest_many(&dir, runs, MANY_STEPS) {
        return;
    }
    let points = (runs * MANY_STEPS * 4) as f64;
    f.many_ingest_pps = points / t.elapsed().as_secs_f64();
    f.many_ingest_cpu_pps = points / (process_cpu_secs() - cpu).max(1e-3);
    f.many_bytes_per_point = tree_bytes(&dir) as f64 / points;
    let (allocated, files) = dir_allocated(&dir);
    f.many_allocated_per_point = allocated as f64 / points;
    f.many_files = files as f64;
    let t = Instant::now();
    let names = sys.list_many(&dir);
    f.many_list_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(names.len() as u64, runs, "{name}: many runs listed");
    // And in a fresh process, as a command listing the runs would (median of 3).
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child-list", name])
            .arg(&dir)
            .output()
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.status.success(), "{name}: child list: {out:?}");
        let listed: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(listed, runs, "{name}: many runs listed by a fresh process");
    }
    times.sort_by(f64::total_cmp);
    f.many_list_fresh_ms = times[1];
    // A run in the middle of the store, its summary checked against the generated rows.
    let pick = runs / 2 + 1;
    let want: Vec<_> = sweep_data(runs, MANY_STEPS)
        .skip((pick * MANY_STEPS) as usize)
        .take(MANY_STEPS as usize)
        .collect();
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child-summary", name])
            .arg(&dir)
            .arg(pick.to_string())
            .output()
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            out.status.success(),
            "{name}: child summary: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rss.push(v["peak_rss_kib"].as_f64().unwrap() / 1024.0);
        let config: serde_json::Value =
            serde_json::from_str(v["config"].as_str().unwrap()).unwrap();
        let want_config: serde_json::Value = serde_json::from_str(&many_config(pick)).unwrap();
        assert_eq!(config, want_config, "{name}: config of run {pick}");
        for key in ["acc", "iters", "loss", "time_ms"] {
            let values: Vec<f64> = want
                .iter()
                .filter_map(|(_, _, row)| row.iter().find(|(k, _)| *k == key))
                .map(|(_, v)| v.as_f64().unwrap())
                .collect();
            let got = &v["summary"][key];
            assert_eq!(got[0].as_u64(), Some(values.len() as u64), "{name}: {key}");
            let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(got[1].as_f64(), Some(min), "{name}: min of {key}");
            assert_eq!(got[2].as_f64(), Some(max), "{name}: max of {key}");
        }
    }
    times.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);
    f.many_summary_ms = times[2];
    f.many_summary_rss_mib = rss[4];
}

/// The `deep` workload (DESIGN.md): `depth` rewinds of 2 rows each, read (history and
/// summary) in a fresh process, beside a shallow run of the same rows. Median of 5 runs of
/// the child; its peak RSS.
fn run_deep(sys: &mut dyn System, depth: u64, root: &Path, f: &mut Figures) {
    let name = sys.name();
    let dir = root.join(format!("{name}-deep"));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    if !sys.build_deep(&dir, depth) {
        return;
    }
    f.deep_build_s = t.elapsed().as_secs_f64();
    f.deep_kib = tree_bytes(&dir) as f64 / 1024.0;
    let read = |run: &str| -> (f64, f64) {
        let (mut times, mut rss, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--child-deep", name])
                .arg(&dir)
                .arg(run)
                .output()
                .unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(out.status.success(), "{name}: child deep: {:?}", out);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            rss.push(v["peak_rss_kib"].as_f64().unwrap() / 1024.0);
            rows.push((v["rows"].as_u64().unwrap(), v["count"].as_u64().unwrap()));
        }
        assert!(rows.windows(2).all(|w| w[0] == w[1]));
        times.sort_by(f64::total_cmp);
        rss.sort_by(f64::total_cmp);
        (times[2], rss[4])
    };
    (f.deep_read_ms, f.deep_rss_mib) = read("deep");
    (f.flat_read_ms, f.flat_rss_mib) = read("flat");
}

/// This process's peak resident memory (`VmHWM`, what `/usr/bin/time -v` reports), KiB.
fn peak_rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `--child-list SYSTEM DIR`: lists every run of the many store in DIR; prints their number.
fn child_list(args: &[String]) {
    let [system, dir] = args else {
        panic!("--child-list SYSTEM DIR");
    };
    let mut sys = systems()
        .into_iter()
        .find(|s| s.name() == system)
        .expect("a system");
    println!("{}", sys.list_many(Path::new(dir)).len());
}

/// `--child-deep SYSTEM DIR RUN`: reads run RUN of the deep store whole and summarizes it;
/// prints the rows, the summary's count of `x` and the peak RSS, as JSON.
fn child_deep(args: &[String]) {
    let [system, dir, run] = args else {
        panic!("--child-deep SYSTEM DIR RUN");
    };
    let mut sys = systems()
        .into_iter()
        .find(|s| s.name() == system)
        .expect("a system");
    let (rows, count) = sys.read_deep(Path::new(dir), run);
    println!(
        "{}",
        serde_json::json!({"rows": rows, "count": count, "peak_rss_kib": peak_rss_kib()})
    );
}

/// `--child-summary SYSTEM DIR RUN`: prints run RUN's config and summary from the many store
/// in DIR, and this process's peak resident memory, as JSON.
fn child_summary(args: &[String]) {
    let [system, dir, run] = args else {
        panic!("--child-summary SYSTEM DIR RUN");
    };
    let mut sys = systems()
        .into_iter()
        .find(|s| s.name() == system)
        .expect("a system");
    let (config, summary) = sys.many_summary(Path::new(dir), run.parse().unwrap());
    let hwm = peak_rss_kib();
    let summary: serde_json::Map<String, serde_json::Value> = summary
        .into_iter()
        .map(|(k, (c, min, max, mean))| (k, serde_json::json!([c, min, max, mean])))
        .collect();
    println!(
        "{}",
        serde_json::json!({"config": config, "summary": summary, "peak_rss_kib": hwm})
    );
}

fn systems() -> Vec<Box<dyn System>> {
    vec![
        Box::new(peers::Steplog::default()),
        Box::new(peers::Sqlite::default()),
        Box::new(peers::Parquet),
        Box::new(peers::Raw),
    ]
}

/// Scans `key` six times, each checked against `want`: the first pays for opening the files
/// (and, on this machine, for page faults on fresh output memory); the median of the next
/// five is the steady figure. Milliseconds, (first, median).
fn scan_times(
    sys: &mut dyn System,
    dir: &Path,
    key: &str,
    want: &(Vec<u64>, Vec<f64>),
) -> (f64, f64) {
    let mut times = Vec::new();
    for _ in 0..6 {
        let t = Instant::now();
        let got = sys.scan(dir, key);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        check_series(sys.name(), "scan", &got, (&want.0, &want.1));
    }
    let first = times[0];
    times[1..].sort_by(f64::total_cmp);
    (first, times[3])
}

/// The rewind workload: one metric, `steps` steps.
fn single_metric(steps: u64) -> Columns {
    Columns::from_rows(
        (0..steps)
            .map(|s| (s, vec![("m", Value::F64(s as f64 * 0.25))]))
            .collect(),
        steps,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child-summary") => return child_summary(&args[1..]),
        Some("--child-deep") => return child_deep(&args[1..]),
        Some("--child-list") => return child_list(&args[1..]),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let sizes = if quick {
        Sizes {
            many_runs: 2_000,
            only: None,
            deep: 200,
            train: 20_000,
            sweep_runs: 200,
            fuzz: 200_000,
            wide: 1_000,
            rewind_small: 1_000,
            rewind_big: 100_000,
            range_reads: 200,
        }
    } else {
        Sizes {
            many_runs: 1_000_000,
            only: None,
            deep: 10_000,
            train: 1_000_000,
            sweep_runs: 10_000,
            fuzz: 10_000_000,
            wide: 20_000,
            rewind_small: 1_000,
            rewind_big: 10_000_000,
            range_reads: 1_000,
        }
    };
    let mut sizes = sizes;
    // `--many N`: the many workload's runs (0 skips it); `--only many|wide`: that alone.
    if let Some(n) = value_of("--many") {
        sizes.many_runs = n.parse().expect("--many N");
    }
    sizes.only = value_of("--only").cloned();
    if let Some(o) = sizes.only.as_deref() {
        assert!(
            matches!(o, "many" | "wide" | "deep"),
            "--only many | wide | deep"
        );
    }
    let root = tempfile::tempdir().unwrap();
    eprintln!(
        "generating workloads ({})...",
        if quick { "quick" } else { "full size" }
    );
    let (train, fuzz, wide) = match sizes.only.as_deref() {
        Some("many") => (train(1), fuzz(1), wide(1)),
        Some("wide") => (train(1), fuzz(1), wide(sizes.wide)),
        Some("deep") => (train(1), fuzz(1), wide(1)),
        _ => (train(sizes.train), fuzz(sizes.fuzz), wide(sizes.wide)),
    };
    let mut systems = systems();
    let mut results: Vec<(&'static str, Figures)> = Vec::new();
    for sys in systems.iter_mut() {
        eprintln!("measuring {}...", sys.name());
        let f = run_system(sys.as_mut(), &sizes, &train, &fuzz, &wide, root.path());
        results.push((sys.name(), f));
    }
    print_table(&results, &sizes, train.points(), quick);
    if let Some(path) = json {
        let v: Vec<serde_json::Value> = results.iter().map(|(n, f)| figures_json(n, f)).collect();
        let doc = serde_json::json!({"quick": quick, "train_points": train.points(), "systems": v});
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

fn figures_json(name: &str, f: &Figures) -> serde_json::Value {
    serde_json::json!({
        "system": name, "durability": f.durability, "ingest_points_per_s": f.ingest_pps,
        "bytes_per_point": f.bytes_per_point, "scan_ms": f.scan_ms, "range_p50_us": f.range_p50_us,
        "range_p99_us": f.range_p99_us, "scan_first_ms": f.scan_first_ms, "summary_us": f.summary_us, "sweep_ingest_points_per_s": f.sweep_ingest_pps,
        "sweep_open_ms": f.sweep_open_ms, "fuzz_bytes_per_point": f.fuzz_bytes_per_point,
        "wide_ingest_points_per_s": f.wide_ingest_pps, "wide_bytes_per_point": f.wide_bytes_per_point,
        "wide_scan_first_ms": f.wide_scan_first_ms, "wide_scan_ms": f.wide_scan_ms,
        "rewind_small_us": f.rewind_small_us, "rewind_big_us": f.rewind_big_us,
        "summary_big_us": f.summary_big_us, "summary_after_rewind_us": f.summary_after_rewind_us,
        "fork_small_us": f.fork_small_us, "fork_big_us": f.fork_big_us,
        "many_ingest_points_per_s": f.many_ingest_pps, "many_ingest_points_per_cpu_s": f.many_ingest_cpu_pps,
        "many_bytes_per_point": f.many_bytes_per_point,
        "many_allocated_bytes_per_point": f.many_allocated_per_point, "many_files": f.many_files,
        "many_list_ms": f.many_list_ms, "many_list_fresh_ms": f.many_list_fresh_ms, "many_summary_ms": f.many_summary_ms,
        "many_summary_peak_rss_mib": f.many_summary_rss_mib,
        "deep_build_s": f.deep_build_s, "deep_kib": f.deep_kib, "deep_read_ms": f.deep_read_ms, "deep_peak_rss_mib": f.deep_rss_mib,
        "flat_read_ms": f.flat_read_ms, "flat_peak_rss_mib": f.flat_rss_mib,
    })
}

fn print_table(results: &[(&'static str, Figures)], sizes: &Sizes, points: u64, quick: bool) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "steplog comparison ({}; many {} runs x 20 x 4; train {} steps = {points} points; sweep {} runs x 100 x 4; fuzz {} steps x 6; wide {} steps x 400 (+100 every 50); {cores} cores)",
        if quick { "quick" } else { "full" },
        sizes.many_runs,
        sizes.train,
        sizes.sweep_runs,
        sizes.fuzz,
        sizes.wide
    );
    for (n, f) in results {
        println!("  {n}: {}", f.durability);
    }
    type Get = fn(&Figures) -> f64;
    let rows: [(&str, Get, bool); 35] = [
        (
            "ingest, many (M points/s)",
            |f| f.many_ingest_pps / 1e6,
            true,
        ),
        (
            "  per CPU second (M points)",
            |f| f.many_ingest_cpu_pps / 1e6,
            true,
        ),
        (
            "size, many (bytes/point)",
            |f| f.many_bytes_per_point,
            false,
        ),
        (
            "size, many (allocated bytes/pt)",
            |f| f.many_allocated_per_point,
            false,
        ),
        ("files, many", |f| f.many_files, false),
        ("list runs, many (ms)", |f| f.many_list_ms, false),
        (
            "list runs, fresh process (ms)",
            |f| f.many_list_fresh_ms,
            false,
        ),
        (
            "summary of one run, fresh (ms)",
            |f| f.many_summary_ms,
            false,
        ),
        ("  its peak RSS (MiB)", |f| f.many_summary_rss_mib, false),
        ("ingest, train (M points/s)", |f| f.ingest_pps / 1e6, true),
        ("size, train (bytes/point)", |f| f.bytes_per_point, false),
        ("scan one metric, first (ms)", |f| f.scan_first_ms, false),
        ("scan one metric, median (ms)", |f| f.scan_ms, false),
        ("range read 1000 steps p50 (us)", |f| f.range_p50_us, false),
        ("range read 1000 steps p99 (us)", |f| f.range_p99_us, false),
        ("summary, whole run (us)", |f| f.summary_us, false),
        (
            "ingest, sweep (M points/s)",
            |f| f.sweep_ingest_pps / 1e6,
            true,
        ),
        ("open sweep store (ms)", |f| f.sweep_open_ms, false),
        (
            "size, fuzz (bytes/point)",
            |f| f.fuzz_bytes_per_point,
            false,
        ),
        (
            "ingest, wide (M points/s)",
            |f| f.wide_ingest_pps / 1e6,
            true,
        ),
        (
            "size, wide (bytes/point)",
            |f| f.wide_bytes_per_point,
            false,
        ),
        (
            "scan wide metric, first (ms)",
            |f| f.wide_scan_first_ms,
            false,
        ),
        ("scan wide metric, median (ms)", |f| f.wide_scan_ms, false),
        ("build deep + flat (s)", |f| f.deep_build_s, false),
        ("deep store, both runs (KiB)", |f| f.deep_kib, false),
        ("read deep head, fresh (ms)", |f| f.deep_read_ms, false),
        ("  its peak RSS (MiB)", |f| f.deep_rss_mib, false),
        ("read flat run, fresh (ms)", |f| f.flat_read_ms, false),
        ("  its peak RSS (MiB)", |f| f.flat_rss_mib, false),
        ("rewind, small run (us)", |f| f.rewind_small_us, false),
        ("rewind, big run (us)", |f| f.rewind_big_us, false),
        ("fork, small run (us)", |f| f.fork_small_us, false),
        ("fork, big run (us)", |f| f.fork_big_us, false),
        ("summary, big run (us)", |f| f.summary_big_us, false),
        (
            "summary after a rewind, big run (us)",
            |f| f.summary_after_rewind_us,
            false,
        ),
    ];
    print!("{:<32}", "");
    for (n, _) in results {
        print!("{n:>12}");
    }
    for (n, _) in &results[1..] {
        print!("{:>14}", format!("vs {n}"));
    }
    println!();
    for (label, get, higher_better) in rows {
        // A workload not measured in this run (`--only many`) has no row.
        if results.iter().all(|(_, f)| get(f) == 0.0) {
            continue;
        }
        print!("{label:<32}");
        for (_, f) in results {
            let v = get(f);
            if v == 0.0 {
                print!("{:>12}", "-");
            } else {
                print!("{v:>12.3}");
            }
        }
        let ours = get(&results[0].1);
        for (_, f) in &results[1..] {
            let theirs = get(f);
            if ours == 0.0 || theirs == 0.0 {
                print!("{:>14}", "-");
            } else {
                // Always "how many times better steplog is" (> 1 means steplog wins).
                let r = if higher_better {
                    ours / theirs
                } else {
                    theirs / ours
                };
                print!("{:>14}", format!("{r:.2}x"));
            }
        }
        println!();
    }
}

/// The sweep workload: (run, step, row) for `runs` runs of `steps` steps.
pub fn sweep_data(
    runs: u64,
    steps: u64,
) -> impl Iterator<Item = (u64, u64, Vec<(&'static str, Value)>)> {
    let mut rng = Rng::new(3);
    (0..runs)
        .flat_map(move |r| (0..steps).map(move |s| (r, s)).collect::<Vec<_>>())
        .map(move |(r, s)| {
            let row = sweep_row(r, s, &mut rng);
            (r, s, row)
        })
}
