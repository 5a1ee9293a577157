//! A block: a batch of rows, column-encoded, each column compressed on its own, inside a
//! crc32-checked frame.
//!
//! ```text
//! frame   = { magic "SLB2" | payload_len u32 | raw_len u32 | nrows u32
//!           | first_step u64 | last_step u64 | header_crc u32 | payload_crc u32 | payload }
//! payload = { dir codec u8 | dir raw_len varint | dir stored_len varint | dir | section* }
//! dir     = { nrows varint | first step varint | (nrows-1) step deltas varint | nkeys varint
//!           | (key | kind u8 | codec u8 | raw_len varint | stored_len varint) * nkeys }
//! section = a column's { presence | values }, raw or zstd (its codec)
//! ```
//! `header_crc` covers the 32 bytes before it, so a length is trusted only once checked (a
//! damaged length is corruption, not a torn tail); `payload_crc` covers the payload. A reader
//! of one metric decompresses the directory and that metric's section only.
//! docs/FORMAT.md has the rest.

use std::collections::BTreeMap;

use crate::codec::{put_bytes, put_varint, unzigzag, zigzag, DecodeError, DecodeResult, Reader};
use crate::types::{Row, Value};

pub(crate) const FRAME_MAGIC: [u8; 4] = *b"SLB2";
pub(crate) const FRAME_HEADER_LEN: usize = 40;
pub(crate) use crate::limits::MAX_RAW_LEN;
/// The most rows a block may have (writers start a new block before), so that evenly spaced
/// steps, stored in a few bytes, never make a decoder allocate more than 8 MiB for them.
pub(crate) const MAX_BLOCK_ROWS: usize = 1 << 20;

const KIND_F64: u8 = 0;
const KIND_I64: u8 = 1;
const KIND_BOOL: u8 = 2;
const KIND_STR: u8 = 3;
const KIND_MIXED: u8 = 4;
/// f64 values that are all exactly f32 (what `loss.item()` gives), stored in 4 bytes.
const KIND_F32: u8 = 5;

const STEPS_DELTAS: u8 = 0;
const STEPS_STRIDE: u8 = 1;

const PRESENCE_DENSE: u8 = 0;
const PRESENCE_SPARSE: u8 = 1;

/// The fixed header of a block frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub payload_len: u32,
    pub raw_len: u32,
    pub nrows: u32,
    pub first_step: u64,
    pub last_step: u64,
    pub header_crc: u32,
    pub payload_crc: u32,
    /// Whether `header_crc` matches the header bytes.
    pub header_ok: bool,
}

impl FrameHeader {
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Parses a frame header; `None` when the magic is not a block's. The header crc is
    /// checked into `header_ok`; callers must not trust the lengths unless it is true.
    pub fn parse(bytes: &[u8]) -> DecodeResult<Option<FrameHeader>> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != FRAME_MAGIC {
            return Ok(None);
        }
        let mut h = FrameHeader {
            payload_len: r.u32()?,
            raw_len: r.u32()?,
            nrows: r.u32()?,
            first_step: r.u64()?,
            last_step: r.u64()?,
            header_crc: r.u32()?,
            payload_crc: r.u32()?,
            header_ok: false,
        };
        h.header_ok = crc32fast::hash(&bytes[..32]) == h.header_crc;
        Ok(Some(h))
    }
}

/// The crc32 of a frame's payload.
pub(crate) fn payload_crc(frame: &[u8]) -> u32 {
    crc32fast::hash(&frame[FRAME_HEADER_LEN..])
}

thread_local! {
    // zstd contexts are large to set up (hundreds of KiB of tables); reuse one per thread
    // instead of paying that for every block (it dominated short runs).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match c.as_mut() {
            Some((_, z)) => z.compress(raw),
            None => zstd::bulk::compress(raw, level),
        }
    })
}

fn decompress(payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(z) => z.decompress(payload, capacity),
            None => zstd::bulk::decompress(payload, capacity),
        }
    })
}

