//! criterion.rs results (`target/criterion`) into steplog runs, one per benchmark.
//!
//! Every `new/` directory under the given one is a benchmark's latest measurement:
//! `benchmark.json` (its id, group, function, parameter and throughput), `sample.json`
//! (`sampling_mode`, and `iters` and `times` in nanoseconds, one pair per sample) and
//! `estimates.json` (mean, median, median_abs_dev, slope, std_dev: each a point estimate,
//! standard error and confidence interval, in nanoseconds per iteration).
//!
//! A benchmark becomes the run `PREFIX` + its `full_id` (`criterion/sort/100`). Sample `i`
//! is step `i` with `iters`, `time_ns` (the sample's total) and `ns_per_iter`. The estimates
//! go into the config under `_import.summary` (`mean_ns`, `mean_lower_ns`, `mean_upper_ns`,
//! `median_ns`, ..., as `steplog summary` shows them) and, whole, under `_import.estimates`,
//! with the benchmark's ids and throughput.

use std::path::{Path, PathBuf};

use super::{config_with, provenance, read_source, Imported, Progress, RunSink, StartAs};
use crate::error::{Error, Result};
use steplog::Store;
use steplog::Value;

/// The benchmarks under `dir`: every directory holding `new/benchmark.json`, sorted. The walk
/// does not follow symbolic links to directories (`ln -s . a` would make it endless).
fn benchmarks(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        if d.join("new").join("benchmark.json").is_file() {
            out.push(d.join("new"));
        }
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let name = entry.file_name();
            // `new`, `base` and `change` hold results, `report` the HTML pages.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !["new", "base", "change", "report"].contains(&name.to_str().unwrap_or(""))
            {
                todo.push(entry.path());
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{} holds no criterion results (no */new/benchmark.json); point it at target/criterion",
            dir.display()
        )));
    }
    Ok(out)
}

/// Imports every benchmark under `dir` (typically `target/criterion`), each as the new run
/// `prefix` + its id. Stops at the first failure; the runs imported before it stay.
pub fn import(
    store: &Store,
    dir: &Path,
    prefix: &str,
    progress: &dyn Progress,
) -> Result<Vec<Imported>> {
    let benches = benchmarks(dir)?;
    progress.begin("criterion", benches.len() as u64, steplog::Unit::Items);
    // Two results with one id would be one run: say which, before importing anything.
    let mut ids = std::collections::HashMap::new();
    let mut read = Vec::with_capacity(benches.len());
    for new in &benches {
        let (id, bench) = bench_id(new)?;
        if let Some(first) = ids.insert(id.clone(), new) {
            return Err(Error::InvalidInput(format!(
                "{} and {} are results of one benchmark id '{id}' (a copied directory?): \
                 import them separately, with different --prefix values",
                first.display(),
                new.display()
            )));
        }
        read.push((new, id, bench));
    }
    let mut out = Vec::new();
    for (i, (new, id, bench)) in read.into_iter().enumerate() {
        out.push(benchmark(store, new, &id, bench, prefix)?);
        progress.update(i as u64 + 1);
    }
    Ok(out)
}

/// Reads a JSON file, with errors naming the byte offset.
fn json(path: &Path) -> Result<serde_json::Value> {
    let data = read_source(path)?;
    serde_json::from_slice(&data).map_err(|e| {
        let offset = if e.is_eof() {
            data.len()
        } else {
            let line_start: usize = data
                .split_inclusive(|&b| b == b'\n')
                .take(e.line().saturating_sub(1))
                .map(<[u8]>::len)
                .sum();
            line_start + e.column().saturating_sub(1)
        };
        Error::bad_source(path, offset as u64, format!("not valid JSON: {e}"))
    })
}

fn field(file: &Path, what: &str) -> Error {
    Error::bad_source(file, 0, format!("no {what}"))
}

/// A result's `full_id`, and its whole `benchmark.json`.
fn bench_id(new: &Path) -> Result<(String, serde_json::Value)> {
    let bench_file = new.join("benchmark.json");
    let bench = json(&bench_file)?;
    let id = bench
        .get("full_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| field(&bench_file, "\"full_id\" string"))?
        .to_owned();
    Ok((id, bench))
}

fn benchmark(
    store: &Store,
    new: &Path,
    id: &str,
    bench: serde_json::Value,
    prefix: &str,
) -> Result<Imported> {
    let sample_file = new.join("sample.json");
    let sample = json(&sample_file)?;
    let numbers = |key: &str| -> Result<Vec<f64>> {
        sample
            .get(key)
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().map(|x| x.as_f64()).collect::<Option<Vec<f64>>>())
            .ok_or_else(|| field(&sample_file, &format!("\"{key}\" array of numbers")))
    };
    let (iters, times) = (numbers("iters")?, numbers("times")?);
    if iters.len() != times.len() {
        return Err(Error::bad_source(
            &sample_file,
            0,
            format!("{} iters but {} times", iters.len(), times.len()),
        ));
    }
    if let Some(i) = iters.iter().position(|&n| n.is_nan() || n < 1.0) {
        return Err(Error::bad_source(
            &sample_file,
            0,
            format!("sample {i} has {} iterations", iters[i]),
        ));
    }
    let estimates_file = new.join("estimates.json");
    let estimates = json(&estimates_file)?;
    let mut summary = serde_json::Map::new();
    let estimates_obj = estimates
        .as_object()
        .ok_or_else(|| field(&estimates_file, "object of estimates"))?;
    for (name, e) in estimates_obj {
        let point = e.get("point_estimate").and_then(|v| v.as_f64());
        let ci = e.get("confidence_interval");
        let bound = |b: &str| ci.and_then(|c| c.get(b)).and_then(|v| v.as_f64());
        let Some(point) = point else {
            return Err(field(
                &estimates_file,
                &format!("point_estimate for '{name}'"),
            ));
        };
        summary.insert(format!("{name}_ns"), point.into());
        if let (Some(lo), Some(hi)) = (bound("lower_bound"), bound("upper_bound")) {
            summary.insert(format!("{name}_lower_ns"), lo.into());
            summary.insert(format!("{name}_upper_ns"), hi.into());
        }
    }
    let mut import = provenance("criterion", new);
    for key in [
        "full_id",
        "group_id",
        "function_id",
        "value_str",
        "throughput",
    ] {
        if let Some(v) = bench.get(key).filter(|v| !v.is_null()) {
            import.insert(key.into(), v.clone());
        }
    }
    if let Some(mode) = sample.get("sampling_mode") {
        import.insert("sampling_mode".into(), mode.clone());
    }
    import.insert("summary".into(), summary.into());
    import.insert("estimates".into(), estimates);
    let run = format!("{prefix}{id}");
    let mut sink = RunSink::create(
        store,
        &run,
        config_with(Default::default(), import),
        StartAs::New,
    )?;
    for (i, (&n, &t)) in iters.iter().zip(&times).enumerate() {
        let row = [
            ("iters", Value::F64(n)),
            ("time_ns", Value::F64(t)),
            ("ns_per_iter", Value::F64(t / n)),
        ];
        if let Err(e) = sink.row(i as u64, row) {
            return sink.fail(e);
        }
    }
    sink.finish(true)
}
