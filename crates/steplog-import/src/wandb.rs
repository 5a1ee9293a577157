//! W&B offline run files (`run-ID.wandb`) into one steplog run.
//!
//! Framing (W&B's variant of the LevelDB log): a 7-byte header `":W&B" | 0xBEE1 u16 LE |
//! version 0`, then 32 KiB blocks (counted from the start of the file) of chunks, each
//! `crc u32 LE | length u16 LE | type u8 | data`. The crc is the plain CRC-32 (IEEE) of the
//! type byte and the data. Types: 1 a whole record, 2 its first chunk, 3 a middle one, 4 the
//! last. A block's last < 7 bytes are zero padding. Each record is a
//! `wandb_internal.Record` protobuf; the fields read are:
//!
//! - `run` (17): `run_id` (1), `entity` (2), `project` (3), `config` (4), `display_name` (8),
//!   `notes` (9), `tags` (10), `branch_point` (23: `run` 1, `value` 2, `metric` 3);
//! - `config` (5) and `summary` (3): `update` (1) / `remove` (2) items of `key` (1) or
//!   `nested_key` (2) and `value_json` (16);
//! - `history` (2): items (1) of `key`/`nested_key` and `value_json` (or the typed
//!   `boolean` 4, `integer` 5, `number` 6, `text` 7), and `step` (2: `num` 1);
//! - `exit` (18): `exit_code` (1).
//!
//! Mapping: the run is named by its run id (or the name given); history rows keep their
//! steps, nested keys join with `/`, `_step` is the step itself and is not a value; media and
//! other objects with a `_type` are skipped and counted. The config is W&B's config without
//! `_wandb`; the final summary (keys not starting with `_`), run id, project, entity, name,
//! notes, tags, exit code and branch point go under `_import`. A `branch_point` on another
//! run (`fork_from`) forks that run when the store holds it; on the run itself
//! (`resume_from`) rewinds it. A file without an exit record, or with a non-zero exit code,
//! leaves the run `crashed`.

use std::io::Read;
use std::path::Path;

use super::protobuf::fields;
use super::{config_with, provenance, Imported, Progress, Reason, RunSink, StartAs};
use crate::error::{Error, Result};
use crate::jsonl;
use steplog::Store;
use steplog::Value;

const BLOCK: usize = 32 * 1024;
const HEADER: usize = 7;

/// Imports the W&B run file `file` as the run `run` (by default the W&B run id).
///
/// The file is read twice, through a buffer: first for what it says of the run (id, config,
/// summary, exit code, branch point), then for its history. A damaged record ends both
/// passes there: the rows before it are imported, in a run marked `crashed`, and the error
/// names the file and byte offset.
pub fn import(
    store: &Store,
    file: &Path,
    run: Option<&str>,
    progress: &dyn Progress,
) -> Result<Imported> {
    let len = std::fs::metadata(file)
        .map_err(|e| Error::io(file, e))?
        .len();
    progress.begin("wandb", 2 * len, steplog::Unit::Bytes);
    let mut meta = Meta::default();
    let (count, damage) = walk(file, len, None, &mut |_, offset, record| {
        meta.record(record)
            .map_err(|r| Error::bad_source(file, offset, r))?;
        progress.update(offset);
        Ok(())
    })?;
    meta.finish();
    let name = run
        .map(str::to_owned)
        .or_else(|| meta.run_id.clone())
        .ok_or_else(|| match &damage {
            Some(Error::BadSource {
                file,
                offset,
                reason,
            }) => Error::bad_source(
                file,
                *offset,
                format!("{reason} (and no run record came before it: name the run with --run)"),
            ),
            _ => Error::bad_source(
                file,
                0,
                "the file has no run record (no run id): name the run with --run",
            ),
        })?;
    let origin = match &meta.branch {
        Some((source, step)) if store.runs()?.iter().any(|r| &r.name == source) => {
            if *source == name {
                StartAs::Rewind(*step)
            } else {
                StartAs::Fork(source.clone(), *step)
            }
        }
        _ => StartAs::New,
    };
    let mut import = provenance("wandb", file);
    import.extend(meta.import.clone());
    let mut sink = RunSink::create(
        store,
        &name,
        config_with(meta.config.clone(), import),
        origin,
    )?;
    let written = walk(file, len, Some(count), &mut |i, offset, record| {
        history(&mut sink, record).map_err(|r| r.at(file, offset))?;
        if i % 1024 == 0 {
            progress.update(len + offset);
        }
        Ok(())
    });
    progress.update(2 * len);
    match (written, damage) {
        (Err(e), _) | (Ok((_, Some(e))), _) | (Ok(_), Some(e)) => sink.fail(e),
        (Ok((_, None)), None) => sink.finish(meta.exit_code == Some(0)),
    }
}

