//! Starting a run: new, resumed (W&B's `resume=`), rewound (`resume_from`), restarted or
//! forked (`fork_from`); each is one manifest edit made under the run's lock, after a
//! crashed writer's head segments are sealed. What it makes ([`Begun`]) becomes a
//! [`RunWriter`].

use crate::error::{Error, Result};
use crate::lock::{self, RunLock};
use crate::manifest::{Config, Edit, State, VersionMeta};
use crate::options::Durability;
use crate::reference::{validate_run_name, IntoReference, Reference};
use crate::segment::reader::Sealed;
use crate::segment::writer::{SealInfo, SegmentWriter};
use crate::segment::SegmentHeader;
use crate::store::{config_object, merge_config, now_secs, resolve_target, Store};
use crate::types::{Stream, VersionId};

use super::{seal_meta, RunWriter};

/// What to do when the run already exists (or does not), as W&B's `resume=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resume {
    /// Continue the run if it exists, create it otherwise. The default.
    #[default]
    Allow,
    /// Continue the run; fail with `ResumeRefused` if it does not exist.
    Must,
    /// Create the run; fail with `ResumeRefused` if it exists.
    Never,
}

impl std::str::FromStr for Resume {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "allow" => Ok(Resume::Allow),
            "must" => Ok(Resume::Must),
            "never" => Ok(Resume::Never),
            o => Err(Error::InvalidInput(format!(
                "unknown resume mode '{o}' (expected allow, must or never)"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
enum Start {
    Resume(Resume),
    Rewind(u64),
    Restart,
    /// The source (or, as `BadReference`'s reference and reason, why it is not one: reported
    /// when the run is started) and the fork step, if not the reference's own.
    Fork(
        std::result::Result<Reference, (String, String)>,
        Option<u64>,
    ),
}

/// A source as a fork keeps it until it starts: the reference, or why it is not one.
fn fork_source(source: impl IntoReference) -> std::result::Result<Reference, (String, String)> {
    source.into_reference().map_err(|e| match e {
        Error::BadReference { reference, reason } => (reference, reason),
        other => (String::new(), other.to_string()),
    })
}

/// How to start a run; made by [`Store::run`]. The one way to create, resume, rewind
/// (`resume_from`), restart or fork (`fork_from`) a run, ended by [`start`](Self::start)
/// (a writer) or [`apply`](Self::apply) (the manifest edit alone, the new head finished).
#[derive(Debug, Clone)]
#[must_use = "call .start() for a writer, or .apply() for the rewind or fork alone"]
pub struct StartRun {
    store: Store,
    name: String,
    config: Option<serde_json::Value>,
    start: Start,
}

impl Store {
    /// Starts describing how to write run `name`. By default the run is created, or
    /// continued if it exists ([`Resume::Allow`]).
    pub fn run(&self, name: &str) -> StartRun {
        StartRun {
            store: self.clone(),
            name: name.to_owned(),
            config: None,
            start: Start::Resume(Resume::Allow),
        }
    }
}

impl StartRun {
    /// The run's config (a JSON object). A new run takes it as is; a resumed, rewound or
    /// forked run gets it merged over the config it had.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = Some(config);
        self
    }

    /// What to do if the run exists or not (W&B's `resume=`).
    pub fn resume(mut self, mode: Resume) -> Self {
        self.start = Start::Resume(mode);
        self
    }

    /// Rewinds the run to `step` (W&B's `resume_from`): its head is archived, and the new head
    /// holds the rows up to `step` and takes new rows after it.
    pub fn resume_from(mut self, step: u64) -> Self {
        self.start = Start::Rewind(step);
        self
    }

    /// Starts the run again from nothing: its head is archived (readable under its id, as
    /// after a rewind) and the new head holds no row and takes new rows from step 0. For a
    /// source that starts over at step 0, which a rewind (keeping at least its step) cannot
    /// express; `lineage` shows the new head as a restart of the archived one.
    pub fn restart(mut self) -> Self {
        self.start = Start::Restart;
        self
    }

    /// Forks this new run from the version `source` names (a run's head, a version id, a
    /// [`Reference`]) at `step` (W&B's `fork_from`): the new run holds the source's rows up
    /// to `step` and takes new rows after it. A source written `NAME?_step=S` must name
    /// `step` itself (else `BadReference`: the step is given once).
    pub fn fork_from(mut self, source: impl IntoReference, step: u64) -> Self {
        self.start = Start::Fork(fork_source(source), Some(step));
        self
    }

    /// Forks from a W&B-style reference `NAME?_step=S` (or `v12?_step=S`), the step taken
    /// from the reference.
    #[deprecated(
        note = "use `fork_from(source, step)`; a `NAME?_step=S` source with the same step is accepted"
    )]
    pub fn fork_from_ref(mut self, reference: &str) -> Self {
        self.start = Start::Fork(fork_source(reference), None);
        self
    }

    /// Takes the run's lock and returns its writer. Fails with `Locked` if another writer
    /// holds the run, `RunNotFound`/`ResumeRefused`/`RunExists` as the mode requires,
    /// `StepOutOfRange` for a rewind or fork past the last step.
    pub fn start(self) -> Result<RunWriter> {
        let (store, name, lock, begun) = self.begin(false)?;
        Ok(RunWriter::new(store, name, lock, begun))
    }

    /// Makes a rewind, restart or fork as one manifest edit with no writer: the new head is
    /// finished at once, so it happened whole or not at all; no row is copied (O(1)). For a
    /// run a writer is in, fails with `Locked` (a rewind) or `RunExists` (a fork). A start
    /// that only creates or resumes a run is refused (`InvalidInput`): with no writer it
    /// would make nothing to read.
    pub fn apply(self) -> Result<Started> {
        if let Start::Resume(_) = self.start {
            return Err(Error::InvalidInput(format!(
                "run '{}': apply() makes a rewind (resume_from), restart or fork; to create or \
                 resume a run, start() a writer",
                self.name
            )));
        }
        let (_, run, _lock, begun) = self.begin(true)?;
        Ok(Started {
            run,
            head: begun.version,
            archived: begun.archived,
        })
    }

    fn begin(self, finished: bool) -> Result<(Store, String, Option<RunLock>, Begun)> {
        let StartRun {
            store,
            name,
            config,
            start,
        } = self;
        let config = config.map(config_object).transpose()?;
        validate_run_name(&name)?;
        // A fork done outside a writer creates its run finished, in one manifest edit that
        // fails if the name is taken: no writer can be in the run, so no lock is needed
        // (creating a lock file is the costliest step of a fork on many file systems).
        let lock = match (&start, finished) {
            (Start::Fork(..), true) => None,
            _ => Some(lock::lock_run(store.fs(), store.dir(), &name)?),
        };
        // No `Arc<State>` may be held across a manifest transaction: the transaction would
        // have to copy the whole state (copy-on-write), making every start O(runs).
        let existing = store.state()?.head(&name)?;
        let branched = matches!(start, Start::Rewind(_) | Start::Fork(..));
        let begun = match start {
            Start::Resume(mode) => match (existing, mode) {
                (Some(_), Resume::Never) => {
                    return Err(Error::ResumeRefused {
                        run: name,
                        reason: "it exists and resume is 'never'".into(),
                    })
                }
                (None, Resume::Must) => {
                    return Err(Error::ResumeRefused {
                        run: name,
                        reason: "it does not exist and resume is 'must'".into(),
                    })
                }
                (None, _) => create(&store, &name, config)?,
                (Some(head), _) => resume(&store, &name, head, config)?,
            },
            Start::Rewind(step) => rewind(&store, &name, Some(step), config, finished)?,
            Start::Restart => rewind(&store, &name, None, config, finished)?,
            Start::Fork(source, step) => {
                let (r, step) = fork_step(source, step)?;
                let src = resolve_target(&*store.state()?, &r.target)?;
                fork(&store, &name, src, step, config, finished)?
            }
        };
        if branched {
            pack_parent(&store, &name, begun.version);
        }
        Ok((store, name, lock, begun))
    }

    /// The lowest step the first row of `stream` may take in the writer [`start`](Self::start)
    /// would return, as the store is now, with no edit made and no lock taken: after the run's
    /// last step (in any stream; console rows may share it) when resuming, after the step
    /// when rewinding or forking, 0 for a new run or a restart. A caller that must not change
    /// the store before its first row is accepted (`steplog log`) checks that row with it.
    pub fn lowest_step(&self, stream: Stream) -> Result<u64> {
        Ok(match &self.start {
            Start::Resume(_) => {
                let state = self.store.state()?;
                match state.head(&self.name)? {
                    None => 0,
                    Some(head) => min_next(&self.store, &state, head)?[stream.index()],
                }
            }
            Start::Rewind(step) => step.saturating_add(1),
            Start::Restart => 0,
            Start::Fork(source, step) => fork_step(source.clone(), *step)?.1.saturating_add(1),
        })
    }
}

/// A fork's source and step: given once, in the reference (`NAME?_step=S`) or apart.
fn fork_step(
    source: std::result::Result<Reference, (String, String)>,
    step: Option<u64>,
) -> Result<(Reference, u64)> {
    let r = source.map_err(|(reference, reason)| Error::BadReference { reference, reason })?;
    let step = match (step, r.step) {
        (Some(s), None) | (None, Some(s)) => s,
        (Some(s), Some(t)) if s == t => s,
        (Some(s), Some(t)) => {
            return Err(Error::BadReference {
                reference: r.to_string(),
                reason: format!(
                    "the reference names step {t} and the fork step is {s}: give the step once"
                ),
            })
        }
        (None, None) => {
            return Err(Error::BadReference {
                reference: r.to_string(),
                reason: "a fork needs a step: NAME?_step=STEP".into(),
            })
        }
    };
    Ok((r, step))
}

/// After a rewind or fork: packs the lineage of the new version's parent if it is archived
/// (`pack.rs`). The start is made whatever happens here (its edit is in the manifest): a
/// pack that cannot be written changes no read, only how many pieces reads take, so its
/// failure is told on standard error and the start goes on.
fn pack_parent(store: &Store, run: &str, v: VersionId) {
    // The state the start's own edit left (no refresh: `pack_lineage` reads the latest).
    let parent = store.current_state().meta_of(v).map(|m| m.parent);
    let r = match parent {
        Ok(Some((parent, _))) => store.pack_lineage(parent).map(drop),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        eprintln!(
            "steplog: run '{run}': the lineage below {v} was not packed ({e}); reads of it \
             are unchanged, they take more pieces"
        );
    }
}

/// Seals the head segments a crashed writer left (cutting torn tails), so the version's
/// segments are all sealed. Bounded by one segment per stream.
fn seal_leftovers(store: &Store, meta: &VersionMeta) -> Result<()> {
    let sync = store.options().durability == Durability::PowerLoss;
    for seg in meta.segments.iter().filter(|s| s.sealed.is_none()) {
        let path = store.segment_path(seg.id);
        let header = SegmentHeader::new(seg.stream, meta.id, seg.id);
        let info = match SegmentWriter::recover(store.fs(), &path, header, sync)? {
            Some(w) => w.seal(sync)?,
            None => {
                let s = Sealed::open(store.fs(), &path)?;
                s.check_footer()?; // the whole footer is valid before the seal is recorded
                let (rows, first_step, last_step) = s.stats();
                SealInfo {
                    rows,
                    first_step,
                    last_step,
                    bytes: s.file_len(),
                }
            }
        };
        store.transact(|_| {
            let edit = Edit::Seal {
                version: meta.id,
                segment: seg.id,
                seal: seal_meta(info),
            };
            Ok((vec![edit], ()))
        })?;
    }
    Ok(())
}

/// What [`StartRun::apply`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The run.
    pub run: String,
    /// Its new head version (finished).
    pub head: VersionId,
    /// The head a rewind or restart archived (still readable under its id).
    pub archived: Option<VersionId>,
}

