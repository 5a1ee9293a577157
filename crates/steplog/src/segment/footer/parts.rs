//! The footer of segment format 4 (magic `SLF2`): parts, each stored raw or zstd on its own,
//! behind a table that says where each is. A summary reads the segment's aggregate alone; a
//! summary cut inside the segment reads the index, the aggregates of the groups of blocks
//! before the cut and one group's blocks' aggregates; a chart reads the index and the
//! blocks' aggregates of the groups it draws (every group, for a key drawn block by block
//! over the whole segment, and `verify` checks them all). Nothing is decoded that the read
//! does not use.
//!
//! The bytes are docs/FORMAT.md's "Footer and trailer", the one place the grammar lives.

use std::borrow::Cow;

use crate::codec::{put_varint, DecodeError, DecodeResult, Reader};
use crate::segment::block::{put_section, stored_section};
use crate::segment::IndexEntry;
use crate::summary::Agg;

use super::agg::{get_agg, put_agg};
use super::{
    agrees, get_entries, index_stats, put_entries, Stats, FOOTER_HEADER_LEN, FOOTER_ZSTD_LEVEL,
    TRAILER_LEN, TRAILER_MAGIC,
};

pub(crate) const MAGIC: [u8; 4] = *b"SLF2";
/// Blocks per group: a cut summary of a segment of `n` blocks merges at most `n / 64` group
/// aggregates and 63 block aggregates, and decodes one block.
pub(crate) const GROUP_BLOCKS: usize = 64;
/// The most blocks per group a reader takes (a group's blocks' aggregates are one part).
const MAX_GROUP_BLOCKS: u64 = 1 << 16;

/// Which parts a footer of `nblocks` blocks in groups of `group_blocks` has, in table
/// order: the segment's aggregate (always); the index (unless one block or none: a lone
/// block's entry is the segment's rows and steps, from the header to the footer); the
/// groups' aggregates (when more than one group); and one part per group with its blocks'
/// aggregates (unless one block or none: a lone block's aggregate is the segment's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub nblocks: usize,
    pub group_blocks: usize,
}

impl Shape {
    /// The part of the segment's aggregate.
    pub const AGG: usize = 0;

    fn many(&self) -> bool {
        self.nblocks > 1
    }

    /// How many groups have an aggregate of their own.
    pub fn ngroups(&self) -> usize {
        if self.nblocks > self.group_blocks {
            self.nblocks.div_ceil(self.group_blocks)
        } else {
            0
        }
    }

    /// The index's part, if it has one.
    pub fn index_part(&self) -> Option<usize> {
        self.many().then_some(1)
    }

    /// The groups' aggregates' part, if it has one.
    pub fn groups_part(&self) -> Option<usize> {
        (self.ngroups() > 0).then_some(2)
    }

    /// The part of group `g`'s blocks' aggregates, if it has one.
    pub fn blocks_part(&self, g: usize) -> Option<usize> {
        let first = 1 + usize::from(self.many()) + usize::from(self.ngroups() > 0);
        (self.many() && g < self.nblocks.div_ceil(self.group_blocks)).then_some(first + g)
    }

    /// How many parts there are.
    pub fn nparts(&self) -> usize {
        let groups = self.nblocks.div_ceil(self.group_blocks);
        1 + usize::from(self.many()) * (1 + groups) + usize::from(self.ngroups() > 0)
    }

    /// The blocks of group `g`.
    pub fn group_range(&self, g: usize) -> std::ops::Range<usize> {
        let start = g * self.group_blocks;
        start..(start + self.group_blocks).min(self.nblocks)
    }
}

/// Where a part's stored bytes are in the footer's payload, and how they are stored.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    codec: u8,
    raw_len: u64,
    /// Byte range in the payload.
    start: usize,
    end: usize,
}

impl Part {
    /// Where the part starts in the payload.
    pub fn start(&self) -> usize {
        self.start
    }
}

/// A footer's table: what the segment holds and where each part is.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub shape: Shape,
    /// Rows, first and last step of the segment.
    pub stats: Stats,
    pub parts: Vec<Part>,
}

/// The crc stored in the footer's header: of the magic, the payload's length and the
/// payload.
pub(crate) fn crc(payload_len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&MAGIC);
    h.update(&payload_len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn too_large(what: &str, n: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("footer {what} of {n} raw bytes is too large"),
    )
}