/// What [`walk`] calls for each record: its index, offset and bytes.
type OnRecord<'a> = dyn FnMut(u64, u64, &[u8]) -> Result<()> + 'a;

/// Calls `f` with the index, offset (of its first chunk) and bytes of each record of `file`
/// (`len` bytes of it) in order, checksums checked, stopping before the record numbered
/// `limit`. Returns the number of records read and the damage (a bad chunk, or `f`'s
/// `BadSource` for an undecodable record) that stopped the walk, if any; an I/O error or
/// another error from `f` is `Err`.
fn walk(
    file: &Path,
    len: u64,
    limit: Option<u64>,
    f: &mut OnRecord<'_>,
) -> Result<(u64, Option<Error>)> {
    let mut reader = Chunks::open(file, len)?;
    let mut count = 0;
    loop {
        if limit.is_some_and(|l| count >= l) {
            return Ok((count, None));
        }
        match reader.next_record() {
            Ok(Some(offset)) => match f(count, offset, &reader.record) {
                Ok(()) => {}
                Err(e @ Error::BadSource { .. }) => return Ok((count, Some(e))),
                Err(e) => return Err(e),
            },
            Ok(None) => return Ok((count, None)),
            Err(e @ Error::BadSource { .. }) => return Ok((count, Some(e))),
            Err(e) => return Err(e),
        }
        count += 1;
    }
}

/// The file's records, assembled from its chunks one 32 KiB block at a time.
struct Chunks {
    path: std::path::PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    len: u64,
    /// The current block, and the file offset of its first byte.
    block: Vec<u8>,
    base: u64,
    /// The next chunk's position in `block`.
    at: usize,
    /// The last whole record.
    record: Vec<u8>,
}

