//! The footer of a sealed segment: the sparse step index (one entry per block), the aggregate
//! of each block and of the whole segment, followed by a fixed trailer that locates it.
//!
//! The bytes are docs/FORMAT.md's "Footer and trailer", the one place the grammar lives.

use crate::codec::{put_bytes, put_varint, DecodeResult, Reader};
use crate::segment::block::{get_value, put_value};
use crate::segment::IndexEntry;
use crate::summary::{Agg, KeySummary, ELIDED_FIRST, ELIDED_LAST};
use crate::types::Value;

pub(crate) const FOOTER_MAGIC: [u8; 4] = *b"SLF1";
pub(crate) const FOOTER_HEADER_LEN: usize = 12;
pub(crate) const TRAILER_MAGIC: [u8; 8] = *b"STEPLEND";
pub(crate) const TRAILER_LEN: usize = 16;
const FOOTER_ZSTD_LEVEL: i32 = 3;

/// Encodes footer and trailer for a footer starting at `footer_offset`; `blocks` holds the
/// aggregate of each block, in index order.
pub(crate) fn encode(
    index: &[IndexEntry],
    blocks: &[Agg],
    agg: &Agg,
    footer_offset: u64,
) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    put_varint(&mut raw, index.len() as u64);
    for e in index {
        put_varint(&mut raw, e.offset);
        put_varint(&mut raw, e.len);
        put_varint(&mut raw, u64::from(e.nrows));
        put_varint(&mut raw, e.first_step);
        put_varint(&mut raw, e.last_step);
    }
    for b in blocks {
        put_agg(&mut raw, b);
    }
    put_agg(&mut raw, agg);
    // Writers seal long before this (`FOOTER_TARGET`); never write what a reader refuses.
    if raw.len() > crate::limits::MAX_RAW_LEN as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("footer of {} raw bytes is too large", raw.len()),
        ));
    }
    let mut payload = (raw.len() as u32).to_le_bytes().to_vec();
    // Written once per segment, read once (then cached); higher levels gained < 0.2% here.
    payload.extend(crate::codec::zstd_compress(&raw, FOOTER_ZSTD_LEVEL)?);
    let mut out = Vec::with_capacity(FOOTER_HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&FOOTER_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&footer_crc(payload.len() as u32, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&footer_offset.to_le_bytes());
    out.extend_from_slice(&TRAILER_MAGIC);
    Ok(out)
}

