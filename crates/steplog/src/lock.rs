//! Run locks: one writer per run across all processes, held as an exclusive advisory lock
//! (flock with the real file system) on `locks/<run>.lock`. The operating system releases it
//! when the writer's process dies, which is how a crashed writer is told apart from a live one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::io::{FileSystem, LockGuard};

pub(crate) const LOCK_DIR: &str = "locks";

/// Held while a writer writes a run; dropping it releases the run.
pub(crate) struct RunLock {
    _guard: LockGuard,
}

impl std::fmt::Debug for RunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunLock")
    }
}

/// The lock file of a run: a readable prefix of the name and a 64-bit hash of all of it,
/// so that any UTF-8 name maps to a short, safe file name.
pub(crate) fn lock_path(dir: &Path, run: &str) -> PathBuf {
    let safe: String = run
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    // FNV-1a, stable across platforms and releases (std's hasher is not).
    let hash = run.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    dir.join(LOCK_DIR).join(format!("{safe}-{hash:016x}.lock"))
}

/// Takes the run's lock, or fails with `Locked` if another writer holds it.
pub(crate) fn lock_run(fs: &dyn FileSystem, dir: &Path, run: &str) -> Result<RunLock> {
    let path = lock_path(dir, run);
    // A status probe (`is_locked`) holds a shared lock for an instant: retry briefly so that
    // a probe is never mistaken for a writer.
    for attempt in 0..20 {
        match fs.lock(&path, true, false) {
            Ok(Some(guard)) => return Ok(RunLock { _guard: guard }),
            Ok(None) if attempt < 19 => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {}
            // `locks/` is made by the first writer that needs it (readers create nothing),
            // not checked before every start.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt == 0 => {
                let parent = dir.join(LOCK_DIR);
                fs.create_dir_all(&parent)
                    .map_err(|e| Error::io(&parent, e))?;
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Err(Error::Locked {
        run: run.to_owned(),
    })
}

/// Whether a writer (in any process) holds the run's lock right now.
pub(crate) fn is_locked(fs: &dyn FileSystem, dir: &Path, run: &str) -> bool {
    matches!(fs.lock(&lock_path(dir, run), false, false), Ok(None))
}
