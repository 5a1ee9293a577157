//! The real file system: `std::fs`, `flock` locks, open-file-description byte-range locks
//! (`F_OFD_SETLK`) and memory maps.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use super::{FileHandle, FileSystem, LockGuard, OpenMode};

/// The operating system's file system. The default backend of every store.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

#[derive(Debug)]
struct OsFile(File);

impl FileHandle for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn map(&self) -> io::Result<Bytes> {
        if self.len()? == 0 {
            return Ok(Bytes::new());
        }
        crate::mmap::map_sealed(&self.0)
    }

    fn identity(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.0.metadata()?.ino())
    }
}

impl FileSystem for OsFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        let mut o = OpenOptions::new();
        o.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                o.write(true);
            }
            OpenMode::CreateTruncate => {
                o.write(true).create(true).truncate(true);
            }
            OpenMode::CreateKeep => {
                o.write(true).create(true).truncate(false);
            }
            OpenMode::CreateNew => {
                o.write(true).create_new(true);
            }
        }
        // Non-blocking, so that a FIFO (or a device) put where a store file should be fails
        // at once below instead of blocking the open forever; no effect on regular files.
        o.custom_flags(libc::O_NONBLOCK);
        let file = o.open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(Arc::new(OsFile(file)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn lock(&self, path: &Path, exclusive: bool, wait: bool) -> io::Result<Option<LockGuard>> {
        let file = if exclusive {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)?
        } else {
            match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
            {
                Ok(f) => f,
                // Nobody can hold a lock on a file that does not exist: grant the shared lock
                // without creating the file (a status probe must not write to the store).
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Box::new(()))),
                Err(e) => return Err(e),
            }
        };
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let got = match (exclusive, wait) {
            (true, true) => file.lock().map(|()| true),
            (false, true) => file.lock_shared().map(|()| true),
            (true, false) => match file.try_lock() {
                Ok(()) => Ok(true),
                Err(std::fs::TryLockError::WouldBlock) => Ok(false),
                Err(std::fs::TryLockError::Error(e)) => Err(e),
            },
            (false, false) => match file.try_lock_shared() {
                Ok(()) => Ok(true),
                Err(std::fs::TryLockError::WouldBlock) => Ok(false),
                Err(std::fs::TryLockError::Error(e)) => Err(e),
            },
        }?;
        // The flock is released when the file is closed, that is when the guard drops.
        Ok(got.then(|| Box::new(file) as LockGuard))
    }

    fn lock_slot(&self, path: &Path, slot: u64) -> io::Result<Option<LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        regular(&file, path)?;
        let l = byte_range(slot, 1)?;
        match fcntl(&file, FcntlArg::F_OFD_SETLK(&l)) {
            // An open file description's lock is released when the description is closed,
            // that is when the guard drops (or the process dies).
            Ok(_) => Ok(Some(Box::new(file))),
            Err(Errno::EAGAIN | Errno::EACCES) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn identify(&self, path: &Path) -> io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        if !m.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok((m.ino(), m.len()))
    }

    fn locked_slots(&self, path: &Path, from: u64, to: u64) -> io::Result<Vec<u64>> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        regular(&file, path)?;
        // `F_OFD_GETLK` reports one lock that conflicts with the range asked about; the
        // ranges on either side of it are asked about in turn: one call per held lock, plus
        // one per gap.
        let mut found = Vec::new();
        let mut todo = vec![(from, to)];
        while let Some((a, b)) = todo.pop() {
            if a >= b {
                continue;
            }
            let mut l = byte_range(a, b - a)?;
            fcntl(&file, FcntlArg::F_OFD_GETLK(&mut l))?;
            if l.l_type == libc::F_UNLCK as libc::c_short {
                continue;
            }
            let start = u64::try_from(l.l_start).unwrap_or(0).max(a);
            // A length of 0 means "to the end of the file and beyond".
            let end = match u64::try_from(l.l_len) {
                Ok(0) | Err(_) => b,
                Ok(n) => start.saturating_add(n).min(b),
            };
            // Holders lock one slot each; a wider lock (not steplog's) counts by its first.
            found.push(start);
            todo.push((a, start));
            todo.push((end, b));
        }
        Ok(found)
    }
}

/// Refuses what is not a regular file (a FIFO or device where a lock file should be).
fn regular(file: &File, path: &Path) -> io::Result<()> {
    if file.metadata()?.is_file() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ))
    }
}

/// An exclusive byte-range lock request on `len` bytes from `start` (`l_pid` 0, as the
/// `F_OFD_*` commands require).
fn byte_range(start: u64, len: u64) -> io::Result<libc::flock> {
    let too_far = || io::Error::new(io::ErrorKind::InvalidInput, "lock range past 2^63");
    Ok(libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: libc::off_t::try_from(start).map_err(|_| too_far())?,
        l_len: libc::off_t::try_from(len).map_err(|_| too_far())?,
        l_pid: 0,
    })
}
