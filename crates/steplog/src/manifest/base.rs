//! The base of the manifest state: the tables of the last compaction, newest first, read
//! lazily. A run's head and a version's metadata are records of one sorted key space:
//!
//! - `r` + the run name (UTF-8) → the head version id (u64, little-endian);
//! - `s` + the segment id (u64, big-endian) → an inline segment's bytes (those of a sealed
//!   segment file; manifest format 4), or nothing: a tombstone, the segment was purged;
//! - `v` + the version id (u64, big-endian, so that ids sort as numbers) → the version's
//!   metadata as JSON (the `VERSION_META` of docs/FORMAT.md).
//!
//! A newer table's record replaces an older one's (run and version records are never
//! deleted: runs and versions live for ever, a purge only marks a version; an inline
//! segment's record is replaced by a tombstone when a purge drops it, and the tombstone is
//! dropped by a merge that takes in the oldest table). Lookups ask the tables newest
//! first; listings merge them in key order.
//!
//! Architecture invariant: a record read from a table is checked on its own (its key and its
//! content agree; ids are below the base's counters) before it is used; checks that span
//! records (a head's version belongs to its run and is neither archived nor purged) are made
//! where the records meet, and fail as corruption naming the table. A merge copies version
//! records as they are stored (block checksums checked, contents not decoded): it uses
//! nothing in them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::table::{Table, TableWriter};
use super::{ConfigJson, VersionMeta};
use crate::error::{Error, Result};
use crate::io::FileSystem;
use crate::types::{SegmentId, VersionId};
use bytes::Bytes;

/// Decoded records kept per base.
const CACHE_RECORDS: usize = 1 << 16;

pub(crate) const RUN_PREFIX: u8 = b'r';
pub(crate) const VERSION_PREFIX: u8 = b'v';
pub(crate) const SEGMENT_PREFIX: u8 = b's';

pub(crate) fn segment_key(id: SegmentId) -> [u8; 9] {
    let mut k = [SEGMENT_PREFIX; 9];
    k[1..].copy_from_slice(&id.0.to_be_bytes());
    k
}

