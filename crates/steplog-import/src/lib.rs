//! Importers: run history from the tools people already run, written into a store as steplog
//! runs. Each importer reads its source format (and checks its checksums) and hands rows to a
//! [`RunSink`], which owns the mapping onto steplog: one writer per run, a source restart
//! becomes a rewind (the orphaned steps stay readable as an archived version), a source
//! branch becomes a fork, and the run's identity and anything steplog has no column for go
//! into the config under `_import`.
//!
//! - [`tensorboard`]: event files (TFRecord framing, masked CRC32C).
//! - [`wandb`]: offline `.wandb` run files (LevelDB-log framing, CRC-32, protobuf records).
//! - [`afl`]: AFL++ `plot_data`, once or followed live.
//! - [`criterion`]: criterion.rs's `target/criterion` results.
//!
//! Invariants: an importer creates its run and never appends to an existing one (it refuses
//! with `ResumeRefused`, or `RunExists` for a fork); the one exception is a W&B file that says
//! it rewinds a run the store holds (`resume_from`), which rewinds that run. A damaged source gives
//! [`Error::BadSource`] with the file and byte offset, and the rows
//! imported before it stay committed in a run marked `crashed`.

pub mod afl;
pub mod criterion;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod jsonl;
mod protobuf;
pub mod tensorboard;
pub mod wandb;

use std::path::{Path, PathBuf};

pub use steplog::{Progress, Quiet, Unit};

pub use crate::error::{Error, Result};
use steplog::Store;
use steplog::{Resume, RunWriter};
use steplog::{Value, VersionId};

/// What one imported run became.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The steplog run.
    pub run: String,
    /// Its head version after the import.
    pub version: VersionId,
    /// Rows (distinct steps) written, over every version the import made.
    pub rows: u64,
    /// Versions archived by restarts in the source (one per rewind), oldest first.
    pub archived: Vec<VersionId>,
    /// The run and step it was forked from, when the source says it branched.
    pub forked_from: Option<(String, u64)>,
    /// Source values that have no steplog form (images, histograms, text tensors...) and were
    /// left out.
    pub skipped: u64,
    /// Source values steplog cannot store under their name or size (a tag that is not a
    /// valid key, such as `loss/`, or a string past `MAX_VALUE_BYTES`), left out and counted
    /// per key: at most [`MAX_REFUSED_KEYS`] keys are listed, `refused_values` counts all.
    pub refused: Vec<RefusedKey>,
    /// Every value left out for the reasons `refused` lists.
    pub refused_values: u64,
    /// How many distinct keys those values had (`refused` lists the first
    /// [`MAX_REFUSED_KEYS`]).
    pub refused_keys: u64,
}

/// A source key whose values were left out.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedKey {
    /// The key as the source names it, with control characters escaped and at most 200
    /// characters (a longer one ends in `...`).
    pub key: String,
    /// Why it was refused.
    pub reason: String,
    /// How many of its values were left out.
    pub values: u64,
}

/// Refused keys listed at most in an [`Imported`] (the count goes on past them).
pub const MAX_REFUSED_KEYS: usize = 100;

