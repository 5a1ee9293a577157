//! `steplog demo`: the whole product in one command, on the default store.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use steplog::{Query, Store, Stream};
use steplog_workload::Train;

use crate::chart;
use crate::error::CliResult;
use crate::lineage::draw_lineage;
use crate::output::{self, short};
use crate::progress::Bar;

fn loss_line(store: &Store, reference: &str) -> CliResult<String> {
    let s = store.summary(reference)?;
    let l = &s.keys["train/loss"];
    let v = |x: &Option<(u64, steplog::Value)>| {
        x.as_ref().map_or("-".into(), |(st, v)| {
            format!("{} @{st}", short(v.as_f64().unwrap_or(f64::NAN)))
        })
    };
    Ok(format!(
        "{:<12} {:>8} rows  loss: last {:<16} min {:<16} max {:<16} mean {}",
        format!("{}:", s.version),
        s.rows,
        v(&l.last),
        v(&l.min),
        v(&l.max),
        l.mean().map_or("-".into(), short)
    ))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

pub fn run(dir: &Path, steps: u64, out: &mut impl Write) -> CliResult {
    let steps = steps.max(1_000);
    let store = Store::open(dir)?;
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let taken: Vec<String> = store.runs()?.into_iter().map(|r| r.name).collect();
    let n = (1..)
        .find(|n| !taken.contains(&format!("demo-{n}")))
        .unwrap_or(1);
    let (name, variant) = (format!("demo-{n}"), format!("demo-{n}-sgd"));
    writeln!(out, "steplog demo · store {}\n", abs.display())?;

    // 1. A training run whose loss spikes two thirds of the way through.
    let spike_at = steps * 6 / 10;
    let spike = (spike_at, spike_at + steps / 50, 4.0);
    writeln!(out, "1. Logging run '{name}': {steps} steps × ~8 metrics (train workload), loss spike injected at step {spike_at}")?;
    let t = Instant::now();
    let mut w = store
        .run(&name)
        .config(serde_json::json!({"lr": 3e-3, "optimizer": "adamw", "batch_size": 512}))
        .start()?;
    let mut points = 0u64;
    let bar = Bar::new();
    bar.stage("logging", steps, false);
    for (step, row) in Train::new(steps, 42).with_spike(spike.0, spike.1, spike.2) {
        points += row.len() as u64;
        w.log_at(step, row)?;
        if step.is_multiple_of(4096) {
            bar.set(step);
        }
        if step % 10_000 == 9_999 {
            w.log_row(
                Stream::Console,
                Some(step),
                [("line", format!("step {step}: checkpoint saved"))],
            )?;
            w.log_row(
                Stream::System,
                Some(step),
                [("gpu/util", 0.93), ("gpu/mem_gb", 71.2)],
            )?;
        }
    }
    w.finish()?;
    bar.done();
    let secs = t.elapsed().as_secs_f64();
    let bytes = dir_bytes(&store.dir().join("segments"));
    writeln!(
        out,
        "   {points} points in {secs:.2} s ({:.1} M points/s); all segments in the store: {:.1} MiB\n",
        points as f64 / secs / 1e6,
        bytes as f64 / (1 << 20) as f64
    )?;

    // 2. Find the spike in the data, as a user watching the chart would.
    let loss = store.metric(&name, "train/loss", ..)?;
    let window = 500usize;
    let mut spike_step = None;
    for i in window..loss.values.len() {
        let mean = loss.values[i - window..i].iter().sum::<f64>() / window as f64;
        if loss.values[i] > 2.5 * mean {
            spike_step = Some(loss.steps[i]);
            break;
        }
    }
    let spike_step = spike_step.unwrap_or(spike_at);
    let rewind_to = spike_step.saturating_sub(1);
    writeln!(
        out,
        "2. Loss spike detected at step {spike_step}. Summary before the rewind:"
    )?;
    writeln!(out, "   {}\n", loss_line(&store, &name)?)?;

    // 3. Rewind to just before the spike and continue with a lower learning rate.
    writeln!(
        out,
        "3. Rewinding '{name}' to step {rewind_to} (W&B: resume_from=\"{name}?_step={rewind_to}\")"
    )?;
    let t = Instant::now();
    let mut w = store
        .run(&name)
        .resume_from(rewind_to)
        .config(serde_json::json!({"lr": 1e-3}))
        .start()?;
    let rewind_us = t.elapsed().as_secs_f64() * 1e6;
    let archived = w.archived().map(|v| v.to_string()).unwrap_or_default();
    writeln!(
        out,
        "   took {rewind_us:.0} µs: version {archived} archived, new head {} (no row copied)",
        w.version()
    )?;
    let t = Instant::now();
    let s_after = store.summary(&name)?;
    let summary_us = t.elapsed().as_secs_f64() * 1e6;
    writeln!(
        out,
        "   summary right after the rewind: {} rows up to step {} in {summary_us:.0} µs (footers' per-block aggregates + one decoded block at the cutoff)",
        s_after.rows,
        s_after.last_step.map_or("-".into(), |s| s.to_string())
    )?;
    bar.stage("continuing", steps, false);
    for (step, row) in Train::new(steps, 7).skip(rewind_to as usize + 1) {
        w.log_at(step, row)?;
        if step.is_multiple_of(4096) {
            bar.set(step);
        }
        if step % 10_000 == 9_999 {
            w.log_row(
                Stream::Console,
                Some(step),
                [("line", format!("step {step}: checkpoint saved (lr 1e-3)"))],
            )?;
        }
    }
    w.finish()?;
    bar.done();
    writeln!(out, "   continued to step {}\n", steps - 1)?;

    // 4. Fork a variant from the new head.
    let fork_at = steps * 8 / 10;
    writeln!(
        out,
        "4. Forking '{variant}' from '{name}' at step {fork_at} with another optimizer"
    )?;
    let mut w = store
        .run(&variant)
        .fork_from(&name, fork_at)
        .config(serde_json::json!({"optimizer": "sgd"}))
        .start()?;
    for (step, row) in Train::new(steps, 99)
        .skip(fork_at as usize + 1)
        .take((steps / 10) as usize)
    {
        w.log_at(step, row)?;
    }
    w.finish()?;
    writeln!(out)?;

    // 5. What the store holds now.
    writeln!(out, "5. Runs:")?;
    let rows: Vec<Vec<String>> = store
        .runs()?
        .into_iter()
        .filter(|r| r.name == name || r.name == variant)
        .map(|r| {
            vec![
                r.name,
                r.head.to_string(),
                r.status.to_string(),
                r.last_step.map_or("-".into(), |s| s.to_string()),
                r.rows.to_string(),
            ]
        })
        .collect();
    for line in output::table(&["run", "head", "status", "last_step", "rows"], &rows).lines() {
        writeln!(out, "   {line}")?;
    }
    writeln!(out, "\n6. Lineage:")?;
    for line in draw_lineage(&store, &store.lineage(&name)?, &name, None)?.lines() {
        writeln!(out, "   {line}")?;
    }
    writeln!(out, "\n7. Summaries (train/loss):")?;
    writeln!(out, "   archived  {}", loss_line(&store, &archived)?)?;
    writeln!(out, "   head      {}", loss_line(&store, &name)?)?;
    writeln!(out, "   fork      {}", loss_line(&store, &variant)?)?;

    writeln!(
        out,
        "\n8. train/loss around the rewind (archived version vs new head):"
    )?;
    let lo = rewind_to.saturating_sub(steps / 10);
    let hi = (spike.1 + steps / 10).min(steps - 1);
    let old = store.metric(&archived, "train/loss", lo..=hi)?;
    let new = store.metric(&name, "train/loss", lo..=hi)?;
    let chart = chart::render(
        &[
            (&format!("{archived} (archived)"), '·', &old),
            (&format!("{name} head"), '█', &new),
        ],
        72,
        14,
    );
    for line in chart.lines() {
        writeln!(out, "   {line}")?;
    }
    writeln!(
        out,
        "\n   Every stream is cut at the same step. Console after step {rewind_to}:"
    )?;
    for (label, reference) in [("archived", archived.as_str()), ("head", name.as_str())] {
        let q = Query::new().stream(Stream::Console).steps(rewind_to + 1..);
        let lines: Vec<String> = store
            .history(reference, &q)?
            .map(|r| {
                r.map(|r| {
                    r.fields
                        .get("line")
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                })
            })
            .collect::<Result<_, _>>()?;
        writeln!(out, "   {label:<9} {}", lines.join(" | "))?;
    }
    // 9. Out of steplog: a Parquet file and a chart with the lineage overlaid.
    writeln!(out, "\n9. Export and chart:")?;
    // Named after the run, so that a second demo (run demo-2) keeps the first one's files.
    let parquet = store.dir().join(format!("{name}.parquet"));
    let chart = store.dir().join(format!("{name}-chart.svg"));
    let mut sink = Vec::new();
    crate::export::export(
        &store,
        crate::args::ExportArgs {
            reference: Some(name.clone()),
            all: false,
            split: false,
            format: Some(crate::args::Format::Parquet),
            keys: Default::default(),
            from: None,
            to: None,
            output: parquet.clone(),
        },
        &mut sink,
    )?;
    let t = Instant::now();
    crate::plot::plot(
        &store,
        crate::args::PlotArgs {
            reference: name.clone(),
            keys: crate::args::KeySelection {
                keys: vec!["train/loss".into(), "train/acc".into()],
                key: Vec::new(),
            },
            from: None,
            to: None,
            no_lineage: false,
            output: Some(chart.clone()),
            width: None,
        },
        &mut sink,
    )?;
    let plot_ms = t.elapsed().as_secs_f64() * 1e3;
    writeln!(
        out,
        "   {} (read it with DuckDB, pandas, Polars or Spark)\n   {} in {plot_ms:.0} ms: the head, the archived attempt and the fork, M4-downsampled from block aggregates",
        parquet.display(),
        chart.display()
    )?;

    writeln!(out, "\n10. Verify:")?;
    let report = store.verify()?;
    crate::output::write_verify(&report, "   ", out)?;
    writeln!(
        out,
        "\nTry: steplog --store {} history {name} --keys train/loss --from {rewind_to} --to {}",
        abs.display(),
        rewind_to + 5
    )?;
    writeln!(out, "     steplog --store {} lineage {name}", abs.display())?;
    writeln!(
        out,
        "     steplog --store {} plot {name} --keys train/loss --from {} --to {} -o zoom.png",
        abs.display(),
        rewind_to.saturating_sub(steps / 20),
        rewind_to + steps / 20
    )?;
    Ok(())
}