/// Encodes footer and trailer for a footer starting at `footer_offset`; `blocks` holds the
/// aggregate of each block, in index order.
pub(crate) fn encode(
    index: &[IndexEntry],
    blocks: &[Agg],
    agg: &Agg,
    footer_offset: u64,
) -> std::io::Result<Vec<u8>> {
    encode_with(index, blocks, agg, None, footer_offset)
}

/// [`encode`] with the groups' aggregates given rather than merged from the blocks': a
/// footer whose checksums hold but whose groups lie, for `verify`'s test.
#[cfg(test)]
pub(crate) fn encode_lying_groups(
    index: &[IndexEntry],
    blocks: &[Agg],
    agg: &Agg,
    groups: &[Agg],
    footer_offset: u64,
) -> std::io::Result<Vec<u8>> {
    encode_with(index, blocks, agg, Some(groups), footer_offset)
}

fn encode_with(
    index: &[IndexEntry],
    blocks: &[Agg],
    agg: &Agg,
    given_groups: Option<&[Agg]>,
    footer_offset: u64,
) -> std::io::Result<Vec<u8>> {
    let g = GROUP_BLOCKS;
    let shape = Shape {
        nblocks: index.len(),
        group_blocks: g,
    };
    let mut raws: Vec<Vec<u8>> = Vec::with_capacity(shape.nparts());
    let mut raw = Vec::new();
    put_agg(&mut raw, agg);
    raws.push(raw);
    if shape.index_part().is_some() {
        let mut raw = Vec::with_capacity(index.len() * 12);
        put_entries(&mut raw, index);
        raws.push(raw);
    }
    if shape.groups_part().is_some() {
        let mut raw = Vec::new();
        for (i, chunk) in blocks.chunks(g).enumerate() {
            let mut group = Agg::default();
            for b in chunk {
                group.merge_later(b);
            }
            put_agg(
                &mut raw,
                given_groups.and_then(|gs| gs.get(i)).unwrap_or(&group),
            );
        }
        raws.push(raw);
    }
    if shape.blocks_part(0).is_some() {
        for chunk in blocks.chunks(g) {
            let mut raw = Vec::new();
            for b in chunk {
                put_agg(&mut raw, b);
            }
            raws.push(raw);
        }
    }
    let mut table = Vec::new();
    put_varint(&mut table, index.len() as u64);
    put_varint(&mut table, g as u64);
    put_varint(&mut table, agg.rows);
    match (agg.first_step, agg.last_step) {
        (Some(a), Some(b)) => {
            table.push(1);
            put_varint(&mut table, a);
            put_varint(&mut table, b);
        }
        _ => table.push(0),
    }
    let mut stored = Vec::with_capacity(raws.iter().map(|r| r.len()).sum());
    for raw in &raws {
        // Writers seal long before this (`FOOTER_TARGET`); never write what a reader refuses.
        if raw.len() > crate::limits::MAX_RAW_LEN as usize {
            return Err(too_large("part", raw.len()));
        }
        let start = stored.len();
        let codec = put_section(raw, FOOTER_ZSTD_LEVEL, &mut stored)?;
        table.push(codec);
        put_varint(&mut table, raw.len() as u64);
        put_varint(&mut table, (stored.len() - start) as u64);
    }
    // The footer: its header (filled in last), the payload (the table's length, the table,
    // the parts), the trailer.
    let mut out =
        Vec::with_capacity(FOOTER_HEADER_LEN + 10 + table.len() + stored.len() + TRAILER_LEN);
    out.resize(FOOTER_HEADER_LEN, 0);
    put_varint(&mut out, table.len() as u64);
    out.extend_from_slice(&table);
    out.extend_from_slice(&stored);
    let payload = &out[FOOTER_HEADER_LEN..];
    let payload_len =
        u32::try_from(payload.len()).map_err(|_| too_large("payload", payload.len()))?;
    let payload_crc = crc(payload_len, payload);
    out[..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&payload_len.to_le_bytes());
    out[8..12].copy_from_slice(&payload_crc.to_le_bytes());
    out.extend_from_slice(&footer_offset.to_le_bytes());
    out.extend_from_slice(&TRAILER_MAGIC);
    Ok(out)
}

