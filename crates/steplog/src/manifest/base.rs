//! The base of the manifest state: the tables of the last compaction, newest first, read
//! lazily. A run's head and a version's metadata are records of one sorted key space:
//!
//! - `r` + the run name (UTF-8) → the head version id (u64, little-endian);
//! - `v` + the version id (u64, big-endian, so that ids sort as numbers) → the version's
//!   metadata as JSON (the `VERSION_META` of docs/FORMAT.md).
//!
//! A newer table's record replaces an older one's (records are never deleted: runs and
//! versions live for ever, a purge only marks a version). Lookups ask the tables newest
//! first; listings merge them in key order.
//!
//! Architecture invariant: a record read from a table is checked on its own (its key and its
//! content agree; ids are below the base's counters) before it is used; checks that span
//! records (a head's version belongs to its run and is neither archived nor purged) are made
//! where the records meet, and fail as corruption naming the table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::table::{Table, TableWriter};
use super::VersionMeta;
use crate::error::{Error, Result};
use crate::io::FileSystem;
use crate::types::VersionId;

/// Decoded records kept per base.
const CACHE_RECORDS: usize = 1 << 16;

pub(crate) const RUN_PREFIX: u8 = b'r';
pub(crate) const VERSION_PREFIX: u8 = b'v';

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
    tables: Vec<Table>,
    /// Records looked up (found or not), decoded: a base never changes, so neither do they.
    /// Bounded: each emptied when full.
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
        (next_version, next_segment): (u64, u64),
    ) -> Result<Base> {
        let tables = ids
            .iter()
            .map(|&id| Table::open(fs, dir, id))
            .collect::<Result<Vec<_>>>()?;
        Ok(Base {
            dir: dir.join(super::table::TABLE_DIR),
            tables,
            heads: Mutex::default(),
            versions: Mutex::default(),
            next_version,
            next_segment,
        })
    }

    /// The directory of the tables (for errors).
    pub fn dir(&self) -> &Path {
        if self.dir.as_os_str().is_empty() {
            Path::new("MANIFEST")
        } else {
            &self.dir
        }
    }

    /// Looks `key` up in `cache`, or computes and keeps it.
    fn memo<K: std::hash::Hash + Eq + Clone, V: Clone>(
        cache: &Mutex<HashMap<K, V>>,
        key: &K,
        compute: impl FnOnce() -> Result<V>,
    ) -> Result<V> {
        let lock = || cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = lock().get(key) {
            return Ok(v.clone());
        }
        let v = compute()?;
        let mut c = lock();
        if c.len() >= CACHE_RECORDS {
            c.clear();
        }
        c.insert(key.clone(), v.clone());
        Ok(v)
    }

    fn counters(&self) -> (u64, u64) {
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
        for t in &self.tables {
            if let Some(v) = t.get(key)? {
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
        Self::memo(&self.heads, &name.to_owned(), || {
            match self.get(&run_key(name))? {
                None => Ok(None),
                Some((t, v)) => Ok(Some(decode_head(&self.path_of(t), &v, self.next_version)?)),
            }
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
        })
    }

    /// Every record with the prefix, merged across tables in key order (the newest table's
    /// record where several hold a key).
    fn merged(
        &self,
        prefix: &'static [u8],
    ) -> impl Iterator<Item = Result<(usize, Vec<u8>, Vec<u8>)>> + '_ {
        let mut scans: Vec<_> = self
            .tables
            .iter()
            .map(|t| t.scan(prefix).peekable())
            .collect();
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            // The smallest key at the head of any scan; the newest table wins a tie.
            let mut best: Option<(usize, Vec<u8>)> = None;
            for (i, s) in scans.iter_mut().enumerate() {
                match s.peek() {
                    None => {}
                    Some(Err(_)) => {
                        failed = true;
                        return s.next().map(|r| r.map(|(k, v)| (i, k, v)));
                    }
                    Some(Ok((k, _))) if best.as_ref().is_none_or(|(_, b)| k < b) => {
                        best = Some((i, k.clone()));
                    }
                    Some(Ok(_)) => {}
                }
            }
            let (winner, key) = best?;
            let mut out = None;
            for (i, s) in scans.iter_mut().enumerate() {
                if matches!(s.peek(), Some(Ok((k, _))) if *k == key) {
                    if let Some(Ok((k, v))) = s.next() {
                        if i == winner {
                            out = Some((i, k, v));
                        }
                    }
                }
            }
            out.map(Ok)
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

fn decode_head(path: &Path, bytes: &[u8], next_version: u64) -> Result<VersionId> {
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
    Ok(VersionId(id))
}

fn decode_version(
    path: &Path,
    key: &[u8],
    bytes: &[u8],
    counters: (u64, u64),
) -> Result<VersionMeta> {
    let meta: VersionMeta = serde_json::from_slice(bytes)
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

/// Writes one table from records in key order: runs (`r` keys) first, then versions.
pub(crate) fn write_table(
    fs: &dyn FileSystem,
    dir: &Path,
    id: u64,
    runs: &mut dyn Iterator<Item = Result<(String, VersionId)>>,
    versions: &mut dyn Iterator<Item = Result<Arc<VersionMeta>>>,
) -> Result<u64> {
    let mut w = TableWriter::create(fs, dir, id)?;
    for r in runs {
        let (name, head) = r?;
        w.add(&run_key(&name), &head.0.to_le_bytes())?;
    }
    for v in versions {
        let v = v?;
        let json = serde_json::to_vec(&*v).map_err(|e| Error::InvalidInput(e.to_string()))?;
        w.add(&version_key(v.id), &json)?;
    }
    w.finish()
}
