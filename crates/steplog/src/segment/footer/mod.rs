//! The footer of a sealed segment: the sparse step index (one entry per block), the aggregate
//! of each block and of the whole segment, followed by a fixed trailer that locates it.
//!
//! Two layouts, chosen by the segment header's format:
//! - `parts.rs`, format 4 (`SLF2`): parts stored and decoded on their own, with the
//!   aggregates of groups of blocks, so that a read decodes only the parts it uses;
//! - `one.rs`, formats 2 and 3 (`SLF1`): one zstd frame, read whole;
//! - `agg.rs`: an aggregate's bytes, the same in both.
//!
//! [`Footer`] is a sealed segment's footer as readers see it, whatever its layout: each
//! part is decoded when first asked for, then kept (the footer's crc is checked once, when
//! it is read).
//!
//! The bytes are docs/FORMAT.md's "Footer and trailer", the one place the grammar lives.

mod agg;
mod one;
mod parts;

use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

pub(crate) use agg::block_footer_bytes;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use one::decode_payload as decode_one;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use parts::decode_all as decode_parts;
#[cfg(test)]
pub(crate) use parts::{encode_lying_groups, Decoded, GROUP_BLOCKS};

use crate::codec::{put_varint, DecodeError, DecodeResult, Reader};
use crate::error::{Error, Result};
use crate::segment::block::FRAME_HEADER_LEN;
use crate::segment::{IndexEntry, HEADER_LEN};
use crate::summary::Agg;

pub(crate) const FOOTER_HEADER_LEN: usize = 12;
pub(crate) const TRAILER_MAGIC: [u8; 8] = *b"STEPLEND";
pub(crate) const TRAILER_LEN: usize = 16;
/// Written once per segment, read once (then kept); higher levels gained < 0.2% here.
const FOOTER_ZSTD_LEVEL: i32 = 3;
/// The first segment format whose footer is made of parts (`parts.rs`).
pub(crate) const PARTS_FORMAT: u16 = 4;

/// Rows, first step and last step.
pub(crate) type Stats = (u64, Option<u64>, Option<u64>);

/// Whether 4 bytes are the magic of a footer, of either layout.
pub(crate) fn is_magic(bytes: &[u8]) -> bool {
    bytes == one::MAGIC || bytes == parts::MAGIC
}

/// Encodes the footer and trailer of a segment whose header says `format`, for a footer
/// starting at `footer_offset`; `blocks` holds the aggregate of each block, in index order.
pub(crate) fn encode(
    format: u16,
    index: &[IndexEntry],
    blocks: &[Agg],
    agg: &Agg,
    footer_offset: u64,
) -> std::io::Result<Vec<u8>> {
    if format >= PARTS_FORMAT {
        parts::encode(index, blocks, agg, footer_offset)
    } else {
        one::encode(index, blocks, agg, footer_offset)
    }
}

/// Whether `rest`, starting at file offset `at` and running to the end of the file, is a
/// whole footer with a valid checksum and its trailer:
/// how a scan of a head segment tells a completed seal from an interrupted one.
pub(crate) fn is_whole(rest: &[u8], at: u64) -> bool {
    if rest.len() < FOOTER_HEADER_LEN + TRAILER_LEN || !is_magic(&rest[..4]) {
        return false;
    }
    let plen = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let stored = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
    let end = FOOTER_HEADER_LEN + plen as usize;
    if end + TRAILER_LEN != rest.len() {
        return false;
    }
    let trailer = &rest[end..];
    if trailer[8..] != TRAILER_MAGIC || trailer[..8] != at.to_le_bytes() {
        return false;
    }
    let payload = &rest[FOOTER_HEADER_LEN..end];
    let got = if rest[..4] == one::MAGIC {
        one::footer_crc(plen, payload)
    } else {
        parts::crc(plen, payload)
    };
    got == stored
}

