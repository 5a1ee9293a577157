//! `steplog`: the command-line tool over a steplog store.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod chart;
mod commands;
mod demo;
mod export;
mod importing;
mod ingest;
mod outfile;
mod output;
mod plot;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// steplog: run history with instant rewind and fork.
#[derive(Parser, Debug)]
#[command(name = "steplog", version, about, long_about = None)]
struct Cli {
    /// The store directory (created if missing).
    #[arg(
        long,
        global = true,
        env = "STEPLOG_STORE",
        default_value = "./steplog-data"
    )]
    store: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RowFormat {
    Jsonl,
    Csv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TableFormat {
    Json,
    Table,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The end-to-end demo: log a training run, rewind it past a loss spike, fork a variant,
    /// and show runs, lineage, summaries, charts, a Parquet export and a verify.
    Demo {
        /// Steps of the demo training run.
        #[arg(long, default_value_t = 100_000)]
        steps: u64,
    },
    /// Log rows read from stdin as JSON Lines (one object per line; `_step` sets the step,
    /// otherwise previous step + 1; nested objects flatten with `/`).
    Log(ingest::LogArgs),
    /// Print the rows of a run or version, one JSON object per step.
    History {
        /// A run (its head), a version id (v12), or RUN?_step=S (steps up to S).
        reference: String,
        #[command(flatten)]
        keys: commands::KeySelection,
        /// First step.
        #[arg(long)]
        from: Option<u64>,
        /// Last step.
        #[arg(long)]
        to: Option<u64>,
        /// The stream: history, system, console.
        #[arg(long, default_value = "history")]
        stream: steplog::Stream,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: RowFormat,
    },
    /// Print the summary of a run or version.
    Summary {
        /// A run, a version id, or RUN?_step=S.
        reference: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: TableFormat,
    },
    /// Rewind a run to a step: archive its head; the new head keeps rows up to the step.
    Rewind {
        /// The run, or RUN?_step=S.
        reference: String,
        /// The last step to keep.
        #[arg(long)]
        step: Option<u64>,
        /// Config (a JSON object) merged over the run's config.
        #[arg(long)]
        config: Option<String>,
    },
    /// Fork a new run from a run or version at a step.
    Fork {
        /// The source: a run, a version id, or REF?_step=S.
        reference: String,
        /// The last step to take from the source.
        #[arg(long)]
        step: Option<u64>,
        /// The new run's name.
        #[arg(long)]
        name: String,
        /// Config (a JSON object) merged over the source's config.
        #[arg(long)]
        config: Option<String>,
    },
    /// List runs (or, with --all, every version).
    Runs {
        /// List every version with its status and parent.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// Draw the tree of versions, rewinds and forks around a run.
    Lineage {
        /// A run or a version id.
        reference: String,
    },
    /// Check every checksum of every file; exit 1 if any fails.
    Verify,
    /// Line charts of metrics with the run's rewinds and forks overlaid (SVG, PNG, or the
    /// terminal); long runs are downsampled (M4) from block aggregates.
    Plot(plot::PlotArgs),
    /// Write a run or version, or the whole store, to a CSV, JSON Lines or Parquet file.
    Export(export::ExportArgs),
    /// Import run history from TensorBoard, W&B, AFL++ or criterion (see `import --help`).
    Import {
        #[command(subcommand)]
        source: importing::ImportSource,
    },
    /// Follow a live source, logging its new rows as they are written.
    Follow {
        #[command(subcommand)]
        source: importing::FollowSource,
    },
    /// Purge an archived version: delete the segments no other version needs.
    Purge {
        /// The version id (v12).
        version: String,
    },
    /// Delete segment files nothing needs any more (left by a purge or a writer that was
    /// killed midway); files that may hold rows are kept and listed.
    Gc,
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("steplog: internal error: {info}");
        eprintln!("steplog: this is a bug; please report it with the command that caused it");
    }));
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steplog: error: {e}");
            ExitCode::FAILURE
        }
    }
}