/// What starting a run made: its head, the head it archived, and the lowest step each
/// stream takes next.
pub(super) struct Begun {
    pub version: VersionId,
    pub archived: Option<VersionId>,
    pub min_next: [u64; 3],
}

fn create(store: &Store, name: &str, config: Option<Config>) -> Result<Begun> {
    let version = store.transact(|state| {
        if state.head(name)?.is_some() {
            return Err(Error::RunExists { run: name.into() });
        }
        let version = VersionId(state.next_version);
        let edit = Edit::Create {
            run: name.into(),
            version,
            config: config.unwrap_or_default(),
            time: now_secs(),
        };
        Ok((vec![edit], version))
    })?;
    Ok(Begun {
        version,
        archived: None,
        min_next: [0; 3],
    })
}

/// The next acceptable step of each stream of a version: after the run's last step over
/// all streams (a run has one clock, even when a crash left its streams at different
/// steps), and after the cutoff it was rewound or forked at. Console rows may share the
/// last step.
fn min_next(store: &Store, state: &State, v: VersionId) -> Result<[u64; 3]> {
    // A version's own rows are all after its cutoff, console rows included.
    let floor = state
        .meta_of(v)?
        .parent
        .map_or(0, |(_, s)| s.saturating_add(1));
    let last = store.last_step_any(state, v)?;
    Ok(Stream::ALL.map(|stream| {
        let after_last = match (last, stream.merges_steps()) {
            (Some(l), true) => l.saturating_add(1),
            (Some(l), false) => l,
            (None, _) => 0,
        };
        after_last.max(floor)
    }))
}

