//! `SimFs`: an in-memory file system that simulates crashes. It keeps, for every file, what
//! was written apart from what was synced, and for every directory the names made durable by
//! a directory sync; it can produce the image a process crash or a power loss would leave,
//! including unsynced writes lost, kept, or the last one torn at any byte.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use super::{FileHandle, FileSystem, LockGuard, OpenMode};

/// The torn-write choices of a power loss: Knuth's 64-bit linear congruential generator,
/// its high bits taken (a seed picks the crash; any seed, 0 included, is a valid one).
struct Lcg(u64);

impl Lcg {
    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 32) % n
    }
}

/// Which crash [`SimFs::crash`] simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// A process crash (`kill -9`): everything the OS accepted survives, synced or not.
    Process,
    /// A power loss where nothing unsynced survives: synced file contents, and the names
    /// made durable by directory syncs.
    PowerLoss,
    /// A power loss where unsynced writes partly survive: for each file, a random number of
    /// its unsynced operations in order, the next write torn after a random number of bytes
    /// (chosen from `seed`).
    PowerLossTorn {
        /// Seed of the random choices.
        seed: u64,
    },
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

fn apply(data: &mut Vec<u8>, op: &Pending, limit: Option<usize>) {
    match op {
        Pending::Write {
            offset,
            data: bytes,
        } => {
            let bytes = &bytes[..limit.unwrap_or(bytes.len()).min(bytes.len())];
            let end = *offset as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*offset as usize..end].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => data.resize(*len as usize, 0),
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    locks: HashMap<PathBuf, (bool, usize)>,
    /// Held slot locks (`lock_slot`): the file and the slot.
    slots: HashSet<(PathBuf, u64)>,
    syncs: u64,
    record: bool,
    sync_points: Vec<State>,
}

impl State {
    fn after_sync(&mut self) {
        self.syncs += 1;
        if self.record {
            let mut frozen = self.clone();
            frozen.record = false;
            frozen.sync_points.clear();
            frozen.locks.clear();
            frozen.slots.clear();
            self.sync_points.push(frozen);
        }
    }
}

/// A crash-simulating, in-memory file system. Clones share the same files.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of sync points so far (file syncs and directory syncs).
    pub fn syncs(&self) -> u64 {
        self.lock_state().syncs
    }

    /// From now on, keep a frozen copy of the whole file system at every sync point.
    pub fn record_sync_points(&self) {
        self.lock_state().record = true;
    }

    /// The frozen copies kept since [`record_sync_points`](Self::record_sync_points): the
    /// i-th is the state just after the (i+1)-th sync of the recording. Each can be crashed.
    pub fn sync_points(&self) -> Vec<SimFs> {
        self.lock_state()
            .sync_points
            .iter()
            .map(|s| SimFs {
                state: Arc::new(Mutex::new(s.clone())),
            })
            .collect()
    }

    /// The image the crash `mode` leaves: a new, independent file system in which
    /// everything is synced and no lock is held.
    pub fn crash(&self, mode: CrashMode) -> SimFs {
        let s = self.lock_state();
        let mut rng = match mode {
            CrashMode::PowerLossTorn { seed } => Some(Lcg(seed)),
            _ => None,
        };
        let names = match mode {
            CrashMode::Process => s.live.clone(),
            _ => s.durable.clone(),
        };
        let mut out = State {
            dirs: s.dirs.clone(),
            next_inode: s.next_inode,
            ..State::default()
        };
        for (path, ino) in names {
            let node = &s.inodes[&ino];
            let data = match (mode, &mut rng) {
                (CrashMode::Process, _) => node.live.clone(),
                (CrashMode::PowerLossTorn { .. }, Some(rng)) => {
                    let mut data = node.durable.clone();
                    let keep = (rng.below(node.pending.len() as u64 + 1)) as usize;
                    for op in &node.pending[..keep] {
                        apply(&mut data, op, None);
                    }
                    if let Some(op @ Pending::Write { data: bytes, .. }) = node.pending.get(keep) {
                        let torn = (rng.below(bytes.len() as u64 + 1)) as usize;
                        apply(&mut data, op, Some(torn));
                    }
                    data
                }
                _ => node.durable.clone(),
            };
            out.inodes.insert(
                ino,
                Inode {
                    live: data.clone(),
                    durable: data,
                    pending: Vec::new(),
                },
            );
            out.live.insert(path.clone(), ino);
            out.durable.insert(path, ino);
        }
        SimFs {
            state: Arc::new(Mutex::new(out)),
        }
    }

    /// The current (live) contents of a file, for tests that damage files.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.lock_state();
        let ino = s.live.get(path).ok_or_else(|| not_found(path))?;
        Ok(s.inodes[ino].live.clone())
    }

    /// Replaces a file's contents, synced (for tests that damage files).
    pub fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock_state();
        let ino = *s.live.get(path).ok_or_else(|| not_found(path))?;
        let node = s.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        node.live = data.to_vec();
        node.durable = data.to_vec();
        node.pending.clear();
        Ok(())
    }

    /// Every file, by path.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock_state().live.keys().cloned().collect()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: u64,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut Inode) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.fs.lock_state();
        let node = s
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::other("file vanished"))?;
        f(node)
    }
}

