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
//! readable as an archived version. [`follow`] reads only what was appended since its last
//! poll (a line without its newline yet is kept and completed next time) and notices a
//! rewrite by the file getting shorter than what it has read, by a new file (inode) whose
//! first bytes differ from those read (a longer copy put in its place, or a symbolic link to
//! one, simply continues), or by the last line read no longer being where it was (a file
//! truncated and regrown between two polls); it then starts again from the file's first
//! line. Lines longer than [`MAX_LINE`] are refused: memory stays bounded whatever the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{config_with, provenance, Imported, Progress, RunSink, StartAs};
use crate::error::{Error, Result};
use steplog::Store;
use steplog::Value;

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

/// Imports the `plot_data` of `dir` as the new run `run`. The file is read through a buffer,
/// a line at a time: memory does not grow with the file.
pub fn import(store: &Store, dir: &Path, run: &str, progress: &dyn Progress) -> Result<Imported> {
    let file = plot_file(dir)?;
    let mut f = File::open(&file).map_err(|e| Error::io(&file, e))?;
    let len = f.metadata().map_err(|e| Error::io(&file, e))?.len();
    progress.begin("afl", len, steplog::Unit::Bytes);
    let mut sink = RunSink::create(store, run, config(&file), StartAs::New)?;
    let mut plot = Plot::default();
    let mut reader = (&mut f).take(len);
    if let Err(e) = plot.feed(&mut sink, &file, &mut reader, &mut |n| progress.update(n)) {
        return sink.fail(e);
    }
    if !plot.partial.is_empty() {
        let e = Error::bad_source(
            &file,
            plot.offset - plot.partial.len() as u64,
            format!("the file ends inside line {} (no newline)", plot.line + 1),
        );
        return sink.fail(e);
    }
    progress.update(len);
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
    let mut sink = RunSink::create(store, run, config(&file), StartAs::New)?;
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
    let mut inode = None;
    let mut last_change = Instant::now();
    loop {
        // Only a regular file is read: one briefly replaced by a directory, a FIFO or a
        // device is waited out like a deleted one.
        if let Some(meta) = std::fs::metadata(file).ok().filter(|m| m.is_file()) {
            let ino = inode_of(&meta);
            if plot.rewritten(file, &meta, inode.is_some_and(|i| i != ino))? {
                // A new campaign: read the file again from its first line.
                plot = Plot::default();
            }
            inode = Some(ino);
            if meta.len() > plot.offset {
                let mut f = File::open(file).map_err(|e| Error::io(file, e))?;
                f.seek(SeekFrom::Start(plot.offset))
                    .map_err(|e| Error::io(file, e))?;
                let before = sink.rows;
                let mut reader = f.take(meta.len() - plot.offset);
                plot.feed(sink, file, &mut reader, &mut |_| {})?;
                if sink.rows > before || !plot.partial.is_empty() {
                    last_change = Instant::now();
                }
                if sink.rows > before {
                    sink.commit()?;
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

/// The longest line accepted: AFL's are under 300 bytes; a longer one is not plot_data, and
/// holding it whole would let a file without newlines take any amount of memory.
pub const MAX_LINE: usize = 64 * 1024;

/// The parse state of one `plot_data` file.
#[derive(Default)]
struct Plot {
    /// The header's column names.
    columns: Option<Vec<String>>,
    /// Lines read so far.
    line: u64,
    /// Bytes of the file read so far (the complete lines and `partial`).
    offset: u64,
    /// The bytes read after the last newline.
    partial: Vec<u8>,
    /// CRC-32 of the bytes read so far, to tell a longer copy from a rewritten file.
    crc: crc32fast::Hasher,
    /// The offset and bytes of the last complete line (to notice a file rewritten in place).
    last: Option<(u64, Vec<u8>)>,
}

impl Plot {
    /// Reads `reader` (the file from byte `self.offset` on) to its end and logs every complete
    /// line; what follows the last newline stays in `partial` for the next call.
    fn feed(
        &mut self,
        sink: &mut RunSink,
        file: &Path,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(file, e)),
            };
            let base = self.offset;
            self.offset += n as u64;
            self.crc.update(&buf[..n]);
            let mut used = 0;
            while let Some(nl) = buf[used..n].iter().position(|&b| b == b'\n') {
                let start = base + used as u64 - self.partial.len() as u64;
                self.partial.extend_from_slice(&buf[used..used + nl]);
                let line = std::mem::take(&mut self.partial);
                self.line += 1;
                self.check_length(file, start, line.len())?;
                self.line(sink, file, start, &line)?;
                self.last = Some((start, line));
                used += nl + 1;
            }
            self.partial.extend_from_slice(&buf[used..n]);
            let start = self.offset - self.partial.len() as u64;
            self.check_length(file, start, self.partial.len())?;
            progress(self.offset);
        }
    }

    fn check_length(&self, file: &Path, start: u64, len: usize) -> Result<()> {
        if len > MAX_LINE {
            return Err(Error::bad_source(
                file,
                start,
                format!(
                    "line {} is longer than {MAX_LINE} bytes: not AFL plot_data",
                    self.line + 1
                ),
            ));
        }
        Ok(())
    }

    /// Whether `file` (now `meta`) is no longer the file read so far: shorter than what was
    /// read, a new file (`new_inode`) whose first bytes differ from those read (a longer copy
    /// put in its place is the same file), or different bytes where the last line was read
    /// (rewritten in place and grown past it between two polls).
    fn rewritten(&self, file: &Path, meta: &std::fs::Metadata, new_inode: bool) -> Result<bool> {
        if self.offset == 0 {
            return Ok(false);
        }
        if meta.len() < self.offset {
            return Ok(true);
        }
        let mut f = File::open(file).map_err(|e| Error::io(file, e))?;
        if new_inode {
            let mut crc = crc32fast::Hasher::new();
            let mut left = self.offset;
            let mut buf = vec![0u8; 1 << 16];
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                f.read_exact(&mut buf[..want])
                    .map_err(|e| Error::io(file, e))?;
                crc.update(&buf[..want]);
                left -= want as u64;
            }
            return Ok(crc.finalize() != self.crc.clone().finalize());
        }
        let Some((start, line)) = &self.last else {
            return Ok(false);
        };
        if meta.len() == self.offset {
            return Ok(false);
        }
        // The last line, its newline and what followed it, as they were read.
        let mut read = vec![0u8; (self.offset - start) as usize];
        f.seek(SeekFrom::Start(*start))
            .map_err(|e| Error::io(file, e))?;
        f.read_exact(&mut read).map_err(|e| Error::io(file, e))?;
        let mut was = line.clone();
        was.push(b'\n');
        was.extend_from_slice(&self.partial);
        Ok(read != was)
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
            let columns: Vec<String> = header.split(',').map(|c| c.trim().to_owned()).collect();
            // The first column is the step; the others become keys, so they must be keys,
            // each named once (a second would hide the first's values).
            let mut named = std::collections::HashSet::new();
            for (i, c) in columns.iter().enumerate().skip(1) {
                let shown = super::shown(c);
                steplog::limits::check_key(c)
                    .map_err(|r| bad(format!("column {} ('{shown}') of the header: {r}", i + 1)))?;
                if !named.insert(c.as_str()) {
                    return Err(bad(format!(
                        "column {} ('{shown}') of the header repeats a column's name",
                        i + 1
                    )));
                }
            }
            self.columns = Some(columns);
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
                super::shown(&columns[0]),
                super::shown(cells[0])
            ))
        })?;
        let mut row = Vec::with_capacity(cells.len() - 1);
        for (name, cell) in columns.iter().zip(&cells).skip(1) {
            row.push((
                name.as_str(),
                number(cell).ok_or_else(|| {
                    bad(format!(
                        "{} '{}' is not a number",
                        super::shown(name),
                        super::shown(cell)
                    ))
                })?,
            ));
        }
        if sink.needs_restart(step) {
            sink.restart_at(step)?;
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
