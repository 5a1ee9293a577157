//! TensorBoard event files into one steplog run, with TensorBoard's own meaning.
//!
//! Framing (TFRecord): per record `length u64 LE | masked crc32c(length) u32 | data |
//! masked crc32c(data) u32`, where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. Both
//! checksums are checked. Each record is a `tensorflow.Event` protobuf: `step` (2),
//! `file_version` (3), `summary` (5) and `session_log` (7) are read; everything else (graphs,
//! run metadata) is skipped.
//!
//! Scalars come in two forms and both are read: the old `Summary.Value.simple_value` (2) and
//! the tensor form (`Summary.Value.tensor`, 8) of values whose plugin is `scalars` (TensorBoard
//! writes the plugin in the metadata of a tag's first value only, so it is remembered per
//! tag). Images, histograms, audio, text and other plugins' tensors are counted as skipped.
//!
//! **Steps are per tag.** TensorBoard draws each tag against its own steps: a script may log
//! `train/loss` at the global step and `eval/acc` at the epoch, so events arrive out of step
//! order across tags and that is not a restart. steplog stores rows in step order, so values
//! are held in a buffer keyed by step and a row is written once no later event can add to it.
//! To know when that is, the files are read twice: a first pass finds the restarts and, for
//! every chunk of [`CHUNK`] events, the lowest step any later event of its session carries; the
//! second pass writes. Memory is bounded by the rows between a late tag's step and the
//! others' (for one step clock: one chunk), not by the file.
//!
//! **Restarts** (where the run is rewound, so the orphaned steps stay readable as an archived
//! version; TensorBoard hides them):
//! - in files of format 2 (`file_version` `brain.Event:2`, every current writer), a
//!   `SessionLog.START` at step N, which is TensorBoard's only purge rule for them (what
//!   `SummaryWriter(purge_step=N)` and TF's checkpoint restore write);
//! - in any file, a tag whose own step goes back (N after a larger step of the same tag).
//!   For files of format 1 TensorBoard purged only that tag's later points; for format 2 it
//!   draws the line doubling back. One steplog version holds one value per key and step, so
//!   both passes are kept: the earlier one as the archived version.
//!
//! The run is rewound to keep the steps before both N and every step of the attempt that
//! follows (a tag on a slower clock can restart below N). A value logged twice for a tag at
//! one step keeps the later one. A restart at step 0 (a script run twice into one log
//! directory) restarts the run: the new head keeps no row (`StartRun::restart`), and the
//! earlier attempt is archived whole.
//!
//! A directory is one run: its `*tfevents*` files, in name order (their names start with
//! the creation time, which is TensorBoard's order too), read as one stream of events, as
//! TensorBoard's accumulator does. Subdirectories are other runs. A damaged record ends the
//! import: the rows before it stay, in a run marked `crashed`, and the error names the file
//! and byte offset.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::protobuf::{self, fields};
use super::{config_with, files_in, provenance, Imported, Progress, Reason, RunSink, StartAs};
use crate::error::{Error, Result};
use steplog::Store;
use steplog::Value;

/// Events per chunk of the first pass's plan: the write pass flushes rows at chunk starts.
const CHUNK: u64 = 4096;

