//! Manifest tables: immutable, sorted, checksummed files of manifest records (a run's head,
//! a version's metadata), written whole by a compaction and never changed again. A reader
//! opens a table by reading its footer, its block index and its Bloom filter, then reads
//! only the blocks holding the keys it asks for: what one run costs does not grow with the
//! number of runs in the store.
//!
//! The bytes are docs/FORMAT.md's "Manifest tables", the one place the grammar lives.
//!
//! Architecture invariants: keys are strictly increasing across the whole file; every block,
//! the index and the filter carry a crc32 checked before use; a table is created with
//! `O_EXCL` and synced before any manifest names it, and is never written again.

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
const FORMAT: u16 = 1;
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
    block: Vec<u8>,
    block_first: Vec<u8>,
    last_key: Vec<u8>,
    index: Vec<u8>,
    blocks: u64,
    records: u64,
    hashes: Vec<(u64, u64)>,
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
            last_key: Vec::new(),
            index: Vec::new(),
            blocks: 0,
            records: 0,
            hashes: Vec::new(),
        })
    }

    /// Adds a record; its key must be greater than the previous one.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.records > 0 && key <= self.last_key.as_slice() {
            return Err(Error::InvalidInput(format!(
                "manifest table {}: keys out of order",
                self.path.display()
            )));
        }
        if self.block.is_empty() {
            self.block_first = key.to_vec();
        }
        put_bytes(&mut self.block, key);
        put_bytes(&mut self.block, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.records += 1;
        self.hashes.push(hashes(key));
        if self.block.len() >= BLOCK_RAW {
            self.close_block()?;
        }
        Ok(())
    }

    /// Adds a whole block as another table stored it: its checked frame (header and stored
    /// bytes, copied as they are), and its records' keys in order, the first greater than
    /// every key added before. A merge copies a block this way when no other table has a
    /// key inside it: its bytes are not compressed again.
    fn add_frame(&mut self, frame: &[u8], records: &Decoded) -> Result<()> {
        let (Some(first), Some(last)) = (records.first_key(), records.last_key()) else {
            return Ok(());
        };
        if self.records > 0 && first <= self.last_key.as_slice() {
            return Err(Error::InvalidInput(format!(
                "manifest table {}: keys out of order",
                self.path.display()
            )));
        }
        self.close_block()?;
        let at = self.offset + self.pending.len() as u64;
        put_varint(&mut self.index, at);
        put_varint(&mut self.index, frame.len() as u64);
        put_bytes(&mut self.index, first);
        put_bytes(&mut self.index, last);
        self.blocks += 1;
        self.pending.extend_from_slice(frame);
        for j in 0..records.len() {
            self.hashes.push(hashes(records.key(j)));
        }
        self.records += records.len() as u64;
        self.last_key.clear();
        self.last_key.extend_from_slice(last);
        if self.pending.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn close_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let frame = encode_frame(&self.block).at(&self.path)?;
        let at = self.offset + self.pending.len() as u64;
        put_varint(&mut self.index, at);
        put_varint(&mut self.index, frame.len() as u64);
        put_bytes(&mut self.index, &self.block_first);
        put_bytes(&mut self.index, &self.last_key);
        self.blocks += 1;
        self.pending.extend(frame);
        self.block.clear();
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

    /// Writes the index, the filter and the footer, and syncs the file. Returns its length.
    pub fn finish(mut self) -> Result<u64> {
        self.close_block()?;
        let mut index = Vec::new();
        put_varint(&mut index, self.blocks);
        index.extend_from_slice(&self.index);
        let index_frame = encode_frame(&index).at(&self.path)?;
        let index_at = self.offset + self.pending.len() as u64;
        self.pending.extend_from_slice(&index_frame);
        let bloom = Bloom::build(&self.hashes);
        let bloom_frame = encode_frame(&bloom.encode()).at(&self.path)?;
        let bloom_at = index_at + index_frame.len() as u64;
        self.pending.extend_from_slice(&bloom_frame);
        let mut footer = [0u8; FOOTER_LEN];
        footer[..8].copy_from_slice(&index_at.to_le_bytes());
        footer[8..16].copy_from_slice(&(index_frame.len() as u64).to_le_bytes());
        footer[16..24].copy_from_slice(&bloom_at.to_le_bytes());
        footer[24..32].copy_from_slice(&(bloom_frame.len() as u64).to_le_bytes());
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

/// A Bloom filter over a table's keys: `probes` bit positions per key by double hashing.
struct Bloom {
    probes: u8,
    bits: Vec<u8>,
}

impl Bloom {
    fn build(hashes: &[(u64, u64)]) -> Bloom {
        let nbits = (hashes.len() as u64 * BLOOM_BITS_PER_KEY).max(64);
        let mut bits = vec![0u8; nbits.div_ceil(8) as usize];
        let nbits = bits.len() as u64 * 8;
        for &(h1, h2) in hashes {
            for i in 0..u64::from(BLOOM_PROBES) {
                let bit = h1.wrapping_add(i.wrapping_mul(h2)) % nbits;
                bits[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        Bloom {
            probes: BLOOM_PROBES,
            bits,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.probes];
        out.extend_from_slice(&self.bits);
        out
    }

    fn decode(raw: &[u8]) -> std::result::Result<Bloom, String> {
        match raw.split_first() {
            Some((&probes, bits)) if (1..=32).contains(&probes) && !bits.is_empty() => Ok(Bloom {
                probes,
                bits: bits.to_vec(),
            }),
            _ => Err("bad Bloom filter".into()),
        }
    }

    /// False only when the key is certainly absent.
    fn may_contain(&self, key: &[u8]) -> bool {
        let (h1, h2) = hashes(key);
        let nbits = self.bits.len() as u64 * 8;
        (0..u64::from(self.probes)).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % nbits;
            self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0
        })
    }
}

/// One block of a table: where its frame is and the keys it spans.
#[derive(Debug)]
struct BlockRef {
    offset: u64,
    len: u64,
    first: Vec<u8>,
    last: Vec<u8>,
}

/// An open table. Cheap to share; reads go straight to the file (positional reads), so a
/// table whose file a later compaction deletes stays readable while it is open.
pub(crate) struct Table {
    id: u64,
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    len: u64,
    blocks: Vec<BlockRef>,
    bloom: Bloom,
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
        if format != FORMAT {
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
        let (bloom_at, bloom_len) = (u64_at(16), u64_at(24));
        let in_file = |at: u64, n: u64| {
            at >= HEADER_LEN as u64 && at.checked_add(n).is_some_and(|end| end <= foot_at)
        };
        if !in_file(index_at, index_len)
            || !in_file(bloom_at, bloom_len)
            || index_at + index_len != bloom_at
            || bloom_at + bloom_len != foot_at
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
            bloom: Bloom {
                probes: 1,
                bits: vec![0],
            },
            recent: Mutex::default(),
        };
        let index = t.frame(index_at, index_len)?;
        t.blocks = t.parse_index(&index, index_at)?;
        let bloom = t.frame(bloom_at, bloom_len)?;
        t.bloom = Bloom::decode(&bloom).map_err(|e| Error::corrupt(&t.path, bloom_at, e))?;
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

    /// Reads and checks the frame of `len` bytes at `at`: its bytes as stored, and its raw
    /// bytes.
    fn frame_and_raw(&self, at: u64, len: u64) -> Result<(Vec<u8>, Vec<u8>)> {
        let bad = |reason: String| Error::corrupt(&self.path, at, reason);
        if len < FRAME_HEADER_LEN as u64 || len > u64::from(crate::limits::MAX_RAW_LEN) {
            return Err(bad(format!("a table frame of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, at).at(&self.path)?;
        let raw_len = le_u32(&buf, 0);
        let stored_len = le_u32(&buf, 4);
        let stored_crc = le_u32(&buf, 8);
        let stored = &buf[FRAME_HEADER_LEN..];
        if u64::from(stored_len) != len - FRAME_HEADER_LEN as u64 {
            return Err(bad(format!(
                "a table frame says {stored_len} stored bytes in {} bytes",
                len - FRAME_HEADER_LEN as u64
            )));
        }
        let got = crc32fast::hash(stored);
        if got != stored_crc {
            return Err(Error::ChecksumMismatch {
                file: self.path.clone(),
                offset: at,
                expected: stored_crc,
                got,
            });
        }
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

    fn parse_index(&self, raw: &[u8], at: u64) -> Result<Vec<BlockRef>> {
        let bad = |reason: String| Error::corrupt(&self.path, at, format!("table index: {reason}"));
        let mut r = Reader::new(raw);
        let n = r.count(4).map_err(|e| bad(e.reason))?;
        // Not reserved from the count read: a crafted index could ask for gigabytes.
        let mut blocks: Vec<BlockRef> = Vec::new();
        let mut end = HEADER_LEN as u64;
        for _ in 0..n {
            let mut next = || -> crate::codec::DecodeResult<BlockRef> {
                Ok(BlockRef {
                    offset: r.varint()?,
                    len: r.varint()?,
                    first: r.bytes()?.to_vec(),
                    last: r.bytes()?.to_vec(),
                })
            };
            let b = next().map_err(|e| bad(e.reason))?;
            let ordered = b.first <= b.last
                && blocks.last().is_none_or(|p| p.last < b.first)
                && b.offset == end;
            if !ordered {
                return Err(bad("blocks out of order or not back to back".into()));
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
        Ok((out, frame))
    }

    /// The value of `key`, if the table holds it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.bloom.may_contain(key) {
            return Ok(None);
        }
        let i = self.blocks.partition_point(|b| b.last.as_slice() < key);
        match self.blocks.get(i) {
            Some(b) if b.first.as_slice() <= key => {}
            _ => return Ok(None),
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

    /// Reads the block at the cursor, to take it record by record.
    fn open_block(&mut self) -> Result<()> {
        if self.open.is_none() {
            self.open = Some((self.table.block(self.block)?, 0));
        }
        Ok(())
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

/// What a merge wrote: the table's length, and how many blocks it copied whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Merged {
    pub len: u64,
    pub copied_blocks: u64,
}

/// Merges `tables` (newest first) into a new table `id`: every key once, with the newest
/// table's record, in key order; tombstones (records with an empty value: a deleted run's,
/// a purged inline segment's) dropped when `drop_tombstones` (the merge takes in the oldest
/// table, so nothing is left for them to hide). A block no other table has a key inside,
/// and holding nothing to drop, is copied as it is stored (its crc checked, its keys read for
/// the new filter), not compressed again: a store's newer tables hold newer versions and
/// segments, whose keys follow the older tables', so most blocks of a tiered merge are
/// copied (only run names interleave).
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
    let mut copied = 0;
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
            if alone {
                let (records, frame) = c.table.block_and_frame(c.block)?;
                let dropping =
                    drop_tombstones && (0..records.len()).any(|j| records.value(j).is_empty());
                if !dropping {
                    w.add_frame(&frame, &records)?;
                    copied += 1;
                    cursors[win].block += 1;
                    continue;
                }
                cursors[win].open = Some((records, 0));
            }
        }
        cursors[win].open_block()?;
        let (key, value) = match &cursors[win].open {
            Some((d, j)) => (d.key(*j).to_vec(), d.value(*j).to_vec()),
            None => break,
        };
        // Every cursor at that key moves on (an older table's record is replaced).
        for c in &mut cursors {
            if c.head() == Some(key.as_slice()) {
                c.open_block()?;
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
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
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
            }
        }
    }
}