impl Chunks {
    fn open(path: &Path, len: u64) -> Result<Chunks> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut c = Chunks {
            path: path.to_owned(),
            reader: std::io::BufReader::with_capacity(BLOCK, f),
            len,
            block: Vec::with_capacity(BLOCK),
            base: 0,
            at: 0,
            record: Vec::new(),
        };
        c.load()?;
        let b = &c.block;
        if b.len() < HEADER || &b[..4] != b":W&B" || b[4..6] != [0xe1, 0xbe] {
            return Err(c.bad(0, "not a W&B run file (no ':W&B' header)".into()));
        }
        if b[6] != 0 {
            return Err(c.bad(6, format!("unsupported W&B file version {}", b[6])));
        }
        c.at = HEADER;
        Ok(c)
    }

    fn bad(&self, offset: u64, reason: String) -> Error {
        Error::bad_source(&self.path, offset, reason)
    }

    /// Reads the block at `base` (shorter at the end of the file).
    fn load(&mut self) -> Result<()> {
        let n = (self.len - self.base).min(BLOCK as u64) as usize;
        self.block.resize(n, 0);
        let path = &self.path;
        let base = self.base;
        self.reader.read_exact(&mut self.block).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::bad_source(path, base, "the file got shorter while it was read")
            } else {
                Error::io(path, e)
            }
        })?;
        self.at = 0;
        Ok(())
    }

    /// The next record's offset (its bytes in `self.record`), or `None` at the end.
    fn next_record(&mut self) -> Result<Option<u64>> {
        let mut first: Option<u64> = None;
        loop {
            if self.at >= self.block.len() {
                if self.block.len() < BLOCK || self.base + BLOCK as u64 >= self.len {
                    return match first {
                        None => Ok(None),
                        Some(at) => Err(self.bad(
                            self.len,
                            format!(
                                "the file ends inside the record that begins at byte offset {at}"
                            ),
                        )),
                    };
                }
                self.base += BLOCK as u64;
                self.load()?;
            }
            let (data, pos) = (&self.block, self.at);
            let offset = self.base + pos as u64;
            let block_left = BLOCK - pos;
            let left = data.len() - pos;
            if block_left < 7 {
                if data[pos..].iter().any(|&b| b != 0) {
                    return Err(self.bad(
                        offset,
                        "non-zero bytes in the padding at the end of a block".into(),
                    ));
                }
                self.at = data.len();
                continue;
            }
            if left < 7 {
                return Err(self.bad(
                    offset,
                    format!("the file ends inside a chunk header ({left} of 7 bytes)"),
                ));
            }
            let stored =
                u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
            let len = usize::from(u16::from_le_bytes([data[pos + 4], data[pos + 5]]));
            let kind = data[pos + 6];
            if stored == 0 && len == 0 && kind == 0 {
                // Zero padding to the end of the block.
                if data[pos..].iter().any(|&b| b != 0) {
                    return Err(self.bad(
                        offset,
                        "an empty chunk header in front of non-zero bytes".into(),
                    ));
                }
                self.at = data.len();
                continue;
            }
            if 7 + len > block_left {
                return Err(self.bad(
                    offset,
                    format!("a chunk of {len} bytes crosses the 32 KiB block boundary"),
                ));
            }
            if 7 + len > left {
                return Err(self.bad(
                    offset,
                    format!(
                        "the file ends inside a chunk of {len} bytes ({} left)",
                        left - 7
                    ),
                ));
            }
            let chunk = &data[pos + 7..pos + 7 + len];
            let mut h = crc32fast::Hasher::new();
            h.update(&[kind]);
            h.update(chunk);
            let computed = h.finalize();
            if stored != computed {
                return Err(self.bad(
                    offset,
                    format!(
                        "chunk checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                    ),
                ));
            }
            match (kind, first) {
                (1 | 2, None) => {
                    self.record.clear();
                    self.record.extend_from_slice(chunk);
                    first = Some(offset);
                }
                (3 | 4, Some(_)) => self.record.extend_from_slice(chunk),
                (1 | 2, Some(at)) => {
                    return Err(self.bad(
                        offset,
                        format!("a new record starts before the one at byte offset {at} ended"),
                    ))
                }
                (3 | 4, None) => {
                    return Err(
                        self.bad(offset, "a continuation chunk without a first chunk".into())
                    )
                }
                (k, _) => return Err(self.bad(offset, format!("unknown chunk type {k}"))),
            }
            self.at = pos + 7 + len;
            if kind == 1 || kind == 4 {
                return Ok(first);
            }
        }
    }
}

/// What the whole file says of the run (read before its history is written).
#[derive(Default)]
struct Meta {
    run_id: Option<String>,
    config: serde_json::Map<String, serde_json::Value>,
    import: serde_json::Map<String, serde_json::Value>,
    summary: serde_json::Map<String, serde_json::Value>,
    branch: Option<(String, u64)>,
    exit_code: Option<i64>,
}

impl Meta {
    /// After the last record: the config without W&B's own entry, the final summary and the
    /// exit code under `_import`.
    fn finish(&mut self) {
        self.config.remove("_wandb");
        let summary = std::mem::take(&mut self.summary)
            .into_iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .collect();
        self.import
            .insert("summary".into(), serde_json::Value::Object(summary));
        if let Some(code) = self.exit_code {
            self.import.insert("exit_code".into(), code.into());
        }
    }