/// Imports the event file `path`, or every event file directly in the directory `path`, as
/// the new run `run`.
pub fn import(store: &Store, path: &Path, run: &str, progress: &dyn Progress) -> Result<Imported> {
    let files = event_files(path)?;
    let mut meta = provenance("tensorboard", path);
    meta.insert(
        "files".into(),
        files
            .iter()
            .map(|(f, _)| serde_json::Value::from(file_name(f)))
            .collect(),
    );
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    progress.begin("tensorboard", 2 * total, steplog::Unit::Bytes);
    let plan = Plan::read(&files, &mut |n| progress.update(n))?;
    let mut sink = RunSink::create(
        store,
        run,
        config_with(serde_json::Map::new(), meta),
        StartAs::New,
    )?;
    if let Err(e) = write(&mut sink, &files, &plan, &mut |n| {
        progress.update(total + n)
    }) {
        return sink.fail(e);
    }
    progress.update(2 * total);
    match plan.damage {
        Some(e) => sink.fail(e),
        None => sink.finish(true),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The event files `path` names (itself, or the `*tfevents*` files in it), each with the
/// length it has now: both passes read that much, whatever a live writer appends meanwhile.
fn event_files(path: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let files = if meta.is_file() {
        vec![path.to_owned()]
    } else {
        files_in(path, |n| n.contains("tfevents"))?
    };
    if !files.is_empty() {
        return files
            .into_iter()
            .map(|f| {
                let len = std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?.len();
                Ok((f, len))
            })
            .collect();
    }
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !files_in(&entry.path(), |n| n.contains("tfevents"))?.is_empty() {
            runs.push(file_name(&entry.path()));
        }
    }
    runs.sort();
    let hint = if runs.is_empty() {
        String::new()
    } else {
        format!(
            "; its subdirectories {} are TensorBoard runs: import each on its own",
            runs.join(", ")
        )
    };
    Err(Error::InvalidInput(format!(
        "{} holds no TensorBoard event file (*tfevents*){hint}",
        path.display()
    )))
}

/// TFRecord's masked CRC32C.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Reads one event file's records in order, through a buffer (never the whole file).
struct Records {
    path: PathBuf,
    reader: BufReader<File>,
    /// Offset of the next record.
    pos: u64,
    /// Bytes of the file to read.
    len: u64,
    /// The last record's data.
    data: Vec<u8>,
}

impl Records {
    fn open(path: &Path, len: u64) -> Result<Records> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Records {
            path: path.to_owned(),
            reader: BufReader::with_capacity(1 << 16, file),
            pos: 0,
            len,
            data: Vec::new(),
        })
    }

    fn bad(&self, offset: u64, reason: String) -> Error {
        Error::bad_source(&self.path, offset, reason)
    }

    fn fill(&mut self, n: usize, offset: u64) -> Result<()> {
        self.data.resize(n, 0);
        let path = &self.path;
        self.reader.read_exact(&mut self.data).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::bad_source(path, offset, "the file got shorter while it was read")
            } else {
                Error::io(path, e)
            }
        })
    }

    /// The next record's offset (its data in `self.data`), or `None` at the end.
    fn next(&mut self) -> Result<Option<u64>> {
        let pos = self.pos;
        let left = self.len - pos;
        if left == 0 {
            return Ok(None);
        }
        if left < 12 {
            return Err(self.bad(
                pos,
                format!("the file ends inside a record header ({left} of 12 bytes)"),
            ));
        }
        self.fill(12, pos)?;
        let (len_bytes, len_crc) = self.data.split_at(8);
        let stored = u32::from_le_bytes(len_crc.try_into().unwrap_or_default());
        let computed = masked_crc(len_bytes);
        if stored != computed {
            return Err(self.bad(pos, format!("record length checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
        if len.checked_add(4).is_none_or(|n| n > left - 12) {
            return Err(self.bad(
                pos,
                format!(
                    "record of {len} bytes runs past the end of the file ({} bytes left)",
                    left - 12
                ),
            ));
        }
        let n = usize::try_from(len + 4).map_err(|_| self.bad(pos, "record too large".into()))?;
        self.fill(n, pos)?;
        let (record, crc) = self.data.split_at(n - 4);
        let stored = u32::from_le_bytes(crc.try_into().unwrap_or_default());
        let computed = masked_crc(record);
        if stored != computed {
            return Err(self.bad(pos, format!("record data checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")));
        }
        self.data.truncate(n - 4);
        self.pos += 12 + len + 4;
        Ok(Some(pos))
    }
}

/// One decoded `tensorflow.Event`: what the import uses of it.
#[derive(Default)]
struct Event {
    step: u64,
    /// A `SessionLog.START`.
    start: bool,
    /// `file_version`'s number (`brain.Event:2` is 2).
    version: Option<f64>,
    /// Its scalars.
    values: Vec<(String, Value)>,
    /// Its values that have no steplog form.
    skipped: u64,
}

/// What [`walk`] calls for each event: its index and contents (an error it returns is
/// placed at the event's file and offset).
type OnEvent<'a> = dyn FnMut(u64, Event) -> Result<(), Reason> + 'a;

/// Walks every event of `files` in order, decoding each with the plugins seen so far, and
/// calls `f` with its index and contents. Stops before the event numbered
/// `limit`. A damaged record or undecodable event ends the walk and is returned as `Ok(Some)`;
/// an I/O error or an error from `f` is `Err`.
fn walk(
    files: &[(PathBuf, u64)],
    limit: Option<u64>,
    progress: &mut dyn FnMut(u64),
    f: &mut OnEvent<'_>,
) -> Result<Option<Error>> {
    let mut plugins = HashMap::new();
    let (mut index, mut done) = (0u64, 0u64);
    for (path, len) in files {
        let mut records = Records::open(path, *len)?;
        let mut reported = 0;
        loop {
            if limit.is_some_and(|l| index >= l) {
                return Ok(None);
            }
            let offset = match records.next() {
                Ok(Some(offset)) => offset,
                Ok(None) => break,
                Err(e @ Error::BadSource { .. }) => return Ok(Some(e)),
                Err(e) => return Err(e),
            };
            let event = match decode(&mut plugins, &records.data) {
                Ok(event) => event,
                Err(r) => {
                    return Ok(Some(Error::bad_source(
                        path,
                        offset,
                        format!("undecodable event: {r}"),
                    )))
                }
            };
            f(index, event).map_err(|r| r.at(path, offset))?;
            index += 1;
            if records.pos - reported >= 1 << 16 {
                progress(done + records.pos);
                reported = records.pos;
            }
        }
        done += len;
        progress(done);
    }
    Ok(None)
}

/// One attempt of the source: the events from `first` to the next attempt's first.
struct Attempt {
    first: u64,
    /// What began it (none for the first attempt): the step of a `SessionLog.START` (files
    /// of format 2) or the step a tag went back to.
    cause: Option<u64>,
    /// For each chunk of `CHUNK` events: the lowest step of this attempt's events from the
    /// chunk on (`u64::MAX` when there is none). Rows below it may be written.
    floor: Vec<u64>,
}

impl Attempt {
    /// The step the run must keep only steps before, as this attempt begins.
    fn keep_below(&self) -> Option<u64> {
        let n = self.cause?;
        Some(n.min(self.floor.first().copied().unwrap_or(u64::MAX)))
    }
}

/// The first pass: where the source restarts, and when each row is complete.
struct Plan {
    attempts: Vec<Attempt>,
    /// Events read before the damage (all of them without one).
    events: u64,
    /// The damage that ended the first pass, if any.
    damage: Option<Error>,
}

impl Plan {
    fn read(files: &[(PathBuf, u64)], progress: &mut dyn FnMut(u64)) -> Result<Plan> {
        let mut attempts = vec![Attempt {
            first: 0,
            cause: None,
            floor: Vec::new(),
        }];
        // The steps each tag reached in the current attempt, and the file format.
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut version = None::<f64>;
        let mut events = 0;
        let damage = walk(files, None, progress, &mut |i, e| {
            events = i + 1;
            if e.version.is_some() {
                version = e.version;
            }
            let cause = if e.start && version.is_some_and(|v| v >= 2.0) {
                Some(e.step)
            } else {
                e.values
                    .iter()
                    .any(|(tag, _)| last.get(tag).is_some_and(|&l| e.step < l))
                    .then_some(e.step)
            };
            if let Some(cause) = cause {
                attempts.push(Attempt {
                    first: i,
                    cause: Some(cause),
                    floor: Vec::new(),
                });
                last.clear();
            }
            let Some(a) = attempts.last_mut() else {
                return Ok(());
            };
            let chunk = usize::try_from((i - a.first) / CHUNK).unwrap_or(usize::MAX);
            if a.floor.len() <= chunk {
                a.floor.resize(chunk + 1, u64::MAX);
            }
            if !e.values.is_empty() {
                a.floor[chunk] = a.floor[chunk].min(e.step);
                for (tag, _) in e.values {
                    last.insert(tag, e.step);
                }
            }
            Ok(())
        })?;
        for a in &mut attempts {
            for c in (0..a.floor.len().saturating_sub(1)).rev() {
                a.floor[c] = a.floor[c].min(a.floor[c + 1]);
            }
        }
        Ok(Plan {
            attempts,
            events,
            damage,
        })
    }
}

/// The second pass: rows in step order, a rewind before each attempt after the first.
fn write(
    sink: &mut RunSink,
    files: &[(PathBuf, u64)],
    plan: &Plan,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut rows: BTreeMap<u64, Vec<(String, Value)>> = BTreeMap::new();
    let mut attempt = 0usize;
    let end = walk(files, Some(plan.events), progress, &mut |i, e| {
        if plan.attempts.get(attempt + 1).is_some_and(|a| a.first == i) {
            flush(sink, &mut rows, u64::MAX)?;
            attempt += 1;
            let a = &plan.attempts[attempt];
            if let Some(keep_below) = a.keep_below() {
                sink.restart_at(keep_below)?;
            }
        }
        let a = &plan.attempts[attempt];
        let into = i - a.first;
        if into.is_multiple_of(CHUNK) {
            let chunk = usize::try_from(into / CHUNK).unwrap_or(usize::MAX);
            flush(sink, &mut rows, a.floor.get(chunk).copied().unwrap_or(0))?;
        }
        sink.skipped += e.skipped;
        if e.values.is_empty() {
            return Ok(());
        }
        // The plan keeps every row open until no later event can reach it, so this is only
        // seen when the file changed between the two passes.
        if let Some(written) = sink.last_step().filter(|&l| e.step <= l) {
            return Err(Reason::Bad(format!(
                "an event at step {} arrives after step {written} was written: the file \
                 changed while it was imported",
                e.step
            )));
        }
        rows.entry(e.step).or_default().extend(e.values);
        Ok(())
    })?;
    flush(sink, &mut rows, u64::MAX)?;
    match end {
        // The first pass stopped at the same place; its damage is reported by the caller.
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Writes the buffered rows with steps below `below`, each tag's last value at its step.
fn flush(
    sink: &mut RunSink,
    rows: &mut BTreeMap<u64, Vec<(String, Value)>>,
    below: u64,
) -> Result<()> {
    let keep = if below == u64::MAX {
        BTreeMap::new()
    } else {
        rows.split_off(&below)
    };
    for (step, mut row) in std::mem::replace(rows, keep) {
        if row.len() > 1 {
            // The later of two values of a tag at one step wins.
            row.reverse();
            row.sort_by(|a, b| a.0.cmp(&b.0));
            row.dedup_by(|a, b| a.0 == b.0);
        }
        sink.row(step, row)?;
    }
    Ok(())
}

/// One `tensorflow.Event`.
fn decode(plugins: &mut HashMap<String, String>, record: &[u8]) -> Result<Event, String> {
    let mut e = Event::default();
    let mut summary = None;
    for f in fields(record) {
        match f? {
            (2, w) => {
                let s = w.varint("Event.step")? as i64;
                e.step = u64::try_from(s).map_err(|_| format!("negative step {s}"))?;
            }
            (3, w) => {
                // TensorBoard's _ParseFileVersion: the number after the ':'.
                let v = w.str("Event.file_version")?;
                e.version = Some(
                    v.split_once(':')
                        .and_then(|(_, n)| n.trim().parse::<f64>().ok())
                        .unwrap_or(-1.0),
                );
            }
            (5, w) => summary = Some(w.bytes("Event.summary")?),
            (7, w) => {
                for f in fields(w.bytes("Event.session_log")?) {
                    if let (1, w) = f? {
                        e.start |= w.varint("SessionLog.status")? == 1;
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(summary) = summary {
        for f in fields(summary) {
            if let (1, w) = f? {
                match value(plugins, w.bytes("Summary.value")?)? {
                    Some(kv) => e.values.push(kv),
                    None => e.skipped += 1,
                }
            }
        }
    }
    Ok(e)
}

/// One `Summary.Value`: `(tag, value)` for a scalar, `None` for anything else.
fn value(
    plugins: &mut HashMap<String, String>,
    bytes: &[u8],
) -> Result<Option<(String, Value)>, String> {
    let (mut tag, mut simple, mut tensor) = (None, None, None);
    for f in fields(bytes) {
        match f? {
            (1, w) => tag = Some(w.str("Summary.Value.tag")?.to_owned()),
            (2, w) => simple = Some(w.f32("Summary.Value.simple_value")?),
            (8, w) => tensor = Some(w.bytes("Summary.Value.tensor")?),
            (9, w) => {
                let plugin = plugin_name(w.bytes("Summary.Value.metadata")?)?;
                if let (Some(t), Some(p)) = (&tag, plugin) {
                    plugins.insert(t.clone(), p);
                }
            }
            _ => {}
        }
    }
    // proto3 leaves an empty string out: a value without a tag has the empty tag, which
    // steplog cannot take as a key, so it is left out and counted (`RunSink::row`).
    let tag = tag.unwrap_or_default();
    if let Some(v) = simple {
        return Ok(Some((tag, Value::F64(f64::from(v)))));
    }
    let scalar = match tensor {
        Some(t) if plugins.get(&tag).is_some_and(|p| p == "scalars") => tensor_scalar(t)?,
        _ => None,
    };
    Ok(scalar.map(|v| (tag, v)))
}

/// `SummaryMetadata.plugin_data.plugin_name`.
fn plugin_name(metadata: &[u8]) -> Result<Option<String>, String> {
    for f in fields(metadata) {
        if let (1, w) = f? {
            for f in fields(w.bytes("SummaryMetadata.plugin_data")?) {
                if let (1, w) = f? {
                    return Ok(Some(w.str("PluginData.plugin_name")?.to_owned()));
                }
            }
        }
    }
    Ok(None)
}

/// The value of a one-element `TensorProto`, or `None` for other shapes and types.
fn tensor_scalar(t: &[u8]) -> Result<Option<Value>, String> {
    let (mut dtype, mut elements, mut content) = (0u64, 1u64, None::<&[u8]>);
    let mut vals: Vec<u64> = Vec::new();
    let mut val_field = 0u32;
    for f in fields(t) {
        let (n, w) = f?;
        match n {
            1 => dtype = w.varint("TensorProto.dtype")?,
            2 => {
                for f in fields(w.bytes("TensorProto.tensor_shape")?) {
                    if let (2, w) = f? {
                        for f in fields(w.bytes("TensorShapeProto.dim")?) {
                            if let (1, w) = f? {
                                elements = elements.saturating_mul(w.varint("Dim.size")?);
                            }
                        }
                    }
                }
            }
            4 => content = Some(w.bytes("TensorProto.tensor_content")?),
            5 | 6 | 7 | 10 | 11 | 13 => {
                let width = match n {
                    5 => 4,
                    6 => 8,
                    _ => 0,
                };
                protobuf::repeated(w, width, &mut vals)?;
                val_field = n;
            }
            _ => {}
        }
    }
    if elements != 1 {
        return Ok(None);
    }
    let raw = |w: usize| -> Option<u64> {
        let c = content?.get(..w)?;
        let mut b = [0u8; 8];
        b[..w].copy_from_slice(c);
        Some(u64::from_le_bytes(b))
    };
    let first = |field: u32, w: usize| {
        if val_field == field {
            vals.first().copied()
        } else {
            raw(w)
        }
    };
    // tensorflow/core/framework/types.proto
    Ok(match dtype {
        1 => first(5, 4).map(|b| Value::F64(f64::from(f32::from_bits(b as u32)))),
        2 => first(6, 8).map(|b| Value::F64(f64::from_bits(b))),
        3 | 5 | 6 => first(7, 4).map(|b| Value::I64(i64::from(b as u32 as i32))),
        4 => first(7, 1).map(|b| Value::I64((b & 0xff) as i64)),
        9 => first(10, 8).map(|b| Value::I64(b as i64)),
        10 => first(11, 1).map(|b| Value::Bool(b & 0xff != 0)),
        19 => first(13, 2).map(|b| Value::F64(f64::from(half_to_f32(b as u16)))),
        _ => None,
    })
}

/// IEEE 754 half precision to single.
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_decode() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert!(half_to_f32(0x7e00).is_nan());
        assert_eq!(half_to_f32(0x7c00), f32::INFINITY);
    }
}
