//! The store: a directory holding segments, the manifest and run locks. `Store` is the entry
//! point of the API: it resolves references, lists runs and versions with their status,
//! draws lineages, counts rows and purges archived versions; `Store::run` (in `writer/`)
//! starts, rewinds and forks runs.
//!
//! Its files (`MANIFEST`, `LOCK`, `segments/`, `locks/`) are docs/FORMAT.md's "Store
//! layout".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, IoContext, Result};
use crate::io::FileSystem;
use crate::lock;
use crate::manifest::log::ManifestLog;
use crate::manifest::{Config, ConfigJson, Edit, Origin, State, VersionMeta};
use crate::options::{Durability, Options};
use crate::reference::{IntoReference, Reference, Target};
use crate::types::{SegmentId, VersionId};

pub(crate) const SEGMENT_DIR: &str = "segments";

/// The status of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The head of its run, with a writer holding it now (W&B's word; steplog before
    /// 2026-12-04 said `live`).
    Running,
    /// The head of its run, finished by its writer.
    Finished,
    /// The head of its run, whose writer went away without finishing (a crash). It can be
    /// resumed or rewound; its committed rows are all readable.
    Crashed,
    /// A former head, archived by a rewind: read-only, readable under its version id.
    Archived,
    /// An archived version that was purged: its rows are no longer readable.
    Purged,
}

impl Status {
    /// The name [`Status::Running`] had before 2026-12-04 (its word was `live`).
    #[deprecated(note = "renamed Status::Running, W&B's word; its name() is \"running\"")]
    #[allow(non_upper_case_globals)]
    pub const Live: Status = Status::Running;

    /// The status as a lowercase word.
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Crashed => "crashed",
            Status::Archived => "archived",
            Status::Purged => "purged",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One version of a run, as listed by [`Store::versions`].
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    /// Its immutable id.
    pub id: VersionId,
    /// The run it belongs (or belonged) to.
    pub run: String,
    /// Its status.
    pub status: Status,
    /// Whether it started a run, continued one after a rewind, was forked, or started a
    /// run again from nothing (a restart).
    pub origin: Origin,
    /// The version it continues and the last step taken from it.
    pub parent: Option<Parent>,
    /// For a restart ([`Origin::Restart`]): the archived version it started again from, of
    /// which it keeps no row.
    pub restart_of: Option<VersionId>,
    /// Its config (a JSON object).
    pub config: serde_json::Value,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
}

impl VersionInfo {
    /// How the version came to be, in words, for drawings, legends and pages: "rewound from
    /// v3 at step 40", "forked from v2 at step 80000", "restarted from v3 (keeping no row)";
    /// `None` for the first version of a new run.
    pub fn how_made(&self) -> Option<String> {
        match (self.origin, self.parent, self.restart_of) {
            (Origin::Rewind, Some(p), _) => {
                Some(format!("rewound from {} at step {}", p.version, p.step))
            }
            (Origin::Fork, Some(p), _) => {
                Some(format!("forked from {} at step {}", p.version, p.step))
            }
            (Origin::Restart, _, Some(p)) => Some(format!("restarted from {p} (keeping no row)")),
            _ => None,
        }
    }
}

/// One run, as listed by [`Store::runs`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The run's name.
    pub name: String,
    /// Its head version.
    pub head: VersionId,
    /// The head's status.
    pub status: Status,
    /// The last step of its history, if it has rows.
    pub last_step: Option<u64>,
    /// Number of rows in its history.
    pub rows: u64,
    /// Why its rows could not be counted, when its data is damaged or missing (then `rows`
    /// is 0 and `last_step` `None`): one damaged run does not hide the others.
    /// `Store::verify` tells the whole damage.
    pub damage: Option<String>,
}

/// Where a version branches from: the version it continues and the last step it takes from
/// it (a rewind's cutoff, a fork's step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The version continued.
    pub version: VersionId,
    /// The last step taken from it.
    pub step: u64,
}

/// What a reference resolves to (see [`Store::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The readable version it names (a run's head, or the version itself).
    pub version: VersionId,
    /// The step it is read up to, if it names one (`NAME?_step=S`).
    pub step: Option<u64>,
}