pub(crate) fn footer_crc(payload_len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&FOOTER_MAGIC);
    h.update(&payload_len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The raw bytes a block's index entry and aggregate add to a footer, at most: what a writer
/// counts to seal a segment before its footer grows too large.
pub(crate) fn block_footer_bytes(agg: &Agg) -> usize {
    let mut raw = Vec::new();
    put_agg(&mut raw, agg);
    raw.len() + 5 * 10
}

/// Flag of an `opt` holding a string too long to keep in an aggregate: its step only
/// (segment format 3).
const OPT_ELIDED: u8 = 2;

fn put_opt(out: &mut Vec<u8>, v: &Option<(u64, Value)>, elided: bool) {
    match v {
        None => out.push(0),
        Some((step, _)) if elided => {
            out.push(OPT_ELIDED);
            put_varint(out, *step);
        }
        Some((step, v)) => {
            out.push(1);
            put_varint(out, *step);
            put_value(out, v);
        }
    }
}

/// An `opt`, and whether it is an elided string.
fn get_opt(r: &mut Reader<'_>) -> DecodeResult<(Option<(u64, Value)>, bool)> {
    match r.u8()? {
        0 => Ok((None, false)),
        1 => Ok((Some((r.varint()?, get_value(r)?)), false)),
        OPT_ELIDED => Ok((Some((r.varint()?, Value::Str(String::new()))), true)),
        b => r.err(format!("bad option flag {b}")),
    }
}

fn put_agg(out: &mut Vec<u8>, agg: &Agg) {
    put_varint(out, agg.rows);
    match (agg.first_step, agg.last_step) {
        (Some(a), Some(b)) => {
            out.push(1);
            put_varint(out, a);
            put_varint(out, b);
        }
        _ => out.push(0),
    }
    put_varint(out, agg.keys.len() as u64);
    for (k, s) in &agg.keys {
        put_bytes(out, k.as_bytes());
        put_varint(out, s.count);
        put_varint(out, s.numeric_count);
        put_varint(out, s.nan_count);
        out.extend_from_slice(&s.sum.to_le_bytes());
        // Monotone series (counters, steps, timestamps) have min = first and max = last:
        // say so in a shape byte instead of storing them twice.
        let shape = u8::from(same(&s.min, &s.first)) | (u8::from(same(&s.max, &s.last)) << 1);
        out.push(shape);
        put_opt(out, &s.first, s.elided & ELIDED_FIRST != 0);
        put_opt(out, &s.last, s.elided & ELIDED_LAST != 0);
        if shape & 1 == 0 {
            put_opt(out, &s.min, false);
        }
        if shape & 2 == 0 {
            put_opt(out, &s.max, false);
        }
    }
}

/// Whether two (step, value) are the same to the bit.
fn same(a: &Option<(u64, Value)>, b: &Option<(u64, Value)>) -> bool {
    match (a, b) {
        (Some((s1, x)), Some((s2, y))) => s1 == s2 && x.same_bits(y),
        _ => false,
    }
}

/// Decodes an aggregate; with `keep` false its keys are checked but not kept (the result has
/// rows and steps only): how a reader passes over aggregates it does not need.
fn get_agg(r: &mut Reader<'_>, keep: bool) -> DecodeResult<Agg> {
    let mut agg = Agg {
        rows: r.varint()?,
        ..Agg::default()
    };
    match r.u8()? {
        0 => {}
        1 => {
            agg.first_step = Some(r.varint()?);
            agg.last_step = Some(r.varint()?);
        }
        b => return r.err(format!("bad step-range flag {b}")),
    }
    let nkeys = r.count(8)?;
    for _ in 0..nkeys {
        let key = r.str()?;
        let (count, numeric_count, nan_count, sum) =
            (r.varint()?, r.varint()?, r.varint()?, r.f64()?);
        let shape = r.u8()?;
        if shape > 3 {
            return r.err(format!("bad summary shape {shape}"));
        }
        let ((first, first_elided), (last, last_elided)) = (get_opt(r)?, get_opt(r)?);
        // min and max are numbers, never elided strings.
        let numeric = |(v, elided): (Option<(u64, Value)>, bool)| match (v, elided) {
            (Some(_), true) => Err(()),
            (v, _) => Ok(v),
        };
        let min = if shape & 1 == 1 {
            first.clone()
        } else {
            match numeric(get_opt(r)?) {
                Ok(v) => v,
                Err(()) => return r.err("an elided string as a minimum"),
            }
        };
        let max = if shape & 2 == 2 {
            last.clone()
        } else {
            match numeric(get_opt(r)?) {
                Ok(v) => v,
                Err(()) => return r.err("an elided string as a maximum"),
            }
        };
        let elided = u8::from(first_elided) * ELIDED_FIRST + u8::from(last_elided) * ELIDED_LAST;
        let s = KeySummary {
            count,
            numeric_count,
            nan_count,
            sum,
            min,
            max,
            first,
            last,
            elided,
        };
        if s.nan_count > s.numeric_count || s.numeric_count > s.count || s.count > agg.rows {
            return r.err(format!("inconsistent counts for key '{key}'"));
        }
        // What every aggregate of real rows satisfies: steps inside its range, numeric
        // extremes in order, values wherever there are counts.
        let range = agg.first_step.zip(agg.last_step);
        let inside = |v: &Option<(u64, Value)>| match (v, range) {
            (None, _) => true,
            (Some((st, _)), Some((a, b))) => (a..=b).contains(st),
            (Some(_), None) => false,
        };
        let num = |v: &Option<(u64, Value)>| v.as_ref().and_then(|(_, v)| v.as_f64());
        let extremes = match (num(&s.min), num(&s.max)) {
            (Some(lo), Some(hi)) => lo <= hi,
            (None, None) => s.min.is_none() && s.max.is_none(),
            _ => false,
        };
        let present = (s.count > 0) == (s.first.is_some() && s.last.is_some())
            && (s.numeric_count > s.nan_count) == s.min.is_some();
        if ![&s.first, &s.last, &s.min, &s.max].into_iter().all(inside) || !extremes || !present {
            return r.err(format!("an impossible summary for key '{key}'"));
        }
        if keep && agg.keys.insert(key.to_owned(), s).is_some() {
            return r.err(format!("key '{key}' repeated in the aggregate"));
        }
    }
    Ok(agg)
}

/// A decoded footer: the sparse index, each block's aggregate, the segment's aggregate.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) type Footer = (Vec<IndexEntry>, Vec<Agg>, Agg);

/// Decompresses a footer payload (its crc already checked). Errors are reported at the
/// payload's start.
pub(crate) fn decompress(payload: &[u8]) -> DecodeResult<Vec<u8>> {
    let mut r = Reader::new(payload);
    let raw_len = r.u32()?;
    if raw_len > crate::limits::MAX_RAW_LEN {
        return r.err(format!("footer raw length {raw_len} too large"));
    }
    let raw = crate::codec::zstd_decompress(&payload[4..], raw_len as usize)
        .map_err(|e| bad_raw(format!("zstd: {e}")))?;
    if raw.len() != raw_len as usize {
        return Err(bad_raw("decompressed footer length does not match".into()));
    }
    Ok(raw)
}

fn bad_raw(reason: String) -> crate::codec::DecodeError {
    crate::codec::DecodeError { offset: 0, reason }
}

/// An error inside the decompressed bytes, reported at the payload's start.
pub(crate) fn in_raw(e: crate::codec::DecodeError) -> crate::codec::DecodeError {
    bad_raw(format!(
        "in the decompressed footer at byte {}: {}",
        e.offset, e.reason
    ))
}

/// Decodes a footer payload (its crc already checked): [`decompress`], then [`decode_raw`].
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_payload(
    payload: &[u8],
    blocks_start: u64,
    blocks_end: u64,
) -> DecodeResult<Footer> {
    let raw = decompress(payload)?;
    decode_raw(&raw, blocks_start, blocks_end).map_err(in_raw)
}

/// Decodes an uncompressed footer: [`decode_index`], then [`decode_aggs`].
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_raw(
    payload: &[u8],
    blocks_start: u64,
    blocks_end: u64,
) -> DecodeResult<Footer> {
    let (index, at) = decode_index(payload, blocks_start, blocks_end)?;
    let (blocks, agg) = decode_aggs(payload, at, &index)?;
    Ok((index, blocks, agg))
}

/// Decodes the index of an uncompressed footer, and returns it with the offset where the
/// aggregates start. `blocks_end` is where the blocks stop (the footer's offset): every
/// entry must lie before it, and together they must cover the blocks.
pub(crate) fn decode_index(
    payload: &[u8],
    blocks_start: u64,
    blocks_end: u64,
) -> DecodeResult<(Vec<IndexEntry>, usize)> {
    let mut r = Reader::new(payload);
    let n = r.count(5)?;
    let mut index: Vec<IndexEntry> = Vec::with_capacity(n);
    let mut expect_offset = blocks_start;
    for _ in 0..n {
        let e = IndexEntry {
            offset: r.varint()?,
            len: r.varint()?,
            nrows: u32::try_from(r.varint()?).or_else(|_| r.err("row count too large"))?,
            first_step: r.varint()?,
            last_step: r.varint()?,
        };
        let prev_last = index.last().map(|p| p.last_step);
        if e.offset != expect_offset
            || e.first_step > e.last_step
            || prev_last.is_some_and(|p| p > e.first_step)
        {
            return r.err("index entry out of order or not contiguous");
        }
        expect_offset = match e.offset.checked_add(e.len) {
            Some(end) if end <= blocks_end => end,
            _ => return r.err("index entry points past the blocks"),
        };
        index.push(e);
    }
    if expect_offset != blocks_end {
        return r.err("index does not cover the blocks");
    }
    Ok((index, payload.len() - r.remaining()))
}

/// Decodes the aggregates of an uncompressed footer, from offset `at` (see
/// [`decode_index`]). Each block's aggregate, and the segment's, must agree with the index
/// (rows, first and last step). Error offsets are from the footer's start.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_aggs(
    payload: &[u8],
    at: usize,
    index: &[IndexEntry],
) -> DecodeResult<(Vec<Agg>, Agg)> {
    decode_aggs_keeping(payload, at, index, true)
}