/// Encodes index entries (what [`get_entries`] decodes).
pub(super) fn put_entries(out: &mut Vec<u8>, index: &[IndexEntry]) {
    for e in index {
        put_varint(out, e.offset);
        put_varint(out, e.len);
        put_varint(out, u64::from(e.nrows));
        put_varint(out, e.first_step);
        put_varint(out, e.last_step);
    }
}

/// Decodes `n` index entries, which must cover the blocks exactly: the first at
/// `blocks_start`, each where the previous ended, the last ending at `blocks_end`.
pub(super) fn get_entries(
    r: &mut Reader<'_>,
    n: usize,
    blocks_start: u64,
    blocks_end: u64,
) -> DecodeResult<Vec<IndexEntry>> {
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
    Ok(index)
}

/// Rows, first and last step of the blocks an index lists.
pub(crate) fn index_stats(index: &[IndexEntry]) -> Stats {
    let rows = index.iter().map(|e| u64::from(e.nrows)).sum();
    (
        rows,
        index.first().map(|e| e.first_step),
        index.last().map(|e| e.last_step),
    )
}

/// Whether an aggregate has the rows and steps `stats` says.
pub(super) fn agrees(agg: &Agg, stats: Stats) -> bool {
    (agg.rows, agg.first_step, agg.last_step) == stats
}

/// How a footer is laid out.
#[derive(Debug)]
enum Layout {
    /// Formats 2 and 3: the index was decoded when the footer was read; the aggregates
    /// start at `aggs_at` in the decompressed payload.
    One { aggs_at: usize },
    /// Format 4.
    Parts(parts::Table),
}

/// The footer of a sealed segment, each part decoded when a read first needs it and kept:
/// a summary decodes the segment's aggregate alone, a range read the index, a cut summary
/// the groups' aggregates and one group's blocks', a chart the blocks' aggregates it draws.
/// Methods take the segment's bytes and path (for errors), which [`Sealed`] owns.
///
/// [`Sealed`]: crate::segment::reader::Sealed
#[derive(Debug)]
pub(crate) struct Footer {
    /// Where the footer starts in the file.
    at: u64,
    layout: Layout,
    index: OnceLock<Vec<IndexEntry>>,
    agg: OnceLock<Agg>,
    groups: OnceLock<Vec<Agg>>,
    /// The blocks' aggregates, per group (formats 2 and 3: one group of every block).
    blocks: Box<[OnceLock<Vec<Agg>>]>,
}