pub(crate) fn run_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(RUN_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn version_key(v: VersionId) -> [u8; 9] {
    let mut k = [VERSION_PREFIX; 9];
    k[1..].copy_from_slice(&v.0.to_be_bytes());
    k
}

/// The tables of a manifest's base, newest first. Cheap to share.
#[derive(Debug, Default)]
pub(crate) struct Base {
    /// The store's manifest directory (errors name it).
    dir: PathBuf,
    /// Open tables are immutable and shared: a new base keeps the ones of the base it
    /// replaces that it still lists (`open_reusing`).
    tables: Vec<Arc<Table>>,
    /// Records looked up, decoded: a base never changes, so neither do they. Versions are
    /// kept found or not; heads only found (or deleted): see `head`. Bounded: each emptied
    /// when full.
    heads: Mutex<HashMap<String, Option<VersionId>>>,
    versions: Mutex<HashMap<VersionId, Option<Arc<VersionMeta>>>>,
    /// The counters the base was written with: no record may name an id at or past them.
    next_version: u64,
    next_segment: u64,
}

impl Base {
    /// Opens tables `ids` (newest first) of the store in `dir`.
    pub fn open(
        fs: &dyn FileSystem,
        dir: &Path,
        ids: &[u64],
        counters: (u64, u64),
    ) -> Result<Base> {
        Base::open_reusing(fs, dir, ids, counters, None)
    }

    /// [`open`](Self::open), taking the tables `previous` has open as they are when their
    /// path still names the same file (a table never changes; a compaction replaces only the
    /// newest few, and re-reading every table's index and filter after each was a tenth of a
    /// bulk ingest at a million runs). Where the file system cannot tell a file's identity,
    /// every table is opened again.
    pub fn open_reusing(
        fs: &dyn FileSystem,
        dir: &Path,
        ids: &[u64],
        (next_version, next_segment): (u64, u64),
        previous: Option<&Base>,
    ) -> Result<Base> {
        let open = |id: u64| match previous.and_then(|p| p.table(id)) {
            // The same file still (a manifest cut back could name a new table by an old id).
            Some(t) if t.is_at(fs) => Ok(t.clone()),
            _ => Table::open(fs, dir, id).map(Arc::new),
        };
        let tables = ids.iter().map(|&id| open(id)).collect::<Result<Vec<_>>>()?;
        Ok(Base {
            dir: dir.join(super::table::TABLE_DIR),
            tables,
            heads: Mutex::default(),
            versions: Mutex::default(),
            next_version,
            next_segment,
        })
    }

    /// The open table `id`, if the base lists it.
    pub fn table(&self, id: u64) -> Option<&Arc<Table>> {
        self.tables.iter().find(|t| t.id() == id)
    }

    /// The base's `k` newest tables (at most all), newest first, as `sizes` lists them.
    pub fn newest(&self, k: usize) -> &[Arc<Table>] {
        &self.tables[..k.min(self.tables.len())]
    }

    /// The directory of the tables (for errors).
    pub fn dir(&self) -> &Path {
        if self.dir.as_os_str().is_empty() {
            Path::new("MANIFEST")
        } else {
            &self.dir
        }
    }

    /// `key`'s value from `cache`, or computed, and kept there if `compute` says so (a full
    /// cache is emptied first).
    fn memo<K, Q, V>(
        cache: &Mutex<HashMap<K, V>>,
        key: &Q,
        compute: impl FnOnce() -> Result<(V, bool)>,
    ) -> Result<V>
    where
        K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
        V: Clone,
    {
        let lock = || cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = lock().get(key) {
            return Ok(v.clone());
        }
        let (v, keep) = compute()?;
        if keep {
            let mut c = lock();
            if c.len() >= CACHE_RECORDS {
                c.clear();
            }
            c.insert(key.to_owned(), v.clone());
        }
        Ok(v)
    }

    /// The counters the base was written with.
    pub fn counters(&self) -> (u64, u64) {
        (self.next_version, self.next_segment)
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Each table's id and length, newest first.
    pub fn sizes(&self) -> Vec<(u64, u64)> {
        self.tables.iter().map(|t| (t.id(), t.len())).collect()
    }

    fn path_of(&self, t: &Table) -> PathBuf {
        t.path().to_owned()
    }

    fn get(&self, key: &[u8]) -> Result<Option<(&Table, Vec<u8>)>> {
        let probe = super::table::Probe::new(key);
        for t in &self.tables {
            if let Some(v) = t.find(&probe)? {
                return Ok(Some((t, v)));
            }
        }
        Ok(None)
    }

    /// The head of run `name`, if the base knows the run.
    pub fn head(&self, name: &str) -> Result<Option<VersionId>> {
        if self.tables.is_empty() {
            return Ok(None);
        }
        // Only names a table holds are kept: most names no table holds are ruled out by the
        // filters alone, and a bulk's new names, each asked once, would fill the cache.
        Self::memo(&self.heads, name, || match self.get(&run_key(name))? {
            None => Ok((None, false)),
            // A tombstone: the run was deleted.
            Some((t, v)) => Ok((decode_head(&self.path_of(t), &v, self.next_version)?, true)),
        })
    }

    /// Version `v`'s metadata, if the base holds it.
    pub fn version(&self, v: VersionId) -> Result<Option<Arc<VersionMeta>>> {
        if self.tables.is_empty() {
            return Ok(None);
        }
        Self::memo(&self.versions, &v, || {
            let key = version_key(v);
            match self.get(&key)? {
                None => Ok(None),
                Some((t, bytes)) => {
                    let path = self.path_of(t);
                    let meta = decode_version(&path, &key, &bytes, self.counters())?;
                    Ok(Some(Arc::new(meta)))
                }
            }
            .map(|v| (v, true))
        })
    }

    /// The bytes of inline segment `id`, if the base holds them (not cached: the segment
    /// cache keeps what reads open).
    pub fn segment(&self, id: SegmentId) -> Result<Option<Bytes>> {
        match self.get(&segment_key(id))? {
            None => Ok(None),
            Some((t, bytes)) => decode_segment(&self.path_of(t), id, bytes, self.next_segment),
        }
    }

    /// Every record with the prefix, merged across tables in key order (the newest table's
    /// record where several hold a key).
    fn merged(
        &self,
        prefix: &'static [u8],
    ) -> impl Iterator<Item = Result<(usize, Vec<u8>, Vec<u8>)>> + '_ {
        let mut scans: Vec<_> = self.tables.iter().map(|t| t.scan(prefix)).collect();
        // The next record of each scan (`None` once it is done), read ahead by one.
        let mut heads: Vec<Option<(Vec<u8>, Vec<u8>)>> = Vec::with_capacity(scans.len());
        let mut failed = None;
        for s in &mut scans {
            match s.next().transpose() {
                Ok(head) => heads.push(head),
                Err(e) => {
                    failed.get_or_insert(e);
                    heads.push(None);
                }
            }
        }
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            if let Some(e) = failed.take() {
                done = true;
                return Some(Err(e));
            }
            // The smallest key at the head of any scan; the newest table wins a tie.
            let mut winner: Option<usize> = None;
            for (i, h) in heads.iter().enumerate() {
                if let Some((k, _)) = h {
                    if winner.is_none_or(|w| heads[w].as_ref().is_some_and(|(b, _)| k < b)) {
                        winner = Some(i);
                    }
                }
            }
            let winner = winner?;
            let (key, value) = heads[winner].take()?;
            // Every scan at that key moves on (an older table's record is replaced).
            for i in 0..scans.len() {
                let at_key = i == winner || heads[i].as_ref().is_some_and(|(k, _)| *k == key);
                if at_key {
                    match scans[i].next().transpose() {
                        Ok(head) => heads[i] = head,
                        Err(e) => {
                            done = true;
                            return Some(Err(e));
                        }
                    }
                }
            }
            Some(Ok((winner, key, value)))
        })
    }

    /// Reads every record of every table (each block's checksum and order), counting the
    /// tables in `files`.
    pub fn verify(&self, files: &mut usize) -> Result<()> {
        for t in &self.tables {
            *files += 1;
            for r in t.scan(b"") {
                r?;
            }
        }
        Ok(())
    }

    /// Every run the base knows, by name, with its head.
    pub fn runs(&self) -> impl Iterator<Item = Result<(String, VersionId)>> + '_ {
        self.run_records().filter_map(|r| match r {
            Ok((name, Some(head))) => Some(Ok((name, head))),
            Ok((_, None)) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// Every run record the base holds, by name: its head, or `None` for a tombstone (a
    /// run deleted; what a merge copies to hide the record of an older table).
    pub fn run_records(&self) -> impl Iterator<Item = Result<(String, Option<VersionId>)>> + '_ {
        self.merged(&[RUN_PREFIX]).map(move |r| {
            let (t, k, v) = r?;
            let path = self.path_of(&self.tables[t]);
            let name = std::str::from_utf8(&k[1..])
                .map_err(|_| Error::corrupt(&path, 0, "a run name that is not UTF-8"))?;
            Ok((name.to_owned(), decode_head(&path, &v, self.next_version)?))
        })
    }

    /// Every version the base holds, by id.
    pub fn versions(&self) -> impl Iterator<Item = Result<VersionMeta>> + '_ {
        self.merged(&[VERSION_PREFIX]).map(move |r| {
            let (t, k, v) = r?;
            let path = self.path_of(&self.tables[t]);
            decode_version(&path, &k, &v, self.counters())
        })
    }
}

