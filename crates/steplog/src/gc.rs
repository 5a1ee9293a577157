//! `gc`: removes segment files the manifest no longer needs, which a purge killed between its
//! edit and its deletions, or a writer killed between creating a segment and recording it,
//! left behind, and manifest tables a compaction replaced but a crash kept it from deleting.
//! Opening never deletes anything; this is the explicit, safe way.
//!
//! Architecture invariant: runs under the store's `LOCK` on the latest manifest (no segment
//! is being created meanwhile), and deletes an unreferenced file only when it provably holds
//! nothing anyone can read: it belongs to a purged version, or it holds no block. Any other
//! unreferenced file may hold rows whose manifest edits were lost (a manifest cut back by a
//! power loss): it is kept and reported.

use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};
use crate::io::OpenMode;
use crate::options::Durability;
use crate::segment::{SegmentHeader, HEADER_LEN};
use crate::store::{Store, SEGMENT_DIR};
use crate::types::SegmentId;

/// What [`Store::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Files deleted.
    pub deleted: Vec<PathBuf>,
    /// Their bytes.
    pub bytes: u64,
    /// Unreferenced files kept, each with why.
    pub kept: Vec<(PathBuf, String)>,
}

impl Store {
    /// Deletes the segment files no version needs that provably hold nothing readable (see
    /// the module doc); reports the unreferenced files it keeps. Safe while other processes
    /// read and write the store.
    pub fn gc(&self) -> Result<GcReport> {
        // This process's own compaction in flight is put in place first: its tables are not
        // a crashed compaction's.
        self.settle_manifest()?;
        let dir = self.dir().join(SEGMENT_DIR);
        let report = self.transact(|state| {
            let mut referenced = std::collections::HashSet::new();
            for v in state.versions() {
                // An inline segment's bytes are in the manifest: a file of its id is not it.
                referenced.extend(v?.all_segments().filter(|s| !s.inline).map(|s| s.id));
            }
            let mut report = GcReport::default();
            let mut names = self.fs().read_dir(&dir).at(&dir)?;
            names.sort();
            for name in names {
                let Some(id) = name
                    .strip_suffix(".seg")
                    .filter(|n| n.len() == 16)
                    .and_then(|n| n.parse::<u64>().ok())
                    .map(SegmentId)
                else {
                    continue;
                };
                if referenced.contains(&id) {
                    continue;
                }
                let path = dir.join(&name);
                let file = match self.fs().open(&path, OpenMode::Read) {
                    Ok(f) => f,
                    // Not a readable regular file (a directory, a FIFO): not gc's to remove.
                    Err(e) => {
                        report
                            .kept
                            .push((path, format!("cannot be read ({e}); kept")));
                        continue;
                    }
                };
                let len = file.len().at(&path)?;
                let mut head = vec![0u8; (len as usize).min(HEADER_LEN)];
                file.read_exact_at(&mut head, 0).at(&path)?;
                drop(file);
                let header = (head.len() == HEADER_LEN)
                    .then(|| SegmentHeader::decode(&head).ok())
                    .flatten();
                let purged = match header {
                    Some(h) => state.meta(h.version)?.is_some_and(|v| v.purged),
                    None => false,
                };
                if purged || len <= HEADER_LEN as u64 {
                    match self.fs().remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::io(&path, e)),
                    }
                    self.inner.cache.forget(id);
                    report.bytes += len;
                    report.deleted.push(path);
                } else {
                    let why = match header {
                        Some(h) => format!(
                            "holds rows of {} that the manifest does not record (edits lost \
                             by a crash?); kept",
                            h.version
                        ),
                        None => "not a readable segment header; kept".into(),
                    };
                    report.kept.push((path, why));
                }
            }
            self.gc_tables(state, &mut report)?;
            Ok((Vec::new(), report))
        })?;
        if self.options().durability == Durability::PowerLoss && !report.deleted.is_empty() {
            self.fs().sync_dir(&dir).at(&dir)?;
        }
        Ok(report)
    }

    /// Manifest tables the manifest does not list: one older than the newest it lists was
    /// replaced by a compaction whose deletions a crash cut short, and is deleted; a newer
    /// one is a crashed compaction's or holds the state of a manifest that was cut back, and
    /// is kept and reported.
    fn gc_tables(&self, state: &crate::manifest::State, report: &mut GcReport) -> Result<()> {
        use crate::manifest::table::TABLE_DIR;
        let dir = self.dir().join(TABLE_DIR);
        let listed: Vec<u64> = state.base().sizes().iter().map(|t| t.0).collect();
        let newest = listed.iter().copied().max();
        let names = match self.fs().read_dir(&dir) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for name in names {
            let Some(id) = name
                .strip_suffix(".tab")
                .filter(|n| n.len() == 16)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if listed.contains(&id) {
                continue;
            }
            let path = dir.join(&name);
            if newest.is_some_and(|n| id < n) {
                let len = self
                    .fs()
                    .open(&path, OpenMode::Read)
                    .and_then(|f| f.len())
                    .unwrap_or(0);
                match self.fs().remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(&path, e)),
                }
                report.bytes += len;
                report.deleted.push(path);
            } else {
                let why = "a manifest table the manifest does not list, newer than those it \
                           lists (a crashed compaction's, or the state of a manifest cut back); \
                           kept"
                    .to_owned();
                report.kept.push((path, why));
            }
        }
        Ok(())
    }
}
