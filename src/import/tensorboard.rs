//! TensorBoard event files into one steplog run.
//!
//! Framing (TFRecord): per record `length u64 LE | masked crc32c(length) u32 | data |
//! masked crc32c(data) u32`, where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. Both
//! checksums are checked. Each record is a `tensorflow.Event` protobuf: `step` (2),
//! `summary` (5) and `session_log` (7) are read; everything else (graphs, run metadata) is
//! skipped.
//!
//! Scalars come in two forms and both are read: the old `Summary.Value.simple_value` (2) and
//! the tensor form (`Summary.Value.tensor`, 8) of values whose plugin is `scalars` (TensorBoard
//! writes the plugin in the metadata of a tag's first value only, so it is remembered per
//! tag). Images, histograms, audio, text and other plugins' tensors are counted as skipped.
//!
//! Restarts: a `SessionLog.START` at step N (what `SummaryWriter(purge_step=N)` and TF's
//! checkpoint restore write), or a summary whose step is before the last one (which
//! TensorBoard itself treats as a restart), orphans the steps from N on. TensorBoard hides
//! them; steplog rewinds the run to N - 1 so they stay readable as an archived version.
//!
//! A directory is one run: its `*tfevents*` files, in name order (their names start with
//! the creation time, which is TensorBoard's order too). Subdirectories are other runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::protobuf::{self, fields};
use super::{
    config_with, files_in, provenance, read_source, Imported, Origin, Progress, Reason, RunSink,
};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::types::Value;

/// Imports the event file `path`, or every event file directly in the directory `path`, as
/// the new run `run`.
pub fn import(store: &Store, path: &Path, run: &str, progress: &dyn Progress) -> Result<Imported> {
    let files = event_files(path)?;
    let mut meta = provenance("tensorboard", path);
    meta.insert(
        "files".into(),
        files
            .iter()
            .map(|f| serde_json::Value::from(file_name(f)))
            .collect(),
    );
    let total = files
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum();
    progress.begin("tensorboard", total, crate::progress::Unit::Bytes);
    let mut sink = RunSink::create(
        store,
        run,
        config_with(serde_json::Map::new(), meta),
        Origin::New,
    )?;
    let mut state = State::default();
    let mut done = 0;
    for file in &files {
        match import_file(&mut sink, &mut state, file, &mut |n| {
            progress.update(done + n)
        }) {
            Ok(len) => done += len,
            Err(e) => return sink.fail(e),
        }
    }
    sink.finish(true)
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The event files `path` names: itself, or the `*tfevents*` files in it.
fn event_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let files = files_in(path, |n| n.contains("tfevents"))?;
    if !files.is_empty() {
        return Ok(files);
    }
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        if entry.path().is_dir() && !files_in(&entry.path(), |n| n.contains("tfevents"))?.is_empty()
        {
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

/// What carries over from one event file to the next.
#[derive(Default)]
struct State {
    /// The plugin of each tag, from the metadata of its first value.
    plugins: HashMap<String, String>,
}

/// TFRecord's masked CRC32C.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Imports one event file; returns its length.
fn import_file(
    sink: &mut RunSink,
    state: &mut State,
    file: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let data = read_source(file)?;
    let mut pos = 0usize;
    let mut reported = 0usize;
    while pos < data.len() {
        let bad = |offset: usize, reason: String| Error::bad_source(file, offset as u64, reason);
        let left = data.len() - pos;
        if left < 12 {
            return Err(bad(
                pos,
                format!("the file ends inside a record header ({left} of 12 bytes)"),
            ));
        }
        let head = &data[pos..pos + 12];
        let (len_bytes, len_crc) = head.split_at(8);
        let stored = u32::from_le_bytes(len_crc.try_into().unwrap_or_default());
        let computed = masked_crc(len_bytes);
        if stored != computed {
            return Err(bad(pos, format!("record length checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
        let body = pos + 12;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| body.checked_add(l))
            .and_then(|e| e.checked_add(4))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| {
                bad(
                    pos,
                    format!(
                        "record of {len} bytes runs past the end of the file ({} bytes left)",
                        left - 12
                    ),
                )
            })?;
        let record = &data[body..end - 4];
        let stored = u32::from_le_bytes(data[end - 4..end].try_into().unwrap_or_default());
        let computed = masked_crc(record);
        if stored != computed {
            return Err(bad(pos, format!("record data checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")));
        }
        event(sink, state, record, (file, pos as u64)).map_err(|e| {
            match e {
                Reason::Bad(r) => Reason::Bad(format!("undecodable event: {r}")),
                store => store,
            }
            .at(file, pos as u64)
        })?;
        pos = end;
        if pos - reported >= 1 << 16 {
            progress(pos as u64);
            reported = pos;
        }
    }
    progress(data.len() as u64);
    Ok(data.len() as u64)
}

/// One `tensorflow.Event`.
fn event(
    sink: &mut RunSink,
    state: &mut State,
    record: &[u8],
    at: (&Path, u64),
) -> Result<(), Reason> {
    let (mut step, mut summary, mut start) = (0u64, None, false);
    for f in fields(record) {
        match f? {
            (2, w) => {
                let s = w.varint("Event.step")? as i64;
                step = u64::try_from(s).map_err(|_| format!("negative step {s}"))?;
            }
            (5, w) => summary = Some(w.bytes("Event.summary")?),
            (7, w) => {
                for f in fields(w.bytes("Event.session_log")?) {
                    if let (1, w) = f? {
                        start |= w.varint("SessionLog.status")? == 1;
                    }
                }
            }
            _ => {}
        }
    }
    if start {
        sink.restart_at(step, at)?;
    }
    let Some(summary) = summary else {
        return Ok(());
    };
    let mut row = Vec::new();
    for f in fields(summary) {
        if let (1, w) = f? {
            match value(state, w.bytes("Summary.value")?)? {
                Some(kv) => row.push(kv),
                None => sink.skipped += 1,
            }
        }
    }
    if row.is_empty() {
        return Ok(());
    }
    if sink.last_step().is_some_and(|last| step < last) {
        sink.restart_at(step, at)?;
    }
    sink.row(step, row)?;
    Ok(())
}

/// One `Summary.Value`: `(tag, value)` for a scalar, `None` for anything else.
fn value(state: &mut State, bytes: &[u8]) -> Result<Option<(String, Value)>, String> {
    let (mut tag, mut simple, mut tensor) = (None, None, None);
    for f in fields(bytes) {
        match f? {
            (1, w) => tag = Some(w.str("Summary.Value.tag")?.to_owned()),
            (2, w) => simple = Some(w.f32("Summary.Value.simple_value")?),
            (8, w) => tensor = Some(w.bytes("Summary.Value.tensor")?),
            (9, w) => {
                let plugin = plugin_name(w.bytes("Summary.Value.metadata")?)?;
                if let (Some(t), Some(p)) = (&tag, plugin) {
                    state.plugins.insert(t.clone(), p);
                }
            }
            _ => {}
        }
    }
    let Some(tag) = tag else {
        return Err("a summary value without a tag".into());
    };
    if let Some(v) = simple {
        return Ok(Some((tag, Value::F64(f64::from(v)))));
    }
    let scalar = match tensor {
        Some(t) if state.plugins.get(&tag).is_some_and(|p| p == "scalars") => tensor_scalar(t)?,
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
