//! A read of the store at one instant: [`Store::snapshot`].
//!
//! Every read of a [`Store`] first brings the manifest up to date (a `statx` of its path,
//! more when another process committed), so that it sees what was committed before it
//! began. A caller making many small reads (a listing with a summary and sparklines per
//! run, a page of many charts) pays that per read, and its reads may each see a different
//! store. A [`Snapshot`] takes the manifest once: every read through it resolves names and
//! versions against that state, so the reads agree with each other and cost no refresh.
//!
//! Invariants:
//! - A snapshot pins the manifest: the runs, their heads, the versions and the segments
//!   each reads are those recorded when it was taken. A run created, rewound, forked or
//!   deleted since is not seen; a sealed segment's rows never change.
//! - A live run's head segment grows by commits that write no manifest edit: its rows are
//!   read as committed when they are read, as every read of a live run does.
//! - It reads what the manifest held, never less: a version purged or deleted since is
//!   still named by it. Its inline segments are read whole from the manifest the snapshot
//!   holds; a segment file deleted since reads as `MissingFile` (as for a read already
//!   under way); never fewer rows, never another version's.
//! - Statuses are probed when read (a run's lock), and a writer that finished since is
//!   `finished`, never `crashed` (`Store::settle_crashed`).

use std::ops::RangeBounds;
use std::sync::Arc;

use crate::downsample::Downsampled;
use crate::error::Result;
use crate::manifest::State;
use crate::read::bounds;
use crate::reference::IntoReference;
use crate::store::{RunInfo, Store, VersionInfo};
use crate::summary::Summary;
use crate::types::VersionId;

/// The store as it was when [`Store::snapshot`] was called: reads through it see the runs
/// and versions recorded then, and no run or version made after (a live run's head is read
/// as committed when read, as by any read). Cheap to take; it holds no lock, only the
/// manifest it read (tables a compaction replaced stay open until it is dropped).
pub struct Snapshot<'s> {
    store: &'s Store,
    state: Arc<State>,
}

impl Store {
    /// The store as it is now, for many reads that must agree with each other or that are
    /// too small to pay a manifest refresh each (see [`Snapshot`]).
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        Ok(Snapshot {
            store: self,
            state: self.state()?,
        })
    }
}

impl Snapshot<'_> {
    /// The version `reference` names in this snapshot, and its step.
    fn target(&self, reference: impl IntoReference) -> Result<(VersionId, Option<u64>)> {
        self.store
            .target_in(&self.state, &reference.into_reference()?)
    }

    /// [`Store::runs`] as of this snapshot.
    pub fn runs(&self) -> Result<Vec<RunInfo>> {
        self.store.runs_in(&self.state)
    }

    /// [`Store::version`] as of this snapshot (its status probed now).
    pub fn version(&self, reference: impl IntoReference) -> Result<VersionInfo> {
        let (v, _) = self.target(reference)?;
        self.store.version_in(&self.state, v)
    }

    /// [`Store::summary`] as of this snapshot.
    pub fn summary(&self, reference: impl IntoReference) -> Result<Summary> {
        let (v, step) = self.target(reference)?;
        self.store.summary_in(&self.state, v, step, None)
    }

    /// [`Store::downsample`] as of this snapshot.
    pub fn downsample(
        &self,
        reference: impl IntoReference,
        key: &str,
        steps: impl RangeBounds<u64>,
        buckets: usize,
    ) -> Result<Option<Downsampled>> {
        let (v, step) = self.target(reference)?;
        self.store
            .downsample_in(&self.state, v, step, key, bounds(steps), buckets, false)
    }

    /// [`Store::downsample_snapped`] as of this snapshot.
    pub fn downsample_snapped(
        &self,
        reference: impl IntoReference,
        key: &str,
        steps: impl RangeBounds<u64>,
        buckets: usize,
    ) -> Result<Option<Downsampled>> {
        let (v, step) = self.target(reference)?;
        self.store
            .downsample_in(&self.state, v, step, key, bounds(steps), buckets, true)
    }
}
