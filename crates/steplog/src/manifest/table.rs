//! Manifest tables: immutable, sorted, checksummed files of manifest records (a run's head,
//! a version's metadata), written whole by a compaction and never changed again. A reader
//! opens a table by reading its footer, its block index and its Bloom filters, then reads
//! only the blocks holding the keys it asks for: what one run costs does not grow with the
//! number of runs in the store.
//!
//! The bytes are docs/FORMAT.md's "Manifest tables", the one place the grammar lives.
//!
//! Architecture invariants: keys are strictly increasing across the whole file; every block,
//! the index and the filters carry a crc32 checked before use; a table is created with
//! `O_EXCL` and synced before any manifest names it, and is never written again. From table
//! format 2 each block has its own filter and its index entry says how many records it
//! holds and whether one is a tombstone, so a merge copies a block, filter and all, without
//! decompressing it; format 1 tables (one filter for the whole table) are read as they are.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::codec::{put_bytes, put_varint, Reader};
use crate::error::{Error, IoContext, Result};
use crate::io::{FileHandle, FileSystem, OpenMode};

/// The directory of table files, in the store.
pub(crate) const TABLE_DIR: &str = "manifest";
const MAGIC: [u8; 8] = *b"STEPLTAB";
const END_MAGIC: [u8; 4] = *b"STND";
/// The format tables are written in: a filter per block (docs/FORMAT.md).
const FORMAT: u16 = 2;
/// The first format, read as it is: one filter over the whole table, nothing in the index
/// about a block but where it is and the keys it spans.
const FORMAT_WHOLE_FILTER: u16 = 1;
pub(crate) const HEADER_LEN: usize = 32;
pub(crate) const FOOTER_LEN: usize = 48;
pub(crate) const FRAME_HEADER_LEN: usize = 12;
/// Raw bytes of records after which a block is closed.
const BLOCK_RAW: usize = 32 << 10;
/// Filter bits per key (about 1% false positives with 7 probes).
const BLOOM_BITS_PER_KEY: u64 = 10;
const BLOOM_PROBES: u8 = 7;

/// The file of table `id`.
pub(crate) fn table_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(TABLE_DIR).join(format!("{id:016}.tab"))
}

/// The 64-bit FNV-1a hash of a key, and a second one from another offset basis: the two
/// hashes of the filter's double hashing (stable across platforms and releases).
fn hashes(key: &[u8]) -> (u64, u64) {
    use crate::codec::{fnv1a64, FNV_BASIS};
    (
        fnv1a64(key, FNV_BASIS),
        fnv1a64(key, 0x8422_2325_cbf2_9ce4) | 1,
    )
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from(le_u32(b, at)) | (u64::from(le_u32(b, at + 4)) << 32)
}

/// The zstd level of table frames: 1, as fast as it gets without giving up ratio. A table
/// is mostly inline segments, already compressed, and merges write every record again
/// about once per tier: at level 3, zstd's search over those bytes was a fifth of a bulk
/// ingest, for the same size (2.90 bytes per point either way, `bulk_ingest` example).
const LEVEL: i32 = 1;

/// A frame: `raw_len u32 | stored_len u32 | crc32 u32 (of the stored bytes) | stored`, the
/// stored bytes zstd-compressed (at [`LEVEL`]; any level reads).
fn encode_frame(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "table frame too big");
    // What readers refuse, writers never write.
    if raw.len() > crate::limits::MAX_RAW_LEN as usize {
        return Err(too_big());
    }
    let stored = crate::codec::zstd_compress(raw, LEVEL)?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + stored.len());
    out.extend_from_slice(
        &u32::try_from(raw.len())
            .map_err(|_| too_big())?
            .to_le_bytes(),
    );
    out.extend_from_slice(
        &u32::try_from(stored.len())
            .map_err(|_| too_big())?
            .to_le_bytes(),
    );
    out.extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
    out.extend_from_slice(&stored);
    Ok(out)
}

/// Writes one table: records in strictly increasing key order, then `finish`.
pub(crate) struct TableWriter {
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    /// Bytes written so far (the next frame's offset).
    offset: u64,
    /// Encoded bytes not yet written (flushed past 1 MiB).
    pending: Vec<u8>,
    /// The open block: its records, first key, their key hashes and whether one is a
    /// tombstone.
    block: Vec<u8>,
    block_first: Vec<u8>,
    block_hashes: Vec<(u64, u64)>,
    block_tombstone: bool,
    last_key: Vec<u8>,
    index: Vec<u8>,
    /// The closed blocks' filters, back to back in block order.
    filters: Vec<u8>,
    blocks: u64,
    records: u64,
}

/// A format 2 index entry's facts as stored: records, tombstone flag, filter length.
type EntryFacts = (u64, u8, u64);

/// What a table's index says of a block besides where it is (format 2 on): its record
/// count, whether it holds a tombstone, and where its filter lies in the filter frame.
#[derive(Debug, Clone)]
struct BlockFacts {
    records: u64,
    tombstone: bool,
    filter: std::ops::Range<usize>,
}

impl TableWriter {
    /// Creates table `id` (never over an existing file).
    pub fn create(fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<TableWriter> {
        let parent = dir.join(TABLE_DIR);
        fs.create_dir_all(&parent).at(&parent)?;
        let path = table_path(dir, id);
        let file = fs.open(&path, OpenMode::CreateNew).at(&path)?;
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&MAGIC);
        header[8..10].copy_from_slice(&FORMAT.to_le_bytes());
        header[12..20].copy_from_slice(&id.to_le_bytes());
        let crc = crc32fast::hash(&header[..28]);
        header[28..].copy_from_slice(&crc.to_le_bytes());
        Ok(TableWriter {
            path,
            file,
            offset: 0,
            pending: header.to_vec(),
            block: Vec::new(),
            block_first: Vec::new(),
            block_hashes: Vec::new(),
            block_tombstone: false,
            last_key: Vec::new(),
            index: Vec::new(),
            filters: Vec::new(),
            blocks: 0,
            records: 0,
        })
    }