impl Footer {
    /// Reads the footer of a sealed segment's `bytes` (at least a header, an empty footer and
    /// a trailer long) whose header says `format`: the trailer, the footer's header and crc,
    /// and the table (format 4) or the index (formats 2 and 3).
    pub fn read(path: &Path, bytes: &[u8], format: u16) -> Result<Footer> {
        let len = bytes.len();
        let trailer = &bytes[len - TRAILER_LEN..];
        let trailer_at = (len - TRAILER_LEN) as u64;
        if trailer[8..] != TRAILER_MAGIC {
            return Err(Error::corrupt(
                path,
                trailer_at,
                "no trailer magic: the segment is not sealed",
            ));
        }
        let mut off = [0u8; 8];
        off.copy_from_slice(&trailer[..8]);
        let at = u64::from_le_bytes(off);
        if at < HEADER_LEN as u64 || at.saturating_add(FOOTER_HEADER_LEN as u64) > trailer_at {
            return Err(Error::corrupt(
                path,
                trailer_at,
                format!("trailer points at footer offset {at}, outside the file"),
            ));
        }
        let f = &bytes[at as usize..len - TRAILER_LEN];
        let want = if format >= PARTS_FORMAT {
            parts::MAGIC
        } else {
            one::MAGIC
        };
        if f[..4] != want {
            return Err(Error::corrupt(
                path,
                at,
                format!(
                    "bad footer magic {:?} (segment format {format} ends with {:?})",
                    String::from_utf8_lossy(&f[..4]),
                    String::from_utf8_lossy(&want)
                ),
            ));
        }
        let plen = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
        if FOOTER_HEADER_LEN as u64 + u64::from(plen) != trailer_at - at {
            return Err(Error::corrupt(
                path,
                at,
                "footer length does not match the trailer",
            ));
        }
        let stored = u32::from_le_bytes([f[8], f[9], f[10], f[11]]);
        let payload = &f[FOOTER_HEADER_LEN..];
        let mismatch = |offset: u64, expected: u32, got: u32| Error::ChecksumMismatch {
            file: path.to_owned(),
            offset,
            expected,
            got,
        };
        let footer = |layout, nblocks: usize| Footer {
            at,
            layout,
            index: OnceLock::new(),
            agg: OnceLock::new(),
            groups: OnceLock::new(),
            blocks: (0..nblocks).map(|_| OnceLock::new()).collect(),
        };
        if format < PARTS_FORMAT {
            let got = one::footer_crc(plen, payload);
            if got != stored {
                return Err(mismatch(at, stored, got));
            }
            let raw = one::decompress(payload).map_err(|e| error_at(path, at, 0, e))?;
            let (index, aggs_at) = one::decode_index(&raw, HEADER_LEN as u64, at)
                .map_err(|e| error_at(path, at, 0, one::in_raw(e)))?;
            let f = footer(Layout::One { aggs_at }, 1);
            let _ = f.index.set(index);
            return Ok(f);
        }
        // The whole payload is hashed once, here: a footer of 10,000 blocks is a few hundred
        // KiB, hashed in tens of microseconds, and no part is read unchecked.
        let got = parts::crc(plen, payload);
        if got != stored {
            return Err(mismatch(at, stored, got));
        }
        let table = parts::table(payload).map_err(|e| error_at(path, at, 0, e))?;
        // Every block takes at least a frame header of the bytes before the footer.
        let nblocks = table.shape.nblocks;
        if nblocks as u64 > (at - HEADER_LEN as u64) / FRAME_HEADER_LEN as u64 {
            return Err(Error::corrupt(
                path,
                at,
                format!(
                    "the footer lists {nblocks} blocks in {} bytes of blocks",
                    at - HEADER_LEN as u64
                ),
            ));
        }
        let groups = nblocks.div_ceil(table.shape.group_blocks);
        Ok(footer(Layout::Parts(table), groups))
    }

    /// Where the footer starts in the file.
    pub fn offset(&self) -> u64 {
        self.at
    }

    /// How many blocks the segment has.
    pub fn nblocks(&self) -> usize {
        match &self.layout {
            Layout::One { .. } => self.index.get().map_or(0, Vec::len),
            Layout::Parts(t) => t.shape.nblocks,
        }
    }

    /// Rows, first and last step of the segment.
    pub fn stats(&self) -> Stats {
        match &self.layout {
            Layout::One { .. } => index_stats(self.index.get().map_or(&[], Vec::as_slice)),
            Layout::Parts(t) => t.stats,
        }
    }

    /// The index, if a read has decoded it already.
    pub fn decoded_index(&self) -> Option<&[IndexEntry]> {
        self.index.get().map(Vec::as_slice)
    }

