//! Deleting a run: one `delete` manifest edit (manifest format 7) archives and purges every
//! version of the run and frees its name, then the segment files no other version needs are
//! deleted, as a purge deletes them. The rule of what stays is the purge's
//! (`Store::unneeded_segments`): a run forked from one of the deleted versions keeps every
//! row it reads, and the deleted versions stay in the manifest as purged records, so that
//! lineages that pass through them keep their links.
//!
//! A writer in any process holds the run's lock while it writes: the delete takes the same
//! lock, so it is refused (`Locked`) while a writer lives, and no writer can start on the
//! run during the edit. Crash analysis: the edit is one append (all or nothing); files are
//! deleted only after it is durable, and a crash between leaves files no version refers to,
//! which `steplog gc` deletes.

use crate::error::{Error, Result};
use crate::lock;
use crate::manifest::Edit;
use crate::store::Store;
use crate::types::VersionId;

/// What [`Store::delete`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The run.
    pub run: String,
    /// Its versions that were purged by the delete (those a purge had purged before are not
    /// listed), newest first.
    pub versions: Vec<VersionId>,
    /// Segment files deleted (inline segments leave the manifest with the edit and are no
    /// file).
    pub files: usize,
}

impl Store {
    /// Deletes run `run` with all its versions: its name is free again, its rows are no
    /// longer readable (its versions become purged), and the segment files no other version
    /// needs are deleted. A run forked from one of its versions keeps reading every row it
    /// read. Refused with `Locked` while a writer holds the run (in any process), and with
    /// `RunNotFound` for a run that does not exist. On a store of an older manifest format,
    /// the manifest is first rewritten in the current one (after which an older steplog
    /// refuses the store, naming the format).
    pub fn delete(&self, run: &str) -> Result<Deleted> {
        self.delete_with(run, &crate::Quiet)
    }

    /// [`delete`](Self::delete), telling `progress` the segment files deleted.
    pub fn delete_with(&self, run: &str, progress: &dyn crate::Progress) -> Result<Deleted> {
        if self.state()?.head(run)?.is_none() {
            return Err(Error::RunNotFound { run: run.into() });
        }
        let _lock = lock::lock_run(self.fs(), self.dir(), run)?;
        if !self.current_state().takes_delete() {
            self.upgrade_manifest()?;
        }
        let (versions, inline, files) = self.transact(|state| {
            if !state.takes_delete() {
                return Err(Error::InvalidInput(
                    "the store's manifest was rewritten in an older format while deleting (an \
                     older steplog compacted it): delete again"
                        .into(),
                ));
            }
            let head = state
                .head(run)?
                .ok_or_else(|| Error::RunNotFound { run: run.into() })?;
            // The run's versions: its head, and what it rewound or restarted, down the
            // links that stay inside the run (a fork's parent is another run's).
            let mut versions = Vec::new();
            let mut at = Some(head);
            while let Some(v) = at {
                let meta = state.meta_of(v)?;
                if meta.run != run {
                    break;
                }
                if !meta.purged {
                    versions.push(v);
                }
                at = meta.parent.map(|(p, _)| p).or(meta.restart_of);
            }
            let u = self.unneeded_segments(state, &versions)?;
            let files = u.files();
            let edit = Edit::Delete {
                run: run.to_owned(),
                head,
                purged: versions.clone(),
                dropped: u.dropped,
                owners: u.owners,
            };
            Ok((vec![edit], (versions, u.inline, files)))
        })?;
        let files = self.remove_segments("delete", &inline, &files, progress)?;
        Ok(Deleted {
            run: run.to_owned(),
            versions,
            files,
        })
    }
}
