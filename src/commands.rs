//! One function per subcommand.

use std::io::{self, Write};
use std::process::ExitCode;

use steplog::{Query, Status, Store};

use crate::args::{parse_config, Cli, Command, RowFormat, TableFormat};
use crate::error::{CliError, CliResult};
use crate::lineage::draw_lineage;
use crate::output::{self, json_text};

/// The step from `--step` or from `REF?_step=S`; exactly one must be given.
fn step_of(reference: &str, step: Option<u64>) -> CliResult<(String, u64)> {
    let r: steplog::Reference = reference.parse()?;
    let name = reference
        .split_once('?')
        .map_or(reference, |(n, _)| n)
        .to_owned();
    match (step, r.step) {
        (Some(s), None) | (None, Some(s)) => Ok((name, s)),
        (Some(_), Some(_)) => Err(CliError::Usage(format!(
            "give the step once: either '{reference}' or --step"
        ))),
        (None, None) => Err(CliError::Usage(format!(
            "no step given: use --step S or '{name}?_step=S'"
        ))),
    }
}

pub fn run(cli: Cli) -> CliResult<ExitCode> {
    let (dir, _) = cli.store_dir();
    // Only the commands that write rows create a store; every other one opens an existing
    // store, so that a mistyped path is an error and not an empty store.
    let open = || steplog::Options::new().create_if_missing(false).open(&dir);
    let create = || Store::open(&dir);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match cli.command {
        Command::Demo { steps } => crate::demo::run(&dir, steps, &mut out)?,
        Command::Log(args) => return crate::ingest::log(&create()?, args),
        Command::Serve(args) => return crate::serve::run(&dir, open()?, &args),
        Command::History {
            reference,
            keys,
            from,
            to,
            stream,
            format,
        } => {
            let store = open()?;
            let mut q = Query::new()
                .stream(stream)
                .steps(from.unwrap_or(0)..=to.unwrap_or(u64::MAX));
            let keys = keys.selected();
            if let Some(k) = &keys {
                // A mistyped key is an error naming the close ones, not an empty answer.
                store.check_keys(&reference, stream, k.iter().map(String::as_str))?;
                q = q.keys(k.iter().cloned());
            }
            let rows = store.history(&reference, &q)?;
            match format {
                RowFormat::Jsonl => {
                    for row in rows {
                        writeln!(out, "{}", json_text(&output::row_json(&row?)))?;
                    }
                }
                RowFormat::Csv => {
                    crate::export::history_csv(&store, &reference, &q, keys, &mut out)?
                }
            }
        }
        Command::Summary { reference, format } => {
            let store = open()?;
            // One snapshot, so that the sparklines draw the rows the summary counted.
            let snap = store.snapshot()?;
            let s = snap.summary(&reference)?;
            // What the source of an imported run summarised (W&B's summary, criterion's
            // estimates): kept in the config, shown with steplog's own.
            let imported = store
                .version(s.version)?
                .config
                .pointer("/_import/summary")
                .cloned();
            match TableFormat::or_default(format, TableFormat::Json) {
                // One object, on one line: a JSON document and a JSON Lines record alike.
                TableFormat::Json | TableFormat::Jsonl => {
                    output::write_summary_json(&mut out, &s, imported.as_ref())?
                }
                TableFormat::Table => {
                    let mut sparks = std::collections::BTreeMap::new();
                    for (k, ks) in &s.keys {
                        if ks.numeric_count > 0 {
                            sparks.insert(
                                k.clone(),
                                output::sparkline(&snap, &reference, k, 24, ks.numeric_count)?,
                            );
                        }
                    }
                    write!(out, "{}", output::summary_table(&s, &sparks))?;
                    if let Some(serde_json::Value::Object(m)) = imported {
                        writeln!(out, "imported summary:")?;
                        for (k, v) in m {
                            let text = match v.as_f64() {
                                Some(x) => output::short(x),
                                None => json_text(&v),
                            };
                            writeln!(out, "  {k}: {text}")?;
                        }
                    }
                }
            }
        }
        Command::Rewind {
            reference,
            step,
            config,
        } => {
            let (run, step) = step_of(&reference, step)?;
            if run.parse::<steplog::VersionId>().is_ok() {
                return Err(CliError::Usage(format!(
                    "rewind takes a run name, not a version id ('{run}'): fork a version instead"
                )));
            }
            let mut start = open()?.run(&run).resume_from(step);
            if let Some(c) = parse_config(config.as_deref())? {
                start = start.config(c);
            }
            let r = start.apply()?;
            let archived = r.archived.map(|v| v.to_string());
            let v = serde_json::json!({
                "run": run, "archived": archived, "head": r.head.to_string(), "step": step,
            });
            writeln!(out, "{v}")?;
        }
        Command::Fork {
            reference,
            step,
            name,
            config,
        } => {
            let (source, step) = step_of(&reference, step)?;
            let store = open()?;
            let source_version = store.resolve(&source)?.version;
            let mut start = store.run(&name).fork_from(source_version, step);
            if let Some(c) = parse_config(config.as_deref())? {
                start = start.config(c);
            }
            let head = start.apply()?.head;
            let v = serde_json::json!({
                "run": name, "head": head.to_string(), "source": source_version.to_string(), "step": step,
            });
            writeln!(out, "{v}")?;
        }
        Command::Runs { all, format } => {
            let format = TableFormat::or_default(format, TableFormat::Jsonl);
            runs(&open()?, all, format, &mut out)?
        }
        Command::Lineage { reference } => {
            let store = open()?;
            let tree = store.lineage(&reference)?;
            let focus = store.resolve(&reference)?.version;
            let run = store.version(focus)?.run;
            write!(out, "{}", draw_lineage(&store, &tree, &run, Some(focus))?)?;
        }
        Command::Verify => {
            let bar = crate::progress::Bar::new();
            let report = open()?.verify_with(&bar)?;
            bar.done();
            crate::output::write_verify(&report, "", &mut out)?;
            out.flush()?;
            if !report.is_ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Plot(args) => crate::plot::plot(&open()?, args, &mut out)?,
        Command::Export(args) => crate::export::export(&open()?, args, &mut out)?,
        Command::Import { source } => crate::importing::import(&create()?, source, &mut out)?,
        Command::Follow { source } => crate::importing::follow(&create()?, source, &mut out)?,
        Command::Gc => {
            let report = open()?.gc()?;
            let kept: Vec<serde_json::Value> = report
                .kept
                .iter()
                .map(|(p, why)| serde_json::json!({"file": p.display().to_string(), "why": why}))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "deleted_files": report.deleted.len(), "deleted_bytes": report.bytes,
                    "kept": kept,
                })
            )?;
        }
        Command::Delete { run } => {
            let bar = crate::progress::Bar::new();
            let d = open()?.delete_with(&run, &bar)?;
            bar.done();
            let versions: Vec<String> = d.versions.iter().map(|v| v.to_string()).collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({"deleted": d.run, "versions": versions, "deleted_files": d.files})
            )?;
        }
        Command::Purge { version } => {
            let v: steplog::VersionId = version.parse().map_err(|_| {
                CliError::Usage(format!(
                    "'{version}' is not a version id (expected v<N>, like v3)"
                ))
            })?;
            let bar = crate::progress::Bar::new();
            let deleted = open()?.purge_with(v, &bar)?;
            bar.done();
            writeln!(
                out,
                "{}",
                serde_json::json!({"purged": version, "deleted_files": deleted})
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn runs(store: &Store, all: bool, format: TableFormat, out: &mut impl Write) -> CliResult {
    if all {
        return all_versions(store, format, out);
    }
    // Every run is listed; damaged ones are marked, then reported, and the exit status is 1.
    let mut damaged: Vec<(String, String)> = Vec::new();
    let mut records = output::Records::new(format);
    // One snapshot: every run's sparklines read the version its line names, and no read
    // pays a manifest refresh (a million runs made four million of them).
    let snap = store.snapshot()?;
    let runs = snap.runs()?;
    // Lines are written as they are made, so the first appear at once and a listing of a
    // million runs holds no table in memory: the columns are as wide as the listing's
    // widest cell, known before any sparkline is read, and the sparklines come last.
    let headers = ["run", "head", "status", "last_step", "rows", "metrics"];
    let mut table = match format {
        TableFormat::Table => {
            let widths = [
                runs.iter().map(|r| r.name.chars().count()).max(),
                runs.iter().map(|r| r.head.to_string().len()).max(),
                runs.iter().map(|r| r.status.to_string().len()).max(),
                runs.iter()
                    .map(|r| r.last_step.map_or(1, |l| l.to_string().len()))
                    .max(),
                runs.iter().map(|r| r.rows.to_string().len()).max(),
            ];
            let widths = headers
                .iter()
                .zip(widths)
                .map(|(h, w)| w.unwrap_or(0).max(h.len()))
                .collect::<Vec<_>>();
            let t = output::Columns::new(widths);
            t.line(out, headers.iter().map(|h| h.to_string()))?;
            Some(t)
        }
        _ => None,
    };
    // The sparklines of a batch of runs are read on every core, then written in order.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut batch: Vec<CliResult<String>> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if i % SPARK_BATCH == 0 {
            let end = runs.len().min(i + SPARK_BATCH);
            batch = sparks_of(&snap, &runs[i..end], threads);
            batch.reverse();
        }
        let read = batch.pop().unwrap_or_else(|| Ok(String::new()));
        // Counting reads only the blocks' indexes; the sparklines read the footers and
        // blocks too, and damage found there marks this run, not the listing. Both formats
        // read them, so that both mark the same runs.
        let mut damage = r.damage.clone();
        let sparks = match &damage {
            None => match read {
                Ok(s) => s,
                Err(CliError::Steplog(e)) if e.is_corruption() => {
                    damage = Some(e.to_string());
                    String::new()
                }
                Err(e) => return Err(e),
            },
            Some(_) => String::new(),
        };
        if let Some(d) = &damage {
            damaged.push((r.name.clone(), d.clone()));
        }
        match &mut table {
            None => {
                let mut v = serde_json::json!({
                    "run": r.name, "head": r.head.to_string(), "status": r.status.name(),
                    "last_step": r.last_step, "rows": r.rows,
                });
                if let Some(d) = &damage {
                    v["damage"] = d.clone().into();
                }
                records.write(out, &v)?;
            }
            // A damaged run's rows are not known: its metrics column says so.
            Some(t) => t.line(
                out,
                [
                    r.name.clone(),
                    r.head.to_string(),
                    r.status.to_string(),
                    r.last_step.map_or("-".into(), |l| l.to_string()),
                    match damage {
                        Some(_) => "-".into(),
                        None => r.rows.to_string(),
                    },
                    match damage {
                        Some(_) => "DAMAGED".into(),
                        None => sparks,
                    },
                ]
                .into_iter(),
            )?,
        }
    }
    records.end(out)?;
    damage_report(damaged)
}

