//! Decoding a frame into a block, only the columns asked for: every length is checked
//! against the bytes present before it is used, and (a frame of parts, `SLB3`) every part is
//! checked against its crc before it is decoded.

use super::columns::{decode_column, decode_steps, read_steps};
use super::frame::{FrameHeader, FRAME_HEADER_LEN, MAX_RAW_LEN};
use super::section::section;
use super::{Block, Column};
use crate::codec::{DecodeError, Reader};

/// Why a frame did not decode: a part failed its crc (damage, at a frame offset), or
/// anything else did not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    Checksum {
        offset: usize,
        expected: u32,
        got: u32,
    },
    Decode(DecodeError),
}

impl From<DecodeError> for FrameError {
    fn from(e: DecodeError) -> Self {
        FrameError::Decode(e)
    }
}

/// One column's entry in a block's directory (its key borrowed from the directory: a read
/// of one key of a wide block allocates nothing for the others).
pub(super) struct DirEntry<'a> {
    key: &'a str,
    kind: u8,
    codec: u8,
    raw_len: usize,
    /// The crc of its stored section (a frame of parts).
    crc: Option<u32>,
    /// Where its section starts in the payload, and how long it is.
    start: usize,
    len: usize,
}

/// Decodes a whole frame, its crcs not checked (a fuzzer's way to the decoder, and tests').
/// Every inconsistency is an error.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode(frame: &[u8]) -> crate::codec::DecodeResult<Block> {
    decode_keys(frame, &super::all_keys, false).map_err(|e| match e {
        FrameError::Decode(e) => e,
        FrameError::Checksum { offset, .. } => DecodeError {
            offset,
            reason: "checksum".into(),
        },
    })
}

/// A frame opened as far as its directory: its header, its payload, the directory's raw
/// bytes (its crc checked, in a frame of parts, when asked) and where things start.
struct Opened<'a> {
    header: FrameHeader,
    payload: &'a [u8],
    dir: std::borrow::Cow<'a, [u8]>,
    /// Where the directory's stored bytes start in the payload.
    dir_start: usize,
    /// Where the first section starts in the payload.
    sections_start: usize,
    /// The raw bytes the sections may still claim.
    budget: u64,
}

/// Checks a part's stored bytes against its crc (`want`, in a frame of parts) when
/// `check_parts`; `at` is where they start in the payload.
fn check_part(
    stored: &[u8],
    want: Option<u32>,
    at: usize,
    check_parts: bool,
) -> Result<(), FrameError> {
    match want {
        Some(expected) if check_parts => {
            let got = crc32fast::hash(stored);
            if got == expected {
                Ok(())
            } else {
                Err(FrameError::Checksum {
                    offset: FRAME_HEADER_LEN + at,
                    expected,
                    got,
                })
            }
        }
        _ => Ok(()),
    }
}

/// Opens a frame as far as its directory (see [`Opened`]).
fn open(frame: &[u8], check_parts: bool) -> Result<Opened<'_>, FrameError> {
    let header = match FrameHeader::parse(frame)? {
        Some(h) => h,
        None => return Ok(Reader::new(frame).err("not a block frame (bad magic)")?),
    };
    if header.raw_len > MAX_RAW_LEN {
        return Ok(Reader::new(frame).err(format!("raw length {} too large", header.raw_len))?);
    }
    let payload = &frame[FRAME_HEADER_LEN..];
    if payload.len() != header.payload_len as usize {
        return Ok(Reader::new(frame).err("payload length does not match the frame header")?);
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
    let dir_stored_len = r.count(1).map_err(in_frame(0))?;
    let dir_crc = if header.parts {
        Some(r.u32().map_err(in_frame(0))?)
    } else {
        None
    };
    let dir_stored = r.take(dir_stored_len).map_err(in_frame(0))?;
    let dir_start = r.position() - dir_stored.len();
    check_part(dir_stored, dir_crc, dir_start, check_parts)?;
    // Every section's raw length comes out of the frame's: none may claim more than is left.
    let budget = u64::from(header.raw_len);
    if dir_raw_len > budget {
        return Ok(Reader::new(frame).err("the directory is longer than the block")?);
    }
    let dir = section(dir_stored, dir_codec, dir_raw_len).map_err(in_frame(dir_start))?;
    Ok(Opened {
        header,
        payload,
        dir,
        dir_start,
        sections_start: r.position(),
        budget: budget - dir_raw_len,
    })
}