    /// The sparse step index.
    pub fn index(&self, path: &Path, bytes: &[u8]) -> Result<&[IndexEntry]> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let Layout::Parts(table) = &self.layout else {
            // A format 2 or 3 footer's index is decoded when the footer is read.
            return Ok(&[]);
        };
        let (start, end) = (HEADER_LEN as u64, self.at);
        let index = match table.shape.index_part() {
            Some(p) => self.part(path, bytes, table, p, "index", |raw| {
                parts::decode_index(Some(raw), table, start, end)
            })?,
            None => parts::decode_index(None, table, start, end)
                .map_err(|e| error_at(path, self.at, 0, e))?,
        };
        Ok(self.index.get_or_init(|| index))
    }

    /// The aggregate of the whole segment.
    pub fn agg(&self, path: &Path, bytes: &[u8]) -> Result<&Agg> {
        if let Some(a) = self.agg.get() {
            return Ok(a);
        }
        let agg = match &self.layout {
            Layout::One { aggs_at } => self.one_aggs(path, bytes, *aggs_at, false)?.1,
            Layout::Parts(table) => {
                self.part(path, bytes, table, parts::Shape::AGG, "aggregate", |raw| {
                    parts::decode_agg(raw, table)
                })?
            }
        };
        Ok(self.agg.get_or_init(|| agg))
    }

    /// The aggregate of the `i`-th block (`None` past the last).
    pub fn block_agg(&self, path: &Path, bytes: &[u8], i: usize) -> Result<Option<&Agg>> {
        if i >= self.nblocks() {
            return Ok(None);
        }
        let (g, table) = match &self.layout {
            Layout::One { aggs_at } => {
                if self.blocks[0].get().is_none() {
                    let (blocks, agg) = self.one_aggs(path, bytes, *aggs_at, true)?;
                    let _ = self.agg.set(agg);
                    let _ = self.blocks[0].set(blocks);
                }
                return Ok(self.blocks[0].get().and_then(|b| b.get(i)));
            }
            Layout::Parts(t) => (i / t.shape.group_blocks, t),
        };
        let at = i - g * table.shape.group_blocks;
        if let Some(b) = self.blocks[g].get() {
            return Ok(b.get(at));
        }
        let Some(part) = table.shape.blocks_part(g) else {
            // A lone block's aggregate is the segment's.
            return self.agg(path, bytes).map(Some);
        };
        let index = self.index(path, bytes)?;
        let blocks = self.part(path, bytes, table, part, "blocks' aggregates", |raw| {
            parts::decode_blocks(raw, table, index, g)
        })?;
        Ok(self.blocks[g].get_or_init(|| blocks).get(at))
    }

    /// When block `i` starts a group of blocks that has an aggregate of its own (format 4,
    /// a segment of more than one group): the end of the group's blocks and its aggregate.
    pub fn group_at(&self, path: &Path, bytes: &[u8], i: usize) -> Result<Option<(usize, &Agg)>> {
        let Layout::Parts(table) = &self.layout else {
            return Ok(None);
        };
        let shape = table.shape;
        let Some(part) = shape.groups_part() else {
            return Ok(None);
        };
        if !i.is_multiple_of(shape.group_blocks) || i >= shape.nblocks {
            return Ok(None);
        }
        let groups = match self.groups.get() {
            Some(groups) => groups,
            None => {
                let index = self.index(path, bytes)?;
                let groups = self.part(path, bytes, table, part, "groups' aggregates", |raw| {
                    parts::decode_groups(raw, table, index)
                })?;
                self.groups.get_or_init(|| groups)
            }
        };
        let g = i / shape.group_blocks;
        Ok(groups.get(g).map(|agg| (shape.group_range(g).end, agg)))
    }

    /// The footer's payload in the segment's bytes.
    fn payload<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.at as usize + FOOTER_HEADER_LEN..bytes.len() - TRAILER_LEN]
    }

    /// Part `i` of a format 4 footer (the footer's crc checked when it was read),
    /// decompressed and decoded by `decode`. Errors name the file and the part's offset.
    fn part<T>(
        &self,
        path: &Path,
        bytes: &[u8],
        table: &parts::Table,
        i: usize,
        what: &str,
        decode: impl FnOnce(&[u8]) -> DecodeResult<T>,
    ) -> Result<T> {
        let payload = self.payload(bytes);
        let part = &table.parts[i];
        let offset = self.at + (FOOTER_HEADER_LEN + part.start()) as u64;
        let raw: Cow<'_, [u8]> = parts::part_raw(payload, part)
            .map_err(|e| Error::corrupt(path, offset + e.offset as u64, e.reason))?;
        decode(&raw).map_err(|e| {
            let reason = format!(
                "in the footer's {what}, decompressed, at byte {}: {}",
                e.offset, e.reason
            );
            Error::corrupt(path, offset, reason)
        })
    }

    /// A format 2 or 3 footer's aggregates, decoded from its one frame again (its crc
    /// checked again: the bytes are those the index came from); the blocks' only if
    /// `blocks` (else they are checked and passed over).
    fn one_aggs(
        &self,
        path: &Path,
        bytes: &[u8],
        aggs_at: usize,
        blocks: bool,
    ) -> Result<(Vec<Agg>, Agg)> {
        let payload = self.payload(bytes);
        let stored = u32::from_le_bytes(
            bytes[self.at as usize + 8..][..4]
                .try_into()
                .unwrap_or_default(),
        );
        let got = one::footer_crc(payload.len() as u32, payload);
        if got != stored {
            return Err(Error::ChecksumMismatch {
                file: path.to_owned(),
                offset: self.at,
                expected: stored,
                got,
            });
        }
        let raw = one::decompress(payload).map_err(|e| error_at(path, self.at, 0, e))?;
        let index = self.index.get().map_or(&[][..], Vec::as_slice);
        one::decode_aggs_keeping(&raw, aggs_at, index, blocks)
            .map_err(|e| error_at(path, self.at, 0, one::in_raw(e)))
    }
}