/// [`decode_aggs`], with the blocks' aggregates passed over (checked, not kept) unless
/// `keep_blocks`: the segment's aggregate alone, for a summary.
pub(crate) fn decode_aggs_keeping(
    payload: &[u8],
    at: usize,
    index: &[IndexEntry],
    keep_blocks: bool,
) -> DecodeResult<(Vec<Agg>, Agg)> {
    let shift = |mut e: crate::codec::DecodeError| {
        e.offset += at;
        e
    };
    let mut r = Reader::new(payload.get(at..).unwrap_or_default());
    let mut blocks = Vec::with_capacity(if keep_blocks { index.len() } else { 0 });
    for e in index {
        let b = get_agg(&mut r, keep_blocks).map_err(shift)?;
        if b.rows != u64::from(e.nrows)
            || b.first_step != Some(e.first_step)
            || b.last_step != Some(e.last_step)
        {
            return r
                .err("a block's aggregate does not match its index entry")
                .map_err(shift);
        }
        if keep_blocks {
            blocks.push(b);
        }
    }
    let agg = get_agg(&mut r, true).map_err(shift)?;
    let (rows, first, last) = index_stats(index);
    if (agg.rows, agg.first_step, agg.last_step) != (rows, first, last) {
        return r
            .err("the segment's aggregate does not match its index")
            .map_err(shift);
    }
    if !r.is_empty() {
        return r.err("trailing bytes after the aggregate").map_err(shift);
    }
    Ok((blocks, agg))
}