/// Section codecs: how a directory or column section is stored in the payload.
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// Compresses a section with zstd, or keeps it raw when zstd would not make it smaller
/// (tiny sections: a zstd frame costs a dozen bytes of its own).
fn put_section(raw: &[u8], level: i32) -> std::io::Result<(u8, Vec<u8>)> {
    if raw.len() < 32 {
        return Ok((CODEC_RAW, raw.to_vec()));
    }
    let z = compress(raw, level)?;
    Ok(if z.len() < raw.len() {
        (CODEC_ZSTD, z)
    } else {
        (CODEC_RAW, raw.to_vec())
    })
}

/// Encodes a block (at least one row, steps non-decreasing) into a complete frame. Each
/// column is compressed on its own, so a reader decompresses only the columns it reads.
pub(crate) fn encode(block: &Block, level: i32) -> std::io::Result<Vec<u8>> {
    let mut dir = Vec::with_capacity(block.steps.len() + 64);
    put_steps(&mut dir, &block.steps);
    let mut order: Vec<&Column> = block
        .columns
        .iter()
        .filter(|c| !c.rows.is_empty())
        .collect();
    order.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    put_varint(&mut dir, order.len() as u64);
    let mut raw_len = 0u64;
    let mut sections = Vec::with_capacity(order.len());
    let mut col_raw = Vec::new();
    for col in order {
        col_raw.clear();
        let kind = encode_column(&mut col_raw, col, block.steps.len());
        let (codec, stored) = put_section(&col_raw, level)?;
        put_bytes(&mut dir, col.key.as_bytes());
        dir.push(kind);
        dir.push(codec);
        put_varint(&mut dir, col_raw.len() as u64);
        put_varint(&mut dir, stored.len() as u64);
        raw_len += col_raw.len() as u64;
        sections.push(stored);
    }
    raw_len += dir.len() as u64;
    let (dir_codec, dir_stored) = put_section(&dir, level)?;
    let mut payload =
        Vec::with_capacity(16 + dir_stored.len() + sections.iter().map(Vec::len).sum::<usize>());
    payload.push(dir_codec);
    put_varint(&mut payload, dir.len() as u64);
    put_varint(&mut payload, dir_stored.len() as u64);
    payload.extend_from_slice(&dir_stored);
    sections.iter().for_each(|s| payload.extend_from_slice(s));
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "block too large");
    let raw_len = u32::try_from(raw_len).map_err(|_| too_big())?;
    let payload_len = u32::try_from(payload.len()).map_err(|_| too_big())?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&FRAME_MAGIC);
    frame.extend_from_slice(&payload_len.to_le_bytes());
    frame.extend_from_slice(&raw_len.to_le_bytes());
    frame.extend_from_slice(&(block.steps.len() as u32).to_le_bytes());
    frame.extend_from_slice(&block.steps.first().map_or(0, |s| *s).to_le_bytes());
    frame.extend_from_slice(&block.steps.last().map_or(0, |s| *s).to_le_bytes());
    let header_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&header_crc.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Steps: as `first + i × stride` when they are evenly spaced (the usual case: every step
/// logged), else as deltas.
fn put_steps(out: &mut Vec<u8>, steps: &[u64]) {
    put_varint(out, steps.len() as u64);
    let first = steps.first().copied().unwrap_or(0);
    let stride = steps.get(1).map_or(0, |s| s - first);
    if steps.windows(2).all(|w| w[1] - w[0] == stride) {
        out.push(STEPS_STRIDE);
        put_varint(out, first);
        put_varint(out, stride);
        return;
    }
    out.push(STEPS_DELTAS);
    let mut prev = 0;
    for (i, &step) in steps.iter().enumerate() {
        put_varint(out, if i == 0 { step } else { step - prev });
        prev = step;
    }
}

/// Writes a column's presence and values; returns its kind.
fn encode_column(out: &mut Vec<u8>, col: &Column, nrows: usize) -> u8 {
    if col.rows.len() == nrows {
        out.push(PRESENCE_DENSE);
    } else {
        out.push(PRESENCE_SPARSE);
        put_varint(out, col.rows.len() as u64);
        let mut next = 0u32;
        for &i in &col.rows {
            put_varint(out, u64::from(i - next));
            next = i + 1;
        }
    }
    put_values(out, &col.values)
}

/// Writes a column's values; returns their kind.
fn put_values(out: &mut Vec<u8>, values: &Values) -> u8 {
    match values {
        Values::F64(xs) => {
            if xs
                .iter()
                .all(|x| f64::from(*x as f32).to_bits() == x.to_bits())
            {
                // Exact: every value round-trips through f32.
                let bits: Vec<u64> = xs
                    .iter()
                    .map(|&x| u64::from((x as f32).to_bits()))
                    .collect();
                put_float_planes(out, &bits, 4);
                KIND_F32
            } else {
                let bits: Vec<u64> = xs.iter().map(|x| x.to_bits()).collect();
                put_float_planes(out, &bits, 8);
                KIND_F64
            }
        }
        Values::I64(xs) => {
            let mut prev = 0i64;
            for &x in xs {
                put_varint(out, zigzag(x.wrapping_sub(prev)));
                prev = x;
            }
            KIND_I64
        }
        Values::Any(vs) => match column_kind(vs) {
            KIND_F64 | KIND_F32 | KIND_I64 => {
                // One numeric type after all (say, once a mixed value was taken out).
                let mut typed = Values::for_value(&vs[0]);
                vs.iter().for_each(|v| typed.push(v.clone()));
                put_values(out, &typed)
            }
            KIND_MIXED => {
                vs.iter().for_each(|v| put_value(out, v));
                KIND_MIXED
            }
            kind => {
                vs.iter().for_each(|v| put_value_untagged(out, v));
                kind
            }
        },
    }
}

fn column_kind(values: &[Value]) -> u8 {
    let kind_of = |v: &Value| match v {
        Value::F64(_) => KIND_F64,
        Value::I64(_) => KIND_I64,
        Value::Bool(_) => KIND_BOOL,
        Value::Str(_) => KIND_STR,
    };
    let first = values.first().map_or(KIND_F64, kind_of);
    if !values.iter().all(|v| kind_of(v) == first) {
        return KIND_MIXED;
    }
    let exact_f32 = |v: &Value| match v {
        Value::F64(x) => f64::from(*x as f32).to_bits() == x.to_bits(),
        _ => false,
    };
    if first == KIND_F64 && values.iter().all(exact_f32) {
        KIND_F32
    } else {
        first
    }
}

/// Floats as `width`-byte words, each XORed with the one before (smooth series share their
/// high bits), then transposed into byte planes (all first bytes, then all second bytes...)
/// so that zstd sees long runs of equal bytes.
fn put_float_planes(out: &mut Vec<u8>, bits: &[u64], width: usize) {
    let mut prev = 0u64;
    let xored: Vec<u64> = bits
        .iter()
        .map(|&b| {
            let x = b ^ prev;
            prev = b;
            x
        })
        .collect();
    for plane in 0..width {
        out.extend(xored.iter().map(|x| (x >> (8 * plane)) as u8));
    }
}

fn get_float_planes(r: &mut Reader<'_>, n: usize, width: usize) -> DecodeResult<Vec<u64>> {
    let bytes = r.take(n.checked_mul(width).map_or(usize::MAX, |b| b))?;
    let mut out = vec![0u64; n];
    for plane in 0..width {
        for (x, &b) in out.iter_mut().zip(&bytes[plane * n..(plane + 1) * n]) {
            *x |= u64::from(b) << (8 * plane);
        }
    }
    let mut prev = 0u64;
    for x in out.iter_mut() {
        *x ^= prev;
        prev = *x;
    }
    Ok(out)
}

fn put_value_untagged(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => put_varint(out, zigzag(*x)),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::Str(s) => put_bytes(out, s.as_bytes()),
    }
}