fn resume(store: &Store, name: &str, head: VersionId, config: Option<Config>) -> Result<Begun> {
    let meta = store.state()?.meta_of(head)?;
    seal_leftovers(store, &meta)?;
    store.transact(|state| {
        if state.head(name)? != Some(head) {
            return Err(Error::Conflict {
                reason: format!("run '{name}' changed while resuming"),
            });
        }
        let config = config
            .map(|c| merge_config(&state.meta_of(head)?.config.map(), Some(&c)))
            .transpose()?;
        Ok((
            vec![Edit::Resume {
                version: head,
                config,
            }],
            (),
        ))
    })?;
    let state = store.state()?;
    Ok(Begun {
        version: head,
        archived: None,
        min_next: min_next(store, &state, head)?,
    })
}

/// Archives the head of `name` and makes a new head holding its rows up to `step`, or none
/// (`None`: a restart).
fn rewind(
    store: &Store,
    name: &str,
    step: Option<u64>,
    config: Option<Config>,
    finished: bool,
) -> Result<Begun> {
    let (head, meta) = {
        let state = store.state()?;
        let head = state
            .head(name)?
            .ok_or_else(|| Error::RunNotFound { run: name.into() })?;
        if let Some(step) = step {
            store.check_step(&state, head, step)?;
        }
        (head, state.meta_of(head)?)
    };
    seal_leftovers(store, &meta)?;
    let version = store.transact(|state| {
        if state.head(name)? != Some(head) {
            return Err(Error::Conflict {
                reason: format!("run '{name}' changed while rewinding"),
            });
        }
        let old = &state.meta_of(head)?.config.map();
        let version = VersionId(state.next_version);
        let edit = Edit::Rewind {
            run: name.into(),
            archived: head,
            version,
            step,
            config: merge_config(old, config.as_ref())?,
            time: now_secs(),
            finished,
        };
        Ok((vec![edit], version))
    })?;
    Ok(Begun {
        version,
        archived: Some(head),
        min_next: [step.map_or(0, |s| s.saturating_add(1)); 3],
    })
}

