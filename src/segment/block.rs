//! A block: a zstd-compressed, column-encoded batch of rows inside a crc32-checked frame.
//!
//! ```text
//! frame  = { magic "SLB1" | payload_len u32 | raw_len u32 | nrows u32
//!          | first_step u64 | last_step u64 | header_crc u32 | payload_crc u32
//!          | payload (zstd of raw) }
//! raw    = { nrows varint | first step varint | (nrows-1) step deltas varint
//!          | nkeys varint | column * nkeys }
//! column = { key (len varint, utf8) | kind u8 | presence | values }
//! ```
//! `header_crc` covers the 32 bytes before it, so a length is trusted only once checked (a
//! damaged length is corruption, not a torn tail); `payload_crc` covers the payload.
//! docs/FORMAT.md has the rest.

use std::collections::BTreeMap;

use crate::codec::{put_bytes, put_varint, unzigzag, zigzag, DecodeError, DecodeResult, Reader};
use crate::types::{Row, Value};

pub(crate) const FRAME_MAGIC: [u8; 4] = *b"SLB1";
pub(crate) const FRAME_HEADER_LEN: usize = 40;
/// The largest raw (uncompressed) block a decoder accepts; writers stay far below it.
pub(crate) const MAX_RAW_LEN: u32 = 256 << 20;

const KIND_F64: u8 = 0;
const KIND_I64: u8 = 1;
const KIND_BOOL: u8 = 2;
const KIND_STR: u8 = 3;
const KIND_MIXED: u8 = 4;
/// f64 values that are all exactly f32 (what `loss.item()` gives), stored in 4 bytes.
const KIND_F32: u8 = 5;

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

/// Encodes rows (in step order, at least one) into a complete frame.
pub(crate) fn encode(rows: &[Row], level: i32) -> std::io::Result<Vec<u8>> {
    let raw = encode_raw(rows);
    let payload = compress(&raw, level)?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&FRAME_MAGIC);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    frame.extend_from_slice(&rows.first().map_or(0, |r| r.step).to_le_bytes());
    frame.extend_from_slice(&rows.last().map_or(0, |r| r.step).to_le_bytes());
    let header_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&header_crc.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

fn encode_raw(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 16);
    put_varint(&mut out, rows.len() as u64);
    let mut prev = 0;
    for (i, row) in rows.iter().enumerate() {
        put_varint(&mut out, if i == 0 { row.step } else { row.step - prev });
        prev = row.step;
    }
    let mut columns: BTreeMap<&str, (Vec<u32>, Vec<&Value>)> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        for (k, v) in &row.fields {
            let col = columns.entry(k.as_str()).or_default();
            col.0.push(i as u32);
            col.1.push(v);
        }
    }
    put_varint(&mut out, columns.len() as u64);
    for (key, (present, values)) in columns {
        put_bytes(&mut out, key.as_bytes());
        let kind = column_kind(&values);
        out.push(kind);
        if present.len() == rows.len() {
            out.push(PRESENCE_DENSE);
        } else {
            out.push(PRESENCE_SPARSE);
            put_varint(&mut out, present.len() as u64);
            let mut next = 0u32;
            for &i in &present {
                put_varint(&mut out, u64::from(i - next));
                next = i + 1;
            }
        }
        match kind {
            KIND_I64 => {
                let mut prev = 0i64;
                for v in values {
                    if let Value::I64(x) = v {
                        put_varint(&mut out, zigzag(x.wrapping_sub(prev)));
                        prev = *x;
                    }
                }
            }
            KIND_F64 => {
                let bits: Vec<u64> = values.iter().map(|v| num_bits(v)).collect();
                put_float_planes(&mut out, &bits, 8);
            }
            KIND_F32 => {
                // Exact: column_kind checked that every value round-trips through f32.
                let bits: Vec<u64> = values
                    .iter()
                    .map(|v| u64::from((f64::from_bits(num_bits(v)) as f32).to_bits()))
                    .collect();
                put_float_planes(&mut out, &bits, 4);
            }
            KIND_MIXED => values.into_iter().for_each(|v| put_value(&mut out, v)),
            _ => values
                .into_iter()
                .for_each(|v| put_value_untagged(&mut out, v)),
        }
    }
    out
}

fn column_kind(values: &[&Value]) -> u8 {
    let kind_of = |v: &Value| match v {
        Value::F64(_) => KIND_F64,
        Value::I64(_) => KIND_I64,
        Value::Bool(_) => KIND_BOOL,
        Value::Str(_) => KIND_STR,
    };
    let first = values.first().map_or(KIND_F64, |v| kind_of(v));
    if !values.iter().all(|v| kind_of(v) == first) {
        return KIND_MIXED;
    }
    let exact_f32 = |v: &&Value| match v {
        Value::F64(x) => f64::from(*x as f32).to_bits() == x.to_bits(),
        _ => false,
    };
    if first == KIND_F64 && values.iter().all(exact_f32) {
        KIND_F32
    } else {
        first
    }
}