/// A value with a one-byte kind tag; used by mixed columns and by segment footers.
pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    out.push(match v {
        Value::F64(_) => KIND_F64,
        Value::I64(_) => KIND_I64,
        Value::Bool(_) => KIND_BOOL,
        Value::Str(_) => KIND_STR,
    });
    put_value_untagged(out, v);
}

fn get_value_of_kind(r: &mut Reader<'_>, kind: u8) -> DecodeResult<Value> {
    Ok(match kind {
        KIND_F64 => Value::F64(r.f64()?),
        KIND_I64 => Value::I64(unzigzag(r.varint()?)),
        KIND_BOOL => match r.u8()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return r.err(format!("bad bool byte {b}")),
        },
        KIND_STR => Value::Str(r.str()?.to_owned()),
        k => return r.err(format!("unknown value kind {k}")),
    })
}

pub(crate) fn get_value(r: &mut Reader<'_>) -> DecodeResult<Value> {
    let kind = r.u8()?;
    get_value_of_kind(r, kind)
}

/// A decoded block: its steps and its columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Block {
    pub steps: Vec<u64>,
    pub columns: Vec<Column>,
}

/// One key's values in a block: the rows it is present in, and the values there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub key: String,
    pub rows: Vec<u32>,
    pub values: Values,
}