    fn out_of_order(&self) -> Error {
        Error::InvalidInput(format!(
            "manifest table {}: keys out of order",
            self.path.display()
        ))
    }

    /// Adds a record; its key must be greater than the previous one.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.records > 0 && key <= self.last_key.as_slice() {
            return Err(self.out_of_order());
        }
        if self.block.is_empty() {
            self.block_first = key.to_vec();
        }
        put_bytes(&mut self.block, key);
        put_bytes(&mut self.block, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.records += 1;
        self.block_hashes.push(hashes(key));
        self.block_tombstone |= value.is_empty();
        if self.block.len() >= BLOCK_RAW {
            self.close_block()?;
        }
        Ok(())
    }

    /// Adds a whole block as another table stored it: its checked frame (header and stored
    /// bytes, copied as they are), the keys it spans, the first greater than every key added
    /// before, and its facts and filter bits as that table's index gives them. A merge copies
    /// a block this way when no other table has a key inside it: its bytes are neither
    /// decompressed nor compressed again.
    fn add_stored(
        &mut self,
        frame: &[u8],
        span: (&[u8], &[u8]),
        facts: (u64, bool),
        filter: &[u8],
    ) -> Result<()> {
        let (first, last) = span;
        if self.records > 0 && first <= self.last_key.as_slice() {
            return Err(self.out_of_order());
        }
        self.close_block()?;
        let at = self.offset + self.pending.len() as u64;
        self.push_entry(at, frame.len() as u64, span, facts, filter);
        self.pending.extend_from_slice(frame);
        self.records += facts.0;
        self.last_key.clear();
        self.last_key.extend_from_slice(last);
        self.flush_past_1_mib()
    }

    /// Adds a whole block of a format 1 table (which says nothing of its blocks but their
    /// span): as [`add_stored`](Self::add_stored), its records read for their count, their
    /// tombstones and the new filter.
    fn add_decoded(&mut self, frame: &[u8], records: &Decoded) -> Result<()> {
        let (Some(first), Some(last)) = (records.first_key(), records.last_key()) else {
            return Ok(());
        };
        let keys: Vec<(u64, u64)> = (0..records.len()).map(|j| hashes(records.key(j))).collect();
        let tombstone = (0..records.len()).any(|j| records.value(j).is_empty());
        let filter = filter_bits(&keys);
        self.add_stored(
            frame,
            (first, last),
            (records.len() as u64, tombstone),
            &filter,
        )
    }

    /// Appends a block's index entry and its filter.
    fn push_entry(
        &mut self,
        at: u64,
        frame_len: u64,
        span: (&[u8], &[u8]),
        facts: (u64, bool),
        filter: &[u8],
    ) {
        put_varint(&mut self.index, at);
        put_varint(&mut self.index, frame_len);
        put_bytes(&mut self.index, span.0);
        put_bytes(&mut self.index, span.1);
        put_varint(&mut self.index, facts.0);
        self.index.push(u8::from(facts.1));
        put_varint(&mut self.index, filter.len() as u64);
        self.filters.extend_from_slice(filter);
        self.blocks += 1;
    }

    fn close_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let frame = encode_frame(&self.block).at(&self.path)?;
        let at = self.offset + self.pending.len() as u64;
        let filter = filter_bits(&self.block_hashes);
        let facts = (self.block_hashes.len() as u64, self.block_tombstone);
        let first = std::mem::take(&mut self.block_first);
        let last = std::mem::take(&mut self.last_key);
        self.push_entry(at, frame.len() as u64, (&first, &last), facts, &filter);
        self.last_key = last;
        self.pending.extend(frame);
        self.block.clear();
        self.block_hashes.clear();
        self.block_tombstone = false;
        self.flush_past_1_mib()
    }

    fn flush_past_1_mib(&mut self) -> Result<()> {
        if self.pending.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .write_all_at(&self.pending, self.offset)
            .at(&self.path)?;
        self.offset += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes the index, the filters and the footer, and syncs the file. Returns its length.
    pub fn finish(mut self) -> Result<u64> {
        self.close_block()?;
        let mut index = Vec::new();
        put_varint(&mut index, self.blocks);
        index.extend_from_slice(&self.index);
        let index_frame = encode_frame(&index).at(&self.path)?;
        let index_at = self.offset + self.pending.len() as u64;
        self.pending.extend_from_slice(&index_frame);
        let mut filter = Vec::with_capacity(1 + self.filters.len());
        filter.push(BLOOM_PROBES);
        filter.extend_from_slice(&self.filters);
        let filter_frame = encode_frame(&filter).at(&self.path)?;
        let filter_at = index_at + index_frame.len() as u64;
        self.pending.extend_from_slice(&filter_frame);
        let mut footer = [0u8; FOOTER_LEN];
        footer[..8].copy_from_slice(&index_at.to_le_bytes());
        footer[8..16].copy_from_slice(&(index_frame.len() as u64).to_le_bytes());
        footer[16..24].copy_from_slice(&filter_at.to_le_bytes());
        footer[24..32].copy_from_slice(&(filter_frame.len() as u64).to_le_bytes());
        footer[32..40].copy_from_slice(&self.records.to_le_bytes());
        let crc = crc32fast::hash(&footer[..40]);
        footer[40..44].copy_from_slice(&crc.to_le_bytes());
        footer[44..48].copy_from_slice(&END_MAGIC);
        self.pending.extend_from_slice(&footer);
        self.flush()?;
        self.file.sync().at(&self.path)?;
        Ok(self.offset)
    }
}

