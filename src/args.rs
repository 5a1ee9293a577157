//! The command line: every subcommand and its arguments (clap), and the argument types the
//! commands share.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{CliError, CliResult};

/// steplog: run history with instant rewind and fork.
#[derive(Parser, Debug)]
#[command(name = "steplog", version, about, long_about = None)]
pub struct Cli {
    /// The store directory [default: $STEPLOG_STORE, else ./steplog-data]. Only log,
    /// import, follow and demo create it; every other command needs it to exist.
    // Not clap's `env`/`default_value`: with those, an error's usage line lists
    // `--store <STORE>` as if it had to be given whenever STEPLOG_STORE is set.
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The store directory, and how it was chosen (for messages): `--store`, then a
    /// non-empty `STEPLOG_STORE`, then `./steplog-data`.
    pub fn store_dir(&self) -> (PathBuf, &'static str) {
        if let Some(dir) = &self.store {
            return (dir.clone(), "from --store");
        }
        match std::env::var_os("STEPLOG_STORE") {
            Some(dir) if !dir.is_empty() => (dir.into(), "from STEPLOG_STORE"),
            _ => (
                "./steplog-data".into(),
                "the default; set --store or STEPLOG_STORE",
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RowFormat {
    Jsonl,
    Csv,
}

/// How `runs` and `summary` print. Without `--format`: a table on a terminal, and when
/// standard output is a pipe or a file, what a program reads (`runs`: JSON Lines; `summary`:
/// its one JSON object), as `gh` and `git` choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    /// Aligned columns, for people.
    Table,
    /// One JSON document (`runs`: an array of objects).
    Json,
    /// JSON Lines: one object per line.
    Jsonl,
}

impl TableFormat {
    /// The format asked for, or the default: a table on a terminal, else `machine`.
    pub fn or_default(asked: Option<TableFormat>, machine: TableFormat) -> TableFormat {
        use std::io::IsTerminal;
        asked.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                TableFormat::Table
            } else {
                machine
            }
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The end-to-end demo: log a training run, rewind it past a loss spike, fork a variant,
    /// and show runs, lineage, summaries, charts, a Parquet export and a verify.
    Demo {
        /// Steps of the demo training run.
        #[arg(long, default_value_t = 100_000)]
        steps: u64,
    },
    /// Log rows read from stdin as JSON Lines (one object per line; `_step` sets the step,
    /// otherwise the step after the stream's last row, and a session's first after the run's
    /// last step in any stream; nested objects flatten with `/`). Nothing is written
    /// before the first row is accepted; a bad line later leaves the run crashed, with the
    /// rows before it committed.
    Log(LogArgs),
    /// Print the rows of a run or version, one JSON object per step.
    History {
        /// A run (its head), a version id (v12), or RUN?_step=S (steps up to S).
        reference: String,
        #[command(flatten)]
        keys: KeySelection,
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
        /// Output format [default: table on a terminal, json when piped].
        #[arg(long, value_enum)]
        format: Option<TableFormat>,
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
        /// Output format: json is one array, jsonl one object per line [default: table on a
        /// terminal, jsonl when piped].
        #[arg(long, value_enum)]
        format: Option<TableFormat>,
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
    Plot(PlotArgs),
    /// Write a run or version, or the whole store, to a CSV, JSON Lines or Parquet file.
    Export(ExportArgs),
    /// Import run history from TensorBoard, W&B, AFL++ or criterion, each source into a new run.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Follow a live source, logging its new rows as they are written.
    Follow {
        #[command(subcommand)]
        source: FollowSource,
    },
    /// Purge an archived version: delete the segments no other version needs.
    Purge {
        /// The version id (v12).
        version: String,
    },
    /// Delete a run with all its versions: its name is free again and the segments no other
    /// run needs are deleted (a run forked from it keeps what it reads). Refused while a
    /// writer holds the run.
    Delete {
        /// The run's name.
        run: String,
    },
    /// Serve the web view: the runs table, each run's page with its lineage tree, and charts
    /// that zoom to exact values (docs/API.md). Read-only and on the loopback address unless
    /// told otherwise; Ctrl-C stops it.
    Serve(ServeArgs),
    /// Delete segment files nothing needs any more (left by a purge or a writer that was
    /// killed midway); files that may hold rows are kept and listed.
    Gc,
}

/// The keys a read command is limited to: `--keys a,b` splits at commas, `--key K` takes a
/// key whole (one that contains a comma); both may be repeated and are combined.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeySelection {
    /// Only these keys (comma-separated; a key containing a comma goes in --key). A key the
    /// version never had is an error.
    #[arg(long, value_delimiter = ',')]
    pub keys: Vec<String>,
    /// Only this key, taken whole (may be repeated).
    #[arg(long)]
    pub key: Vec<String>,
}

impl KeySelection {
    /// Every key named, in the order given (`--keys` first), once each; `None` for all keys.
    pub fn selected(&self) -> Option<Vec<String>> {
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<String> = self
            .keys
            .iter()
            .chain(&self.key)
            .filter(|k| seen.insert(k.as_str()))
            .cloned()
            .collect();
        (!keys.is_empty()).then_some(keys)
    }
}

pub fn parse_config(text: Option<&str>) -> CliResult<Option<serde_json::Value>> {
    text.map(|t| {
        serde_json::from_str(t)
            .map_err(|e| CliError::Usage(format!("--config is not valid JSON: {e}")))
    })
    .transpose()
}

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

/// `steplog log`: how to start the run and when to commit.
#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// The run to write.
    pub run: String,
    /// Rewind the run first: `RUN?_step=S` (W&B's resume_from).
    #[arg(long, value_name = "REF", conflicts_with = "fork_from")]
    pub resume_from: Option<String>,
    /// Fork RUN from another run or version: `NAME?_step=S` or `v12?_step=S`.
    #[arg(long, value_name = "REF")]
    pub fork_from: Option<String>,
    /// If the run exists (or not): allow, must, never.
    #[arg(long, default_value = "allow")]
    pub resume: steplog::Resume,
    /// Config as a JSON object, merged over the run's config.
    #[arg(long)]
    pub config: Option<String>,
    /// The stream to write: history, system, console.
    #[arg(long, default_value = "history")]
    pub stream: steplog::Stream,
    /// Also commit after every N rows (rows are always committed when input pauses for
    /// 100 ms, at least every second, and at the end).
    #[arg(long, value_name = "N")]
    pub commit_every: Option<u64>,
    /// After each commit, print `committed STEP` (the last committed step) on stdout, for
    /// a supervisor that must know what is durable.
    #[arg(long)]
    pub report_commits: bool,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A run (its head), a version id (v12), or RUN?_step=S.
    pub reference: String,
    /// The metrics to plot, one panel each, at most 60 (default: every numeric metric whose
    /// name does not start with `_`, the first 60 if there are more).
    #[command(flatten)]
    pub keys: KeySelection,
    /// First step of the x axis.
    #[arg(long)]
    pub from: Option<u64>,
    /// Last step of the x axis.
    #[arg(long)]
    pub to: Option<u64>,
    /// Draw only the version itself, without the rest of its lineage.
    #[arg(long)]
    pub no_lineage: bool,
    /// The chart file: .svg or .png; `-` writes SVG to standard output. Without it, a chart
    /// is drawn in the terminal.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Width in pixels (240 to 16,384), or columns in the terminal (20 to 1,000).
    #[arg(long)]
    pub width: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run (its head), a version id (v12), or RUN?_step=S. Leave out with --all.
    #[arg(required_unless_present = "all")]
    pub reference: Option<String>,
    /// Export every run of the store (each run's head) as one table with `run` and
    /// `version` columns, or, with --split, as one file per run in the directory -o names.
    #[arg(long, conflicts_with = "reference")]
    pub all: bool,
    /// With --all: one file per run (named after the run) instead of one table.
    #[arg(long, requires = "all")]
    pub split: bool,
    /// Output format; by default the output file's extension names it (.csv, .jsonl or
    /// .ndjson, .parquet). Needed for -o - and for --split.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub keys: KeySelection,
    /// First step.
    #[arg(long)]
    pub from: Option<u64>,
    /// Last step.
    #[arg(long)]
    pub to: Option<u64>,
    /// The output file (the directory, with --split); `-` is standard output (then the
    /// report of rows written goes to standard error).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on (port 0 takes a free port). Anything but a loopback
    /// address exposes the store to the network: read README "Web view" first.
    #[arg(long, default_value = "127.0.0.1:6007")]
    pub bind: std::net::SocketAddr,
    /// Open the page in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Let the page rewind and fork runs (each write needs the page's token).
    #[arg(long)]
    pub allow_write: bool,
    /// Also answer to this host name (as a browser sends it in Host), besides localhost,
    /// 127.0.0.1, [::1] and the bound address; `*` answers to any name (no protection
    /// against DNS rebinding). May be repeated.
    #[arg(long, value_name = "NAME")]
    pub allow_host: Vec<String>,
}