/// A column's values, typed when they all have one numeric type (the usual case), so that
/// logging, encoding, summarising and reading a metric never go through `Value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Any(Vec<Value>),
}

impl Default for Values {
    fn default() -> Self {
        Values::F64(Vec::new())
    }
}

impl Values {
    /// An empty column suited to values like `v`.
    pub fn for_value(v: &Value) -> Values {
        match v {
            Value::F64(_) => Values::F64(Vec::new()),
            Value::I64(_) => Values::I64(Vec::new()),
            _ => Values::Any(Vec::new()),
        }
    }

    /// The `i`-th value (`i` < `len`).
    pub fn get(&self, i: usize) -> Value {
        match self {
            Values::F64(v) => Value::F64(v[i]),
            Values::I64(v) => Value::I64(v[i]),
            Values::Any(v) => v[i].clone(),
        }
    }

    /// The `i`-th value as a float, if numeric.
    pub fn f64_at(&self, i: usize) -> Option<f64> {
        match self {
            Values::F64(v) => Some(v[i]),
            Values::I64(v) => Some(v[i] as f64),
            Values::Any(v) => v[i].as_f64(),
        }
    }

    /// The last value if it is an integer (for delta size estimates).
    pub fn last_i64(&self) -> Option<i64> {
        match self {
            Values::I64(v) => v.last().copied(),
            Values::Any(v) => match v.last() {
                Some(Value::I64(x)) => Some(*x),
                _ => None,
            },
            Values::F64(_) => None,
        }
    }

    fn into_any(self) -> Vec<Value> {
        match self {
            Values::F64(v) => v.into_iter().map(Value::F64).collect(),
            Values::I64(v) => v.into_iter().map(Value::I64).collect(),
            Values::Any(v) => v,
        }
    }

    /// Appends `value`; a value of another type turns the column into `Any`.
    pub fn push(&mut self, value: Value) {
        match (&mut *self, value) {
            (Values::F64(v), Value::F64(x)) => v.push(x),
            (Values::I64(v), Value::I64(x)) => v.push(x),
            (Values::Any(v), x) => v.push(x),
            (_, x) => {
                let mut any = std::mem::take(self).into_any();
                any.push(x);
                *self = Values::Any(any);
            }
        }
    }

    /// Removes and returns the last value.
    pub fn pop(&mut self) -> Option<Value> {
        match self {
            Values::F64(v) => v.pop().map(Value::F64),
            Values::I64(v) => v.pop().map(Value::I64),
            Values::Any(v) => v.pop(),
        }
    }

    /// Replaces the last value (there is one) with `value`.
    pub fn set_last(&mut self, value: Value) {
        self.pop();
        self.push(value);
    }
}

impl Block {
    /// A block holding `rows` (in step order), column by column.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn from_rows(rows: &[Row]) -> Block {
        let mut columns: BTreeMap<&str, Column> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            for (k, v) in &row.fields {
                let col = columns.entry(k.as_str()).or_insert_with(|| Column {
                    key: k.clone(),
                    rows: Vec::new(),
                    values: Values::for_value(v),
                });
                col.rows.push(i as u32);
                col.values.push(v.clone());
            }
        }
        Block {
            steps: rows.iter().map(|r| r.step).collect(),
            columns: columns.into_values().collect(),
        }
    }

    /// The rows of the block, keeping only keys accepted by `keep`.
    pub fn into_rows(self, keep: impl Fn(&str) -> bool) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .steps
            .iter()
            .map(|&step| Row {
                step,
                fields: BTreeMap::new(),
            })
            .collect();
        for col in self.columns.into_iter().filter(|c| keep(&c.key)) {
            for (j, &i) in col.rows.iter().enumerate() {
                rows[i as usize]
                    .fields
                    .insert(col.key.clone(), col.values.get(j));
            }
        }
        rows
    }
}