/// The Bloom filter bits of a set of keys (their [`hashes`]): [`BLOOM_BITS_PER_KEY`] bits a
/// key, at least 64, a whole number of bytes, [`BLOOM_PROBES`] bits set a key by double
/// hashing.
fn filter_bits(hashes: &[(u64, u64)]) -> Vec<u8> {
    let nbits = (hashes.len() as u64 * BLOOM_BITS_PER_KEY).max(64);
    let mut bits = vec![0u8; nbits.div_ceil(8) as usize];
    let nbits = bits.len() as u64 * 8;
    for &(h1, h2) in hashes {
        for i in 0..u64::from(BLOOM_PROBES) {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % nbits;
            bits[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    bits
}

/// A key to look up, in one table or several, its filter hashes computed once.
pub(crate) struct Probe<'a> {
    key: &'a [u8],
    prefix: u64,
    hashes: (u64, u64),
}

impl<'a> Probe<'a> {
    pub fn new(key: &'a [u8]) -> Probe<'a> {
        Probe {
            key,
            prefix: prefix(key),
            hashes: hashes(key),
        }
    }
}

/// A key's first 8 bytes, big-endian, zero-padded. A key before another never has a greater
/// prefix (bytes past the 8th do not count, and a key that is a prefix of another pads with
/// zeros, no byte above the other's), so two keys whose prefixes differ are in the order of
/// their prefixes; keys whose prefixes tie are compared whole.
fn prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// False only when the key of `hashes` is certainly not among the keys `bits` were set for
/// (with `probes` probes).
fn may_contain(bits: &[u8], probes: u8, (h1, h2): (u64, u64)) -> bool {
    let nbits = bits.len() as u64 * 8;
    nbits > 0
        && (0..u64::from(probes)).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % nbits;
            bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0
        })
}

/// One block of a table: where its frame is and the keys it spans.
#[derive(Debug)]
struct BlockRef {
    offset: u64,
    len: u64,
    first: Vec<u8>,
    last: Vec<u8>,
    /// What the index says of it besides (format 2 on; `None` in a format 1 table).
    facts: Option<BlockFacts>,
}

/// An open table. Cheap to share; reads go straight to the file (positional reads), so a
/// table whose file a later compaction deletes stays readable while it is open.
pub(crate) struct Table {
    id: u64,
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    len: u64,
    blocks: Vec<BlockRef>,
    /// Each block's last key's [`prefix`], in block order: a lookup's binary search reads
    /// this array, and a block's key only where the prefixes tie.
    last_prefixes: Vec<u64>,
    /// The filter frame's probes and the frame itself (raw): after the probes byte, the
    /// blocks' filters back to back (format 2 on; each block's [`BlockFacts`] says where its
    /// own lies in the frame), or one filter over the whole table (format 1).
    probes: u8,
    filter: Vec<u8>,
    /// The blocks lookups read last, decoded (listings look up heads and versions in key
    /// order, so neighbours share blocks).
    recent: Mutex<VecDeque<(usize, Records)>>,
}

/// A block's records, decoded: its raw bytes and where each key and value lies in them (one
/// allocation per block, not two per record: a lookup that misses the recent blocks decodes
/// a whole block, and per-record allocations were half of a listing's time).
struct Decoded {
    raw: Vec<u8>,
    /// Per record: key start, key end, value start, value end.
    spans: Vec<[u32; 4]>,
}

impl Decoded {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn key(&self, j: usize) -> &[u8] {
        let s = self.spans[j];
        &self.raw[s[0] as usize..s[1] as usize]
    }

    fn value(&self, j: usize) -> &[u8] {
        let s = self.spans[j];
        &self.raw[s[2] as usize..s[3] as usize]
    }

    fn first_key(&self) -> Option<&[u8]> {
        (self.len() > 0).then(|| self.key(0))
    }

    fn last_key(&self) -> Option<&[u8]> {
        self.len().checked_sub(1).map(|j| self.key(j))
    }
}

type Records = Arc<Decoded>;
/// Blocks kept decoded per table.
const RECENT_BLOCKS: usize = 8;

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Table({})", self.path.display())
    }
}