/// A run record's value: its head, or `None` for a tombstone (empty: the run was deleted,
/// manifest format 7).
fn decode_head(path: &Path, bytes: &[u8], next_version: u64) -> Result<Option<VersionId>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let id = <[u8; 8]>::try_from(bytes)
        .map(u64::from_le_bytes)
        .map_err(|_| Error::corrupt(path, 0, "a run record that is not a version id"))?;
    if id == 0 || id >= next_version {
        return Err(Error::corrupt(
            path,
            0,
            format!("a run's head v{id} is outside the allocated ids (next {next_version})"),
        ));
    }
    Ok(Some(VersionId(id)))
}

fn decode_segment(
    path: &Path,
    id: SegmentId,
    bytes: Vec<u8>,
    next_segment: u64,
) -> Result<Option<Bytes>> {
    if id.0 == 0 || id.0 >= next_segment {
        return Err(Error::corrupt(
            path,
            0,
            format!("inline segment {id} is outside the allocated ids (next {next_segment})"),
        ));
    }
    Ok((!bytes.is_empty()).then(|| Bytes::from(bytes)))
}

fn decode_version(
    path: &Path,
    key: &[u8],
    bytes: &[u8],
    counters: (u64, u64),
) -> Result<VersionMeta> {
    let meta: VersionMeta = ConfigJson::read_raw(|| serde_json::from_slice(bytes))
        .map_err(|e| Error::corrupt(path, 0, format!("a version record does not decode: {e}")))?;
    if key != version_key(meta.id) {
        return Err(Error::corrupt(
            path,
            0,
            format!("the record of {} is filed under another key", meta.id),
        ));
    }
    meta.check(counters)
        .map_err(|reason| Error::corrupt(path, 0, reason))?;
    Ok(meta)
}

