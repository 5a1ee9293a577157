//! `steplog import ...` and `steplog follow afl`: the library's importers with a progress bar,
//! one JSON line per imported run on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use steplog::Store;
use steplog_import::{self as import, Imported};

use crate::error::CliResult;
use crate::progress::Bar;

#[derive(Subcommand, Debug)]
pub enum ImportSource {
    /// TensorBoard event files: one events.out.tfevents.* file, or a directory of them (one
    /// run). Scalars in both the simple_value and the tensor form; a restart marked by
    /// SessionLog.START (purge_step) becomes a rewind, so the orphaned steps stay readable as
    /// an archived version.
    Tensorboard {
        /// An event file, or a run directory holding event files.
        path: PathBuf,
        /// The steplog run to create.
        #[arg(long)]
        run: String,
    },
    /// A W&B offline run file (wandb/offline-run-*/run-ID.wandb): history, config, summary
    /// and run id; a fork (fork_from) of a run already in the store becomes a steplog fork,
    /// a resume_from of one becomes a rewind.
    Wandb {
        /// The .wandb file.
        file: PathBuf,
        /// The steplog run to create (default: the W&B run id).
        #[arg(long)]
        run: Option<String>,
    },
    /// An AFL++ fuzzer instance's plot_data (the instance directory, like out/default, or the
    /// file itself); its fuzzer_stats go into the config.
    Afl {
        /// The instance directory, or its plot_data file.
        dir: PathBuf,
        /// The steplog run to create.
        #[arg(long)]
        run: String,
    },
    /// criterion.rs results: one run per benchmark, its samples as history (iters, time_ns,
    /// ns_per_iter) and its estimates as the run's imported summary.
    Criterion {
        /// The criterion output directory.
        #[arg(default_value = "target/criterion")]
        dir: PathBuf,
        /// Prefix of the run names (a benchmark 'sort/100' becomes 'criterion/sort/100').
        #[arg(long, default_value = "criterion/")]
        prefix: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum FollowSource {
    /// Tail an AFL++ instance's plot_data while the campaign runs: each new line is logged
    /// and committed as it appears; a rewritten file (a restarted campaign) is read again
    /// from its start. Ends on Ctrl-C (the run is then finished) or after --idle-exit.
    Afl {
        /// The instance directory (out/default), or its plot_data file.
        dir: PathBuf,
        /// The steplog run to create.
        #[arg(long)]
        run: String,
        /// Milliseconds between looks at the file.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Stop after the file has not grown for this many seconds.
        #[arg(long)]
        idle_exit: Option<u64>,
    },
}

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
    let imported = match source {
        ImportSource::Tensorboard { path, run } => {
            vec![import::tensorboard::import(store, &path, &run, &bar)?]
        }
        ImportSource::Wandb { file, run } => {
            vec![import::wandb::import(store, &file, run.as_deref(), &bar)?]
        }
        ImportSource::Afl { dir, run } => vec![import::afl::import(store, &dir, &run, &bar)?],
        ImportSource::Criterion { dir, prefix } => {
            import::criterion::import(store, &dir, &prefix, &bar)?
        }
    };
    bar.done();
    for r in &imported {
        report(out, r)?;
    }
    Ok(())
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
        eprintln!("steplog: +{rows} rows, last step {last}");
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