fn num_bits(v: &Value) -> u64 {
    match v {
        Value::F64(x) => x.to_bits(),
        _ => 0,
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
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Block {
    pub steps: Vec<u64>,
    pub columns: Vec<Column>,
}

/// One key's values in a block: the rows it is present in, and the values there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub key: String,
    pub rows: Vec<u32>,
    pub values: Vec<Value>,
}

impl Block {
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
            for (i, v) in col.rows.into_iter().zip(col.values) {
                rows[i as usize].fields.insert(col.key.clone(), v);
            }
        }
        rows
    }
}

/// Decodes a whole frame whose crc was already checked. Every inconsistency is an error.
pub(crate) fn decode(frame: &[u8]) -> DecodeResult<Block> {
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
    let raw = decompress(payload, header.raw_len as usize).map_err(|e| DecodeError {
        offset: FRAME_HEADER_LEN,
        reason: format!("zstd: {e}"),
    })?;
    if raw.len() != header.raw_len as usize {
        return Reader::new(frame).err("decompressed length does not match the frame header");
    }
    let at_payload = |e: DecodeError| DecodeError {
        offset: FRAME_HEADER_LEN,
        reason: format!("in decompressed block at byte {}: {}", e.offset, e.reason),
    };
    let block = decode_raw(&raw).map_err(at_payload)?;
    let (first, last) = (block.steps.first(), block.steps.last());
    if block.steps.len() != header.nrows as usize
        || first != Some(&header.first_step)
        || last != Some(&header.last_step)
    {
        return Reader::new(frame).err("block rows do not match the frame header");
    }
    Ok(block)
}

fn decode_raw(raw: &[u8]) -> DecodeResult<Block> {
    let mut r = Reader::new(raw);
    let nrows = r.count(1)?;
    if nrows == 0 {
        return r.err("block has no rows");
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
    let nkeys = r.count(2)?;
    let mut columns: Vec<Column> = Vec::with_capacity(nkeys);
    for _ in 0..nkeys {
        let key = r.str()?.to_owned();
        if columns.last().is_some_and(|c| c.key >= key) {
            return r.err(format!("key '{key}' out of order or repeated"));
        }
        let kind = r.u8()?;
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
        let mut values = Vec::with_capacity(rows.len());
        match kind {
            KIND_I64 => {
                let mut prev = 0i64;
                for _ in 0..rows.len() {
                    prev = prev.wrapping_add(unzigzag(r.varint()?));
                    values.push(Value::I64(prev));
                }
            }
            KIND_MIXED => {
                for _ in 0..rows.len() {
                    values.push(get_value(&mut r)?);
                }
            }
            KIND_F64 => {
                let bits = get_float_planes(&mut r, rows.len(), 8)?;
                values.extend(bits.into_iter().map(|b| Value::F64(f64::from_bits(b))));
            }
            KIND_F32 => {
                let bits = get_float_planes(&mut r, rows.len(), 4)?;
                values.extend(
                    bits.into_iter()
                        .map(|b| Value::F64(f64::from(f32::from_bits(b as u32)))),
                );
            }
            KIND_BOOL | KIND_STR => {
                for _ in 0..rows.len() {
                    values.push(get_value_of_kind(&mut r, kind)?);
                }
            }
            k => return r.err(format!("unknown column kind {k}")),
        }
        columns.push(Column { key, rows, values });
    }
    if !r.is_empty() {
        return r.err(format!(
            "{} trailing bytes after the last column",
            r.remaining()
        ));
    }
    Ok(Block { steps, columns })
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
        let frame = encode(&rows, 3).unwrap();
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
            let back = decode(&encode(&rows, 3).unwrap()).unwrap();
            let kind_f32 = values
                .iter()
                .all(|&x| f64::from(x as f32).to_bits() == x.to_bits());
            assert_eq!(
                column_kind(&rows.iter().map(|r| &r.fields["x"]).collect::<Vec<_>>()) == KIND_F32,
                kind_f32
            );
            for (v, got) in values.iter().zip(&back.columns[0].values) {
                match got {
                    Value::F64(g) => assert_eq!(g.to_bits(), v.to_bits(), "{v}"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_of_the_payload_is_an_error_or_the_same_rows() {
        let rows = rows();
        let frame = encode(&rows, 3).unwrap();
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
