//! Column encodings: steps (stride or deltas), presence (dense or sparse), and values by
//! kind (zigzag-delta integers, XORed float byte planes in 8 or 4 bytes, tagged values).

use super::frame::MAX_BLOCK_ROWS;
use super::value::*;
use super::{Column, Values};
use crate::codec::{put_varint, unzigzag, zigzag, DecodeResult, Reader};
use crate::types::Value;

pub(super) const STEPS_DELTAS: u8 = 0;
pub(super) const STEPS_STRIDE: u8 = 1;

pub(super) const PRESENCE_DENSE: u8 = 0;
pub(super) const PRESENCE_SPARSE: u8 = 1;

/// Steps: as `first + i × stride` when they are evenly spaced (the usual case: every step
/// logged), else as deltas.
pub(super) fn put_steps(out: &mut Vec<u8>, steps: &[u64]) {
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
pub(super) fn encode_column(out: &mut Vec<u8>, col: &Column, nrows: usize) -> u8 {
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
pub(super) fn put_values(out: &mut Vec<u8>, values: &Values) -> u8 {
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

pub(super) fn column_kind(values: &[Value]) -> u8 {
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
pub(super) fn put_float_planes(out: &mut Vec<u8>, bits: &[u64], width: usize) {
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

pub(super) fn get_float_planes(
    r: &mut Reader<'_>,
    n: usize,
    width: usize,
) -> DecodeResult<Vec<u64>> {
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

/// Decodes the steps of a block whose frame header says it has `expect` rows.
pub(super) fn decode_steps(r: &mut Reader<'_>, expect: u32) -> DecodeResult<Vec<u64>> {
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

pub(super) fn decode_column(
    r: &mut Reader<'_>,
    kind: u8,
    nrows: usize,
) -> DecodeResult<(Vec<u32>, Values)> {
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
