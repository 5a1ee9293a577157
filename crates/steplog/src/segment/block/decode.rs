//! Decoding a frame whose crc was checked into a block, only the columns asked for: every
//! length is checked against the bytes present before it is used.

use super::columns::{decode_column, decode_steps};
use super::frame::{FrameHeader, FRAME_HEADER_LEN, MAX_RAW_LEN};
use super::section::section;
use super::{Block, Column};
use crate::codec::{DecodeError, DecodeResult, Reader};

/// One column's entry in a block's directory (its key borrowed from the directory: a read
/// of one key of a wide block allocates nothing for the others).
pub(super) struct DirEntry<'a> {
    key: &'a str,
    kind: u8,
    codec: u8,
    raw_len: usize,
    /// Where its section starts in the payload, and how long it is.
    start: usize,
    len: usize,
}

/// Decodes a whole frame whose crc was already checked. Every inconsistency is an error.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode(frame: &[u8]) -> DecodeResult<Block> {
    decode_keys(frame, &super::all_keys)
}

/// Decodes a frame whose crc was already checked, decompressing only the columns whose key
/// `keep` accepts (the directory, with every step and key, is always checked).
pub(crate) fn decode_keys(frame: &[u8], keep: &dyn Fn(&str) -> bool) -> DecodeResult<Block> {
    let header = match FrameHeader::parse(frame)? {
        Some(h) => h,
        None => return Reader::new(frame).err("not a block frame (bad magic)"),
    };
    if header.raw_len > MAX_RAW_LEN {
        return Reader::new(frame).err(format!("raw length {} too large", header.raw_len));
    }
    let payload = &frame[FRAME_HEADER_LEN..];
    if payload.len() != header.payload_len as usize {
        return Reader::new(frame).err("payload length does not match the frame header");
    }
    // Errors inside the payload carry offsets within the frame.
    let in_frame = |base: usize| {
        move |e: DecodeError| DecodeError {
            offset: FRAME_HEADER_LEN + base + e.offset,
            reason: e.reason,
        }
    };
    let mut r = Reader::new(payload);
    let dir_codec = r.u8().map_err(in_frame(0))?;
    let dir_raw_len = r.varint().map_err(in_frame(0))?;
    let dir_stored = r.bytes().map_err(in_frame(0))?;
    let dir_start = r.position() - dir_stored.len();
    // Every section's raw length comes out of the frame's: none may claim more than is left.
    let mut budget = u64::from(header.raw_len);
    if dir_raw_len > budget {
        return Reader::new(frame).err("the directory is longer than the block");
    }
    budget -= dir_raw_len;
    let dir = section(dir_stored, dir_codec, dir_raw_len).map_err(in_frame(dir_start))?;
    let at_dir = |e: DecodeError| DecodeError {
        offset: FRAME_HEADER_LEN + dir_start,
        reason: format!("in the block directory at byte {}: {}", e.offset, e.reason),
    };
    let mut d = Reader::new(&dir);
    let steps = decode_steps(&mut d, header.nrows).map_err(at_dir)?;
    let nkeys = d.count(4).map_err(at_dir)?;
    let mut entries: Vec<DirEntry<'_>> = Vec::with_capacity(nkeys);
    let mut next = r.position();
    for _ in 0..nkeys {
        let key = d.str().map_err(at_dir)?;
        if entries.last().is_some_and(|c| c.key >= key) {
            return d
                .err(format!("key '{key}' out of order or repeated"))
                .map_err(at_dir);
        }
        let kind = d.u8().map_err(at_dir)?;
        let codec = d.u8().map_err(at_dir)?;
        let raw_len = d.varint().map_err(at_dir)?;
        let len = d.varint().map_err(at_dir)?;
        if raw_len > budget || len > (payload.len() - next) as u64 {
            return d
                .err(format!("column '{key}' is longer than its block"))
                .map_err(at_dir);
        }
        budget -= raw_len;
        entries.push(DirEntry {
            key,
            kind,
            codec,
            raw_len: raw_len as usize,
            start: next,
            len: len as usize,
        });
        next += len as usize;
    }
    if !d.is_empty() {
        return d
            .err(format!(
                "{} trailing bytes after the directory",
                d.remaining()
            ))
            .map_err(at_dir);
    }
    if next != payload.len() || budget != 0 {
        return Reader::new(frame).err("column sections do not add up to the frame's lengths");
    }
    // (The row count was checked against the header by `decode_steps`.)
    if steps.first() != Some(&header.first_step) || steps.last() != Some(&header.last_step) {
        return Reader::new(frame).err("block rows do not match the frame header");
    }
    let mut columns = Vec::new();
    for e in entries.into_iter().filter(|e| keep(e.key)) {
        let stored = &payload[e.start..e.start + e.len];
        let at_col = |err: DecodeError| DecodeError {
            offset: FRAME_HEADER_LEN + e.start,
            reason: format!(
                "in column '{}' at byte {}: {}",
                e.key, err.offset, err.reason
            ),
        };
        let raw = section(stored, e.codec, e.raw_len as u64).map_err(at_col)?;
        let mut c = Reader::new(&raw);
        let (rows, values) = decode_column(&mut c, e.kind, steps.len()).map_err(at_col)?;
        if !c.is_empty() {
            return c
                .err(format!("{} trailing bytes after the values", c.remaining()))
                .map_err(at_col);
        }
        columns.push(Column {
            key: e.key.to_owned(),
            rows,
            values,
        });
    }
    Ok(Block { steps, columns })
}
