//! `FaultyFs`: wraps a file system and fails chosen operations with EIO or ENOSPC, the Nth
//! one or every one until healed (a full disk). A failed write first writes part of its
//! buffer, as a real short write on a full disk would.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{FileHandle, FileSystem, LockGuard, OpenMode};

/// The kinds of operation [`FaultyFs`] counts and can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// `write_all_at`.
    Write,
    /// File and directory syncs.
    Sync,
    /// Renames.
    Rename,
    /// Opening a file with a creating mode.
    Create,
    /// `set_len`.
    SetLen,
    /// File removals.
    Remove,
}

/// `EIO`, an I/O error.
pub const EIO: i32 = 5;
/// `ENOSPC`, no space left on the device.
pub const ENOSPC: i32 = 28;

#[derive(Debug, Default)]
struct Plan {
    counts: HashMap<IoOp, u64>,
    /// Fail the `n`-th next operation of this kind (1 = the next one), or all of them.
    fail: Option<(IoOp, u64, i32, bool)>,
    failures: u64,
}

/// A fault-injecting file system wrapping another. Clones share the plan.
#[derive(Debug, Clone)]
pub struct FaultyFs {
    inner: Arc<dyn FileSystem>,
    plan: Arc<Mutex<Plan>>,
}

impl FaultyFs {
    /// Wraps `inner`; no fault is planned.
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        FaultyFs {
            inner,
            plan: Arc::default(),
        }
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails the `n`-th next operation of kind `op` (1 = the very next) with `errno`
    /// ([`EIO`] or [`ENOSPC`]), once.
    pub fn fail_nth(&self, op: IoOp, n: u64, errno: i32) {
        self.plan().fail = Some((op, n.max(1), errno, false));
    }

    /// Fails every operation of kind `op` from the `n`-th next on, until [`heal`](Self::heal).
    pub fn fail_from(&self, op: IoOp, n: u64, errno: i32) {
        self.plan().fail = Some((op, n.max(1), errno, true));
    }

    /// Removes the planned fault.
    pub fn heal(&self) {
        self.plan().fail = None;
    }

    /// How many operations of kind `op` were attempted so far.
    pub fn count(&self, op: IoOp) -> u64 {
        self.plan().counts.get(&op).copied().unwrap_or(0)
    }

    /// How many operations were failed so far.
    pub fn failures(&self) -> u64 {
        self.plan().failures
    }

    /// Counts an operation and says whether it must fail.
    fn check(&self, op: IoOp) -> io::Result<()> {
        let mut p = self.plan();
        *p.counts.entry(op).or_default() += 1;
        let Some((kind, n, errno, sticky)) = p.fail else {
            return Ok(());
        };
        if kind != op {
            return Ok(());
        }
        if n > 1 {
            p.fail = Some((kind, n - 1, errno, sticky));
            return Ok(());
        }
        if !sticky {
            p.fail = None;
        }
        p.failures += 1;
        Err(io::Error::from_raw_os_error(errno))
    }
}

#[derive(Debug)]
struct FaultyFile {
    fs: FaultyFs,
    inner: Arc<dyn FileHandle>,
}

impl FileHandle for FaultyFile {
    fn identity(&self) -> io::Result<u64> {
        self.inner.identity()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Err(e) = self.fs.check(IoOp::Write) {
            // A short write before the error, as a filling disk gives.
            let _ = self.inner.write_all_at(&buf[..buf.len() / 2], offset);
            return Err(e);
        }
        self.inner.write_all_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.check(IoOp::SetLen)?;
        self.inner.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.fs.check(IoOp::Sync)?;
        self.inner.sync()
    }

    fn map(&self) -> io::Result<Bytes> {
        self.inner.map()
    }
}

impl FileSystem for FaultyFs {
    fn identify(&self, path: &Path) -> io::Result<(u64, u64)> {
        self.inner.identify(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        if matches!(
            mode,
            OpenMode::CreateTruncate | OpenMode::CreateKeep | OpenMode::CreateNew
        ) {
            self.check(IoOp::Create)?;
        }
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(FaultyFile {
            fs: self.clone(),
            inner,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(IoOp::Remove)?;
        self.inner.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(IoOp::Rename)?;
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(IoOp::Sync)?;
        self.inner.sync_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.read_dir(path)
    }

    fn lock(&self, path: &Path, exclusive: bool, wait: bool) -> io::Result<Option<LockGuard>> {
        self.inner.lock(path, exclusive, wait)
    }

    fn lock_slot(&self, path: &Path, slot: u64) -> io::Result<Option<LockGuard>> {
        self.inner.lock_slot(path, slot)
    }

    fn locked_slots(&self, path: &Path, from: u64, to: u64) -> io::Result<Vec<u64>> {
        self.inner.locked_slots(path, from, to)
    }
}
