//! The command line: every subcommand and its arguments (clap), and the argument types the
//! commands share.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{CliError, CliResult};

/// steplog: run history with instant rewind and fork.
#[derive(Parser, Debug)]
#[command(name = "steplog", version, about, long_about = None)]
pub struct Cli {
    /// The store directory (created if missing).
    #[arg(
        long,
        global = true,
        env = "STEPLOG_STORE",
        default_value = "./steplog-data"
    )]
    pub store: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RowFormat {
    Jsonl,
    Csv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Json,
    Table,
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
    /// otherwise previous step + 1; nested objects flatten with `/`).
    Log(crate::ingest::LogArgs),
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
    Plot(crate::plot::PlotArgs),
    /// Write a run or version, or the whole store, to a CSV, JSON Lines or Parquet file.
    Export(crate::export::ExportArgs),
    /// Import run history from TensorBoard, W&B, AFL++ or criterion (see `import --help`).
    Import {
        #[command(subcommand)]
        source: crate::importing::ImportSource,
    },
    /// Follow a live source, logging its new rows as they are written.
    Follow {
        #[command(subcommand)]
        source: crate::importing::FollowSource,
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

/// The keys a read command is limited to: `--keys a,b` splits at commas, `--key K` takes a
/// key whole (one that contains a comma); both may be repeated and are combined.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeySelection {
    /// Only these keys (comma-separated; a key containing a comma goes in --key).
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