/// `runs --all`: every version, with its status, origin, parent and row count, written a
/// line at a time (the table's widths from the listing: a million versions hold no table).
fn all_versions(store: &Store, format: TableFormat, out: &mut impl Write) -> CliResult {
    let mut damaged: Vec<(String, String)> = Vec::new();
    let mut records = output::Records::new(format);
    let versions = store.versions()?;
    let readable: Vec<steplog::VersionId> = versions
        .iter()
        .filter(|v| v.status != Status::Purged)
        .map(|v| v.id)
        .collect();
    // Each readable version's (rows, last step), or why it could not be counted.
    let mut counts: std::collections::HashMap<_, Result<steplog::RowCount, String>> =
        std::collections::HashMap::with_capacity(readable.len());
    for (id, counted) in readable.iter().copied().zip(store.rows_of(&readable)?) {
        let counted = match counted {
            Ok(c) => Ok(c),
            Err(e) if e.is_corruption() => Err(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        counts.insert(id, counted);
    }
    let count_of = |v: &steplog::VersionInfo| match counts.get(&v.id) {
        Some(Ok(c)) => (Some(c.rows), c.last_step),
        _ => (None, None),
    };
    let cells = |v: &steplog::VersionInfo| -> [String; 7] {
        let (count, last) = count_of(v);
        [
            v.id.to_string(),
            v.run.clone(),
            v.status.to_string(),
            format!("{:?}", v.origin).to_lowercase(),
            match (v.parent, v.restart_of) {
                (Some(p), _) => format!("{}@{}", p.version, p.step),
                (None, Some(r)) => format!("{r} (restart)"),
                (None, None) => "-".into(),
            },
            count.map_or("-".into(), |c| c.to_string()),
            last.map_or("-".into(), |l| l.to_string()),
        ]
    };
    let headers = [
        "version",
        "run",
        "status",
        "origin",
        "parent",
        "rows",
        "last_step",
    ];
    let table = (format == TableFormat::Table).then(|| {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for v in &versions {
            for (w, c) in widths.iter_mut().zip(cells(v)) {
                *w = (*w).max(c.chars().count());
            }
        }
        output::Columns::new(widths)
    });
    if let Some(t) = &table {
        t.line(out, headers.iter().map(|h| h.to_string()))?;
    }
    for v in &versions {
        if let Some(Err(why)) = counts.get(&v.id) {
            damaged.push((v.id.to_string(), why.clone()));
        }
        match &table {
            Some(t) => t.line(out, cells(v).into_iter())?,
            None => {
                let (count, last) = count_of(v);
                records.write(
                    out,
                    &serde_json::json!({
                        "version": v.id.to_string(), "run": v.run, "status": v.status.name(),
                        "origin": v.origin, "parent": v.parent.map(|p| p.version.to_string()),
                        "parent_step": v.parent.map(|p| p.step),
                        "restart_of": v.restart_of.map(|r| r.to_string()), "rows": count,
                        "last_step": last, "created": v.created, "config": v.config,
                    }),
                )?
            }
        }
    }
    records.end(out)?;
    damage_report(damaged)
}

/// After a listing: each damaged run or version named on stderr, and exit status 1.
fn damage_report(damaged: Vec<(String, String)>) -> CliResult {
    if damaged.is_empty() {
        return Ok(());
    }
    for (what, why) in &damaged {
        eprintln!("steplog: {what} is damaged: {why}");
    }
    Err(CliError::Usage(format!(
        "{} of the listed runs or versions are damaged (`steplog verify` shows every problem)",
        damaged.len()
    )))
}

/// Runs whose sparklines are read together, on every core, before they are written.
const SPARK_BATCH: usize = 4096;

/// [`metric_sparks`] of each of `runs` (nothing read for a run already damaged), in
/// order, read by `threads` threads.
fn sparks_of(
    snap: &steplog::Snapshot,
    runs: &[steplog::RunInfo],
    threads: usize,
) -> Vec<CliResult<String>> {
    let read = |part: &[steplog::RunInfo]| -> Vec<CliResult<String>> {
        part.iter()
            .map(|r| match r.damage {
                Some(_) => Ok(String::new()),
                None => metric_sparks(snap, r.head),
            })
            .collect()
    };
    if threads < 2 || runs.len() < 64 {
        return read(runs);
    }
    let part = runs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = runs
            .chunks(part)
            .map(|p| s.spawn(move || read(p)))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(sparks) => sparks,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Sparklines of a version's first three numeric metrics (keys starting with `_` left out),
/// for `runs --format table`.
fn metric_sparks(snap: &steplog::Snapshot, version: steplog::VersionId) -> CliResult<String> {
    let summary = snap.summary(version)?;
    let keys = summary
        .keys
        .iter()
        .filter(|(k, s)| !k.starts_with('_') && s.numeric_count > 0)
        .take(3);
    let mut parts = Vec::new();
    for (k, s) in keys {
        let spark = output::sparkline(snap, version, k, 12, s.numeric_count)?;
        parts.push(format!("{k} {spark}"));
    }
    Ok(parts.join("  "))
}