/// A decoding error inside the footer starting at `footer_at`, at `e.offset` past
/// `FOOTER_HEADER_LEN + base` bytes of it, with its file offset.
fn error_at(path: &Path, footer_at: u64, base: usize, e: DecodeError) -> Error {
    Error::corrupt(
        path,
        footer_at + (FOOTER_HEADER_LEN + base + e.offset) as u64,
        e.reason,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{KeySummary, ELIDED_FIRST, ELIDED_LAST};
    use crate::types::{Row, Value};

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

    /// The footer of `index` (blocks from 32 to `end`), encoded in format `format` and
    /// decoded again: the index, the blocks' aggregates and the segment's.
    fn round_trip(
        format: u16,
        index: &[IndexEntry],
        blocks: &[Agg],
        agg: &Agg,
        end: u64,
    ) -> DecodeResult<(Vec<IndexEntry>, Vec<Agg>, Agg)> {
        let bytes = encode(format, index, blocks, agg, end).unwrap();
        let payload = &bytes[FOOTER_HEADER_LEN..bytes.len() - TRAILER_LEN];
        if format >= PARTS_FORMAT {
            decode_parts(payload, 32, end).map(|(i, b, a, _)| (i, b, a))
        } else {
            decode_one(payload, 32, end)
        }
    }

    fn agg_of(rows: &[Row]) -> Agg {
        let mut agg = Agg::default();
        agg.add_block(&crate::segment::block::Block::from_rows(rows), u64::MAX);
        agg
    }

    fn float_rows(steps: std::ops::Range<u64>, f: impl Fn(u64) -> f64) -> Vec<Row> {
        steps
            .map(|step| Row {
                step,
                fields: [("n".to_string(), Value::F64(f(step)))]
                    .into_iter()
                    .collect(),
            })
            .collect()
    }

    /// Found by attacking issue #12: aggregates no rows could have (a count past the rows, a
    /// minimum above the maximum, a string as a maximum, a step outside the segment) were
    /// read as they were. A reader now refuses them (`verify` also recomputes the rest), in
    /// either layout.
    #[test]
    fn impossible_aggregates_are_refused_when_read() {
        let agg = agg_of(&float_rows(0..4, |s| s as f64));
        let index = four_rows_index();
        for format in [3, PARTS_FORMAT] {
            let decodes =
                |a: &Agg| round_trip(format, &index, std::slice::from_ref(a), a, 42).is_ok();
            assert!(decodes(&agg), "the real one reads (format {format})");
            let changes: [&dyn Fn(&mut KeySummary); 4] = [
                &|k| k.count = 5,
                &|k| k.min = Some((0, Value::F64(9.0))),
                &|k| k.max = Some((3, Value::Str("huge".into()))),
                &|k| k.first = Some((7, Value::F64(0.0))),
            ];
            for (i, change) in changes.iter().enumerate() {
                let mut bad = agg.clone();
                change(bad.keys.get_mut("n").unwrap());
                assert!(!decodes(&bad), "change {i} is refused (format {format})");
            }
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
        let agg = agg_of(&rows);
        let s = &agg.keys["s"];
        assert_eq!(s.elided, ELIDED_FIRST | ELIDED_LAST);
        assert_eq!(
            (s.first.as_ref().unwrap().0, s.last.as_ref().unwrap().0),
            (0, 3)
        );
        let index = four_rows_index();
        for format in [3, PARTS_FORMAT] {
            let bytes = encode(format, &index, std::slice::from_ref(&agg), &agg, 42).unwrap();
            assert!(bytes.len() < 300, "the long strings are not in the footer");
            let (_, blocks, seg) =
                round_trip(format, &index, std::slice::from_ref(&agg), &agg, 42).unwrap();
            assert_eq!(blocks[0], agg);
            assert_eq!(seg, agg);
        }
        // A short last value replaces an elided one when merged.
        let mut merged = agg.clone();
        merged.merge_later(&agg_of(&rows[1..2]));
        assert_eq!(merged.keys["s"].elided, ELIDED_FIRST);
        assert_eq!(merged.keys["s"].last, Some((1, Value::Str("short".into()))));
    }

    /// `n` blocks of 10 rows each (40 bytes apart from offset 32), the aggregate of each
    /// and of all: the shape of a segment's footer without its blocks.
    fn blocks_of(n: usize) -> (Vec<IndexEntry>, Vec<Agg>, Agg) {
        let (mut index, mut aggs, mut agg) = (Vec::new(), Vec::new(), Agg::default());
        for b in 0..n as u64 {
            let rows = float_rows(b * 10..b * 10 + 10, |s| ((s * 7919) % 1000) as f64);
            let a = agg_of(&rows);
            index.push(IndexEntry {
                offset: 32 + b * 40,
                len: 40,
                nrows: 10,
                first_step: b * 10,
                last_step: b * 10 + 9,
            });
            agg.merge_later(&a);
            aggs.push(a);
        }
        (index, aggs, agg)
    }

    /// A segment's bytes with `n` blocks' worth of (zero) bytes and a format 4 footer.
    fn segment_of(n: usize) -> (Vec<u8>, Vec<IndexEntry>, Vec<Agg>, Agg) {
        let (index, aggs, agg) = blocks_of(n);
        let end = 32 + 40 * n as u64;
        let mut bytes = vec![0u8; end as usize];
        bytes.extend(encode(PARTS_FORMAT, &index, &aggs, &agg, end).unwrap());
        (bytes, index, aggs, agg)
    }

    /// Format 4: every part reads back, in groups of `GROUP_BLOCKS` blocks whose aggregates
    /// are the merges of their blocks', whatever the number of blocks (none, one, one group,
    /// a group and one block, many groups).
    #[test]
    fn a_footer_of_parts_reads_back_every_part() {
        let g = parts::GROUP_BLOCKS;
        for n in [0, 1, 2, g, g + 1, 3 * g + 5] {
            let (bytes, index, aggs, agg) = segment_of(n);
            let f = Footer::read(Path::new("s"), &bytes, PARTS_FORMAT).unwrap();
            let p = Path::new("s");
            assert_eq!(f.nblocks(), n);
            assert_eq!(f.stats(), index_stats(&index));
            assert!(f.decoded_index().is_none(), "read lazily");
            assert_eq!(f.agg(p, &bytes).unwrap(), &agg);
            assert!(f.decoded_index().is_none(), "a summary needs no index");
            assert_eq!(f.index(p, &bytes).unwrap(), &index[..]);
            for (i, a) in aggs.iter().enumerate() {
                assert_eq!(
                    f.block_agg(p, &bytes, i).unwrap(),
                    Some(a),
                    "block {i} of {n}"
                );
            }
            assert_eq!(f.block_agg(p, &bytes, n).unwrap(), None);
            let mut groups = 0;
            for i in 0..n {
                match f.group_at(p, &bytes, i).unwrap() {
                    Some((end, group)) => {
                        let mut merged = Agg::default();
                        for a in &aggs[i..end] {
                            merged.merge_later(a);
                        }
                        assert_eq!(group, &merged, "group at block {i}");
                        assert_eq!(i % g, 0);
                        assert_eq!(end, (i + g).min(n));
                        groups += 1;
                    }
                    None => assert!(i % g != 0 || n <= g, "block {i} starts a group"),
                }
            }
            assert_eq!(groups, if n > g { n.div_ceil(g) } else { 0 });
            assert!(is_whole(&bytes[32 + 40 * n..], 32 + 40 * n as u64));
        }
    }

    /// A segment of one block (a short run's) stores its aggregate once, as the footer's one
    /// part: its index entry and its block's aggregate are implied (format 3 stored the
    /// aggregate twice and the entry), and both read back.
    #[test]
    fn a_one_block_footer_stores_its_aggregate_once() {
        let (index, aggs, agg) = blocks_of(1);
        let bytes = encode(PARTS_FORMAT, &index, &aggs, &agg, 72).unwrap();
        let payload = &bytes[FOOTER_HEADER_LEN..bytes.len() - TRAILER_LEN];
        let table = parts::table(payload).unwrap();
        assert_eq!(table.parts.len(), 1, "the aggregate alone");
        let mut one = Vec::new();
        agg::put_agg(&mut one, &agg);
        let raw = parts::part_raw(payload, &table.parts[0]).unwrap();
        assert_eq!(&*raw, one.as_slice());
        let (got_index, got_blocks, got_agg, groups) = decode_parts(payload, 32, 72).unwrap();
        assert_eq!(
            (got_index, got_blocks, got_agg),
            (index.to_vec(), aggs, agg)
        );
        assert!(groups.is_empty());
    }

    /// Every bit of a format 4 footer flipped, and the footer cut at every byte: reading it
    /// and every part is an error or the same answer, never another (crcs and the table's
    /// checks catch every change), and no flip makes `is_whole` accept it.
    #[test]
    fn every_damaged_bit_of_a_footer_of_parts_is_an_error_or_changes_nothing() {
        let n = parts::GROUP_BLOCKS + 3;
        let (bytes, index, aggs, agg) = segment_of(n);
        let at = 32 + 40 * n;
        let p = Path::new("s");
        type Answers = (Vec<IndexEntry>, Vec<Agg>, Agg, Option<Agg>);
        let answers = |b: &[u8]| -> Result<Answers> {
            let f = Footer::read(p, b, PARTS_FORMAT)?;
            let agg = f.agg(p, b)?.clone();
            let index = f.index(p, b)?.to_vec();
            let mut blocks = Vec::new();
            for i in 0..f.nblocks() {
                blocks.extend(f.block_agg(p, b, i)?.cloned());
            }
            let group = f.group_at(p, b, 0)?.map(|(_, a)| a.clone());
            Ok((index, blocks, agg, group))
        };
        let good = answers(&bytes).unwrap();
        assert_eq!((&good.0, &good.1, &good.2), (&index, &aggs, &agg));
        for byte in at..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[byte] ^= 1 << bit;
                if let Ok(got) = answers(&bad) {
                    assert_eq!(got, good, "bit {bit} of byte {byte} changed an answer");
                }
                assert!(!is_whole(&bad[at..], at as u64), "bit {bit} of byte {byte}");
            }
        }
    }
}
