//! The I/O seam: every file-system access of the engine goes through [`FileSystem`] and
//! [`FileHandle`], so that tests can plug in a crash-simulating backend ([`SimFs`]) or a
//! fault-injecting one ([`FaultyFs`]). [`OsFs`] is the real one, and the default.
//!
//! Architecture invariant: no other module touches `std::fs` for store files.

mod faulty;
mod os;
mod sim;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

pub use faulty::{FaultyFs, IoOp, EIO, ENOSPC};
pub use os::OsFs;
pub use sim::{CrashMode, SimFs};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; created if missing, emptied if present.
    CreateTruncate,
    /// Read and write; created if missing, kept as is if present.
    CreateKeep,
    /// Read and write; created, and `AlreadyExists` if the path exists (never overwrites).
    CreateNew,
}

/// A held lock; dropping it releases the lock.
pub type LockGuard = Box<dyn std::any::Any + Send + Sync>;

/// An open file. Reads and writes are positional; there is no cursor.
#[allow(clippy::len_without_is_empty)] // a length that can fail has no meaningful is_empty
pub trait FileHandle: Send + Sync + Debug {
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Cuts or extends the file to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable (fsync/fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// The whole file, read-only, as shared bytes (a memory map where the backend can).
    /// Only called for files that are never written again (sealed segments).
    fn map(&self) -> io::Result<Bytes>;
    /// The file's identity: what [`FileSystem::identify`] gives for a path naming it.
    /// Backends without identities return `Unsupported` (the default).
    fn identity(&self) -> io::Result<u64> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A file system: the operations the engine performs on paths.
pub trait FileSystem: Send + Sync + Debug + std::panic::RefUnwindSafe {
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in a directory durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Takes a lock on the file at `path`: exclusive (creating the file if missing) or shared
    /// (granted at once, without creating anything, when the file does not exist), waiting or
    /// not. `Ok(None)` when `wait` is false and another holder conflicts.
    /// Locks are advisory and shared by every process (and every `Store`) using the path.
    fn lock(&self, path: &Path, exclusive: bool, wait: bool) -> io::Result<Option<LockGuard>>;
    /// Takes an exclusive lock on one byte, `slot` (below 2^62), of the file at `path`,
    /// creating the file if missing, without waiting: `Ok(None)` when another holder has it.
    /// The lock belongs to the holder (not to its process: two holders in one process
    /// conflict), and is released when the guard drops or its process dies.
    fn lock_slot(&self, path: &Path, slot: u64) -> io::Result<Option<LockGuard>>;
    /// The slots in `from..to` of the file at `path` that are locked right now, in any order;
    /// none when the file does not exist. Creates nothing and takes no lock.
    fn locked_slots(&self, path: &Path, from: u64, to: u64) -> io::Result<Vec<u64>>;
    /// The identity (an inode number) and length of the regular file at `path`, without
    /// opening it: how a reader holding a file open learns in one call whether the path
    /// still names that file (it was not replaced by a rename) and how long it is now.
    /// Backends without identities return `Unsupported` (the default); callers then open
    /// the path again.
    fn identify(&self, path: &Path) -> io::Result<(u64, u64)> {
        let _ = path;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Reads a whole file.
pub(crate) fn read_all(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let f = fs.open(path, OpenMode::Read)?;
    read_from(&*f, 0)
}

/// Reads a file from `offset` to its end.
pub(crate) fn read_from(f: &dyn FileHandle, offset: u64) -> io::Result<Vec<u8>> {
    let len = f.len()?;
    let mut buf = vec![0u8; len.saturating_sub(offset) as usize];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Whether `path` exists (a file that opens for reading).
pub(crate) fn exists(fs: &dyn FileSystem, path: &Path) -> io::Result<bool> {
    match fs.open(path, OpenMode::Read) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