/// A version record as a table stores it: its key (`version_key`) and its JSON.
pub(crate) type VersionRecord = ([u8; 9], Vec<u8>);

/// A version's record, encoded.
pub(crate) fn version_record(v: &VersionMeta) -> Result<VersionRecord> {
    let json = serde_json::to_vec(v).map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok((version_key(v.id), json))
}

/// The records of one table, each stream in key order.
pub(crate) struct Records<'a> {
    /// Runs and their heads; `None` is a tombstone (a deleted run).
    pub runs: &'a mut dyn Iterator<Item = Result<(String, Option<VersionId>)>>,
    /// Inline segments; `None` is a tombstone.
    pub segments: &'a mut dyn Iterator<Item = Result<(SegmentId, Option<Bytes>)>>,
    pub versions: &'a mut dyn Iterator<Item = Result<VersionRecord>>,
    /// Tombstones are dropped (the table takes in the oldest of the base: no older record
    /// is left for them to hide).
    pub drop_tombstones: bool,
}

/// Writes one table from records in key order: runs (`r` keys), inline segments (`s`),
/// then versions (`v`).
pub(crate) fn write_table(fs: &dyn FileSystem, dir: &Path, id: u64, r: Records<'_>) -> Result<u64> {
    let mut w = TableWriter::create(fs, dir, id)?;
    for run in r.runs {
        match run? {
            (name, Some(head)) => w.add(&run_key(&name), &head.0.to_le_bytes())?,
            (_, None) if r.drop_tombstones => {}
            (name, None) => w.add(&run_key(&name), &[])?,
        }
    }
    for seg in r.segments {
        match seg? {
            (id, Some(bytes)) => w.add(&segment_key(id), &bytes)?,
            (_, None) if r.drop_tombstones => {}
            (id, None) => w.add(&segment_key(id), &[])?,
        }
    }
    for v in r.versions {
        let (key, json) = v?;
        w.add(&key, &json)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::OsFs;

    fn table(
        dir: &Path,
        id: u64,
        segments: Vec<(SegmentId, Option<Bytes>)>,
        drop_tombstones: bool,
    ) {
        let records = Records {
            runs: &mut std::iter::empty(),
            segments: &mut segments.into_iter().map(Ok),
            versions: &mut std::iter::empty(),
            drop_tombstones,
        };
        write_table(&OsFs, dir, id, records).unwrap();
    }

    /// A purge's tombstone hides an older table's inline segment, and a merge that takes in
    /// the oldest table drops both: a purged inline segment's bytes do not stay for ever.
    #[test]
    fn a_tombstone_hides_an_inline_segment_and_a_full_merge_drops_both() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let bytes = |b: &[u8]| Some(Bytes::copy_from_slice(b));
        table(
            d,
            1,
            vec![(SegmentId(1), bytes(b"one")), (SegmentId(2), bytes(b"two"))],
            false,
        );
        table(d, 2, vec![(SegmentId(1), None)], false);
        let base = Base::open(&OsFs, d, &[2, 1], (10, 10)).unwrap();
        assert_eq!(base.segment(SegmentId(1)).unwrap(), None, "hidden");
        assert_eq!(base.segment(SegmentId(2)).unwrap(), bytes(b"two"));
        let open = |id| super::super::table::Table::open(&OsFs, d, id).unwrap();
        let (t2, t1) = (open(2), open(1));
        // Merged with the oldest: the tombstone and the bytes it hid are gone.
        super::super::table::merge(&OsFs, d, 3, &[&t2, &t1], true).unwrap();
        let merged = Base::open(&OsFs, d, &[3], (10, 10)).unwrap();
        assert_eq!(merged.segment(SegmentId(1)).unwrap(), None);
        assert_eq!(merged.segment(SegmentId(2)).unwrap(), bytes(b"two"));
        let keys: Vec<Vec<u8>> = open(3).scan(b"s").map(|r| r.unwrap().0).collect();
        assert_eq!(keys, vec![segment_key(SegmentId(2)).to_vec()]);
        // Merged without it: the tombstone stays, to hide the older record.
        super::super::table::merge(&OsFs, d, 4, &[&t2], false).unwrap();
        let partial = Base::open(&OsFs, d, &[4, 1], (10, 10)).unwrap();
        assert_eq!(partial.segment(SegmentId(1)).unwrap(), None);
        // An id at or past the counter is corruption, not bytes.
        let low = Base::open(&OsFs, d, &[3], (10, 2)).unwrap();
        assert!(low.segment(SegmentId(2)).is_err());
    }

    /// A new base keeps the tables of the base it replaces that it still lists (the same
    /// open table), and opens again a table whose path names another file by now (a manifest
    /// cut back could list a new table by an old id).
    #[test]
    fn a_new_base_keeps_the_open_tables_it_still_lists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let bytes = |b: &[u8]| Some(Bytes::copy_from_slice(b));
        table(d, 1, vec![(SegmentId(1), bytes(b"one"))], false);
        table(d, 2, vec![(SegmentId(2), bytes(b"two"))], false);
        table(d, 3, vec![(SegmentId(3), bytes(b"three"))], false);
        let old = Base::open(&OsFs, d, &[2, 1], (10, 10)).unwrap();
        let new = Base::open_reusing(&OsFs, d, &[3, 1], (10, 10), Some(&old)).unwrap();
        assert!(
            Arc::ptr_eq(&old.tables[1], &new.tables[1]),
            "table 1 kept open"
        );
        assert_eq!(new.segment(SegmentId(3)).unwrap(), bytes(b"three"));
        assert_eq!(new.segment(SegmentId(1)).unwrap(), bytes(b"one"));
        // Table 1 replaced by another file of the same id: read again, not the old one.
        std::fs::remove_file(super::super::table::table_path(d, 1)).unwrap();
        table(d, 1, vec![(SegmentId(1), bytes(b"uno, again"))], false);
        let again = Base::open_reusing(&OsFs, d, &[3, 1], (10, 10), Some(&new)).unwrap();
        assert!(!Arc::ptr_eq(&new.tables[1], &again.tables[1]));
        assert_eq!(again.segment(SegmentId(1)).unwrap(), bytes(b"uno, again"));
    }
}
