//! Run locks: one writer per run across all processes, held as an exclusive byte-range lock
//! on one byte of the shared file `locks/RUNS` (an open-file-description lock with the real
//! file system), the byte chosen by a hash of the run name. The operating system releases it
//! when the writer's process dies, which is how a crashed writer is told apart from a live
//! one. No file is made per run: a store of a million runs has one lock file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::codec::{fnv1a64, FNV_BASIS};
use crate::error::{Error, Result};
use crate::io::{FileSystem, LockGuard};

pub(crate) const LOCK_DIR: &str = "locks";
/// The one file whose bytes are the run locks.
pub(crate) const RUN_LOCKS: &str = "RUNS";

/// Held while a writer writes a run; dropping it releases the run.
pub(crate) struct RunLock {
    _guard: LockGuard,
    /// The run's lock file of stores before 2026-12-02, when it exists: locked too, so that
    /// an older steplog writing the same run meanwhile is seen (and sees this writer).
    _legacy: Option<LockGuard>,
}

impl std::fmt::Debug for RunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunLock")
    }
}

/// Slots are below 2^62, so that a slot and its length fit a signed 64-bit file offset.
const SLOTS: u64 = 1 << 62;

/// The byte of `locks/RUNS` that is the run's lock: the 64-bit FNV-1a hash of the name (stable
/// across platforms and releases, as std's hasher is not), cut to 62 bits. Two runs share a
/// slot with odds of about one in 2^62 per pair; then a writer of one reports the other
/// `Locked` while both are written at once, and nothing else changes.
pub(crate) fn slot(run: &str) -> u64 {
    fnv1a64(run.as_bytes(), FNV_BASIS) % SLOTS
}

fn locks_file(dir: &Path) -> PathBuf {
    dir.join(LOCK_DIR).join(RUN_LOCKS)
}

/// The run's own lock file, as steplog wrote it before 2026-12-02 (`flock`ed by its
/// writers): up to 40 safe characters of the name, a dash, the name's 64-bit FNV-1a hash.
fn legacy_name(run: &str) -> String {
    let safe: String = run
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    format!("{safe}-{:016x}.lock", fnv1a64(run.as_bytes(), FNV_BASIS))
}

/// Whether a writer holds the run's legacy lock file (an older steplog's): a shared probe,
/// granted at once when the file does not exist.
fn legacy_held(fs: &dyn FileSystem, dir: &Path, run: &str) -> bool {
    let path = dir.join(LOCK_DIR).join(legacy_name(run));
    matches!(fs.lock(&path, false, false), Ok(None))
}

/// Takes the run's lock, or fails with `Locked` if another writer holds it.
pub(crate) fn lock_run(fs: &dyn FileSystem, dir: &Path, run: &str) -> Result<RunLock> {
    let path = locks_file(dir);
    // A lock just released can stay held for an instant by a child process that a thread of
    // its holder's process is starting (`fork` copies the descriptor; its `exec` closes it):
    // retry briefly, so that such a child is never mistaken for a writer.
    for attempt in 0..20 {
        let got = match fs.lock_slot(&path, slot(run)) {
            // `locks/` is made by the first writer that needs it (readers create nothing),
            // not checked before every start.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = dir.join(LOCK_DIR);
                fs.create_dir_all(&parent)
                    .map_err(|e| Error::io(&parent, e))?;
                fs.lock_slot(&path, slot(run))
            }
            r => r,
        };
        match got.map_err(|e| Error::io(&path, e))? {
            Some(guard) => {
                let legacy = dir.join(LOCK_DIR).join(legacy_name(run));
                if !crate::io::exists(fs, &legacy).map_err(|e| Error::io(&legacy, e))? {
                    return Ok(RunLock {
                        _guard: guard,
                        _legacy: None,
                    });
                }
                match fs.lock(&legacy, true, false) {
                    Ok(Some(old)) => {
                        return Ok(RunLock {
                            _guard: guard,
                            _legacy: Some(old),
                        })
                    }
                    Ok(None) if attempt < 19 => std::thread::sleep(Duration::from_millis(2)),
                    Ok(None) => {}
                    Err(e) => return Err(Error::io(&legacy, e)),
                }
            }
            None if attempt < 19 => std::thread::sleep(Duration::from_millis(2)),
            None => {}
        }
    }
    Err(Error::Locked {
        run: run.to_owned(),
    })
}