impl FileHandle for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|n| Ok(n.live.len() as u64))
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|n| {
            let end = offset as usize + buf.len();
            if end > n.live.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end",
                ));
            }
            buf.copy_from_slice(&n.live[offset as usize..end]);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|n| {
            let op = Pending::Write {
                offset,
                data: buf.to_vec(),
            };
            apply(&mut n.live, &op, None);
            n.pending.push(op);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|n| {
            let op = Pending::SetLen(len);
            apply(&mut n.live, &op, None);
            n.pending.push(op);
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.fs.lock_state();
        let node = s
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| io::Error::other("file vanished"))?;
        node.durable = node.live.clone();
        node.pending.clear();
        s.after_sync();
        Ok(())
    }

    fn map(&self) -> io::Result<Bytes> {
        self.with(|n| Ok(Bytes::from(n.live.clone())))
    }
}

struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.fs.lock_state();
        if let Some(entry) = s.locks.get_mut(&self.path) {
            entry.1 -= 1;
            if entry.1 == 0 {
                s.locks.remove(&self.path);
            }
        }
    }
}

struct SimSlot {
    fs: SimFs,
    key: (PathBuf, u64),
}

impl Drop for SimSlot {
    fn drop(&mut self) {
        self.fs.lock_state().slots.remove(&self.key);
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        let mut s = self.lock_state();
        let ino = match (s.live.get(path).copied(), mode) {
            (Some(ino), OpenMode::CreateTruncate) => {
                let node = s.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
                let op = Pending::SetLen(0);
                apply(&mut node.live, &op, None);
                node.pending.push(op);
                ino
            }
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ))
            }
            (Some(ino), _) => ino,
            (None, OpenMode::Read | OpenMode::ReadWrite) => return Err(not_found(path)),
            (None, _) => {
                if let Some(parent) = path.parent() {
                    if !s.dirs.contains(parent) {
                        return Err(not_found(parent));
                    }
                }
                s.next_inode += 1;
                let ino = s.next_inode;
                s.inodes.insert(ino, Inode::default());
                s.live.insert(path.to_owned(), ino);
                ino
            }
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        for a in path.ancestors() {
            s.dirs.insert(a.to_owned());
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        s.live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let ino = s.live.remove(from).ok_or_else(|| not_found(from))?;
        s.live.insert(to.to_owned(), ino);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let in_dir = |p: &Path| p.parent() == Some(dir);
        let live: Vec<(PathBuf, u64)> = s
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.durable.retain(|p, _| !in_dir(p));
        s.durable.extend(live);
        s.after_sync();
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.lock_state();
        if !s.dirs.contains(path) {
            return Err(not_found(path));
        }
        let names = s
            .live
            .keys()
            .map(|p| p.as_path())
            .chain(s.dirs.iter().map(|d| d.as_path()))
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        Ok(names.collect())
    }

    fn lock(&self, path: &Path, exclusive: bool, wait: bool) -> io::Result<Option<LockGuard>> {
        loop {
            {
                let mut s = self.lock_state();
                let free = match s.locks.get(path) {
                    None => true,
                    Some((held_exclusive, _)) => !exclusive && !held_exclusive,
                };
                if free {
                    let entry = s.locks.entry(path.to_owned()).or_insert((exclusive, 0));
                    entry.1 += 1;
                    return Ok(Some(Box::new(SimLock {
                        fs: self.clone(),
                        path: path.to_owned(),
                    })));
                }
            }
            if !wait {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn lock_slot(&self, path: &Path, slot: u64) -> io::Result<Option<LockGuard>> {
        drop(self.open(path, OpenMode::CreateKeep)?);
        let key = (path.to_owned(), slot);
        if !self.lock_state().slots.insert(key.clone()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimSlot {
            fs: self.clone(),
            key,
        })))
    }

    fn locked_slots(&self, path: &Path, from: u64, to: u64) -> io::Result<Vec<u64>> {
        let s = self.lock_state();
        Ok(s.slots
            .iter()
            .filter(|(p, slot)| p == path && (from..to).contains(slot))
            .map(|(_, slot)| *slot)
            .collect())
    }
}