/// Decodes the table of a footer payload (its crc already checked): every part must lie in
/// the payload, back to back after the table, the last ending the payload.
pub(crate) fn table(payload: &[u8]) -> DecodeResult<Table> {
    let mut r = Reader::new(payload);
    let table_len = r.count(1)?;
    r.take(table_len)?;
    let covered = r.position();
    let mut r = Reader::new(&payload[..covered]);
    r.varint()?;
    let nblocks = r.varint()?;
    let group_blocks = r.varint()?;
    if !(1..=MAX_GROUP_BLOCKS).contains(&group_blocks) {
        return r.err(format!("{group_blocks} blocks per group"));
    }
    let rows = r.varint()?;
    let steps = match r.u8()? {
        0 => None,
        1 => Some((r.varint()?, r.varint()?)),
        b => return r.err(format!("bad step-range flag {b}")),
    };
    // Every block takes at least a byte of the index (the caller bounds it by the file).
    let Ok(nblocks) = usize::try_from(nblocks) else {
        return r.err("block count too large");
    };
    if nblocks > payload.len() {
        return r.err(format!(
            "{nblocks} blocks in a footer of {} bytes",
            payload.len()
        ));
    }
    if (nblocks == 0) != (rows == 0) || (rows == 0) != steps.is_none() || rows < nblocks as u64 {
        return r.err(format!("{nblocks} blocks with {rows} rows"));
    }
    if steps.is_some_and(|(a, b)| a > b) {
        return r.err("first step after last step");
    }
    let shape = Shape {
        nblocks,
        group_blocks: group_blocks as usize,
    };
    let nparts = shape.nparts();
    // Each entry takes at least 3 bytes (codec, two one-byte varints).
    if nparts > r.remaining() / 3 {
        return r.err(format!("{nparts} parts in a table of {} bytes", covered));
    }
    let mut parts = Vec::with_capacity(nparts);
    let mut at = covered;
    for _ in 0..nparts {
        let codec = r.u8()?;
        let raw_len = r.varint()?;
        let stored_len = r.varint()?;
        if raw_len > u64::from(crate::limits::MAX_RAW_LEN) {
            return r.err(format!("part raw length {raw_len} too large"));
        }
        let end = match usize::try_from(stored_len)
            .ok()
            .and_then(|n| at.checked_add(n))
        {
            Some(end) if end <= payload.len() => end,
            _ => return r.err("a part extends past the footer"),
        };
        parts.push(Part {
            codec,
            raw_len,
            start: at,
            end,
        });
        at = end;
    }
    if !r.is_empty() {
        return r.err("trailing bytes after the table");
    }
    if at != payload.len() {
        return Err(DecodeError {
            offset: at,
            reason: "bytes after the last part".into(),
        });
    }
    Ok(Table {
        shape,
        stats: (rows, steps.map(|s| s.0), steps.map(|s| s.1)),
        parts,
    })
}

/// A part's raw bytes (the footer's crc already checked). Errors are at the part's start.
pub(crate) fn part_raw<'a>(payload: &'a [u8], part: &Part) -> DecodeResult<Cow<'a, [u8]>> {
    stored_section(&payload[part.start..part.end], part.codec, part.raw_len)
}

/// The segment's aggregate, from its part's raw bytes: it must say what the table says.
pub(crate) fn decode_agg(raw: &[u8], table: &Table) -> DecodeResult<Agg> {
    let mut r = Reader::new(raw);
    let agg = get_agg(&mut r, true)?;
    if !agrees(&agg, table.stats) {
        return r.err("the segment's aggregate does not match the footer's table");
    }
    if !r.is_empty() {
        return r.err("trailing bytes after the aggregate");
    }
    Ok(agg)
}