/// The runs' locks held right now, by any process: what [`LiveRuns::is_live`] answers from.
/// One probe of the lock file per held lock, whatever the number of runs asked about (and
/// one of each legacy lock file a store written before 2026-12-02 still has).
pub(crate) struct LiveRuns<'a> {
    held: std::collections::HashSet<u64>,
    legacy: std::collections::HashSet<String>,
    fs: &'a dyn FileSystem,
    dir: &'a Path,
}

impl<'a> LiveRuns<'a> {
    /// Every lock held now (an unreadable lock file reads as none held: status is advice).
    pub fn now(fs: &'a dyn FileSystem, dir: &'a Path) -> LiveRuns<'a> {
        let held = fs
            .locked_slots(&locks_file(dir), 0, SLOTS)
            .unwrap_or_default();
        let legacy = fs
            .read_dir(&dir.join(LOCK_DIR))
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.ends_with(".lock"))
            .collect();
        LiveRuns {
            held: held.into_iter().collect(),
            legacy,
            fs,
            dir,
        }
    }

    /// Whether the run's lock was held when this was taken (its legacy lock file, if it has
    /// one, is probed now).
    pub fn is_live(&self, run: &str) -> bool {
        self.held.contains(&slot(run))
            || (self.legacy.contains(&legacy_name(run)) && legacy_held(self.fs, self.dir, run))
    }
}

/// Whether a writer (in any process, of any steplog since run locks) holds the run's lock
/// right now.
pub(crate) fn is_locked(fs: &dyn FileSystem, dir: &Path, run: &str) -> bool {
    let s = slot(run);
    fs.locked_slots(&locks_file(dir), s, s + 1)
        .is_ok_and(|held| !held.is_empty())
        || legacy_held(fs, dir, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::OsFs;

    /// The real locks: held per holder (two in one process conflict), seen by every probe,
    /// released on drop, and a scan of the whole file finds exactly the held ones.
    #[test]
    fn run_locks_are_per_holder_and_every_held_one_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs;
        assert!(!is_locked(&fs, dir.path(), "a"), "no lock file yet");
        assert!(!LiveRuns::now(&fs, dir.path()).is_live("a"));
        let names: Vec<String> = (0..50).map(|i| format!("run-{i}")).collect();
        let held: Vec<RunLock> = names
            .iter()
            .step_by(2)
            .map(|n| lock_run(&fs, dir.path(), n).unwrap())
            .collect();
        let live = LiveRuns::now(&fs, dir.path());
        for (i, n) in names.iter().enumerate() {
            assert_eq!(live.is_live(n), i % 2 == 0, "{n}");
            assert_eq!(is_locked(&fs, dir.path(), n), i % 2 == 0, "{n}");
        }
        let e = lock_run(&fs, dir.path(), &names[0]).unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e}");
        drop(held);
        assert!(!LiveRuns::now(&fs, dir.path()).is_live(&names[0]));
        let again = lock_run(&fs, dir.path(), &names[0]).unwrap();
        assert!(is_locked(&fs, dir.path(), &names[0]));
        drop(again);
        let files = std::fs::read_dir(dir.path().join(LOCK_DIR))
            .unwrap()
            .count();
        assert_eq!(files, 1, "one lock file for every run");
    }

    /// A store written before 2026-12-02 has a lock file per run: an older steplog writing
    /// a run holds an `flock` on it, which this one sees and respects (and takes too).
    #[test]
    fn an_older_writers_lock_file_is_seen_and_taken_too() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs;
        std::fs::create_dir_all(dir.path().join(LOCK_DIR)).unwrap();
        let legacy = dir.path().join(LOCK_DIR).join(legacy_name("old run/1"));
        std::fs::write(&legacy, b"").unwrap();
        let older = fs.lock(&legacy, true, false).unwrap().expect("free");
        assert!(is_locked(&fs, dir.path(), "old run/1"));
        assert!(LiveRuns::now(&fs, dir.path()).is_live("old run/1"));
        let e = lock_run(&fs, dir.path(), "old run/1").unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e}");
        drop(older);
        assert!(!is_locked(&fs, dir.path(), "old run/1"));
        let mine = lock_run(&fs, dir.path(), "old run/1").unwrap();
        // An older steplog now finds the run's file locked.
        assert!(fs.lock(&legacy, true, false).unwrap().is_none());
        assert!(is_locked(&fs, dir.path(), "old run/1"));
        drop(mine);
        assert!(fs.lock(&legacy, true, false).unwrap().is_some());
    }
}