/// Source text as a message shows it: control characters escaped, at most 200 characters.
pub(crate) fn shown(key: &str) -> String {
    let escaped: String = key.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

/// How an imported run starts.
pub(crate) enum StartAs {
    /// A new run.
    New,
    /// A fork of `run` at `step` (which must exist in the store).
    Fork(String, u64),
    /// The existing run, rewound to `step` (its head is archived).
    Rewind(u64),
}

/// Writes one imported run: rows in step order, restarts as rewinds.
pub(crate) struct RunSink {
    store: Store,
    writer: Option<RunWriter>,
    run: String,
    last: Option<u64>,
    /// Whether the row at `last` is committed (a later call at its step cannot merge in).
    last_committed: bool,
    rows: u64,
    archived: Vec<VersionId>,
    forked_from: Option<(String, u64)>,
    pub(crate) skipped: u64,
    /// Refused keys by their source name: why, and how many values.
    refused: std::collections::BTreeMap<String, (String, u64)>,
    refused_values: u64,
    /// Hashes of every refused key, to count them past the listed ones (8 bytes a key).
    refused_keys: std::collections::HashSet<u64>,
}

impl RunSink {
    /// Starts the run with `config`: a new run (refusing an existing one), a fork, or a rewind
    /// of the existing run, as `start_as` says.
    pub(crate) fn create(
        store: &Store,
        run: &str,
        config: serde_json::Value,
        start_as: StartAs,
    ) -> Result<RunSink> {
        let start = store.run(run).config(config);
        let (start, forked_from, last) = match start_as {
            StartAs::New => (start.resume(Resume::Never), None, None),
            StartAs::Rewind(step) => (start.resume_from(step), None, Some(step)),
            StartAs::Fork(source, step) => (
                start.fork_from(&source, step),
                Some((source, step)),
                Some(step),
            ),
        };
        let writer = start.start()?;
        Ok(RunSink {
            store: store.clone(),
            archived: writer.archived().into_iter().collect(),
            writer: Some(writer),
            run: run.to_owned(),
            // A rewind's or fork's last step is a committed row of its source.
            last_committed: last.is_some(),
            last,
            rows: 0,
            forked_from,
            skipped: 0,
            refused: Default::default(),
            refused_values: 0,
            refused_keys: Default::default(),
        })
    }

    /// Whether steplog can store `value` under `key`; if not, it is counted as refused.
    fn storable(&mut self, key: &str, value: &Value) -> bool {
        let why = match (steplog::limits::check_key(key), value) {
            (Err(reason), _) => reason,
            (Ok(()), Value::Str(s)) if s.len() > steplog::limits::MAX_VALUE_BYTES => format!(
                "a string of {} bytes, past the {}-byte limit",
                s.len(),
                steplog::limits::MAX_VALUE_BYTES
            ),
            _ => return true,
        };
        self.refused_values += 1;
        self.refused_keys.insert({
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            h.finish()
        });
        let known = self.refused.len();
        match self.refused.get_mut(key) {
            Some(e) => e.1 += 1,
            None if known < MAX_REFUSED_KEYS => {
                self.refused.insert(key.to_owned(), (why, 1));
            }
            None => {}
        }
        false
    }

    fn writer(&mut self) -> Result<&mut RunWriter> {
        self.writer
            .as_mut()
            .ok_or_else(|| Error::finished(&self.run))
    }

    /// The last step written, if any.
    pub(crate) fn last_step(&self) -> Option<u64> {
        self.last
    }

    /// Logs `fields` at `step`; a step equal to the last one merges into its row. A step
    /// before the last one must be preceded by [`restart_at`](Self::restart_at). Values
    /// steplog cannot store (their key, their size) are left out and counted
    /// ([`Imported::refused`]): one odd tag does not end an import.
    pub(crate) fn row<K: AsRef<str>>(
        &mut self,
        step: u64,
        fields: impl IntoIterator<Item = (K, Value)>,
    ) -> Result<()> {
        let fields: Vec<(K, Value)> = fields
            .into_iter()
            .filter(|(k, v)| self.storable(k.as_ref(), v))
            .collect();
        if fields.is_empty() {
            return Ok(());
        }
        self.writer()?.log_at(step, fields)?;
        if self.last != Some(step) {
            self.rows += 1;
            self.last = Some(step);
            self.last_committed = false;
        }
        Ok(())
    }

    /// Whether a row at `step` needs [`restart_at`](Self::restart_at) first: it is before
    /// the last step, or at it once that row is committed (a live tail's next poll, or a
    /// rewritten file starting where the old one ended).
    pub(crate) fn needs_restart(&self, step: u64) -> bool {
        self.last
            .is_some_and(|last| step < last || (step == last && self.last_committed))
    }

    /// The source restarted at `step`: its rows at `step` and after are orphaned. When there
    /// are such rows, the run is rewound to `step - 1`, which archives them as a version; a
    /// source that starts over at step 0 restarts the run (`StartRun::restart`: the new head
    /// keeps no row).
    pub(crate) fn restart_at(&mut self, step: u64) -> Result<()> {
        match self.last {
            Some(last) if last >= step => {}
            _ => return Ok(()),
        }
        if let Some(w) = self.writer.take() {
            w.finish()?;
        }
        let start = self.store.run(&self.run);
        let keep = step.checked_sub(1);
        let w = match keep {
            Some(keep) => start.resume_from(keep),
            None => start.restart(),
        }
        .start()?;
        self.archived.extend(w.archived());
        self.writer = Some(w);
        self.last = keep;
        self.last_committed = true;
        Ok(())
    }

    /// Commits what was logged so far (a live tail calls it after each batch of lines).
    pub(crate) fn commit(&mut self) -> Result<()> {
        self.writer()?.commit()?;
        self.last_committed = true;
        Ok(())
    }

    /// Ends the run: `finished` when the source says it ended well, `crashed` otherwise.
    pub(crate) fn finish(mut self, ended_well: bool) -> Result<Imported> {
        let w = self
            .writer
            .take()
            .ok_or_else(|| Error::finished(&self.run))?;
        let version = w.version();
        if ended_well {
            w.finish()?;
        } else {
            w.abort()?;
        }
        Ok(Imported {
            run: self.run,
            version,
            rows: self.rows,
            archived: self.archived,
            forked_from: self.forked_from,
            skipped: self.skipped,
            refused: std::mem::take(&mut self.refused)
                .into_iter()
                .map(|(key, (reason, values))| RefusedKey {
                    key: shown(&key),
                    reason,
                    values,
                })
                .collect(),
            refused_values: self.refused_values,
            refused_keys: self.refused_keys.len() as u64,
        })
    }

    /// Ends the run as `crashed` after `err`, keeping what was imported, and returns `err`.
    pub(crate) fn fail<T>(mut self, err: Error) -> Result<T> {
        if let Some(w) = self.writer.take() {
            // The source error is what the user needs to see; a failure to mark the run
            // crashed leaves it `running`, which the next open reports the same way.
            let _ = w.abort();
        }
        Err(err)
    }
}

/// Why a source record failed: its bytes (a reason, to which the caller adds file and
/// offset), or the store.
pub(crate) enum Reason {
    Bad(String),
    Store(Error),
}

impl From<String> for Reason {
    fn from(s: String) -> Self {
        Reason::Bad(s)
    }
}

impl From<Error> for Reason {
    fn from(e: Error) -> Self {
        Reason::Store(e)
    }
}

impl Reason {
    /// The error, with `file` and `offset` for a bad record.
    pub(crate) fn at(self, file: &Path, offset: u64) -> Error {
        match self {
            Reason::Bad(r) => Error::bad_source(file, offset, r),
            Reason::Store(e) => e,
        }
    }
}

/// The most a source file read whole may hold (criterion's JSON files are a few KB; its
/// `sample.json` of 100 samples is under 10 KB).
pub const MAX_SOURCE_FILE: u64 = 64 << 20;

/// Reads a whole source file of at most [`MAX_SOURCE_FILE`] bytes (sources are read into
/// memory: they may be written by a live process, so they are not mapped). A longer one, a
/// device such as `/dev/zero` included, is refused at that size.
pub(crate) fn read_source(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut data = Vec::new();
    f.take(MAX_SOURCE_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(path, e))?;
    if data.len() as u64 > MAX_SOURCE_FILE {
        return Err(Error::bad_source(
            path,
            MAX_SOURCE_FILE,
            format!("more than {MAX_SOURCE_FILE} bytes: not a source file steplog reads whole"),
        ));
    }
    Ok(data)
}

/// The `_import` config entry every importer writes: where the run came from.
pub(crate) fn provenance(source: &str, path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("source".into(), source.into());
    m.insert("path".into(), path.display().to_string().into());
    m
}

/// Wraps `provenance` (and anything else) as the config `{"_import": {...}}` merged over
/// `config`.
pub(crate) fn config_with(
    mut config: serde_json::Map<String, serde_json::Value>,
    import: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    config.insert("_import".into(), serde_json::Value::Object(import));
    serde_json::Value::Object(config)
}

/// Files directly in `dir` whose names satisfy `pick`, sorted by name.
pub(crate) fn files_in(dir: &Path, pick: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if pick(name) && entry.path().is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}