/// A version's rows and its last step, as [`Store::rows`] counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowCount {
    /// Rows of its `history` stream.
    pub rows: u64,
    /// The last step among them (`None`: no row).
    pub last_step: Option<u64>,
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub options: Options,
    pub manifest: Mutex<ManifestLog>,
    /// The open segments (`src/cache.rs`).
    pub cache: crate::cache::SegmentCache,
    /// Lower bounds of the first step of versions' whole histories, per stream (`None`: no
    /// row, for versions no writer can add to), kept by `Store::first_step_of`.
    pub first_steps: Mutex<HashMap<(VersionId, crate::Stream), Option<u64>>>,
}

/// An open store. Cheap to clone; clones share caches. Any number of threads and processes
/// may read a store while writers write it.
///
/// ```
/// # fn main() -> steplog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = steplog::Store::open(dir.path())?;
/// let mut run = store.run("demo").start()?;
/// run.log_at(0, [("loss", 1.0)])?;
/// run.finish()?;
/// assert_eq!(store.summary("demo")?.rows, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

pub(crate) fn lock_poisoned<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses a config given as JSON: it must be an object of at most
/// [`MAX_CONFIG_BYTES`](crate::limits::MAX_CONFIG_BYTES) of JSON.
pub(crate) fn config_object(value: serde_json::Value) -> Result<Config> {
    match value {
        serde_json::Value::Object(map) => {
            check_config(&map)?;
            Ok(map)
        }
        other => Err(not_an_object(&other)),
    }
}

/// Refuses a config larger than [`MAX_CONFIG_BYTES`](crate::limits::MAX_CONFIG_BYTES) of
/// JSON: configs live in the manifest, which every process reads.
pub(crate) fn check_config(config: &Config) -> Result<()> {
    /// Counts the bytes written to it, keeping none.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let len = serde_json::to_writer(&mut count, config).map_or(usize::MAX, |()| count.0);
    check_config_len(len)
}

fn check_config_len(len: usize) -> Result<()> {
    let limit = crate::limits::MAX_CONFIG_BYTES;
    if len > limit {
        return Err(Error::InvalidInput(format!(
            "a config is at most {limit} bytes of JSON; this one is {len} bytes"
        )));
    }
    Ok(())
}

fn not_an_object(value: &serde_json::Value) -> Error {
    Error::InvalidInput(format!("a config must be a JSON object, not {value}"))
}

/// [`config_object`], as the manifest keeps it: its JSON text, serialized once.
pub(crate) fn config_json(value: serde_json::Value) -> Result<ConfigJson> {
    let map = match value {
        serde_json::Value::Object(map) => map,
        other => return Err(not_an_object(&other)),
    };
    let config = ConfigJson::of(&map);
    check_config_len(config.text().len())?;
    Ok(config)
}

