//! AFL++ (and AFL) `plot_data` into one steplog run, once ([`import`]) or as a live tail
//! ([`follow`]).
//!
//! `plot_data` is text: a header line `# relative_time, cycles_done, ...` (AFL's older
//! `# unix_time, ...`) naming the columns, then one comma-separated line per update. The first
//! column is the step (seconds); every other column is a value under its header name.
//! Percentages (`75.00%`) become floats, integers `i64`, other numbers `f64`.
//!
//! A fuzzer instance directory (`out/default`) is read as its `plot_data`, and its
//! `fuzzer_stats` (AFL version, command line, target mode, banner, start time) goes into the
//! run's config under `_import`.
//!
//! Restarts: a resumed campaign (`afl-fuzz -i -`) appends and its time goes on, so it simply
//! continues the run. A campaign started afresh rewrites `plot_data` and its time starts
//! again; a step before the last one is mapped as TensorBoard maps a restart: the run
//! is rewound to just before it, so the earlier attempt's rows from that step on stay
//! readable as an archived version. [`follow`] notices a rewrite by the file's inode changing
//! or its length dropping below what it has read, and starts again from the file's first
//! line (a file rewritten in place, same inode, to at least the length already read between
//! two polls is not noticed; AFL++ makes a new file when a campaign starts afresh).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{config_with, provenance, read_source, Imported, Origin, Progress, RunSink};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::types::Value;

/// The `plot_data` file of `dir` (an instance directory, or the file itself).
fn plot_file(dir: &Path) -> Result<PathBuf> {
    if dir.is_file() {
        return Ok(dir.to_owned());
    }
    let file = dir.join("plot_data");
    if file.is_file() {
        return Ok(file);
    }
    let mut instances = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().join("plot_data").is_file() {
                instances.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    instances.sort();
    let hint = if instances.is_empty() {
        String::new()
    } else {
        format!(
            "; it holds the fuzzer instances {}: import each on its own (for example {})",
            instances.join(", "),
            dir.join(&instances[0]).display()
        )
    };
    Err(Error::InvalidInput(format!(
        "{} has no AFL plot_data{hint}",
        dir.display()
    )))
}

/// The config of a run imported from `dir`: where from, and the campaign's `fuzzer_stats`.
fn config(file: &Path) -> serde_json::Value {
    let mut import = provenance("afl", file);
    let stats_file = file.with_file_name("fuzzer_stats");
    if let Ok(text) = std::fs::read_to_string(&stats_file) {
        let keep = [
            "afl_version",
            "afl_banner",
            "command_line",
            "target_mode",
            "start_time",
        ];
        let stats: serde_json::Map<_, _> = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| keep.contains(k))
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        import.insert("fuzzer_stats".into(), stats.into());
    }
    config_with(serde_json::Map::new(), import)
}

/// Imports the `plot_data` of `dir` as the new run `run`.
pub fn import(store: &Store, dir: &Path, run: &str, progress: &dyn Progress) -> Result<Imported> {
    let file = plot_file(dir)?;
    let data = read_source(&file)?;
    progress.begin("afl", data.len() as u64, crate::progress::Unit::Bytes);
    let mut sink = RunSink::create(store, run, config(&file), Origin::New)?;
    let mut plot = Plot::default();
    let consumed = match plot.feed(&mut sink, &file, 0, &data) {
        Ok(n) => n,
        Err(e) => return sink.fail(e),
    };
    if consumed < data.len() {
        let e = Error::bad_source(
            &file,
            consumed as u64,
            format!("the file ends inside line {} (no newline)", plot.line + 1),
        );
        return sink.fail(e);
    }
    progress.update(data.len() as u64);
    sink.finish(true)
}

/// How [`follow`] polls and when it stops.
pub struct FollowOptions<'a> {
    /// Time between looks at the file.
    pub poll: Duration,
    /// Stop after the file has not grown for this long (`None`: only `stop` ends it).
    pub idle_exit: Option<Duration>,
    /// Checked between polls; `true` ends the tail (the CLI sets it on Ctrl-C).
    pub stop: &'a dyn Fn() -> bool,
    /// Told the rows written and the last step after each batch is committed.
    pub on_batch: &'a mut dyn FnMut(u64, u64),
}

/// Tails the `plot_data` of `dir` into the new run `run`: every complete line is logged and
/// committed as it appears, a rewritten file (a restarted campaign) is read again from its
/// start, and a missing file is waited for. Ends when `opts.stop` says so or the file has
/// been idle for `opts.idle_exit`, leaving the run `finished`.
pub fn follow(store: &Store, dir: &Path, run: &str, opts: FollowOptions<'_>) -> Result<Imported> {
    let file = wait_for(dir, &opts)?;
    let mut sink = RunSink::create(store, run, config(&file), Origin::New)?;
    match tail(&mut sink, &file, opts) {
        Ok(()) => sink.finish(true),
        Err(e) => sink.fail(e),
    }
}