impl Table {
    /// Opens table `id`, reading its header, footer, index and filter (checked whole).
    pub fn open(fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<Table> {
        let path = table_path(dir, id);
        let file = fs.open(&path, OpenMode::Read).at(&path)?;
        let len = file.len().at(&path)?;
        let min = (HEADER_LEN + FOOTER_LEN) as u64;
        if len < min {
            return Err(Error::corrupt(
                &path,
                0,
                format!("manifest table of {len} bytes, shorter than its header and footer"),
            ));
        }
        let mut header = [0u8; HEADER_LEN];
        file.read_exact_at(&mut header, 0).at(&path)?;
        if header[..8] != MAGIC {
            return Err(Error::corrupt(&path, 0, "not a manifest table (bad magic)"));
        }
        let stored = le_u32(&header, 28);
        let got = crc32fast::hash(&header[..28]);
        if stored != got {
            return Err(Error::ChecksumMismatch {
                file: path,
                offset: 0,
                expected: stored,
                got,
            });
        }
        let format = u16::from_le_bytes([header[8], header[9]]);
        if format != FORMAT && format != FORMAT_WHOLE_FILTER {
            return Err(Error::corrupt(
                &path,
                8,
                format!("unsupported manifest table format version {format}"),
            ));
        }
        let named = le_u64(&header, 12);
        if named != id {
            return Err(Error::corrupt(
                &path,
                12,
                format!("the table names itself {named}, not {id}"),
            ));
        }
        let foot_at = len - FOOTER_LEN as u64;
        let mut footer = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut footer, foot_at).at(&path)?;
        let u64_at = |i: usize| le_u64(&footer, i);
        let stored = le_u32(&footer, 40);
        let got = crc32fast::hash(&footer[..40]);
        if footer[44..] != END_MAGIC || stored != got {
            return Err(Error::ChecksumMismatch {
                file: path,
                offset: foot_at,
                expected: stored,
                got,
            });
        }
        let (index_at, index_len) = (u64_at(0), u64_at(8));
        let (filter_at, filter_len) = (u64_at(16), u64_at(24));
        let in_file = |at: u64, n: u64| {
            at >= HEADER_LEN as u64 && at.checked_add(n).is_some_and(|end| end <= foot_at)
        };
        if !in_file(index_at, index_len)
            || !in_file(filter_at, filter_len)
            || index_at + index_len != filter_at
            || filter_at + filter_len != foot_at
        {
            return Err(Error::corrupt(
                &path,
                foot_at,
                "the footer's index and filter do not fit the file",
            ));
        }
        let mut t = Table {
            id,
            path,
            file,
            len,
            blocks: Vec::new(),
            last_prefixes: Vec::new(),
            probes: 0,
            filter: Vec::new(),
            recent: Mutex::default(),
        };
        let index = t.frame(index_at, index_len)?;
        let per_block = format != FORMAT_WHOLE_FILTER;
        t.blocks = t.parse_index(&index, index_at, per_block)?;
        let filter = t.frame(filter_at, filter_len)?;
        let bad = |reason: String| Error::corrupt(&t.path, filter_at, reason);
        let (probes, bits) = match filter.split_first() {
            Some((&probes, bits)) if (1..=32).contains(&probes) => (probes, bits),
            _ => return Err(bad("a filter frame without its probes".into())),
        };
        let filters_end = t
            .blocks
            .last()
            .and_then(|b| b.facts.as_ref())
            .map(|f| f.filter.end);
        if per_block && filters_end.unwrap_or(1) != filter.len() {
            return Err(bad(format!(
                "{} bytes of filters where the index gives {}",
                bits.len(),
                filters_end.unwrap_or(1) - 1
            )));
        }
        if !per_block && bits.is_empty() {
            return Err(bad("an empty filter".into()));
        }
        let records: u64 = t
            .blocks
            .iter()
            .filter_map(|b| b.facts.as_ref())
            .map(|f| f.records)
            .sum();
        if per_block && records != u64_at(32) {
            return Err(Error::corrupt(
                &t.path,
                foot_at,
                format!(
                    "the footer says {} records, the index {records}",
                    u64_at(32)
                ),
            ));
        }
        t.probes = probes;
        t.filter = filter;
        t.last_prefixes = t.blocks.iter().map(|b| prefix(&b.last)).collect();
        Ok(t)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the table's path still names the file this table has open, as far as the file
    /// system can tell (`false` where it cannot: the caller opens the path again). The file
    /// is held open, so its inode number cannot be given to another file meanwhile: the same
    /// number is the same file.
    pub fn is_at(&self, fs: &dyn FileSystem) -> bool {
        match (fs.identify(&self.path), self.file.identity()) {
            (Ok((named, len)), Ok(mine)) => named == mine && len == self.len,
            _ => false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Reads and checks the frame of `len` bytes at `at`; its raw bytes.
    fn frame(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        Ok(self.frame_and_raw(at, len)?.1)
    }

    /// Reads the frame of `len` bytes at `at` as it is stored, its length and crc checked
    /// (not decompressed).
    fn stored_frame(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        let bad = |reason: String| Error::corrupt(&self.path, at, reason);
        if len < FRAME_HEADER_LEN as u64 || len > u64::from(crate::limits::MAX_RAW_LEN) {
            return Err(bad(format!("a table frame of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, at).at(&self.path)?;
        let stored_len = le_u32(&buf, 4);
        let stored_crc = le_u32(&buf, 8);
        if u64::from(stored_len) != len - FRAME_HEADER_LEN as u64 {
            return Err(bad(format!(
                "a table frame says {stored_len} stored bytes in {} bytes",
                len - FRAME_HEADER_LEN as u64
            )));
        }
        let got = crc32fast::hash(&buf[FRAME_HEADER_LEN..]);
        if got != stored_crc {
            return Err(Error::ChecksumMismatch {
                file: self.path.clone(),
                offset: at,
                expected: stored_crc,
                got,
            });
        }
        Ok(buf)
    }

    /// Reads and checks the frame of `len` bytes at `at`: its bytes as stored, and its raw
    /// bytes.
    fn frame_and_raw(&self, at: u64, len: u64) -> Result<(Vec<u8>, Vec<u8>)> {
        let bad = |reason: String| Error::corrupt(&self.path, at, reason);
        let buf = self.stored_frame(at, len)?;
        let raw_len = le_u32(&buf, 0);
        let stored = &buf[FRAME_HEADER_LEN..];
        if raw_len > crate::limits::MAX_RAW_LEN {
            return Err(bad(format!("a table frame of {raw_len} raw bytes")));
        }
        // The zstd frame says its content size (the writer's frames always do): a frame
        // whose header disagrees is refused before `raw_len` bytes are set aside for it.
        match zstd::zstd_safe::get_frame_content_size(stored) {
            Ok(Some(n)) if n == u64::from(raw_len) => {}
            _ => {
                return Err(bad(format!(
                    "a table frame whose zstd header does not give its {raw_len} raw bytes"
                )))
            }
        }
        let raw = crate::codec::zstd_decompress(stored, raw_len as usize)
            .map_err(|e| bad(format!("a table frame does not decompress: {e}")))?;
        if raw.len() != raw_len as usize {
            return Err(bad(format!(
                "a table frame decompresses to {} bytes, not {raw_len}",
                raw.len()
            )));
        }
        Ok((buf, raw))
    }

    /// The block index; with `per_block` (format 2 on), each entry's [`BlockFacts`] too.
    fn parse_index(&self, raw: &[u8], at: u64, per_block: bool) -> Result<Vec<BlockRef>> {
        let bad = |reason: String| Error::corrupt(&self.path, at, format!("table index: {reason}"));
        let mut r = Reader::new(raw);
        let n = r.count(4).map_err(|e| bad(e.reason))?;
        // Not reserved from the count read: a crafted index could ask for gigabytes.
        let mut blocks: Vec<BlockRef> = Vec::new();
        let mut end = HEADER_LEN as u64;
        // Filters are located in the filter frame, after its probes byte.
        let mut filters_end = 1usize;
        for i in 0..n {
            let mut next = || -> crate::codec::DecodeResult<(BlockRef, Option<EntryFacts>)> {
                let b = BlockRef {
                    offset: r.varint()?,
                    len: r.varint()?,
                    first: r.bytes()?.to_vec(),
                    last: r.bytes()?.to_vec(),
                    facts: None,
                };
                let facts = if per_block {
                    Some((r.varint()?, r.u8()?, r.varint()?))
                } else {
                    None
                };
                Ok((b, facts))
            };
            let (mut b, facts) = next().map_err(|e| bad(e.reason))?;
            let ordered = b.first <= b.last
                && blocks.last().is_none_or(|p| p.last < b.first)
                && b.offset == end;
            if !ordered {
                return Err(bad("blocks out of order or not back to back".into()));
            }
            if let Some((records, tombstone, filter_len)) = facts {
                // A block holds a record or more, each of at least 2 raw bytes; its filter
                // is at least 8 bytes and at most a frame long. (That the filters end where
                // the filter frame does is checked once it is read.)
                let max = u64::from(crate::limits::MAX_RAW_LEN);
                let filter = Some(filter_len)
                    .filter(|&n| (8..=max).contains(&n))
                    .and_then(|n| filters_end.checked_add(n as usize))
                    .map(|filter_end| filters_end..filter_end);
                match (records, tombstone, filter) {
                    (1.., 0 | 1, Some(filter)) if records <= max / 2 => {
                        filters_end = filter.end;
                        b.facts = Some(BlockFacts {
                            records,
                            tombstone: tombstone == 1,
                            filter,
                        });
                    }
                    _ => {
                        return Err(bad(format!(
                            "block {i}: {records} records, tombstone flag {tombstone}, a filter \
                             of {filter_len} bytes (1 record or more, a flag of 0 or 1, a \
                             filter of 8 bytes or more)"
                        )))
                    }
                }
            }
            end = b.offset.saturating_add(b.len);
            blocks.push(b);
        }
        if !r.is_empty() || end != at {
            return Err(bad("the blocks do not end where the index starts".into()));
        }
        Ok(blocks)
    }

    /// Block `i`'s records, from the recent blocks or read (and kept there).
    fn cached_block(&self, i: usize) -> Result<Records> {
        let lock = || self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, r)) = lock().iter().find(|(j, _)| *j == i) {
            return Ok(r.clone());
        }
        let records = Arc::new(self.block(i)?);
        let mut recent = lock();
        if recent.len() >= RECENT_BLOCKS {
            recent.pop_front();
        }
        recent.push_back((i, records.clone()));
        Ok(records)
    }

    /// The records of block `i`, checked: keys increasing and inside the index's span.
    fn block(&self, i: usize) -> Result<Decoded> {
        Ok(self.block_and_frame(i)?.0)
    }

    /// [`block`](Self::block), with the block's frame as stored.
    fn block_and_frame(&self, i: usize) -> Result<(Decoded, Vec<u8>)> {
        let b = &self.blocks[i];
        let (frame, raw) = self.frame_and_raw(b.offset, b.len)?;
        let bad =
            |reason: &str| Error::corrupt(&self.path, b.offset, format!("table block: {reason}"));
        // Offsets are u32: a frame's raw length is a u32.
        let at = |rest: usize| (raw.len() - rest) as u32;
        let mut spans: Vec<[u32; 4]> = Vec::new();
        {
            let mut r = Reader::new(&raw);
            while !r.is_empty() {
                let key = r.bytes().map_err(|e| bad(&e.reason))?;
                let key_end = at(r.remaining());
                let key_start = key_end - key.len() as u32;
                let value = r.bytes().map_err(|e| bad(&e.reason))?;
                let value_end = at(r.remaining());
                let value_start = value_end - value.len() as u32;
                if let Some(last) = spans.last() {
                    if raw[last[0] as usize..last[1] as usize] >= *key {
                        return Err(bad("keys out of order"));
                    }
                }
                spans.push([key_start, key_end, value_start, value_end]);
            }
        }
        let out = Decoded { raw, spans };
        let span_ok = out.len() > 0
            && out.key(0) == b.first.as_slice()
            && out.key(out.len() - 1) == b.last.as_slice();
        if !span_ok {
            return Err(bad("its keys are not the ones the index gives"));
        }
        if let Some(f) = &b.facts {
            let tombstone = (0..out.len()).any(|j| out.value(j).is_empty());
            if (out.len() as u64, tombstone) != (f.records, f.tombstone) {
                return Err(bad("its records are not the ones the index counts"));
            }
        }
        Ok((out, frame))
    }

    /// The value of `key`, if the table holds it.
    #[cfg(test)]
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.find(&Probe::new(key))
    }

    /// The value of the probe's key, if the table holds it.
    pub fn find(&self, probe: &Probe<'_>) -> Result<Option<Vec<u8>>> {
        let key = probe.key;
        let i = self.last_prefixes.partition_point(|&p| p < probe.prefix);
        let j = self.last_prefixes[i..].partition_point(|&p| p == probe.prefix);
        // Among the blocks whose last key has the probe's prefix, the first whose last key
        // is not below the probe's key.
        let i = i + self.blocks[i..i + j].partition_point(|b| b.last.as_slice() < key);
        let filter = match self.blocks.get(i) {
            Some(b) if b.first.as_slice() <= key => match &b.facts {
                Some(f) => &self.filter[f.filter.clone()],
                None => &self.filter[1..],
            },
            _ => return Ok(None),
        };
        if !may_contain(filter, self.probes, probe.hashes) {
            return Ok(None);
        }
        let records = self.cached_block(i)?;
        let (mut lo, mut hi) = (0, records.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match records.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(records.value(mid).to_vec())),
            }
        }
        Ok(None)
    }

    /// Every record whose key starts with `prefix`, in key order, a block at a time.
    pub fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a {
        let first = self.blocks.partition_point(|b| b.last.as_slice() < prefix);
        let mut next_block = first;
        // The block being read and the next record in it.
        let mut buf: Option<(Decoded, usize)> = None;
        let mut done = false;
        std::iter::from_fn(move || loop {
            if done {
                return None;
            }
            if let Some((records, j)) = buf.as_mut().filter(|(r, j)| *j < r.len()) {
                let k = records.key(*j);
                if k.starts_with(prefix) {
                    let item = (k.to_vec(), records.value(*j).to_vec());
                    *j += 1;
                    return Some(Ok(item));
                }
                if k > prefix {
                    done = true;
                    return None;
                }
                *j += 1;
                continue;
            }
            if next_block >= self.blocks.len() {
                done = true;
                return None;
            }
            match self.block(next_block) {
                Ok(records) => {
                    next_block += 1;
                    buf = Some((records, 0));
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        })
    }
}

/// A table being merged: the next block to take, and the block being taken record by
/// record (decoded) with the next record in it.
struct Cursor<'a> {
    table: &'a Table,
    block: usize,
    open: Option<(Decoded, usize)>,
}

impl Cursor<'_> {
    /// The key at the cursor: the next record's, or (at a block's start, not yet read) the
    /// block's first key from the index.
    fn head(&self) -> Option<&[u8]> {
        match &self.open {
            Some((d, j)) => Some(d.key(*j)),
            None => self
                .table
                .blocks
                .get(self.block)
                .map(|b| b.first.as_slice()),
        }
    }

    /// Reads the block at the cursor, to take it record by record. Returns how many blocks
    /// it decompressed (1, or 0 if it was read already).
    fn open_block(&mut self) -> Result<u64> {
        if self.open.is_some() {
            return Ok(0);
        }
        self.open = Some((self.table.block(self.block)?, 0));
        Ok(1)
    }

    /// Moves past the record at the cursor (its block read).
    fn advance(&mut self) {
        if let Some((d, j)) = &mut self.open {
            *j += 1;
            if *j == d.len() {
                self.open = None;
                self.block += 1;
            }
        }
    }
}

/// What a merge wrote: the table's length, how many blocks it copied whole, and how many
/// blocks of the merged tables it decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Merged {
    pub len: u64,
    pub copied_blocks: u64,
    pub decompressed_blocks: u64,
}

/// Merges `tables` (newest first) into a new table `id`: every key once, with the newest
/// table's record, in key order; tombstones (records with an empty value: a deleted run's,
/// a purged inline segment's) dropped when `drop_tombstones` (the merge takes in the oldest
/// table, so nothing is left for them to hide). A block no other table has a key inside,
/// and holding nothing to drop, is copied as it is stored, its crc checked: with its filter
/// and facts as its index gives them (format 2), not decompressed; from a format 1 table,
/// decompressed once for its keys. A store's newer tables hold newer versions and segments,
/// whose keys follow the older tables', so most blocks of a tiered merge are copied (only
/// run names interleave).
pub(crate) fn merge(
    fs: &dyn FileSystem,
    dir: &Path,
    id: u64,
    tables: &[&Table],
    drop_tombstones: bool,
) -> Result<Merged> {
    let mut w = TableWriter::create(fs, dir, id)?;
    let mut cursors: Vec<Cursor<'_>> = tables
        .iter()
        .map(|&table| Cursor {
            table,
            block: 0,
            open: None,
        })
        .collect();
    let (mut copied, mut decompressed) = (0, 0);
    loop {
        // The smallest key at any cursor; the newest table wins a tie.
        let mut winner: Option<usize> = None;
        for (i, c) in cursors.iter().enumerate() {
            if let Some(k) = c.head() {
                if winner.is_none_or(|w| cursors[w].head().is_some_and(|b| k < b)) {
                    winner = Some(i);
                }
            }
        }
        let Some(win) = winner else { break };
        if cursors[win].open.is_none() {
            // At a block's start: whole if every other cursor's next key is past its last.
            let c = &cursors[win];
            let last = c.table.blocks[c.block].last.as_slice();
            let alone = cursors
                .iter()
                .enumerate()
                .all(|(i, o)| i == win || o.head().is_none_or(|k| k > last));
            let b = &c.table.blocks[c.block];
            match &b.facts {
                Some(f) if alone && !(drop_tombstones && f.tombstone) => {
                    let frame = c.table.stored_frame(b.offset, b.len)?;
                    let filter = &c.table.filter[f.filter.clone()];
                    w.add_stored(
                        &frame,
                        (&b.first, &b.last),
                        (f.records, f.tombstone),
                        filter,
                    )?;
                    copied += 1;
                    cursors[win].block += 1;
                    continue;
                }
                None if alone => {
                    let (records, frame) = c.table.block_and_frame(c.block)?;
                    decompressed += 1;
                    let dropping =
                        drop_tombstones && (0..records.len()).any(|j| records.value(j).is_empty());
                    if !dropping {
                        w.add_decoded(&frame, &records)?;
                        copied += 1;
                        cursors[win].block += 1;
                        continue;
                    }
                    cursors[win].open = Some((records, 0));
                }
                _ => {}
            }
        }
        decompressed += cursors[win].open_block()?;
        let (key, value) = match &cursors[win].open {
            Some((d, j)) => (d.key(*j).to_vec(), d.value(*j).to_vec()),
            None => break,
        };
        // Every cursor at that key moves on (an older table's record is replaced).
        for c in &mut cursors {
            if c.head() == Some(key.as_slice()) {
                decompressed += c.open_block()?;
                c.advance();
            }
        }
        if !(drop_tombstones && value.is_empty()) {
            w.add(&key, &value)?;
        }
    }
    Ok(Merged {
        len: w.finish()?,
        copied_blocks: copied,
        decompressed_blocks: decompressed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::OsFs;

    fn write(dir: &Path, id: u64, records: &[(Vec<u8>, Vec<u8>)]) -> u64 {
        let mut w = TableWriter::create(&OsFs, dir, id).unwrap();
        for (k, v) in records {
            w.add(k, v).unwrap();
        }
        w.finish().unwrap()
    }

    /// A xorshift generator from `seed`: each call gives a number below its argument.
    fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut x = seed;
        move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    fn records(n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<_> = (0..n)
            .map(|i| {
                (
                    format!("r{i:07}").into_bytes(),
                    format!("value of {i} {}", "x".repeat((i % 50) as usize)).into_bytes(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_record_is_found_and_absent_keys_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(20_000);
        write(dir.path(), 1, &recs);
        let t = Table::open(&OsFs, dir.path(), 1).unwrap();
        assert!(t.blocks.len() > 10, "several blocks: {}", t.blocks.len());
        for (k, v) in recs.iter().step_by(7) {
            assert_eq!(t.get(k).unwrap().as_ref(), Some(v));
        }
        for absent in ["", "a", "r", "r0000000x", "r9999999", "s"] {
            assert_eq!(t.get(absent.as_bytes()).unwrap(), None, "{absent}");
        }
        let all: Vec<_> = t.scan(b"r").map(|r| r.unwrap()).collect();
        assert_eq!(all, recs);
        let some: Vec<_> = t.scan(b"r00012").map(|r| r.unwrap().0).collect();
        assert_eq!(some.len(), 100);
        assert_eq!(t.scan(b"q").count(), 0);
        // An empty table opens and holds nothing.
        write(dir.path(), 2, &[]);
        let t = Table::open(&OsFs, dir.path(), 2).unwrap();
        assert_eq!((t.get(b"r").unwrap(), t.scan(b"").count()), (None, 0));
    }

    /// Lookups among keys that share their first 8 bytes, are prefixes of one another or end
    /// in zero bytes (the binary search compares 8-byte prefixes first): every key held is
    /// found, and no other.
    #[test]
    fn lookups_find_keys_that_share_or_pad_their_first_bytes() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        // Half the keys start with one of two 8-byte prefixes (so many blocks' last keys tie
        // on their prefix), the rest are short; their other bytes are 0, 1 or `a`.
        let mut key = || -> Vec<u8> {
            let mut k: Vec<u8> = match next(3) {
                0 => b"rrun-123".to_vec(),
                1 => b"rrun-123\0".to_vec(),
                _ => Vec::new(),
            };
            let len = next(if k.is_empty() { 10 } else { 8 }) as usize;
            k.extend((0..len).map(|_| [0u8, 1, b'a'][next(3) as usize]));
            k
        };
        let dir = tempfile::tempdir().unwrap();
        // Values of 1 KiB: blocks of about 30 records.
        let held: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = (0..3_000)
            .map(|i| (key(), format!("{i:0>1024}").into_bytes()))
            .collect();
        let recs: Vec<_> = held.clone().into_iter().collect();
        write(dir.path(), 1, &recs);
        let t = Table::open(&OsFs, dir.path(), 1).unwrap();
        let tied = t.last_prefixes.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(
            tied > 10,
            "{tied} blocks' last keys tie with the next's on their prefix"
        );
        for (k, v) in &held {
            assert_eq!(t.get(k).unwrap().as_ref(), Some(v), "{k:?}");
        }
        for _ in 0..3_000 {
            let k = key();
            assert_eq!(t.get(&k).unwrap(), held.get(&k).cloned(), "{k:?}");
        }
    }

    /// A block whose index entry miscounts its records or their tombstones (a writer's
    /// mistake no crc can catch: the entry's own frame is whole) is reported as corruption
    /// naming the table and the block's offset when it is read, never read as it is.
    #[test]
    fn a_block_whose_entry_disagrees_with_its_records_is_reported_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(2_000);
        write(dir.path(), 1, &recs);
        let t = Table::open(&OsFs, dir.path(), 1).unwrap();
        assert!(t.blocks.len() > 2);
        for (id, lie) in [(2u64, (1u64, false)), (3, (0, true))] {
            let mut w = TableWriter::create(&OsFs, dir.path(), id).unwrap();
            for (i, b) in t.blocks.iter().enumerate() {
                let f = b.facts.as_ref().unwrap();
                let frame = t.stored_frame(b.offset, b.len).unwrap();
                let facts = if i == 1 {
                    (f.records + lie.0, f.tombstone ^ lie.1)
                } else {
                    (f.records, f.tombstone)
                };
                w.add_stored(
                    &frame,
                    (&b.first, &b.last),
                    facts,
                    &t.filter[f.filter.clone()],
                )
                .unwrap();
            }
            w.finish().unwrap();
            let liar = Table::open(&OsFs, dir.path(), id).unwrap();
            let at = liar.blocks[1].offset;
            let e = liar.scan(b"").find_map(|r| r.err()).expect("an error");
            assert!(e.is_corruption(), "{e}");
            let said = e.to_string();
            assert!(
                said.contains("not the ones the index counts")
                    && said.contains(&format!("{id:016}.tab"))
                    && said.contains(&at.to_string()),
                "{said}"
            );
            let first_of_1 = liar.blocks[1].first.clone();
            assert!(liar.get(&first_of_1).unwrap_err().is_corruption());
            // The other blocks read as they are.
            assert_eq!(liar.get(&recs[0].0).unwrap(), Some(recs[0].1.clone()));
        }
    }

    /// Every byte flipped, and every cut, is an error (or, for a flip the checksums do not
    /// cover in a way that changes nothing read, the same records): never other records.
    #[test]
    fn every_bit_flip_and_cut_of_a_table_is_an_error_or_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(300);
        write(dir.path(), 1, &recs);
        let path = table_path(dir.path(), 1);
        let good = std::fs::read(&path).unwrap();
        let read_all = || -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            let t = Table::open(&OsFs, dir.path(), 1)?;
            t.scan(b"").collect()
        };
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            match read_all() {
                Err(e) => assert!(e.is_corruption(), "byte {i}: {e}"),
                Ok(got) => assert_eq!(got, recs, "byte {i} flipped read other records"),
            }
        }
        for cut in 0..good.len() {
            std::fs::write(&path, &good[..cut]).unwrap();
            let e = read_all().unwrap_err();
            assert!(e.is_corruption(), "cut at {cut}: {e}");
        }
    }

    #[test]
    fn keys_out_of_order_are_refused_and_no_file_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TableWriter::create(&OsFs, dir.path(), 1).unwrap();
        w.add(b"b", b"1").unwrap();
        assert!(w.add(b"a", b"2").is_err());
        assert!(w.add(b"b", b"2").is_err());
        assert!(TableWriter::create(&OsFs, dir.path(), 1).is_err());
    }

    /// A merge of tables with overlapping keys, some records replaced by newer tables and
    /// some tombstones (empty values), against a model (the newest table's record of each
    /// key; tombstones dropped when asked): the same records, in order, whatever the mix of
    /// blocks copied as they are and records merged one by one; and newer tables whose keys
    /// all follow the older ones' (newer versions and segments) are copied block by block.
    #[test]
    fn a_merge_keeps_the_newest_record_of_each_key_and_copies_blocks_no_other_table_cuts() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        for round in 0..24u64 {
            let dir = tempfile::tempdir().unwrap();
            let ntables = 1 + next(4);
            // Even rounds: each table's keys after the older tables' (some overlap at the
            // edges); odd rounds: keys drawn across one range, interleaving.
            let mut tables: Vec<Vec<(Vec<u8>, Vec<u8>)>> = Vec::new();
            for t in 0..ntables {
                let mut keys = std::collections::BTreeMap::new();
                let n = if round % 2 == 0 { 100 } else { 1 } + next(300);
                for _ in 0..n {
                    let k = if round % 2 == 0 {
                        t * 1_000 + next(1_100)
                    } else {
                        next(3_000)
                    };
                    // Values of up to 2 KiB: blocks of 16 to hundreds of records.
                    let len = if next(10) == 0 {
                        0
                    } else {
                        next(2_048) as usize
                    };
                    let value = (0..len).map(|i| (i as u64 + k + t) as u8).collect();
                    keys.insert(format!("k{k:06}").into_bytes(), value);
                }
                tables.push(keys.into_iter().collect());
            }
            for (t, recs) in tables.iter().enumerate() {
                write(dir.path(), t as u64 + 1, recs);
            }
            let opened: Vec<Table> = (1..=ntables)
                .rev()
                .map(|id| Table::open(&OsFs, dir.path(), id).unwrap())
                .collect();
            let refs: Vec<&Table> = opened.iter().collect();
            for drop_tombstones in [false, true] {
                let mut model = std::collections::BTreeMap::new();
                for recs in &tables {
                    for (k, v) in recs {
                        model.insert(k.clone(), v.clone());
                    }
                }
                if drop_tombstones {
                    model.retain(|_, v: &mut Vec<u8>| !v.is_empty());
                }
                let want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
                let id = 100 + u64::from(drop_tombstones);
                let m = merge(&OsFs, dir.path(), id, &refs, drop_tombstones).unwrap();
                let t = Table::open(&OsFs, dir.path(), id).unwrap();
                assert_eq!(t.len(), m.len);
                let got: Vec<_> = t.scan(b"").map(|r| r.unwrap()).collect();
                assert_eq!(got.len(), want.len(), "round {round}");
                assert!(got == want, "round {round}: other records");
                for (k, v) in want.iter().step_by(5) {
                    assert_eq!(t.get(k).unwrap().as_ref(), Some(v), "round {round}");
                }
                // (A block holding a tombstone is not copied when tombstones are dropped.)
                if round % 2 == 0 && ntables > 1 && !drop_tombstones {
                    assert!(m.copied_blocks > 0, "round {round}: {m:?}");
                }
                // Each block of the merged tables is either copied, not decompressed, or
                // decompressed once to be taken record by record.
                let blocks: usize = opened.iter().map(|t| t.blocks.len()).sum();
                assert_eq!(
                    m.copied_blocks + m.decompressed_blocks,
                    blocks as u64,
                    "round {round}: {m:?}"
                );
            }
        }
    }