/// `over` merged into `base`: objects merge key by key, recursively; anything else replaces.
/// The result must stay within [`MAX_CONFIG_BYTES`](crate::limits::MAX_CONFIG_BYTES).
/// `None`: `base` as it is.
pub(crate) fn merge_config(base: &Config, over: Option<&Config>) -> Result<Config> {
    let Some(over) = over else {
        return Ok(base.clone());
    };
    fn merge(base: &Config, over: &Config) -> Config {
        let mut out = base.clone();
        for (k, v) in over {
            match (out.get_mut(k), v) {
                (Some(serde_json::Value::Object(a)), serde_json::Value::Object(b)) => {
                    *a = merge(a, b);
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }
    let merged = merge(base, over);
    check_config(&merged)?;
    Ok(merged)
}

impl Options {
    /// Opens (or creates) the store in directory `dir` with these options.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir.as_ref(), self)
    }
}

impl Store {
    /// Opens the store in `dir` with default [`Options`], creating it if it does not exist.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Options::default().open(dir)
    }

    pub(crate) fn open_with(dir: &Path, options: Options) -> Result<Store> {
        let fs = options.fs.clone();
        // A new store gets its directories; an existing one is only read here (a reader never
        // creates anything: writers make `locks/` and `segments/` when they need them).
        if !crate::io::exists(&*fs, &dir.join(crate::manifest::log::MANIFEST)).at(dir)? {
            if !options.create {
                return Err(Error::StoreNotFound {
                    dir: dir.to_owned(),
                });
            }
            for d in [
                dir.to_owned(),
                dir.join(SEGMENT_DIR),
                dir.join(lock::LOCK_DIR),
            ] {
                fs.create_dir_all(&d).at(&d)?;
            }
        }
        let sync = options.durability == Durability::PowerLoss;
        let manifest = ManifestLog::open(
            fs,
            dir,
            sync,
            options.manifest_compaction_bytes,
            options.lock_timeout,
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                cache: crate::cache::SegmentCache::new(options.segment_cache),
                options,
                manifest: Mutex::new(manifest),
                first_steps: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    pub(crate) fn fs(&self) -> &dyn FileSystem {
        &*self.inner.options.fs
    }

    pub(crate) fn segment_dir(&self) -> PathBuf {
        self.inner.dir.join(SEGMENT_DIR)
    }

    pub(crate) fn segment_path(&self, id: SegmentId) -> PathBuf {
        self.inner.dir.join(SEGMENT_DIR).join(id.file_name())
    }

    /// Where errors say an inline segment is: in the manifest (its `inline` edit, or a
    /// table's record), named as `MANIFEST#segment-<id>`.
    pub(crate) fn inline_path(&self, id: SegmentId) -> PathBuf {
        self.inner.dir.join(format!("MANIFEST#segment-{id}"))
    }

    /// Creates a new head segment of `version`'s `stream` and records it in the manifest.
    /// The file is created first, under the manifest lock, with an id no file has: a
    /// recorded segment always has its file (with [`Durability::PowerLoss`] the file and its
    /// directory entry are durable before the edit is), so a missing one is damage; and an
    /// existing file is never overwritten, even when a manifest cut back by a crash has
    /// forgotten that its id was used (such a file is skipped, and left for `gc`).
    pub(crate) fn create_segment(
        &self,
        version: VersionId,
        stream: crate::Stream,
    ) -> Result<crate::segment::writer::SegmentWriter> {
        let sync = self.inner.options.durability == Durability::PowerLoss;
        self.transact(|state| {
            let mut id = state.next_segment;
            let mut made_dir = false;
            loop {
                let path = self.segment_path(SegmentId(id));
                let header = crate::segment::SegmentHeader::new(stream, version, SegmentId(id));
                match crate::segment::writer::SegmentWriter::create(self.fs(), &path, header, sync)
                {
                    Ok(w) => {
                        let edit = Edit::AddSegment {
                            version,
                            stream,
                            segment: SegmentId(id),
                        };
                        return Ok((vec![edit], w));
                    }
                    // `segments/` is made by the first writer that needs it (readers create
                    // nothing), not checked before every segment.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound && !made_dir =>
                    {
                        let dir = self.segment_dir();
                        self.fs().create_dir_all(&dir).at(&dir)?;
                        made_dir = true;
                    }
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        id = id
                            .checked_add(1)
                            .ok_or_else(|| Error::corrupt(&path, 0, "segment ids exhausted"))?;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// The manifest state, brought up to date with what other processes committed.
    pub(crate) fn state(&self) -> Result<Arc<State>> {
        let mut m = lock_poisoned(&self.inner.manifest);
        m.refresh(false)?;
        Ok(m.state())
    }

    /// The state as this process last read it, not refreshed (for what never changes once
    /// recorded, such as an inline segment's bytes).
    pub(crate) fn current_state(&self) -> Arc<State> {
        lock_poisoned(&self.inner.manifest).state()
    }

    pub(crate) fn transact<T>(
        &self,
        f: impl FnOnce(&State) -> Result<(Vec<Edit>, T)>,
    ) -> Result<T> {
        lock_poisoned(&self.inner.manifest).transact(f)
    }

    /// Waits for this process's manifest compaction in flight, if any, and puts it in place.
    pub(crate) fn settle_manifest(&self) -> Result<()> {
        lock_poisoned(&self.inner.manifest).settle()
    }

    /// Rewrites the manifest in the current format if an older steplog wrote it.
    pub(crate) fn upgrade_manifest(&self) -> Result<()> {
        lock_poisoned(&self.inner.manifest).upgrade()
    }

    pub(crate) fn manifest_path(&self) -> PathBuf {
        lock_poisoned(&self.inner.manifest).path().to_owned()
    }

    /// Resolves a reference (`RUN`, `v12`, `RUN?_step=S`, a [`VersionId`]) to a readable
    /// version and the step it names, if any.
    pub fn resolve(&self, reference: impl IntoReference) -> Result<Resolved> {
        let (_, version, step) = self.read_target(reference)?;
        Ok(Resolved { version, step })
    }

    /// The status of a version (probing its run's lock once), a crashed verdict settled
    /// against the manifest as it is now. Takes the manifest's lock: never call it under
    /// [`transact`](Self::transact) (use [`probe_status`](Self::probe_status) there).
    pub(crate) fn status_of(&self, state: &State, meta: &VersionMeta) -> Result<Status> {
        let s = self.probe_status(state, meta)?;
        self.settle_crashed(s, meta.id)
    }

    /// The status of a version in `state` (probing its run's lock once), not settled: what
    /// a caller holding the manifest's lock uses, whose state is the current one.
    pub(crate) fn probe_status(&self, state: &State, meta: &VersionMeta) -> Result<Status> {
        status(state, meta, || {
            lock::is_locked(self.fs(), &self.inner.dir, &meta.run)
        })
    }

    /// A `Crashed` verdict from a state read before the lock was probed (a snapshot's, or a
    /// listing's) may be a writer that finished in between: it records its finish, then
    /// lets its lock go. The manifest as it is now settles it, so that a finished run is
    /// never reported crashed.
    fn settle_crashed(&self, status: Status, v: VersionId) -> Result<Status> {
        if status != Status::Crashed {
            return Ok(status);
        }
        Ok(match self.state()?.meta(v)? {
            Some(now) if now.finished => Status::Finished,
            _ => Status::Crashed,
        })
    }

    /// The run locks held now, for the status of many versions at once.
    fn live_runs(&self) -> lock::LiveRuns<'_> {
        lock::LiveRuns::now(self.fs(), &self.inner.dir)
    }

    /// Every version in the store (purged ones included), by id.
    pub fn versions(&self) -> Result<Vec<VersionInfo>> {
        let state = self.state()?;
        let live = self.live_runs();
        state
            .versions()
            .map(|m| {
                let m = m?;
                let s = status(&state, &m, || live.is_live(&m.run))?;
                Ok(info(&m, self.settle_crashed(s, m.id)?))
            })
            .collect()
    }

    /// The name of every run, in name order: from the manifest's run records alone (no
    /// version record decoded, no segment read), so it costs a few bytes per run, where
    /// [`runs`](Self::runs) reads each head's record and counts its rows. What to count or
    /// page through the runs of a big store with.
    pub fn run_names(&self) -> Result<Vec<String>> {
        self.state()?
            .runs()
            .map(|r| r.map(|(name, _)| name))
            .collect()
    }

    /// One version's details.
    pub fn version(&self, reference: impl IntoReference) -> Result<VersionInfo> {
        let (state, v, _) = self.read_target(reference)?;
        self.version_in(&state, v)
    }

    /// [`version`](Self::version) `v` as `state` records it (its status probed now).
    pub(crate) fn version_in(&self, state: &State, v: VersionId) -> Result<VersionInfo> {
        let m = state.meta(v)?.ok_or_else(|| Error::VersionNotFound {
            version: v.to_string(),
        })?;
        Ok(info(&m, self.status_of(state, &m)?))
    }

    /// Every run, by name, with its head's status, last step and row count.
    pub fn runs(&self) -> Result<Vec<RunInfo>> {
        self.runs_in(&*self.state()?)
    }

    /// [`runs`](Self::runs) as `state` records them (statuses probed now).
    pub(crate) fn runs_in(&self, state: &State) -> Result<Vec<RunInfo>> {
        let mut out = Vec::new();
        // One memo for every run: forks share their ancestries.
        let mut memo = crate::read::RowMemo::new();
        let live = self.live_runs();
        // The heads are the versions neither archived nor purged (`State::validate`):
        // streamed in id order, they need no lookup by name (a lookup per run would read
        // a table block per run of a big store), then sorted by name.
        for meta in state.versions() {
            let meta = meta?;
            if meta.archived || meta.purged {
                continue;
            }
            let (name, head) = (&meta.run, &meta.id);
            let counted =
                self.count_rows_of(state, meta.clone(), None, crate::Stream::History, &mut memo);
            let (counted, damage) = match counted {
                Ok(c) => (c, None),
                Err(e) if e.is_corruption() => ((0, None), Some(e.to_string())),
                Err(e) => return Err(e),
            };
            out.push(RunInfo {
                name: name.clone(),
                head: *head,
                // Listed as a head (checked below: no run has two).
                status: self.settle_crashed(
                    status_with(state, &meta, true, || live.is_live(name))?,
                    *head,
                )?,
                last_step: counted.1,
                rows: counted.0,
                damage,
            });
        }
        // Names are unique (checked next), so an unstable sort gives the one order.
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = out.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::corrupt(
                self.manifest_path(),
                0,
                format!(
                    "run '{}' has two heads, {} and {} (neither is archived)",
                    w[0].name, w[0].head, w[1].head
                ),
            ));
        }
        Ok(out)
    }

    /// Forks a new run `name` from the version `source` refers to at `step`, finished at
    /// once, and returns its head: `store.run(name).fork_from(source, step).apply()`.
    #[deprecated(note = "use `store.run(name).fork_from(source, step).config(c).apply()`")]
    pub fn fork(
        &self,
        source: &str,
        step: u64,
        name: &str,
        config: Option<serde_json::Value>,
    ) -> Result<VersionId> {
        // As it always did: the step given wins over one the source names.
        let source = Reference {
            step: None,
            ..source.into_reference()?
        };
        let mut b = self.run(name).fork_from(source, step);
        if let Some(c) = config {
            b = b.config(c);
        }
        Ok(b.apply()?.head)
    }

    /// Purges an archived version: it is no longer readable, and its segments are deleted
    /// once no other version needs them (a version rewound or forked from it keeps the
    /// segments holding its steps up to the cutoff). Returns the number of files deleted
    /// (an inline segment is no file: its bytes leave the manifest with the purge's edit, and
    /// its tables at their next merges).
    pub fn purge(&self, version: VersionId) -> Result<usize> {
        self.purge_with(version, &crate::Quiet)
    }

    /// [`purge`](Self::purge), telling `progress` the segment files deleted.
    pub fn purge_with(&self, version: VersionId, progress: &dyn crate::Progress) -> Result<usize> {
        let (inline, files) = self.transact(|state| {
            let meta = state.meta(version)?.ok_or_else(|| Error::VersionNotFound {
                version: version.to_string(),
            })?;
            if meta.purged {
                return Err(Error::Purged {
                    version: version.to_string(),
                });
            }
            if !meta.archived {
                // Under the manifest's lock: `status_of` would take it again.
                return Err(Error::NotArchived {
                    version: version.to_string(),
                    status: self.probe_status(state, &meta)?.to_string(),
                });
            }
            let u = self.unneeded_segments(state, &[version])?;
            let files = u.files();
            let edit = Edit::Purge {
                version,
                dropped: u.dropped,
                owners: u.owners,
            };
            Ok((vec![edit], (u.inline, files)))
        })?;
        self.remove_segments("purge", &inline, &files, progress)
    }

    /// After a purge's or delete's edit: forgets the dropped inline segments, and deletes
    /// the files of the dropped segments (a file already gone is no error: a purge killed
    /// midway is finished by `gc`). Returns the number of files deleted.
    pub(crate) fn remove_segments(
        &self,
        stage: &str,
        inline: &std::collections::HashSet<SegmentId>,
        files: &[SegmentId],
        progress: &dyn crate::Progress,
    ) -> Result<usize> {
        for id in inline {
            self.inner.cache.forget(*id);
        }
        let mut deleted = 0;
        progress.begin(stage, files.len() as u64, crate::progress::Unit::Items);
        for (done, id) in files.iter().enumerate() {
            progress.update(done as u64);
            self.inner.cache.forget(*id);
            let path = self.segment_path(*id);
            match self.fs().remove_file(&path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        if self.inner.options.durability == Durability::PowerLoss && deleted > 0 {
            let dir = self.inner.dir.join(SEGMENT_DIR);
            self.fs().sync_dir(&dir).at(&dir)?;
        }
        Ok(deleted)
    }

    /// What no version needs once `purging` are purged too: every segment of a purged
    /// version (or of one of `purging`) that no other version reads, with the versions owning
    /// them, and which of them are inline (no file). The one rule of purge and delete.
    pub(crate) fn unneeded_segments(
        &self,
        state: &State,
        purging: &[VersionId],
    ) -> Result<Unneeded> {
        let needed = state.needed_segments(purging)?;
        let purging: std::collections::HashSet<VersionId> = purging.iter().copied().collect();
        let mut out = Unneeded::default();
        for m in state.versions() {
            let m = m?;
            if !(m.purged || purging.contains(&m.id)) {
                continue;
            }
            let gone: Vec<&crate::manifest::SegmentMeta> = m
                .all_segments()
                .filter(|s| !needed.contains(&s.id))
                .collect();
            if !gone.is_empty() {
                out.owners.push(m.id);
                out.dropped.extend(gone.iter().map(|s| s.id));
                out.inline
                    .extend(gone.iter().filter(|s| s.inline).map(|s| s.id));
            }
        }
        Ok(out)
    }
}

/// Segments no version needs: what a purge or delete edit drops.
#[derive(Default)]
pub(crate) struct Unneeded {
    pub dropped: Vec<SegmentId>,
    pub owners: Vec<VersionId>,
    /// The dropped segments carried in the manifest (no file).
    pub inline: std::collections::HashSet<SegmentId>,
}

impl Unneeded {
    /// The dropped segments that are files.
    pub fn files(&self) -> Vec<SegmentId> {
        self.dropped
            .iter()
            .copied()
            .filter(|id| !self.inline.contains(id))
            .collect()
    }
}

/// Finds the version a target names; purged versions are refused.
/// What [`Store::versions`] says of a version.
fn info(m: &VersionMeta, status: Status) -> VersionInfo {
    VersionInfo {
        id: m.id,
        run: m.run.clone(),
        status,
        origin: m.origin,
        parent: m.parent.map(|(version, step)| Parent { version, step }),
        restart_of: m.restart_of,
        config: serde_json::Value::Object(m.config.map()),
        created: m.created,
    }
}

/// The status of a version; `writer_holds_lock` is asked only for an unfinished head.
fn status(
    state: &State,
    meta: &VersionMeta,
    writer_holds_lock: impl FnOnce() -> bool,
) -> Result<Status> {
    status_with(state, meta, false, writer_holds_lock)
}

/// [`status`], for a version known to be its run's head (`known_head`: a listing's, whose
/// heads are the versions neither archived nor purged) without looking it up again.
fn status_with(
    state: &State,
    meta: &VersionMeta,
    known_head: bool,
    writer_holds_lock: impl FnOnce() -> bool,
) -> Result<Status> {
    Ok(if meta.purged {
        Status::Purged
    } else if meta.archived {
        Status::Archived
    } else if meta.finished {
        Status::Finished
    } else if (known_head || state.is_head(meta)?) && writer_holds_lock() {
        Status::Running
    } else {
        Status::Crashed
    })
}

pub(crate) fn resolve_target(state: &State, target: &Target) -> Result<VersionId> {
    let v = match target {
        Target::Run(name) => state
            .head(name)?
            .ok_or_else(|| Error::RunNotFound { run: name.clone() })?,
        Target::Version(v) => *v,
    };
    match state.meta(v)? {
        None => Err(Error::VersionNotFound {
            version: v.to_string(),
        }),
        Some(m) if m.purged => Err(Error::Purged {
            version: v.to_string(),
        }),
        Some(_) => Ok(v),
    }
}

/// A lineage tree, flat (a tree ten thousand rewinds deep is a list, not ten thousand nested
/// values): every version descended from a root, by rewinds and forks, purged ones included.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    /// The versions: the root first, every version after its parent (by id, as a parent is
    /// always older than its children).
    pub versions: Vec<VersionInfo>,
    /// `children[i]`: the indexes in `versions` of the children of `versions[i]`, oldest
    /// first.
    pub children: Vec<Vec<usize>>,
}

impl Lineage {
    /// The root: the oldest ancestor.
    pub fn root(&self) -> &VersionInfo {
        &self.versions[0]
    }

    /// The index of version `id`, if it is in the tree.
    pub fn index_of(&self, id: VersionId) -> Option<usize> {
        self.versions.binary_search_by_key(&id, |v| v.id).ok()
    }

    /// The versions in depth-first order (a parent, then each child's subtree, oldest child
    /// first), each with its depth (the root's is 0). Iterative: any depth.
    pub fn depth_first(&self) -> Vec<Visit> {
        let mut out = Vec::with_capacity(self.versions.len());
        let mut stack = vec![Visit { index: 0, depth: 0 }];
        while let Some(visit) = stack.pop() {
            out.push(visit);
            for &c in self.children[visit.index].iter().rev() {
                stack.push(Visit {
                    index: c,
                    depth: visit.depth + 1,
                });
            }
        }
        out
    }
}

/// One step of [`Lineage::depth_first`]: a version (its index in `versions`) and its depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    /// The version's index in [`Lineage::versions`].
    pub index: usize,
    /// Its depth in the tree (the root's is 0).
    pub depth: usize,
}

impl Store {
    /// The lineage tree around the version `reference` names: rooted at its oldest ancestor,
    /// holding every version descended from that root (rewinds and forks, purged included).
    /// Linear in the versions of the store.
    pub fn lineage(&self, reference: impl IntoReference) -> Result<Lineage> {
        let v = self.resolve(reference)?.version;
        let mut infos = self.versions()?;
        infos.sort_by_key(|i| i.id);
        let index = |id: VersionId| infos.binary_search_by_key(&id, |i| i.id).ok();
        // A version's place in the tree: under its parent, or under what it restarted.
        let above = |i: &VersionInfo| i.parent.map(|p| p.version).or(i.restart_of);
        let mut root = v;
        while let Some(p) = index(root).and_then(|i| above(&infos[i])) {
            if p >= root {
                break; // parents are older (State::validate); never loop
            }
            root = p;
        }
        // Versions in id order are in tree order: a version is in the tree when it is the
        // root or its parent is.
        let mut pos: HashMap<VersionId, usize> = HashMap::new();
        let mut lineage = Lineage {
            versions: Vec::new(),
            children: Vec::new(),
        };
        for info in infos.into_iter().filter(|i| i.id >= root) {
            let parent = match above(&info) {
                _ if info.id == root => None,
                Some(p) => match pos.get(&p) {
                    Some(&p) => Some(p),
                    None => continue,
                },
                None => continue,
            };
            let at = lineage.versions.len();
            if let Some(p) = parent {
                lineage.children[p].push(at);
            }
            pos.insert(info.id, at);
            lineage.versions.push(info);
            lineage.children.push(Vec::new());
        }
        Ok(lineage)
    }

    /// [`rows`](Self::rows) of many versions at once, each `Ok` or its own error (a damaged
    /// segment fails the versions that read it, not the others). Linear in the versions of
    /// their lineages: what two versions share is counted once.
    pub fn rows_of(&self, versions: &[VersionId]) -> Result<Vec<Result<RowCount>>> {
        let state = self.state()?;
        let mut memo = crate::read::RowMemo::new();
        Ok(versions
            .iter()
            .map(|&v| {
                if state.meta(v)?.is_none() {
                    return Err(Error::VersionNotFound {
                        version: v.to_string(),
                    });
                }
                self.count_rows_memo(&state, v, None, crate::Stream::History, &mut memo)
                    .map(|(rows, last_step)| RowCount { rows, last_step })
            })
            .collect())
    }

    /// Number of rows in a version's history and its last step (with `?_step=S`, of the
    /// rows up to S).
    pub fn rows(&self, reference: impl IntoReference) -> Result<RowCount> {
        let (state, v, step) = self.read_target(reference)?;
        let (rows, last_step) = self.count_rows_memo(
            &state,
            v,
            step,
            crate::Stream::History,
            &mut Default::default(),
        )?;
        Ok(RowCount { rows, last_step })
    }
}