/// How many of a frame's steps are at most `hi`, and the last of them: its directory's
/// steps alone read (evenly spaced ones counted, not listed), no key and no column. What a
/// cut in the middle of a block asks (a rewind's check of its step, a row count).
pub(crate) fn steps_at_most(
    frame: &[u8],
    hi: u64,
    check_parts: bool,
) -> Result<(u64, Option<u64>), FrameError> {
    let o = open(frame, check_parts)?;
    let mut d = Reader::new(&o.dir);
    let steps = read_steps(&mut d, o.header.nrows).map_err(|e| DecodeError {
        offset: FRAME_HEADER_LEN + o.dir_start,
        reason: format!("in the block directory at byte {}: {}", e.offset, e.reason),
    })?;
    // What a whole decode checks of the steps: they are the ones the frame header gives.
    if steps.first() != o.header.first_step || steps.last() != o.header.last_step {
        return Ok(Reader::new(frame).err("block rows do not match the frame header")?);
    }
    Ok(steps.at_most(hi))
}

/// Decodes a frame (its header's crc already checked), decompressing only the columns whose
/// key `keep` accepts (the directory, with every step and key, is always checked). With
/// `check_parts`, a frame of parts (`SLB3`) has its directory's crc and each decoded
/// section's checked first: what a reader relies on instead of the whole payload's crc.
pub(crate) fn decode_keys(
    frame: &[u8],
    keep: &dyn Fn(&str) -> bool,
    check_parts: bool,
) -> Result<Block, FrameError> {
    let Opened {
        header,
        payload,
        dir,
        dir_start,
        sections_start,
        mut budget,
    } = open(frame, check_parts)?;
    let check =
        |stored: &[u8], want: Option<u32>, at: usize| check_part(stored, want, at, check_parts);
    let at_dir = |e: DecodeError| DecodeError {
        offset: FRAME_HEADER_LEN + dir_start,
        reason: format!("in the block directory at byte {}: {}", e.offset, e.reason),
    };
    let mut d = Reader::new(&dir);
    let steps = decode_steps(&mut d, header.nrows).map_err(at_dir)?;
    let nkeys = d.count(4).map_err(at_dir)?;
    let mut entries: Vec<DirEntry<'_>> = Vec::with_capacity(nkeys);
    let mut next = sections_start;
    for _ in 0..nkeys {
        let key = d.str().map_err(at_dir)?;
        if entries.last().is_some_and(|c| c.key >= key) {
            return Ok(d
                .err(format!("key '{key}' out of order or repeated"))
                .map_err(at_dir)?);
        }
        let kind = d.u8().map_err(at_dir)?;
        let codec = d.u8().map_err(at_dir)?;
        let raw_len = d.varint().map_err(at_dir)?;
        let len = d.varint().map_err(at_dir)?;
        let crc = if header.parts {
            Some(d.u32().map_err(at_dir)?)
        } else {
            None
        };
        if raw_len > budget || len > (payload.len() - next) as u64 {
            return Ok(d
                .err(format!("column '{key}' is longer than its block"))
                .map_err(at_dir)?);
        }
        budget -= raw_len;
        entries.push(DirEntry {
            key,
            kind,
            codec,
            raw_len: raw_len as usize,
            crc,
            start: next,
            len: len as usize,
        });
        next += len as usize;
    }
    if !d.is_empty() {
        return Ok(d
            .err(format!(
                "{} trailing bytes after the directory",
                d.remaining()
            ))
            .map_err(at_dir)?);
    }
    if next != payload.len() || budget != 0 {
        return Ok(Reader::new(frame).err("column sections do not add up to the frame's lengths")?);
    }
    // (The row count was checked against the header by `decode_steps`.)
    if steps.first() != Some(&header.first_step) || steps.last() != Some(&header.last_step) {
        return Ok(Reader::new(frame).err("block rows do not match the frame header")?);
    }
    let mut columns = Vec::new();
    for e in entries.into_iter().filter(|e| keep(e.key)) {
        let stored = &payload[e.start..e.start + e.len];
        check(stored, e.crc, e.start)?;
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
            return Ok(c
                .err(format!("{} trailing bytes after the values", c.remaining()))
                .map_err(at_col)?);
        }
        columns.push(Column {
            key: e.key.to_owned(),
            rows,
            values,
        });
    }
    Ok(Block { steps, columns })
}