/// Rows, first and last step of the blocks an index lists.
pub(crate) fn index_stats(index: &[IndexEntry]) -> (u64, Option<u64>, Option<u64>) {
    let rows = index.iter().map(|e| u64::from(e.nrows)).sum();
    (
        rows,
        index.first().map(|e| e.first_step),
        index.last().map(|e| e.last_step),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Row;

    /// The index of one block of 4 rows, steps 0..=3, between bytes 32 and 42.
    fn four_rows_index() -> [IndexEntry; 1] {
        [IndexEntry {
            offset: 32,
            len: 10,
            nrows: 4,
            first_step: 0,
            last_step: 3,
        }]
    }

    /// Found by attacking issue #12: aggregates no rows could have (a count past the rows, a
    /// minimum above the maximum, a string as a maximum, a step outside the segment) were
    /// read as they were. A reader now refuses them (`verify` also recomputes the rest).
    #[test]
    fn impossible_aggregates_are_refused_when_read() {
        let rows: Vec<Row> = (0..4u64)
            .map(|step| Row {
                step,
                fields: [("n".to_string(), Value::F64(step as f64))]
                    .into_iter()
                    .collect(),
            })
            .collect();
        let mut agg = Agg::default();
        agg.add_block(&crate::segment::block::Block::from_rows(&rows), u64::MAX);
        let index = four_rows_index();
        let decodes = |a: &Agg| {
            let bytes = encode(&index, std::slice::from_ref(a), a, 42).unwrap();
            decode_payload(&bytes[FOOTER_HEADER_LEN..bytes.len() - TRAILER_LEN], 32, 42).is_ok()
        };
        assert!(decodes(&agg), "the real one reads");
        let changes: [&dyn Fn(&mut KeySummary); 4] = [
            &|k| k.count = 5,
            &|k| k.min = Some((0, Value::F64(9.0))),
            &|k| k.max = Some((3, Value::Str("huge".into()))),
            &|k| k.first = Some((7, Value::F64(0.0))),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut bad = agg.clone();
            change(bad.keys.get_mut("n").unwrap());
            assert!(!decodes(&bad), "change {i} is refused");
        }
    }

    /// Segment format 3: a long first or last string is written by step only, and decodes
    /// with its elided flag, while short strings and numbers keep their values.
    #[test]
    fn long_strings_are_kept_by_step_only_and_round_trip() {
        let long = "x".repeat(crate::limits::AGG_STRING_BYTES + 1);
        let rows: Vec<Row> = (0..4u64)
            .map(|step| Row {
                step,
                fields: [
                    (
                        "s".to_string(),
                        Value::Str(if step == 1 {
                            "short".into()
                        } else {
                            long.clone()
                        }),
                    ),
                    ("n".to_string(), Value::F64(step as f64)),
                ]
                .into_iter()
                .collect(),
            })
            .collect();
        let block = crate::segment::block::Block::from_rows(&rows);
        let mut agg = Agg::default();
        agg.add_block(&block, u64::MAX);
        let s = &agg.keys["s"];
        assert_eq!(s.elided, ELIDED_FIRST | ELIDED_LAST);
        assert_eq!(
            (s.first.as_ref().unwrap().0, s.last.as_ref().unwrap().0),
            (0, 3)
        );
        let index = four_rows_index();
        let bytes = encode(&index, std::slice::from_ref(&agg), &agg, 42).unwrap();
        assert!(bytes.len() < 300, "the long strings are not in the footer");
        let payload = &bytes[FOOTER_HEADER_LEN..bytes.len() - TRAILER_LEN];
        let (_, blocks, seg) = decode_payload(payload, 32, 42).unwrap();
        assert_eq!(blocks[0], agg);
        assert_eq!(seg, agg);
        // A short last value replaces an elided one when merged.
        let mut later = Agg::default();
        later.add_block(
            &crate::segment::block::Block::from_rows(&rows[1..2]),
            u64::MAX,
        );
        let mut merged = agg.clone();
        merged.merge_later(&later);
        assert_eq!(merged.keys["s"].elided, ELIDED_FIRST);
        assert_eq!(merged.keys["s"].last, Some((1, Value::Str("short".into()))));
    }
}
