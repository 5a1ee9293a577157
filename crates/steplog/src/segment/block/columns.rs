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
    out.reserve(xored.len() * width);
    for plane in 0..width {
        out.extend(xored.iter().map(|x| (x >> (8 * plane)) as u8));
    }
}

/// The `n` values of `W` byte planes (8: f64, 4: f32), un-XORed from their predecessors.
pub(super) fn get_float_planes<const W: usize>(
    r: &mut Reader<'_>,
    n: usize,
) -> DecodeResult<Vec<u64>> {
    let bytes = r.take(n.checked_mul(W).map_or(usize::MAX, |b| b))?;
    let mut out = gather_planes::<W>(bytes, n);
    let mut prev = 0u64;
    for x in out.iter_mut() {
        *x ^= prev;
        prev = *x;
    }
    Ok(out)
}

/// The `n` values whose little-endian bytes are `W` planes of `n` bytes each (`bytes` holds
/// exactly `W * n`), eight values at a time: a word of eight bytes from each plane makes an
/// 8×8 byte matrix, transposed in three rounds of masked swaps into the eight values (a pass
/// per plane, or a byte at a time, costs several times more; the planes' order is the
/// encoder's, `put_float_planes`).
fn gather_planes<const W: usize>(bytes: &[u8], n: usize) -> Vec<u64> {
    let planes: [&[u8]; W] = std::array::from_fn(|p| &bytes[p * n..][..n]);
    let mut out = Vec::with_capacity(n);
    let whole = n / 8 * 8;
    for i in (0..whole).step_by(8) {
        let mut m = [0u64; 8];
        for (row, plane) in m.iter_mut().zip(&planes) {
            let mut word = [0u8; 8];
            word.copy_from_slice(&plane[i..i + 8]);
            *row = u64::from_le_bytes(word);
        }
        out.extend_from_slice(&transpose8(m));
    }
    for i in whole..n {
        let mut le = [0u8; 8];
        for (b, plane) in le.iter_mut().zip(&planes) {
            *b = plane[i];
        }
        out.push(u64::from_le_bytes(le));
    }
    out
}

/// Transposes an 8×8 byte matrix held as eight little-endian words (row `r`, byte `c` →
/// row `c`, byte `r`): swaps of 4×4, then 2×2, then 1×1 blocks.
#[inline(always)]
fn transpose8(mut m: [u64; 8]) -> [u64; 8] {
    #[inline(always)]
    fn swap(m: &mut [u64; 8], a: usize, b: usize, half: u32, mask: u64) {
        let (x, y) = (m[a], m[b]);
        m[a] = (x & mask) | ((y & mask) << half);
        m[b] = ((x >> half) & mask) | (y & !mask);
    }
    const M32: u64 = 0x0000_0000_FFFF_FFFF;
    const M16: u64 = 0x0000_FFFF_0000_FFFF;
    const M8: u64 = 0x00FF_00FF_00FF_00FF;
    swap(&mut m, 0, 4, 32, M32);
    swap(&mut m, 1, 5, 32, M32);
    swap(&mut m, 2, 6, 32, M32);
    swap(&mut m, 3, 7, 32, M32);
    swap(&mut m, 0, 2, 16, M16);
    swap(&mut m, 1, 3, 16, M16);
    swap(&mut m, 4, 6, 16, M16);
    swap(&mut m, 5, 7, 16, M16);
    swap(&mut m, 0, 1, 8, M8);
    swap(&mut m, 2, 3, 8, M8);
    swap(&mut m, 4, 5, 8, M8);
    swap(&mut m, 6, 7, 8, M8);
    m
}

/// A block's steps as stored: evenly spaced (not materialized), or listed.
pub(super) enum Steps {
    Stride { first: u64, stride: u64, n: u64 },
    List(Vec<u64>),
}

impl Steps {
    pub fn into_vec(self) -> Vec<u64> {
        match self {
            Steps::Stride { first, stride, n } => (0..n).map(|i| first + i * stride).collect(),
            Steps::List(v) => v,
        }
    }

    /// The first step (a block has at least one row).
    pub fn first(&self) -> u64 {
        match self {
            Steps::Stride { first, .. } => *first,
            Steps::List(v) => v.first().copied().unwrap_or_default(),
        }
    }

    /// The last step.
    pub fn last(&self) -> u64 {
        self.at_most(u64::MAX).1.unwrap_or_default()
    }

    /// How many steps are at most `hi`, and the last of them (steps are non-decreasing).
    pub fn at_most(&self, hi: u64) -> (u64, Option<u64>) {
        match self {
            Steps::Stride { first, stride, n } => {
                if hi < *first {
                    return (0, None);
                }
                let k = if *stride == 0 {
                    *n
                } else {
                    ((hi - first) / stride).saturating_add(1).min(*n)
                };
                (k, Some(first + (k - 1) * stride))
            }
            Steps::List(v) => {
                let k = v.partition_point(|&s| s <= hi);
                (k as u64, k.checked_sub(1).map(|i| v[i]))
            }
        }
    }
}

/// Decodes the steps of a block whose frame header says it has `expect` rows.
pub(super) fn decode_steps(r: &mut Reader<'_>, expect: u32) -> DecodeResult<Vec<u64>> {
    read_steps(r, expect).map(Steps::into_vec)
}

/// Reads the steps of a block whose frame header says it has `expect` rows, evenly spaced
/// ones as their first step and stride.
pub(super) fn read_steps(r: &mut Reader<'_>, expect: u32) -> DecodeResult<Steps> {
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
            Ok(Steps::Stride {
                first,
                stride,
                n: nrows as u64,
            })
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
            Ok(Steps::List(steps))
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
            let bits = get_float_planes::<8>(r, n)?;
            Values::F64(bits.into_iter().map(f64::from_bits).collect())
        }
        KIND_F32 => {
            let bits = get_float_planes::<4>(r, n)?;
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

    #[test]
    fn gathered_planes_equal_the_values_put_in_them() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 1000, 8193] {
            let values: Vec<u64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                })
                .collect();
            for width in [4usize, 8] {
                let keep = if width == 8 {
                    u64::MAX
                } else {
                    u64::from(u32::MAX)
                };
                let vals: Vec<u64> = values.iter().map(|v| v & keep).collect();
                let mut planes = Vec::new();
                for p in 0..width {
                    planes.extend(vals.iter().map(|v| (v >> (8 * p)) as u8));
                }
                let got = if width == 8 {
                    gather_planes::<8>(&planes, n)
                } else {
                    gather_planes::<4>(&planes, n)
                };
                assert_eq!(got, vals, "n = {n}, width = {width}");
            }
        }
    }
}
