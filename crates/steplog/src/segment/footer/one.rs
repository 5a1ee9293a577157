//! The footer of segment formats 2 and 3 (magic `SLF1`): the sparse step index, the aggregate
//! of each block and that of the segment, in one zstd frame under one crc. Read as it is;
//! written only to seal a head segment of those formats (a recovered one keeps its format).

use crate::codec::{put_varint, DecodeResult, Reader};
use crate::segment::IndexEntry;
use crate::summary::Agg;

use super::agg::{get_agg, put_agg};
use super::{
    get_entries, index_stats, put_entries, FOOTER_HEADER_LEN, FOOTER_ZSTD_LEVEL, TRAILER_LEN,
    TRAILER_MAGIC,
};

pub(crate) const MAGIC: [u8; 4] = *b"SLF1";

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
    put_entries(&mut raw, index);
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
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&footer_crc(payload.len() as u32, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&footer_offset.to_le_bytes());
    out.extend_from_slice(&TRAILER_MAGIC);
    Ok(out)
}

pub(crate) fn footer_crc(payload_len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&MAGIC);
    h.update(&payload_len.to_le_bytes());
    h.update(payload);
    h.finalize()
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
    let index = get_entries(&mut r, n, blocks_start, blocks_end)?;
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