/// A key filter that keeps every column.
pub(crate) fn all_keys(_: &str) -> bool {
    true
}

/// One column's entry in a block's directory.
struct DirEntry {
    key: String,
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
    decode_keys(frame, &all_keys)
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
    let mut entries: Vec<DirEntry> = Vec::with_capacity(nkeys);
    let mut next = r.position();
    for _ in 0..nkeys {
        let key = d.str().map_err(at_dir)?.to_owned();
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
    for e in entries.into_iter().filter(|e| keep(&e.key)) {
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
            key: e.key,
            rows,
            values,
        });
    }
    Ok(Block { steps, columns })
}

/// A section's raw bytes: borrowed, or decompressed to exactly `raw_len` bytes (which the
/// caller has checked against the frame's raw length).
fn section(stored: &[u8], codec: u8, raw_len: u64) -> DecodeResult<std::borrow::Cow<'_, [u8]>> {
    let r = Reader::new(stored);
    match codec {
        CODEC_RAW if stored.len() as u64 == raw_len => Ok(std::borrow::Cow::Borrowed(stored)),
        CODEC_RAW => r.err("raw section length does not match its directory entry"),
        CODEC_ZSTD => {
            let raw = decompress(stored, raw_len as usize).map_err(|e| DecodeError {
                offset: 0,
                reason: format!("zstd: {e}"),
            })?;
            if raw.len() as u64 != raw_len {
                return r.err("decompressed length does not match its directory entry");
            }
            Ok(std::borrow::Cow::Owned(raw))
        }
        c => r.err(format!("unknown section codec {c}")),
    }
}

/// Decodes the steps of a block whose frame header says it has `expect` rows.
fn decode_steps(r: &mut Reader<'_>, expect: u32) -> DecodeResult<Vec<u64>> {
    let nrows = r.count(0)?;
    if nrows == 0 {
        return r.err("block has no rows");
    }
    if nrows != expect as usize || nrows > MAX_BLOCK_ROWS {
        return r.err(format!(
            "{nrows} rows, the frame header says {expect} (at most {MAX_BLOCK_ROWS})"
        ));
    }
    match r.u8()? {
        STEPS_STRIDE => {
            let (first, stride) = (r.varint()?, r.varint()?);
            let last = (nrows as u64 - 1)
                .checked_mul(stride)
                .and_then(|span| first.checked_add(span));
            if last.is_none() {
                return r.err("step overflows u64");
            }
            Ok((0..nrows as u64).map(|i| first + i * stride).collect())
        }
        STEPS_DELTAS => {
            if nrows > r.remaining() {
                return r.err(format!("{nrows} step deltas in {} bytes", r.remaining()));
            }
            let mut steps = Vec::with_capacity(nrows);
            let mut step = 0u64;
            for i in 0..nrows {
                let d = r.varint()?;
                step = if i == 0 {
                    d
                } else {
                    match step.checked_add(d) {
                        Some(s) => s,
                        None => return r.err("step overflows u64"),
                    }
                };
                steps.push(step);
            }
            Ok(steps)
        }
        k => r.err(format!("unknown step encoding {k}")),
    }
}

