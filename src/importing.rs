//! `steplog import ...` and `steplog follow afl`: the library's importers with a progress bar,
//! one JSON line per imported run on stdout.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use steplog::Store;
use steplog_import::{self as import, Imported};

use crate::args::{FollowSource, ImportSource};
use crate::error::{CliError, CliResult};
use crate::progress::Bar;

fn report(out: &mut impl Write, r: &Imported) -> CliResult {
    let v = serde_json::json!({
        "run": r.run,
        "head": r.version.to_string(),
        "rows": r.rows,
        "archived": r.archived.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        "forked_from": r.forked_from.as_ref().map(|(run, step)| serde_json::json!({"run": run, "step": step})),
        "skipped": r.skipped,
    });
    let mut v = v;
    if r.refused_values > 0 {
        v["refused_values"] = r.refused_values.into();
        v["refused_keys"] = r.refused_keys.into();
        v["refused"] = r
            .refused
            .iter()
            .map(|k| serde_json::json!({"key": k.key, "reason": k.reason, "values": k.values}))
            .collect();
        let s = |n: u64| if n == 1 { "" } else { "s" };
        eprintln!(
            "steplog: run '{}': {} value{} left out under {} key{} steplog cannot store (first: '{}': {})",
            r.run,
            r.refused_values,
            s(r.refused_values),
            r.refused_keys,
            s(r.refused_keys),
            r.refused.first().map_or("", |k| k.key.as_str()),
            r.refused.first().map_or("", |k| k.reason.as_str()),
        );
    }
    writeln!(out, "{v}")?;
    Ok(())
}

pub fn import(store: &Store, source: ImportSource, out: &mut impl Write) -> CliResult {
    let bar = Bar::new();
    let what = match &source {
        ImportSource::Criterion { .. } => "runs under another --prefix",
        _ => "a new name with --run NAME",
    };
    let imported = sources(store, source, &bar).map_err(|e| match e {
        // An import never appends: say so in the words of the command, not the engine's.
        CliError::Steplog(
            steplog::Error::ResumeRefused { run, .. } | steplog::Error::RunExists { run },
        ) => CliError::Usage(format!(
            "a run named '{run}' exists already, and an import never appends to a run: \
                 import into {what}"
        )),
        e => e,
    })?;
    bar.done();
    for r in &imported {
        report(out, r)?;
    }
    Ok(())
}

/// What `source` holds, imported.
fn sources(store: &Store, source: ImportSource, bar: &Bar) -> CliResult<Vec<Imported>> {
    let imported = match source {
        ImportSource::Tensorboard { path, run } => {
            vec![import::tensorboard::import(store, &path, &run, bar)?]
        }
        ImportSource::Wandb { file, run } => {
            vec![import::wandb::import(store, &file, run.as_deref(), bar)?]
        }
        ImportSource::Afl { dir, run } => vec![import::afl::import(store, &dir, &run, bar)?],
        ImportSource::Criterion { dir, prefix } => {
            import::criterion::import(store, &dir, &prefix, bar)?
        }
    };
    Ok(imported)
}

pub fn follow(store: &Store, source: FollowSource, out: &mut impl Write) -> CliResult {
    let FollowSource::Afl {
        dir,
        run,
        poll_ms,
        idle_exit,
    } = source;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // Without a handler (another one is set), Ctrl-C kills the process: every batch is
    // committed already, so only the run's `finished` status is lost.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    eprintln!(
        "steplog: following {} into run '{run}' (Ctrl-C to stop)",
        dir.display()
    );
    let mut on_batch = |rows: u64, last: u64| {
        let rows = crate::output::count(rows, "more row", "more rows");
        eprintln!("steplog: logged {rows}, last step {last}");
    };
    let r = import::afl::follow(
        store,
        &dir,
        &run,
        import::afl::FollowOptions {
            poll: Duration::from_millis(poll_ms.max(10)),
            idle_exit: idle_exit.map(Duration::from_secs),
            stop: &|| stop.load(Ordering::SeqCst),
            on_batch: &mut on_batch,
        },
    )?;
    report(out, &r)
}