    /// Tables of format 1 (one filter for the whole table; every golden store's until
    /// 2026-12-07) are read as they are and merge with format 2 tables into a format 2 table
    /// holding the newest record of each key; their blocks, whose index entries say nothing
    /// of their records, are decompressed to be copied, and the merged table's are not when
    /// it is merged in turn.
    #[test]
    fn format_1_tables_are_read_and_merged_into_the_current_format() {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/golden/manifest-8/store")
            .canonicalize()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TABLE_DIR)).unwrap();
        for id in [48, 51] {
            std::fs::copy(table_path(&golden, id), table_path(dir.path(), id)).unwrap();
        }
        let old: Vec<Table> = [51, 48]
            .iter()
            .map(|&id| Table::open(&OsFs, dir.path(), id).unwrap())
            .collect();
        for t in &old {
            assert!(!t.blocks.is_empty() && t.blocks.iter().all(|b| b.facts.is_none()));
        }
        // A newer table: a run's head replaced, a new run, a tombstone, keys after all.
        let (replaced, _) = old[1].scan(b"r").next().unwrap().unwrap();
        let mut newer = vec![
            (replaced, b"\x07".to_vec()),
            (b"r-a-new-run".to_vec(), b"\x08".to_vec()),
            (b"r-deleted".to_vec(), Vec::new()),
            (b"zz-after-every-key".to_vec(), b"x".to_vec()),
        ];
        newer.sort();
        write(dir.path(), 60, &newer);
        let new = Table::open(&OsFs, dir.path(), 60).unwrap();
        let mut model = std::collections::BTreeMap::new();
        for t in [&old[1], &old[0], &new] {
            for r in t.scan(b"") {
                let (k, v) = r.unwrap();
                model.insert(k, v);
            }
        }
        let old_blocks: u64 = old.iter().map(|t| t.blocks.len() as u64).sum();
        for drop_tombstones in [false, true] {
            let id = 70 + u64::from(drop_tombstones);
            let m = merge(
                &OsFs,
                dir.path(),
                id,
                &[&new, &old[0], &old[1]],
                drop_tombstones,
            )
            .unwrap();
            assert!(m.decompressed_blocks >= old_blocks, "{m:?}");
            let t = Table::open(&OsFs, dir.path(), id).unwrap();
            assert!(t.blocks.iter().all(|b| b.facts.is_some()));
            let mut want = model.clone();
            if drop_tombstones {
                want.retain(|_, v| !v.is_empty());
            }
            let got: std::collections::BTreeMap<_, _> = t.scan(b"").map(|r| r.unwrap()).collect();
            assert_eq!(got, want);
            for (k, v) in &want {
                assert_eq!(t.get(k).unwrap().as_ref(), Some(v));
            }
            assert_eq!(t.get(b"r-absent").unwrap(), None);
            // Merged again alone: every block copied, none decompressed.
            let again = merge(&OsFs, dir.path(), id + 10, &[&t], false).unwrap();
            assert_eq!(
                (again.copied_blocks, again.decompressed_blocks),
                (t.blocks.len() as u64, 0)
            );
        }
    }
}