fn fork(
    store: &Store,
    name: &str,
    source: VersionId,
    step: u64,
    config: Option<Config>,
    finished: bool,
) -> Result<Begun> {
    {
        let state = store.state()?;
        if state.head(name)?.is_some() {
            return Err(Error::RunExists { run: name.into() });
        }
        store.check_step(&state, source, step)?;
    }
    let version = store.transact(|state| {
        if state.head(name)?.is_some() {
            return Err(Error::RunExists { run: name.into() });
        }
        // Checked again on the latest state, under the manifest lock: a purge committed since
        // the source was resolved has deleted the rows this fork would read.
        let source_meta = state.meta(source)?;
        let base = match &source_meta {
            Some(m) if !m.purged => m.config.map(),
            _ => {
                return Err(Error::Purged {
                    version: source.to_string(),
                })
            }
        };
        let version = VersionId(state.next_version);
        let edit = Edit::Fork {
            run: name.into(),
            version,
            source,
            step,
            config: merge_config(&base, config.as_ref())?,
            time: now_secs(),
            finished,
        };
        Ok((vec![edit], version))
    })?;
    Ok(Begun {
        version,
        archived: None,
        min_next: [step.saturating_add(1); 3],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #11, item 2: a fork resolves its source, then commits its edit; a purge of the
    /// source committed in between must make the fork fail, not create a run reading a
    /// version whose segments are being deleted. The race window, made deterministic.
    #[test]
    fn a_fork_whose_source_was_purged_after_it_was_resolved_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Options::new()
            .segment_bytes(300)
            .open(dir.path())
            .unwrap();
        let mut w = store.run("r").start().unwrap();
        for step in 0..40u64 {
            w.log_at(step, [("x", step as f64)]).unwrap();
        }
        w.finish().unwrap();
        let rewound = store.run("r").resume_from(5).apply().unwrap();
        // The fork resolved `v1` and checked its step here; then the purge commits.
        let source = rewound.archived.unwrap();
        store.purge(source).unwrap();
        let result = fork(&store, "f", source, 30, None, true);
        assert!(matches!(result, Err(Error::Purged { .. })));
        assert!(store.state().unwrap().head("f").unwrap().is_none());
    }
}