    fn record(&mut self, record: &[u8]) -> Result<(), String> {
        for f in fields(record) {
            match f? {
                (17, w) => self.run(w.bytes("Record.run")?)?,
                (5, w) => items(w.bytes("Record.config")?, &mut self.config)?,
                (3, w) => items(w.bytes("Record.summary")?, &mut self.summary)?,
                (18, w) => {
                    self.exit_code = Some(0);
                    for f in fields(w.bytes("Record.exit")?) {
                        if let (1, w) = f? {
                            self.exit_code =
                                Some(i64::from(w.varint("RunExitRecord.exit_code")? as i32));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn run(&mut self, run: &[u8]) -> Result<(), String> {
        let mut tags = Vec::new();
        for f in fields(run) {
            let (n, w) = f?;
            let text = |key: &str| -> Result<(String, serde_json::Value), String> {
                Ok((key.to_owned(), w.str(key)?.into()))
            };
            match n {
                1 => {
                    let id = w.str("RunRecord.run_id")?.to_owned();
                    self.import.insert("run_id".into(), id.clone().into());
                    self.run_id = Some(id);
                }
                2 => self.import.extend([text("entity")?]),
                3 => self.import.extend([text("project")?]),
                8 => self.import.extend([text("display_name")?]),
                9 => self.import.extend([text("notes")?]),
                10 => tags.push(serde_json::Value::from(w.str("RunRecord.tags")?)),
                4 => items(w.bytes("RunRecord.config")?, &mut self.config)?,
                23 => self.branch_point(w.bytes("RunRecord.branch_point")?)?,
                _ => {}
            }
        }
        if !tags.is_empty() {
            self.import.insert("tags".into(), tags.into());
        }
        Ok(())
    }

    fn branch_point(&mut self, bp: &[u8]) -> Result<(), String> {
        let (mut run, mut value, mut metric) = (String::new(), 0f64, String::new());
        for f in fields(bp) {
            match f? {
                (1, w) => run = w.str("BranchPoint.run")?.to_owned(),
                (2, w) => value = w.f64("BranchPoint.value")?,
                (3, w) => metric = w.str("BranchPoint.metric")?.to_owned(),
                _ => {}
            }
        }
        self.import.insert(
            "branch_point".into(),
            serde_json::json!({"run": run, "value": value, "metric": metric}),
        );
        if metric == "_step" && value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(63) {
            self.branch = Some((run, value as u64));
        }
        Ok(())
    }
}

/// Applies a config or summary record's `update` (1) and `remove` (2) items to `map`.
fn items(
    record: &[u8],
    map: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    for f in fields(record) {
        let (n, w) = f?;
        if n != 1 && n != 2 {
            continue;
        }
        let (mut path, mut json) = (Vec::new(), None);
        for f in fields(w.bytes("item")?) {
            match f? {
                (1 | 2, w) => path.push(w.str("item key")?.to_owned()),
                (16, w) => json = Some(w.str("item value_json")?),
                _ => {}
            }
        }
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let mut node = &mut *map;
        for p in parents {
            let entry = node
                .entry(p.clone())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !entry.is_object() {
                *entry = serde_json::Value::Object(Default::default());
            }
            let serde_json::Value::Object(inner) = entry else {
                return Err(format!("'{p}' is not an object"));
            };
            node = inner;
        }
        if n == 2 {
            node.remove(last);
        } else if let Some(json) = json {
            let p = jsonl::parse_json(json)
                .map_err(|e| format!("'{last}': value_json is not JSON: {e}"))?;
            node.insert(last.clone(), jsonl::unmarked(p.value, p.marker.as_deref()));
        }
    }
    Ok(())
}

/// Writes a `history` record's row.
fn history(sink: &mut RunSink, record: &[u8]) -> Result<(), Reason> {
    let Some(h) = fields(record)
        .filter_map(|f| match f {
            Ok((2, w)) => Some(w.bytes("Record.history")),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .next()
        .transpose()?
    else {
        return Ok(());
    };
    let mut step = 0u64;
    let mut items = Vec::new();
    for f in fields(h) {
        match f? {
            (1, w) => items.push(Item::read(w.bytes("HistoryRecord.item")?)?),
            (2, w) => {
                for f in fields(w.bytes("HistoryRecord.step")?) {
                    if let (1, w) = f? {
                        let s = w.varint("HistoryStep.num")? as i64;
                        step = u64::try_from(s).map_err(|_| format!("negative step {s}"))?;
                    }
                }
            }
            _ => {}
        }
    }
    let mut row = Vec::new();
    // Media written one leaf per item (`img/_type`, `img/path`, ...: what wandb's core
    // writes, in no set order) are skipped whole: every item under a path with a `_type`.
    let media: Vec<&[&str]> = items
        .iter()
        .filter_map(|i| match i.path.split_last() {
            Some((&"_type", parent)) if !parent.is_empty() => Some(parent),
            _ => None,
        })
        .collect();
    let in_media = |path: &[&str]| {
        media
            .iter()
            .any(|m| path.len() > m.len() && path.starts_with(m))
    };
    sink.skipped += media.iter().filter(|m| !in_media(m)).count() as u64;
    for i in &items {
        if !in_media(&i.path) {
            i.values(&mut row, &mut sink.skipped)?;
        }
    }
    if let Some(last) = sink.last_step().filter(|&l| step < l) {
        return Err(Reason::Bad(format!(
            "history step {step} comes after step {last}"
        )));
    }
    sink.row(step, row)?;
    Ok(())
}

/// One `HistoryItem`: its key path and its value, typed or JSON.
struct Item<'a> {
    path: Vec<&'a str>,
    typed: Option<Value>,
    json: Option<&'a str>,
}

impl<'a> Item<'a> {
    fn read(bytes: &'a [u8]) -> Result<Item<'a>, String> {
        let (mut path, mut json, mut typed) = (Vec::new(), None, None);
        for f in fields(bytes) {
            match f? {
                (1 | 2, w) => path.push(w.str("HistoryItem key")?),
                (4, w) => typed = Some(Value::Bool(w.varint("HistoryItem.boolean")? != 0)),
                (5, w) => {
                    let z = w.varint("HistoryItem.integer")?;
                    typed = Some(Value::I64((z >> 1) as i64 ^ -((z & 1) as i64)));
                }
                (6, w) => typed = Some(Value::F64(w.f64("HistoryItem.number")?)),
                (7, w) => typed = Some(Value::Str(w.str("HistoryItem.text")?.to_owned())),
                (16, w) => json = Some(w.str("HistoryItem.value_json")?),
                _ => {}
            }
        }
        Ok(Item { path, typed, json })
    }

    /// Its values into `row` (several for an object, none for media, which count as skipped).
    fn values(&self, row: &mut Vec<(String, Value)>, skipped: &mut u64) -> Result<(), String> {
        let key = self.path.join("/");
        if key.is_empty() {
            return Err("a history item without a key".into());
        }
        if key == "_step" {
            return Ok(());
        }
        if let Some(v) = self.typed.clone() {
            row.push((key, v));
            return Ok(());
        }
        let Some(json) = self.json else { return Ok(()) };
        let p =
            jsonl::parse_json(json).map_err(|e| format!("'{key}': value_json is not JSON: {e}"))?;
        flatten(key, p.value, p.marker.as_deref(), row, skipped)
    }
}

/// A JSON value into `row`: objects by their leaves (keys joined with `/`; the depth is
/// bounded by the JSON parser's nesting limit of 128), media (`_type`) and arrays skipped.
fn flatten(
    key: String,
    v: serde_json::Value,
    marker: Option<&str>,
    row: &mut Vec<(String, Value)>,
    skipped: &mut u64,
) -> Result<(), String> {
    match v {
        serde_json::Value::Object(m) if m.contains_key("_type") => *skipped += 1,
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(format!("{key}/{k}"), v, marker, row, skipped)?;
            }
        }
        serde_json::Value::Array(_) => *skipped += 1,
        leaf => {
            if let Some(value) = jsonl::scalar(&key, leaf, marker)? {
                row.push((key, value));
            }
        }
    }
    Ok(())
}