/// Waits (polling) until `dir` has a plot_data; fails if the tail is told to stop first.
fn wait_for(dir: &Path, opts: &FollowOptions<'_>) -> Result<PathBuf> {
    let since = Instant::now();
    loop {
        match plot_file(dir) {
            Ok(f) => return Ok(f),
            Err(e) => {
                let idle = opts.idle_exit.is_some_and(|d| since.elapsed() >= d);
                if (opts.stop)() || idle {
                    return Err(e);
                }
            }
        }
        std::thread::sleep(opts.poll);
    }
}

fn tail(sink: &mut RunSink, file: &Path, opts: FollowOptions<'_>) -> Result<()> {
    let mut plot = Plot::default();
    let (mut offset, mut inode) = (0u64, None);
    let mut last_change = Instant::now();
    loop {
        if let Ok(meta) = std::fs::metadata(file) {
            let ino = inode_of(&meta);
            if inode.is_some_and(|i| i != ino) || meta.len() < offset {
                // Rewritten: a new campaign. Read it again from its first line.
                plot = Plot::default();
                offset = 0;
            }
            inode = Some(ino);
            if meta.len() > offset {
                let mut f = File::open(file).map_err(|e| Error::io(file, e))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io(file, e))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map_err(|e| Error::io(file, e))?;
                let before = sink.rows;
                let used = plot.feed(sink, file, offset, &buf)?;
                if used > 0 {
                    sink.commit()?;
                    last_change = Instant::now();
                    offset += used as u64;
                    (opts.on_batch)(sink.rows - before, sink.last_step().unwrap_or(0));
                }
            }
        }
        if (opts.stop)() || opts.idle_exit.is_some_and(|d| last_change.elapsed() >= d) {
            return Ok(());
        }
        std::thread::sleep(opts.poll);
    }
}

#[cfg(unix)]
fn inode_of(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode_of(_meta: &std::fs::Metadata) -> u64 {
    0
}

/// The parse state of one `plot_data` file.
#[derive(Default)]
struct Plot {
    /// The header's column names.
    columns: Option<Vec<String>>,
    /// Lines read so far.
    line: u64,
}

impl Plot {
    /// Logs every complete line of `data` (which starts at byte `base` of `file`); returns
    /// the bytes used (up to the end of the last complete line).
    fn feed(&mut self, sink: &mut RunSink, file: &Path, base: u64, data: &[u8]) -> Result<usize> {
        let mut used = 0;
        while let Some(nl) = data[used..].iter().position(|&b| b == b'\n') {
            let at = base + used as u64;
            let line = &data[used..used + nl];
            self.line += 1;
            self.line(sink, file, at, line)?;
            used += nl + 1;
        }
        Ok(used)
    }

    fn line(&mut self, sink: &mut RunSink, file: &Path, at: u64, line: &[u8]) -> Result<()> {
        let n = self.line;
        let bad = |reason: String| Error::bad_source(file, at, format!("line {n}: {reason}"));
        let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        if let Some(header) = text.strip_prefix('#') {
            self.columns = Some(header.split(',').map(|c| c.trim().to_owned()).collect());
            return Ok(());
        }
        let Some(columns) = &self.columns else {
            return Err(bad("a data line before the '# ...' header line".into()));
        };
        let cells: Vec<&str> = text.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(bad(format!(
                "{} fields, but the header names {} columns",
                cells.len(),
                columns.len()
            )));
        }
        let step: u64 = cells[0].parse().map_err(|_| {
            bad(format!(
                "{} '{}' is not a whole number of seconds",
                columns[0], cells[0]
            ))
        })?;
        let mut row = Vec::with_capacity(cells.len() - 1);
        for (name, cell) in columns.iter().zip(&cells).skip(1) {
            row.push((
                name.as_str(),
                number(cell).ok_or_else(|| bad(format!("{name} '{cell}' is not a number")))?,
            ));
        }
        if sink.last_step().is_some_and(|last| step < last) {
            sink.restart_at(step, (file, at))?;
        }
        sink.row(step, row)
    }
}

/// A plot_data cell: `75.00%` → 75.0, `12` → 12, `3422.85` → 3422.85.
fn number(cell: &str) -> Option<Value> {
    if let Some(p) = cell.strip_suffix('%') {
        return p.trim().parse().ok().map(Value::F64);
    }
    if let Ok(i) = cell.parse::<i64>() {
        return Some(Value::I64(i));
    }
    cell.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::F64)
}