/// The index: `nblocks` entries covering the blocks exactly (from `blocks_start` to
/// `blocks_end`), with the table's rows and steps; decoded from its part's raw bytes, or,
/// for a segment of one block or none (`raw` is `None`), made from the table.
pub(crate) fn decode_index(
    raw: Option<&[u8]>,
    table: &Table,
    blocks_start: u64,
    blocks_end: u64,
) -> DecodeResult<Vec<IndexEntry>> {
    let nblocks = table.shape.nblocks;
    let Some(raw) = raw else {
        let r = Reader::new(&[]);
        let (rows, first, last) = table.stats;
        return match (nblocks, first.zip(last)) {
            (0, None) if blocks_start == blocks_end => Ok(Vec::new()),
            (1, Some((first_step, last_step))) if blocks_start < blocks_end => {
                let Ok(nrows) = u32::try_from(rows) else {
                    return r.err(format!("{rows} rows in one block"));
                };
                Ok(vec![IndexEntry {
                    offset: blocks_start,
                    len: blocks_end - blocks_start,
                    nrows,
                    first_step,
                    last_step,
                }])
            }
            _ => r.err(format!(
                "{nblocks} blocks in bytes {blocks_start} to {blocks_end}"
            )),
        };
    };
    let mut r = Reader::new(raw);
    if nblocks > raw.len() / 5 {
        return r.err(format!("{nblocks} index entries in {} bytes", raw.len()));
    }
    let index = get_entries(&mut r, nblocks, blocks_start, blocks_end)?;
    if index_stats(&index) != table.stats {
        return r.err("the index does not match the footer's table");
    }
    if !r.is_empty() {
        return r.err("trailing bytes after the index");
    }
    Ok(index)
}

/// The groups' aggregates, from their part's raw bytes: one per group, each agreeing with
/// its blocks' index entries.
pub(crate) fn decode_groups(
    raw: &[u8],
    table: &Table,
    index: &[IndexEntry],
) -> DecodeResult<Vec<Agg>> {
    let mut r = Reader::new(raw);
    let mut groups = Vec::with_capacity(table.shape.ngroups());
    for g in 0..table.shape.ngroups() {
        let agg = get_agg(&mut r, true)?;
        if !agrees(&agg, index_stats(&index[table.shape.group_range(g)])) {
            return r.err(format!(
                "the aggregate of group {g} does not match its blocks"
            ));
        }
        groups.push(agg);
    }
    if !r.is_empty() {
        return r.err("trailing bytes after the groups' aggregates");
    }
    Ok(groups)
}

/// The aggregates of group `g`'s blocks, from their part's raw bytes, each agreeing with
/// its block's index entry.
pub(crate) fn decode_blocks(
    raw: &[u8],
    table: &Table,
    index: &[IndexEntry],
    g: usize,
) -> DecodeResult<Vec<Agg>> {
    let mut r = Reader::new(raw);
    let range = table.shape.group_range(g);
    let mut aggs = Vec::with_capacity(range.len());
    for e in &index[range] {
        let agg = get_agg(&mut r, true)?;
        if !agrees(&agg, index_stats(std::slice::from_ref(e))) {
            return r.err("a block's aggregate does not match its index entry");
        }
        aggs.push(agg);
    }
    if !r.is_empty() {
        return r.err("trailing bytes after the blocks' aggregates");
    }
    Ok(aggs)
}

/// A whole decoded footer: the index, each block's aggregate, the segment's and the
/// groups'.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) type Decoded = (Vec<IndexEntry>, Vec<Agg>, Agg, Vec<Agg>);

/// Every part of a footer payload decoded (its crc bypassed): the fuzz target's way in, and
/// a test's.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_all(
    payload: &[u8],
    blocks_start: u64,
    blocks_end: u64,
) -> DecodeResult<Decoded> {
    let table = table(payload)?;
    let shape = table.shape;
    let raw = |i: usize| part_raw(payload, &table.parts[i]);
    let agg = decode_agg(&raw(Shape::AGG)?, &table)?;
    let index_raw = shape.index_part().map(raw).transpose()?;
    let index = decode_index(index_raw.as_deref(), &table, blocks_start, blocks_end)?;
    let groups = match shape.groups_part() {
        Some(p) => decode_groups(&raw(p)?, &table, &index)?,
        None => Vec::new(),
    };
    let mut blocks = Vec::with_capacity(index.len());
    if shape.nblocks == 1 {
        blocks.push(agg.clone());
    }
    let mut g = 0;
    while let Some(p) = shape.blocks_part(g) {
        blocks.extend(decode_blocks(&raw(p)?, &table, &index, g)?);
        g += 1;
    }
    Ok((index, blocks, agg, groups))
}