fn decode_column(r: &mut Reader<'_>, kind: u8, nrows: usize) -> DecodeResult<(Vec<u32>, Values)> {
    let rows: Vec<u32> = match r.u8()? {
        PRESENCE_DENSE => (0..nrows as u32).collect(),
        PRESENCE_SPARSE => {
            let n = r.count(1)?;
            let mut rows = Vec::with_capacity(n);
            let mut next = 0u64;
            for _ in 0..n {
                let i = next.saturating_add(r.varint()?);
                if i >= nrows as u64 {
                    return r.err(format!("row index {i} outside a block of {nrows} rows"));
                }
                rows.push(i as u32);
                next = i + 1;
            }
            rows
        }
        p => return r.err(format!("unknown presence encoding {p}")),
    };
    let n = rows.len();
    let values = match kind {
        KIND_I64 => {
            let (mut prev, mut xs) = (0i64, Vec::with_capacity(n));
            for _ in 0..n {
                prev = prev.wrapping_add(unzigzag(r.varint()?));
                xs.push(prev);
            }
            Values::I64(xs)
        }
        KIND_F64 => {
            let bits = get_float_planes(r, n, 8)?;
            Values::F64(bits.into_iter().map(f64::from_bits).collect())
        }
        KIND_F32 => {
            let bits = get_float_planes(r, n, 4)?;
            Values::F64(
                bits.into_iter()
                    .map(|b| f64::from(f32::from_bits(b as u32)))
                    .collect(),
            )
        }
        KIND_MIXED | KIND_BOOL | KIND_STR => {
            let mut vs = Vec::with_capacity(n);
            for _ in 0..n {
                vs.push(if kind == KIND_MIXED {
                    get_value(r)?
                } else {
                    get_value_of_kind(r, kind)?
                });
            }
            Values::Any(vs)
        }
        k => return r.err(format!("unknown column kind {k}")),
    };
    Ok((rows, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        let mut out = Vec::new();
        for step in [3u64, 4, 4, 9, 1000] {
            let mut fields = BTreeMap::new();
            fields.insert("loss".to_string(), Value::F64(step as f64 / 7.0));
            if step % 2 == 0 {
                fields.insert("epoch".to_string(), Value::I64(-(step as i64)));
            }
            if step == 9 {
                fields.insert("note".to_string(), Value::Str("ünïcode".into()));
                fields.insert("mixed".to_string(), Value::Bool(true));
            }
            if step == 1000 {
                fields.insert("mixed".to_string(), Value::F64(f64::NAN));
            }
            out.push(Row { step, fields });
        }
        out
    }

    #[test]
    fn rows_round_trip_through_a_frame() {
        let rows = rows();
        let frame = encode(&Block::from_rows(&rows), 3).unwrap();
        let h = FrameHeader::parse(&frame).unwrap().unwrap();
        assert!(h.header_ok);
        assert_eq!(h.payload_crc, payload_crc(&frame));
        assert_eq!((h.nrows, h.first_step, h.last_step), (5, 3, 1000));
        let back = decode(&frame).unwrap().into_rows(|_| true);
        // NaN != NaN, so compare the debug text.
        assert_eq!(format!("{back:?}"), format!("{rows:?}"));
        let only_loss = decode(&frame).unwrap().into_rows(|k| k == "loss");
        assert!(only_loss.iter().all(|r| r.fields.len() == 1));
    }

    #[test]
    fn floats_round_trip_bit_for_bit_in_both_float_encodings() {
        let as_f32 = [
            0.0f32,
            -0.0,
            1.5,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE / 4.0,
            f32::MAX,
        ];
        let wide = [
            0.1f64,
            -0.0,
            f64::from_bits(0x7ff8_0000_0000_0001),
            1e300,
            f64::MIN_POSITIVE / 8.0,
            3.0,
        ];
        for values in [
            as_f32.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            wide.to_vec(),
        ] {
            let rows: Vec<Row> = values
                .iter()
                .enumerate()
                .map(|(i, &x)| Row {
                    step: i as u64,
                    fields: [("x".to_string(), Value::F64(x))].into_iter().collect(),
                })
                .collect();
            let back = decode(&encode(&Block::from_rows(&rows), 3).unwrap()).unwrap();
            let kind_f32 = values
                .iter()
                .all(|&x| f64::from(x as f32).to_bits() == x.to_bits());
            assert_eq!(
                column_kind(
                    &rows
                        .iter()
                        .map(|r| r.fields["x"].clone())
                        .collect::<Vec<_>>()
                ) == KIND_F32,
                kind_f32
            );
            for (i, v) in values.iter().enumerate() {
                match back.columns[0].values.get(i) {
                    Value::F64(g) => assert_eq!(g.to_bits(), v.to_bits(), "{v}"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_of_the_payload_is_an_error_or_the_same_rows() {
        let rows = rows();
        let frame = encode(&Block::from_rows(&rows), 3).unwrap();
        for cut in 0..frame.len() {
            assert!(decode(&frame[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            // Without the crc check (done by callers), decoding must still never panic.
            let _ = decode(&bad);
            // And the crcs catch every flipped bit (or the magic no longer matches).
            let caught = match FrameHeader::parse(&bad).unwrap() {
                None => true,
                Some(h) => !h.header_ok || h.payload_crc != payload_crc(&bad),
            };
            assert!(caught, "flip at byte {i} undetected");
        }
    }
}
