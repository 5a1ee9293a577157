//! The manifest file: an append-only log of checksummed edit frames, shared by every process
//! that opens the store, compacted into one snapshot by write-temp/fsync/rename/fsync-dir.
//!
//! The bytes (header, frames, epoch) are docs/FORMAT.md's "Manifest", the one place the
//! grammar lives.
//!
//! Appends happen under an exclusive lock on `LOCK`; readers take no lock and stop at an
//! incomplete last frame. Compaction writes a new file with `epoch + 1`, which tells other
//! processes to reload from the start instead of continuing from their offset.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::io::{self, FileSystem, LockGuard, OpenMode};
use crate::manifest::{base, batch, table, Base, Edit, State};

const MAGIC: [u8; 8] = *b"STEPLMAN";
/// The header's format: 8 (a `base` frame over tables, edits that may carry inline
/// segments, packs, batches of runs in binary and run deletions, tables that may hold run
/// tombstones) is written; 7 (the same with batches in JSON), 6 (without deletions either),
/// 5 (without batches either), 4 (without packs either) and 3 (without inline segments
/// either) are appended to as they are, taking only what their format knows, until their
/// first compaction rewrites them as 8; 1 (a `snapshot` frame, manifest formats 1 and 2) is
/// read.
pub(crate) const FORMAT: u16 = 8;
/// The first format whose edits may carry inline segments.
pub(crate) const FORMAT_INLINE: u16 = 4;
/// The first format whose edits may carry packs.
pub(crate) const FORMAT_PACKS: u16 = 5;
/// The first format whose edits may carry batches of runs.
pub(crate) const FORMAT_BATCH: u16 = 6;
/// The first format with `delete` edits and run tombstones in tables.
pub(crate) const FORMAT_DELETE: u16 = 7;
/// The first format whose `batch` edits are written in binary ([`batch`]).
pub(crate) const FORMAT_BINARY_BATCH: u16 = 8;
const FORMAT_TABLES: u16 = 3;
const FORMAT_SNAPSHOT: u16 = 1;
/// Size ratio of the tiers of tables: a compaction merges a table into the newer ones when
/// it is at most this many times their size, so a base has about log4(records) tables.
const TIER_RATIO: u64 = 4;
pub(crate) const HEADER_LEN: usize = 24;
pub(crate) const FRAME_HEADER_LEN: usize = 12;

pub(crate) const MANIFEST: &str = "MANIFEST";
const MANIFEST_TMP: &str = "MANIFEST.tmp";
const LOCK: &str = "LOCK";

pub(crate) fn header(epoch: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT.to_le_bytes());
    h[12..20].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The header's epoch and format.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<(u64, u16)> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::corrupt(
            path,
            0,
            format!("manifest is {} bytes, shorter than its header", bytes.len()),
        ));
    }
    if bytes[..8] != MAGIC {
        return Err(Error::corrupt(
            path,
            0,
            "not a steplog manifest (bad magic)",
        ));
    }
    let stored = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    let got = crc32fast::hash(&bytes[..20]);
    if stored != got {
        return Err(Error::ChecksumMismatch {
            file: path.to_owned(),
            offset: 0,
            expected: stored,
            got,
        });
    }
    let format = u16::from_le_bytes([bytes[8], bytes[9]]);
    if ![
        FORMAT,
        FORMAT_DELETE,
        FORMAT_BATCH,
        FORMAT_PACKS,
        FORMAT_INLINE,
        FORMAT_TABLES,
        FORMAT_SNAPSHOT,
    ]
    .contains(&format)
    {
        return Err(Error::corrupt(
            path,
            8,
            format!("unsupported manifest format version {format}"),
        ));
    }
    let mut e = [0u8; 8];
    e.copy_from_slice(&bytes[12..20]);
    Ok((u64::from_le_bytes(e), format))
}

/// Encodes one edit as a frame for a manifest of `format`; an edit too large for a frame's
/// `u32` length is refused.
pub(crate) fn encode_frame(edit: &Edit, format: u16) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    put_frame(&mut out, edit, format)?;
    Ok(out)
}

/// Appends one edit's frame to `out`, for a manifest of `format`: a `batch` in binary from
/// format 8 on, every other edit in JSON. On an error `out` is as it was.
pub(crate) fn put_frame(out: &mut Vec<u8>, edit: &Edit, format: u16) -> std::io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    let written = match edit {
        Edit::Batch { runs } if format >= FORMAT_BINARY_BATCH => batch::encode(runs, out),
        _ => serde_json::to_writer(&mut *out, edit).map_err(std::io::Error::from),
    };
    let payload_len = out.len() - start - FRAME_HEADER_LEN;
    let len = written.and_then(|()| {
        u32::try_from(payload_len).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a manifest edit of {payload_len} bytes is too large"),
            )
        })
    });
    let len = match len {
        Ok(len) => len,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let pcrc = crc32fast::hash(&out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&pcrc.to_le_bytes());
    let hcrc = crc32fast::hash(&out[start..start + 8]);
    out[start + 8..start + 12].copy_from_slice(&hcrc.to_le_bytes());
    Ok(())
}

/// Decodes one frame's payload: a binary `batch` or a JSON edit.
fn decode_edit(payload: &[u8]) -> std::result::Result<Edit, String> {
    if payload.first() == Some(&batch::TAG) {
        return batch::decode(payload).map(|runs| Edit::Batch { runs });
    }
    serde_json::from_slice(payload).map_err(|e| e.to_string())
}

/// The outcome of decoding frames from a buffer.
pub(crate) struct Frames {
    pub edits: Vec<(u64, Edit)>,
    /// Offset (in the buffer) just past the last whole, valid frame.
    pub valid_end: usize,
    /// Whether bytes after `valid_end` form an incomplete frame (an interrupted append).
    pub torn: bool,
    /// Whether that torn frame has its whole length but fails its checksum (`verify`
    /// reports it as a failure; opening tolerates it as an unwritten tail).
    pub complete_bad_tail: bool,
}

/// Decodes frames from `buf`, which starts at file offset `base`. Damage that is not an
/// incomplete last frame is an error naming the offset.
pub(crate) fn decode_frames(path: &Path, buf: &[u8], base: u64) -> Result<Frames> {
    let mut edits = Vec::new();
    let mut pos = 0usize;
    // Whether bytes remain from `p` and all are zero (an unwritten, zero-filled tail).
    let zero_from = |p: usize| p < buf.len() && buf[p..].iter().all(|&b| b == 0);
    while pos < buf.len() {
        let at = base + pos as u64;
        let rest = &buf[pos..];
        let torn = |valid_end| Frames {
            edits: Vec::new(),
            valid_end,
            torn: true,
            complete_bad_tail: false,
        };
        if rest.len() < FRAME_HEADER_LEN || zero_from(pos) {
            return Ok(Frames { edits, ..torn(pos) });
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let pcrc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let hcrc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let got = crc32fast::hash(&rest[..8]);
        if got != hcrc {
            return Err(Error::ChecksumMismatch {
                file: path.to_owned(),
                offset: at,
                expected: hcrc,
                got,
            });
        }
        let end = FRAME_HEADER_LEN + len;
        if end > rest.len() {
            return Ok(Frames { edits, ..torn(pos) });
        }
        let payload = &rest[FRAME_HEADER_LEN..end];
        let got = crc32fast::hash(payload);
        if got != pcrc {
            // A whole last frame failing its crc is torn only if it ends in a zero byte: the
            // mark of a page that a power loss left unwritten. A process crash can only
            // leave a frame short of its length, handled above. Anything else is damage.
            let unwritten_tail = end == rest.len() && payload.last() == Some(&0);
            if unwritten_tail || zero_from(pos + end) {
                return Ok(Frames {
                    edits,
                    complete_bad_tail: true,
                    ..torn(pos)
                });
            }
            return Err(Error::ChecksumMismatch {
                file: path.to_owned(),
                offset: at,
                expected: pcrc,
                got,
            });
        }
        let edit = decode_edit(payload)
            .map_err(|e| Error::corrupt(path, at, format!("undecodable manifest edit: {e}")))?;
        edits.push((at, edit));
        pos += end;
    }
    Ok(Frames {
        edits,
        valid_end: pos,
        torn: false,
        complete_bad_tail: false,
    })
}

/// The state of a whole manifest file's `bytes` (its header already checked), and its
/// frames: what `verify` replays on its own, apart from any process's view. The first frame
/// must be a base or a snapshot; each edit is applied to what came before.
pub(crate) fn replay(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(State, Frames)> {
    let frames = decode_frames(path, &bytes[HEADER_LEN..], HEADER_LEN as u64)?;
    let mut state = match frames.edits.first() {
        Some((
            _,
            Edit::Base {
                tables,
                next_version,
                next_segment,
                ..
            },
        )) => {
            let base = Base::open(fs, dir, tables, (*next_version, *next_segment))?;
            State::with_base(base, *next_version, *next_segment)
        }
        Some((at, Edit::Snapshot { state })) => {
            let state = State::from(state.clone());
            state
                .validate()
                .map_err(|reason| Error::corrupt(path, *at, reason))?;
            state
        }
        _ => {
            return Err(Error::corrupt(
                path,
                HEADER_LEN as u64,
                "the manifest's first frame, its base, is missing or cut short",
            ))
        }
    };
    for (at, edit) in frames.edits.iter().skip(1) {
        state.prepare(edit)?;
        state
            .apply(edit)
            .map_err(|reason| Error::corrupt(path, *at, reason))?;
    }
    Ok((state, frames))
}

/// This process's view of the manifest: the state as of `offset` in the file of `epoch`.
pub(crate) struct ManifestLog {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    path: PathBuf,
    sync: bool,
    /// Compact once the file is larger than this and twice its last snapshot.
    compact_bytes: u64,
    /// How long an edit waits for `LOCK`.
    lock_timeout: Duration,
    epoch: u64,
    /// The format of the file of `epoch` (its header's).
    format: u16,
    offset: u64,
    /// Where the edits after the first frame (the base or snapshot) start.
    base_len: u64,
    /// The next table id to try (from the base frame; 1 for a snapshot manifest).
    next_table: u64,
    /// No compaction before the file reaches this offset (after a failed one).
    compact_after: u64,
    /// Whether the last `write_base` renamed its manifest into place.
    renamed: bool,
    state: Arc<State>,
    poisoned: bool,
    /// Whether this process has looked for a `MANIFEST.tmp` left by a crashed compaction
    /// (removed before this process's first edit, under `LOCK`).
    tmp_checked: bool,
    /// The manifest file as last opened, kept so that a refresh is one `identify` of the
    /// path (the same file, and its length) rather than an open, header read and close.
    held: Option<Held>,
    /// A compaction building its new table on a thread of its own, put in place (or thrown
    /// away) by this process's next locked operation, or when the log is dropped.
    inflight: Option<Inflight>,
    /// A merge of the base's newest tables on a thread of its own, put in place with the
    /// next compaction, or alone when the log settles.
    merging: Option<Merging>,
}

/// The most tables a base may have while a merge is in flight: past it, a compaction put
/// in place waits for the merge. A merge of the oldest tier of a 1,000,000-run store takes
/// a second or more on a busy 2-core machine, while compactions go on every few tens of
/// milliseconds (at 16, a bulk ingest waited for merges 2 s of its 20).
const MAX_TABLES: usize = 32;

/// A merge's table is created from this many ids past the next table id: the compactions
/// put in place while it is built take the ids below (it is put in place with the one that
/// would take its id, at the latest), so a table in the making has an id above every table a
/// manifest lists, which `gc` relies on (it deletes an unlisted table older than the newest
/// listed as a leftover). Far more than the compactions a merge could outlast, so that only
/// `MAX_TABLES` ever makes one wait; ids stay far below what a table's name holds (16
/// digits) after millions of merges.
const MERGE_ID_GAP: u64 = 1 << 20;

/// A compaction started by an append, building its tables on its own thread
/// (`ManifestLog::start_compaction`) while this process goes on.
struct Inflight {
    /// Where the edits not in its state start in the file: copied after its base.
    tail_start: u64,
    /// The process that started it: a forked child has no such thread to join.
    pid: u32,
    /// Whether this process has reloaded its state from the file's start since it started:
    /// another process compacted (a new epoch), the file was cut back, or a failure. The
    /// file may then no longer be the one it compacted, nor the state's frozen overlay the
    /// one it wrote: it is thrown away, its tables deleted.
    stale: bool,
    handle: std::thread::JoinHandle<Built>,
}

/// What of the state a new base holds (`ManifestLog::install`), and so which of its overlays
/// stay over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// A merge's: the same records in fewer tables. Every overlay stays.
    Same,
    /// A compaction in flight's: the base and the frozen overlay it wrote. The overlay over
    /// that one (the edits since it started) stays.
    Frozen,
    /// A compaction of the whole state, under `LOCK`. Nothing stays over it.
    Whole,
}

/// What a compaction's thread returns: the tables it created (to delete if they are not put
/// in place), and its new base.
type Built = (Vec<u64>, Result<Compacted>);

/// A merge of a run of the base's newest tables into one, started once a compaction is put
/// in place (`ManifestLog::start_merge`), on a thread of its own: merges grow with the store
/// (a tier four times the one before), so this process's appends, and its next compactions,
/// never wait for one. Its table replaces its inputs in the base the next compaction puts in
/// place (or, when the log settles, in the base as it is).
struct Merging {
    /// The tables it merges, newest first: a run of the base's list when it started.
    inputs: Vec<u64>,
    /// Whether the run ends at the base's oldest table (its tombstones are dropped).
    oldest: bool,
    /// The first id its table may take (`MERGE_ID_GAP`).
    first_id: u64,
    /// The process that started it: a forked child has no such thread to join.
    pid: u32,
    /// Whether this process has reloaded its state from the file's start since it started
    /// (as `Inflight::stale`): the base may no longer hold its inputs; it is thrown away.
    stale: bool,
    handle: std::thread::JoinHandle<MergeBuilt>,
}

/// What a merge's thread returns: the tables it created, and its table's id and length and
/// the next table id.
type MergeBuilt = (Vec<u64>, Result<((u64, u64), u64)>);

/// A merge joined (`ManifestLog::join_merge`).
struct JoinedMerge {
    inputs: Vec<u64>,
    oldest: bool,
    stale: bool,
    /// The tables it created.
    created: Vec<u64>,
    /// Its table's id and length, and the next table id.
    built: Result<((u64, u64), u64)>,
}

/// A compaction's new base, its tables written, synced and open.
struct Compacted {
    base: Base,
    /// The new base's tables, newest first.
    ids: Vec<u64>,
    /// The tables it replaces, deleted once the new manifest is in place: the old base's it
    /// merged, and its own that it merged in turn.
    replaced: Vec<u64>,
    next_table: u64,
    next_version: u64,
    next_segment: u64,
}

/// An open manifest file and its identity.
struct Held {
    id: u64,
    read: Arc<dyn io::FileHandle>,
    /// Opened for appending, by the first edit of this process to this file.
    write: Option<Arc<dyn io::FileHandle>>,
}

impl ManifestLog {
    /// Opens the manifest of the store in `dir`, creating an empty one if the store has none
    /// yet. Opening reads only: it takes no lock and writes nothing to an existing store, so
    /// a read-only store can be read and a stopped process cannot block a reader.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        sync: bool,
        compact_bytes: u64,
        lock_timeout: Duration,
    ) -> Result<ManifestLog> {
        let mut log = ManifestLog {
            fs,
            dir: dir.to_owned(),
            path: dir.join(MANIFEST),
            sync,
            compact_bytes,
            lock_timeout,
            epoch: 0,
            format: FORMAT,
            offset: 0,
            base_len: 0,
            next_table: 1,
            compact_after: 0,
            renamed: false,
            state: Arc::new(State::default()),
            poisoned: false,
            tmp_checked: false,
            held: None,
            inflight: None,
            merging: None,
        };
        if !io::exists(&*log.fs, &log.path).at(&log.path)? {
            log.create()?;
        }
        log.refresh(false)?;
        Ok(log)
    }

    /// Creates the manifest of a new, empty store, under `LOCK`, unless another process
    /// created it first (several processes may open a new store at once, and write runs as
    /// soon as its manifest exists).
    fn create(&mut self) -> Result<()> {
        let guard = match self.lock() {
            Ok(guard) => guard,
            // Where `LOCK` cannot be had (read-only media, a stopped holder), a lost
            // manifest is still named as such.
            Err(e) => {
                self.check_never_existed()?;
                return Err(e);
            }
        };
        let r = (|| {
            if !io::exists(&*self.fs, &self.path).at(&self.path)? {
                self.check_never_existed()?;
                self.remove_leftover_tmp()?;
                self.write_base(1, &[], (1, 1), 1, &[])?;
            }
            Ok(())
        })();
        drop(guard);
        r
    }

    /// Refuses to create a manifest where the store existed: a store whose manifest is gone
    /// while segment files remain is damaged, not empty (starting it afresh would reuse their
    /// ids). Under `LOCK`, once no manifest is found: a manifest is created only under it,
    /// so what it finds is not a store another process is creating.
    fn check_never_existed(&self) -> Result<()> {
        // Segment files, manifest tables, or the run lock file every writer leaves (a run may
        // have no rows; stores before 2026-12-02 have a `.lock` file per run), mean the store
        // existed: a new manifest would not list their tables, and compaction deletes tables
        // no manifest lists.
        let lock_file = |n: &str| n.ends_with(".lock") || n == crate::lock::RUN_LOCKS;
        let segment_file = |n: &str| n.ends_with(".seg");
        let table_file = |n: &str| n.ends_with(".tab");
        for (sub, kind, what) in [
            (
                crate::store::SEGMENT_DIR,
                &segment_file as &dyn Fn(&str) -> bool,
                "segment files",
            ),
            (table::TABLE_DIR, &table_file, "manifest tables"),
            (
                crate::lock::LOCK_DIR,
                &lock_file,
                "run lock files (runs existed)",
            ),
        ] {
            let d = self.dir.join(sub);
            let found = match self.fs.read_dir(&d) {
                Ok(names) => names.iter().filter(|n| kind(n)).count(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(Error::io(&d, e)),
            };
            if found > 0 {
                return Err(Error::corrupt(
                    &self.path,
                    0,
                    format!(
                        "the manifest is missing, but {} holds {found} {what}: the store is \
                         damaged, not empty (restore MANIFEST from a backup)",
                        d.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The store-wide lock, held while appending. Waits at most `lock_timeout`: a process
    /// stopped while holding it must not hang every writer.
    fn lock(&self) -> Result<LockGuard> {
        let path = self.dir.join(LOCK);
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.fs.lock(&path, true, false) {
                Ok(Some(guard)) => return Ok(guard),
                Ok(None) => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            let waited = start.elapsed();
            if waited >= self.lock_timeout {
                return Err(Error::LockTimeout {
                    path,
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                });
            }
            std::thread::sleep(pause.min(self.lock_timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Removes a `MANIFEST.tmp` that a compaction killed midway left behind. Called under
    /// `LOCK` (no compaction is running), once per process.
    fn remove_leftover_tmp(&mut self) -> Result<()> {
        if self.tmp_checked {
            return Ok(());
        }
        let tmp = self.dir.join(MANIFEST_TMP);
        if io::exists(&*self.fs, &tmp).at(&tmp)? {
            self.fs.remove_file(&tmp).at(&tmp)?;
        }
        self.tmp_checked = true;
        Ok(())
    }

    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the state up to date with what other processes appended. With `locked` (the
    /// caller holds `LOCK` and is about to append), an incomplete last frame is from a crashed
    /// appender and is cut; without it (a reader), it is only ignored: reading never writes.
    pub fn refresh(&mut self, locked: bool) -> Result<()> {
        // A compaction of another process may delete the tables of the manifest read just
        // before it: reading it again finds the new one (a few times at most).
        let tables = self.dir.join(table::TABLE_DIR);
        let mut attempt = 0;
        loop {
            match self.refresh_once(locked) {
                Err(Error::Io { path, source })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && path.starts_with(&tables) =>
                {
                    attempt += 1;
                    if attempt == 8 {
                        return Err(Error::MissingFile {
                            file: path,
                            reason: "the manifest lists this table of its state".into(),
                        });
                    }
                }
                r => return r,
            }
        }
    }

    /// The manifest file, its length, and whether it is the one this process read last
    /// (a file is replaced only by a compaction's rename; where the file system tells
    /// identities, that costs one call, else the path is opened again).
    fn manifest_file(&mut self) -> Result<(Arc<dyn io::FileHandle>, u64, bool)> {
        if let Some(held) = &self.held {
            if let Ok((id, len)) = self.fs.identify(&self.path) {
                if id == held.id {
                    return Ok((held.read.clone(), len, true));
                }
            }
        }
        let file = self.fs.open(&self.path, OpenMode::Read).at(&self.path)?;
        let len = file.len().at(&self.path)?;
        self.held = file.identity().ok().map(|id| Held {
            id,
            read: file.clone(),
            write: None,
        });
        Ok((file, len, false))
    }

    fn refresh_once(&mut self, locked: bool) -> Result<()> {
        let (file, len, same) = self.manifest_file()?;
        let (epoch, format) = if same && self.epoch != 0 {
            // The header of a file is written once, before the file is renamed into place.
            (self.epoch, self.format)
        } else {
            let mut head = [0u8; HEADER_LEN];
            let n = (len as usize).min(HEADER_LEN);
            file.read_exact_at(&mut head[..n], 0).at(&self.path)?;
            parse_header(&self.path, &head[..n])?
        };
        self.format = format;
        // The base read before, whose open tables a reload keeps where the new base still
        // lists them (`Base::open_reusing`).
        let mut previous = None;
        if epoch != self.epoch {
            self.epoch = epoch;
            self.offset = HEADER_LEN as u64;
            previous = Some(self.state.base().clone());
            self.state = Arc::new(State::default());
        }
        if len == self.offset && self.offset > HEADER_LEN as u64 {
            return Ok(());
        }
        if len < self.offset {
            // Shorter than what this process has read: cut by something other than a writer
            // of this store (writers only cut a torn frame they have not read). Reload.
            self.epoch = 0;
            return Err(Error::corrupt(
                &self.path,
                len,
                format!(
                    "the manifest shrank to {len} bytes below the {} already read",
                    self.offset
                ),
            ));
        }
        let buf = io::read_from(&*file, self.offset).at(&self.path)?;
        let frames = decode_frames(&self.path, &buf, self.offset)?;
        let mut edits = &frames.edits[..];
        if self.offset == HEADER_LEN as u64 {
            // Every manifest starts with a base (or, format 1 and 2, a snapshot), written whole
            // and fsynced before it was renamed into place: it can never be torn, and a file
            // without one was cut.
            let first_end = edits
                .get(1)
                .map_or(self.offset + frames.valid_end as u64, |e| e.0);
            let loaded = match edits.first() {
                Some((
                    _,
                    Edit::Base {
                        tables,
                        next_version,
                        next_segment,
                        next_table,
                    },
                )) => {
                    let counters = (*next_version, *next_segment);
                    let previous = previous.as_deref();
                    match Base::open_reusing(&*self.fs, &self.dir, tables, counters, previous) {
                        Ok(base) => {
                            self.next_table = *next_table;
                            Ok(State::with_base(base, *next_version, *next_segment))
                        }
                        Err(e) => {
                            // Reloaded from the start next time (a compaction may have
                            // replaced this manifest and deleted its tables meanwhile).
                            self.epoch = 0;
                            return Err(e);
                        }
                    }
                }
                Some((_, Edit::Snapshot { state })) => {
                    self.next_table = 1;
                    let state = State::from(state.clone());
                    state.validate().map(|()| state)
                }
                _ => {
                    return Err(Error::corrupt(
                        &self.path,
                        HEADER_LEN as u64,
                        "the manifest's first frame, its base, is missing or cut short (the \
                         file was truncated or overwritten)",
                    ))
                }
            };
            match loaded {
                Ok(mut state) => {
                    state.format = format;
                    self.state = Arc::new(state);
                }
                Err(reason) => {
                    self.epoch = 0;
                    return Err(Error::corrupt(&self.path, HEADER_LEN as u64, reason));
                }
            }
            self.base_len = first_end;
            edits = &edits[1..];
            // Reloaded from the start: a compaction in flight may be of another file.
            if let Some(job) = &mut self.inflight {
                job.stale = true;
            }
            if let Some(merge) = &mut self.merging {
                merge.stale = true;
            }
        }
        if !edits.is_empty() {
            let state = Arc::make_mut(&mut self.state);
            for (at, edit) in edits {
                if let Err(e) = state.prepare(edit) {
                    self.epoch = 0;
                    return Err(e);
                }
                if let Err(reason) = state.apply(edit) {
                    self.epoch = 0;
                    return Err(Error::corrupt(&self.path, *at, reason));
                }
            }
        }
        self.offset += frames.valid_end as u64;
        if frames.torn && locked {
            let f = self
                .fs
                .open(&self.path, OpenMode::ReadWrite)
                .at(&self.path)?;
            f.set_len(self.offset).at(&self.path)?;
        }
        Ok(())
    }

    /// Runs `f` on the up-to-date state under the store-wide lock and appends the edits it
    /// returns, atomically with respect to every other process. Edits that create a run
    /// which exists by then are refused with `RunExists` (`State::taken_name`), nothing
    /// appended.
    pub fn transact<T>(&mut self, f: impl FnOnce(&State) -> Result<(Vec<Edit>, T)>) -> Result<T> {
        self.under_lock(|log| log.transact_locked(f))
    }

    /// Runs `f` under the store-wide `LOCK`, after removing a crashed compaction's temp
    /// file: what every appender does first (refused once the log is poisoned).
    fn under_lock<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.poisoned {
            return Err(Error::StorePoisoned {
                path: self.path.clone(),
            });
        }
        let guard = self.lock()?;
        let result = self
            .remove_leftover_tmp()
            .and_then(|()| {
                // A compaction of this process in flight is put in place once its thread is
                // done, or waited for once the tail has grown by another threshold since it
                // started (so the tail an open reads stays bounded).
                if let Some(job) = &self.inflight {
                    let done = job.handle.is_finished();
                    self.refresh(true)?;
                    let long = self.offset.saturating_sub(self.base_len)
                        > self.compact_bytes.saturating_mul(2);
                    if done || long {
                        self.finish_compaction();
                    }
                }
                Ok(())
            })
            .and_then(|()| f(self));
        drop(guard);
        result
    }

    fn transact_locked<T>(
        &mut self,
        f: impl FnOnce(&State) -> Result<(Vec<Edit>, T)>,
    ) -> Result<T> {
        self.refresh(true)?;
        let (edits, out) = f(&self.state)?;
        if edits.is_empty() {
            return Ok(out);
        }
        // Check the edits by applying them in place (copy-on-write only if a reader still
        // holds the old state), before anything is written: an edit that does not fit must
        // never reach the file. If it is refused, or the write fails, the in-memory state is
        // thrown away and reloaded from the file on the next refresh.
        let state = Arc::make_mut(&mut self.state);
        for (i, e) in edits.iter().enumerate() {
            if let Err(err) = state.prepare(e) {
                self.epoch = 0;
                return Err(err);
            }
            if let Some(run) = state.taken_name(e) {
                // Refused before anything is applied: `prepare` only loaded records into the
                // overlay, which leaves the state as it reads (an edit applied before this
                // one does not: the state is reloaded).
                if i > 0 {
                    self.epoch = 0;
                }
                return Err(Error::RunExists { run: run.into() });
            }
            if let Err(reason) = state.apply(e) {
                self.epoch = 0;
                // The edits were made from this very state, under the lock: a refusal is not
                // a race but an edit that never fit (a bug, reported as such).
                return Err(Error::InvalidInput(format!(
                    "the manifest refused an edit made from its latest state: {reason}"
                )));
            }
        }
        let mut bytes = Vec::new();
        let format = self.state.format;
        for e in &edits {
            match put_frame(&mut bytes, e, format) {
                Ok(()) => {}
                Err(err) => {
                    self.epoch = 0;
                    return Err(Error::io(&self.path, err));
                }
            }
        }
        if let Err(e) = self.append(&bytes) {
            self.epoch = 0;
            return Err(e);
        }
        self.offset += bytes.len() as u64;
        if self.inflight.is_none()
            && self.offset - self.base_len > self.compact_bytes
            && self.offset >= self.compact_after
        {
            if self.format < FORMAT_TABLES {
                // A manifest of format 1 or 2 may still be appended to by a steplog of that
                // format, whose `purge` edits name no owners: they must come right after a
                // snapshot, never in a tail copied after a base. It is compacted here, under
                // `LOCK`.
                self.compact_after_append();
            } else {
                self.start_compaction();
            }
        }
        Ok(out)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        // The file the refresh before this (under `LOCK`) read: no other can replace it now.
        let file = match self.held.as_mut() {
            Some(Held { write: Some(w), .. }) => w.clone(),
            held => {
                let w = self
                    .fs
                    .open(&self.path, OpenMode::ReadWrite)
                    .at(&self.path)?;
                if let Some(h) = held {
                    if w.identity().ok() == Some(h.id) {
                        h.write = Some(w.clone());
                    }
                }
                w
            }
        };
        // Under the lock, after a refresh that cut any torn tail: the file ends at `offset`.
        file.write_all_at(bytes, self.offset).at(&self.path)?;
        if self.sync {
            if let Err(e) = file.sync() {
                self.poisoned = true;
                return Err(Error::io(&self.path, e));
            }
        }
        Ok(())
    }

    /// Compacts now, on this thread (under `LOCK`, after a refresh): builds the new base
    /// and puts it in place. On failure, removes the tables it created that no manifest lists
    /// (none once the new manifest is renamed into place: a failure after the rename, syncing
    /// the directory, leaves a manifest that may list them), and drops the in-memory state,
    /// to be reloaded from the file.
    fn compact(&mut self) -> Result<()> {
        // A merge in flight reads tables this compaction may merge in turn: waited for and
        // thrown away (a merge only ever saves later reads). A compaction in flight is of a
        // file this one replaces: thrown away when it is done (its state is in this one's).
        self.drop_merge();
        if let Some(job) = &mut self.inflight {
            job.stale = true;
        }
        let mut created = Vec::new();
        let built = build_tables(
            &*self.fs,
            &self.dir,
            &self.path,
            &self.state.clone(),
            self.next_table,
            &mut created,
        );
        self.put_in_place(created, built, self.offset, Holds::Whole)
    }

    /// Starts compacting the state as it is now on a thread of its own, put in place by this
    /// process's next locked operation (`finish_compaction`): building the tables, the bulk
    /// of a compaction, overlaps what the process does until then (a bulk encoding its next
    /// runs). Where no thread can be started, compacts now. Under `LOCK`, just after an append.
    fn start_compaction(&mut self) {
        let (fs, dir, path) = (self.fs.clone(), self.dir.clone(), self.path.clone());
        // The edits so far, frozen under an empty overlay (copy-on-write only if a reader
        // still holds the state): the thread writes them, and later edits go on over them.
        let (state, next_table) = (Arc::make_mut(&mut self.state).freeze(), self.next_table);
        let job = move || {
            let mut created = Vec::new();
            // A panic (a bug) is this compaction's failure, not the process's: the tables
            // created so far are still known, and deleted.
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                build_fresh(&*fs, &dir, &path, &state, next_table, &mut created)
            }))
            .unwrap_or_else(|_| {
                Err(Error::InvalidInput(
                    "a manifest compaction panicked (a bug)".into(),
                ))
            });
            (created, built)
        };
        let spawned = std::thread::Builder::new()
            .name("steplog-compaction".into())
            .spawn(job);
        match spawned {
            Ok(handle) => {
                self.inflight = Some(Inflight {
                    tail_start: self.offset,
                    pid: std::process::id(),
                    stale: false,
                    handle,
                })
            }
            Err(_) => self.compact_after_append(),
        }
    }

    /// After an append that passed the compaction threshold, where no thread could be
    /// started: compacts on this thread.
    fn compact_after_append(&mut self) {
        // Compaction only bounds the tail every open reads: the edits appended are committed
        // whatever happens here. A failure leaves the old file whole (a leftover temp file is
        // removed at the next open) and removes the tables it wrote; the state is reloaded
        // from the file, and compaction is tried again once the tail has grown by another
        // threshold (not on every edit, each writing tables, under `LOCK`).
        if self.compact().is_err() {
            self.compact_after = self.offset.saturating_add(self.compact_bytes);
        }
    }

    /// Puts the compaction in flight in place, or throws it away if the manifest is no longer
    /// the file it compacted (another process compacted it meanwhile). Under `LOCK`, after a
    /// refresh, before anything is appended: the edits after its state in this file (this
    /// process's and others', over its frozen overlay in memory) are copied after its base.
    fn finish_compaction(&mut self) {
        let Some(job) = self.inflight.take() else {
            return;
        };
        if job.pid != std::process::id() {
            // A forked child's copy: the thread is the parent's, and so are its tables.
            std::mem::forget(job.handle);
            return;
        }
        let (created, built) = job.handle.join().unwrap_or_else(|_| {
            (
                Vec::new(),
                Err(Error::InvalidInput("a manifest compaction panicked".into())),
            )
        });
        if job.stale {
            // Another process compacted first (its base holds everything this one does), or
            // the file is not the one compacted: thrown away, whether or not it was built
            // (a build may fail because another compaction deleted a table it read).
            drop(built);
            remove_tables(&*self.fs, &self.dir, &created);
            return;
        }
        if self
            .put_in_place(created, built, job.tail_start, Holds::Frozen)
            .is_err()
        {
            self.compact_after = self.offset.saturating_add(self.compact_bytes);
        }
    }

    /// Puts a compaction's new base in place (`install`), with the table of a merge that is
    /// done in place of its inputs (`fold_merge`), then starts the next merge if one is due;
    /// or on failure deletes the tables they created that no manifest lists and drops the
    /// in-memory state, to be reloaded.
    fn put_in_place(
        &mut self,
        mut created: Vec<u64>,
        built: Result<Compacted>,
        tail_start: u64,
        holds: Holds,
    ) -> Result<()> {
        self.renamed = false;
        let result = built
            .and_then(|c| self.fold_merge(c, false, &mut created))
            .and_then(|(c, _)| self.install(c, tail_start, holds));
        match result {
            Ok(()) => self.start_merge(),
            Err(_) => {
                if !self.renamed {
                    remove_tables(&*self.fs, &self.dir, &created);
                }
                self.epoch = 0;
            }
        }
        result
    }

    /// Starts merging the base's newest tables on a thread of its own, if `merge_plan` says
    /// they are due and no merge is in flight (where no thread can be started, a later
    /// compaction merges them).
    fn start_merge(&mut self) {
        if self.merging.is_some() {
            return;
        }
        let base = self.state.base().clone();
        let sizes = base.sizes();
        let k = merge_plan(&sizes);
        if k < 2 {
            return;
        }
        let tables = base.newest(k).to_vec();
        let (fs, dir, path) = (self.fs.clone(), self.dir.clone(), self.path.clone());
        let oldest = k == sizes.len();
        let first_id = self.next_table.saturating_add(MERGE_ID_GAP);
        let job = move || {
            let mut created = Vec::new();
            // A panic (a bug) is this merge's failure, not the process's (as a compaction's).
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                build_merge(&*fs, &dir, &path, &tables, oldest, first_id, &mut created)
            }))
            .unwrap_or_else(|_| {
                Err(Error::InvalidInput(
                    "a manifest merge panicked (a bug)".into(),
                ))
            });
            (created, built)
        };
        if let Ok(handle) = std::thread::Builder::new()
            .name("steplog-merge".into())
            .spawn(job)
        {
            self.merging = Some(Merging {
                inputs: sizes[..k].iter().map(|t| t.0).collect(),
                oldest,
                first_id,
                pid: std::process::id(),
                stale: false,
                handle,
            });
        }
    }

    /// The merge in flight, taken and joined. `None` for a forked child's copy (the thread
    /// is the parent's, and so are its tables).
    fn join_merge(&mut self) -> Option<JoinedMerge> {
        let Merging {
            inputs,
            oldest,
            pid,
            stale,
            handle,
            ..
        } = self.merging.take()?;
        if pid != std::process::id() {
            std::mem::forget(handle);
            return None;
        }
        let (created, built) = handle.join().unwrap_or_else(|_| {
            (
                Vec::new(),
                Err(Error::InvalidInput("a manifest merge panicked".into())),
            )
        });
        Some(JoinedMerge {
            inputs,
            oldest,
            stale,
            created,
            built,
        })
    }

    /// Waits for the merge in flight, if any, and deletes its table (no manifest lists it).
    fn drop_merge(&mut self) {
        if let Some(m) = self.join_merge() {
            remove_tables(&*self.fs, &self.dir, &m.created);
        }
    }

    /// `c`, a compaction's new base, with the table of the merge in flight in place of its
    /// inputs, if the merge is done, or `wait`, or waited for because the base has more than
    /// `MAX_TABLES` tables or `c` took ids up to the merge's. Its inputs must still be a run
    /// of the base (ending at the oldest table if it dropped tombstones). A merge that
    /// failed, was of another file (`stale`), or whose inputs are gone is thrown away, its
    /// table deleted. The merge's table joins `created`, deleted if `c` is not put in place
    /// after all. Whether a merge was folded in.
    fn fold_merge(
        &mut self,
        c: Compacted,
        wait: bool,
        created: &mut Vec<u64>,
    ) -> Result<(Compacted, bool)> {
        let due = |m: &Merging| {
            wait || m.handle.is_finished() || c.ids.len() > MAX_TABLES || c.next_table >= m.first_id
        };
        if !self.merging.as_ref().is_some_and(due) {
            return Ok((c, false));
        }
        let Some(m) = self.join_merge() else {
            return Ok((c, false));
        };
        let n = m.inputs.len();
        let at = c.ids.windows(n).position(|w| w == m.inputs.as_slice());
        let fits = at.is_some_and(|at| !m.oldest || at + n == c.ids.len());
        let (at, (table, next)) = match (at, m.built) {
            (Some(at), Ok(built)) if fits && !m.stale => (at, built),
            _ => {
                remove_tables(&*self.fs, &self.dir, &m.created);
                return Ok((c, false));
            }
        };
        created.extend(m.created);
        let mut ids = c.ids;
        ids.splice(at..at + n, [table.0]);
        let counters = (c.next_version, c.next_segment);
        let base = Base::open_reusing(&*self.fs, &self.dir, &ids, counters, Some(&c.base))?;
        let folded = Compacted {
            base,
            ids,
            replaced: c.replaced.into_iter().chain(m.inputs).collect(),
            next_table: c.next_table.max(next),
            next_version: c.next_version,
            next_segment: c.next_segment,
        };
        Ok((folded, true))
    }

    /// Waits for the merge in flight, if any, and puts its table in place of its inputs in
    /// the base as it is: a new manifest of that base and the same tail (the state's edits
    /// since its base are kept as they are). Under `LOCK`, after a refresh.
    fn finish_merge(&mut self) {
        if self.merging.is_none() {
            return;
        }
        // The file as it is now, with every process's edits: the new file's tail is copied
        // from it. A reload from its start (another process compacted, a failure here before)
        // makes the merge stale, thrown away below.
        if self.refresh(true).is_err() || self.epoch == 0 {
            return self.drop_merge();
        }
        let base = self.state.base().clone();
        let ids: Vec<u64> = base.sizes().iter().map(|t| t.0).collect();
        let counters = base.counters();
        let c = match Base::open_reusing(&*self.fs, &self.dir, &ids, counters, Some(&base)) {
            Ok(opened) => Compacted {
                base: opened,
                ids,
                replaced: Vec::new(),
                next_table: self.next_table,
                next_version: counters.0,
                next_segment: counters.1,
            },
            Err(_) => return self.drop_merge(),
        };
        let mut created = Vec::new();
        let tail_start = self.base_len;
        self.renamed = false;
        let result = self
            .fold_merge(c, true, &mut created)
            .and_then(|(c, folded)| match folded {
                true => self.install(c, tail_start, Holds::Same),
                false => Ok(()),
            });
        if result.is_err() {
            if !self.renamed {
                remove_tables(&*self.fs, &self.dir, &created);
            }
            self.epoch = 0;
        }
    }

    /// Replaces the manifest with one of the compaction's base, followed by the edits of this
    /// file from `tail_start` (appended after the compacted state was taken), and deletes the
    /// tables it replaced. The new file's base is taken as this process's state as it is,
    /// tables open, under the overlays `holds` says it does not hold: for a merge
    /// (`tail_start` the end of the base frame) every overlay; for a compaction in flight,
    /// the overlay over the frozen one it wrote (the edits after its state, as this process
    /// applied them); for a compaction of the whole state, none. Under `LOCK`, after a
    /// refresh.
    fn install(&mut self, c: Compacted, tail_start: u64, holds: Holds) -> Result<()> {
        let epoch = self.epoch.checked_add(1).ok_or_else(|| {
            Error::corrupt(&self.path, 12, "the manifest's epoch cannot grow further")
        })?;
        let mut tail = vec![0u8; (self.offset - tail_start.min(self.offset)) as usize];
        if !tail.is_empty() {
            let (file, _, _) = self.manifest_file()?;
            file.read_exact_at(&mut tail, tail_start).at(&self.path)?;
        }
        let counters = (c.next_version, c.next_segment);
        let base_end = self.write_base(epoch, &c.ids, counters, c.next_table, &tail)?;
        remove_tables(&*self.fs, &self.dir, &c.replaced);
        self.epoch = epoch;
        self.format = FORMAT;
        self.offset = base_end;
        self.base_len = base_end;
        self.next_table = c.next_table;
        self.held = None;
        match holds {
            // The same records in fewer tables, under the same edits.
            Holds::Same => Arc::make_mut(&mut self.state).replace_base(c.base),
            // The frozen overlay's edits are the new base's; those since stay over it, as a
            // refresh would read them after it.
            Holds::Frozen => Arc::make_mut(&mut self.state).rebase(c.base),
            Holds::Whole => {
                self.state = Arc::new(State::with_base(c.base, c.next_version, c.next_segment))
            }
        }
        Arc::make_mut(&mut self.state).format = FORMAT;
        self.offset = base_end + tail.len() as u64;
        self.refresh(true)
    }

    /// Waits for this process's compaction and merge in flight, if any, puts them in place
    /// and then merges until no merge is due (under `LOCK`): what `gc` does first, so that
    /// it never meets this process's own tables in the making, and what dropping the log
    /// does.
    pub fn settle(&mut self) -> Result<()> {
        if self.inflight.is_none() && self.merging.is_none() {
            return Ok(());
        }
        // A forked child's copies are its parent's work: the child forgets them and does
        // not take up merging on the parent's behalf (a worker forked from a writing
        // process would otherwise merge, under `LOCK`, when it exits).
        let pid = std::process::id();
        let own = self.inflight.as_ref().is_some_and(|j| j.pid == pid)
            || self.merging.as_ref().is_some_and(|m| m.pid == pid);
        self.under_lock(|log| {
            log.finish_compaction();
            log.finish_merge();
            if own {
                log.merge_until_at_rest();
            }
            Ok(())
        })
    }

    /// Merges the base's tables, one merge after the other, until none is due: the tables
    /// put in place while a long merge was in flight (up to `MAX_TABLES`) are left to the
    /// merges that would follow it, and a store closed then would keep them all (27 tables
    /// instead of 3 after a 1,000,000-run bulk ingest: every later open and listing reads
    /// them). Stops when no merge starts, or one did not leave fewer tables (it failed).
    /// Under `LOCK`, with no compaction or merge in flight.
    fn merge_until_at_rest(&mut self) {
        loop {
            let tables = self.state.base().sizes().len();
            self.start_merge();
            if self.merging.is_none() {
                return;
            }
            self.finish_merge();
            if self.state.base().sizes().len() >= tables {
                return;
            }
        }
    }

    /// Rewrites a manifest of an older format in the latest one (a compaction, under `LOCK`),
    /// so that its edits may carry all the latest format knows: after this, a steplog of the
    /// older format refuses the store by its header, as after any compaction.
    pub fn upgrade(&mut self) -> Result<()> {
        self.under_lock(|log| {
            log.refresh(true)?;
            if log.state.format >= FORMAT {
                return Ok(());
            }
            log.compact()
        })
    }

    /// Replaces the manifest with one whose first frame is the base `tables` (newest first),
    /// followed by `tail` (whole frames): temp file, fsync, rename, fsync directory. A crash
    /// at any point leaves either the old or the new file. The tables, and their directory
    /// entries, are synced before (`build_tables`). Returns where the base frame ends.
    fn write_base(
        &mut self,
        epoch: u64,
        tables: &[u64],
        (next_version, next_segment): (u64, u64),
        next_table: u64,
        tail: &[u8],
    ) -> Result<u64> {
        let tmp = self.dir.join(MANIFEST_TMP);
        let mut bytes = header(epoch).to_vec();
        let frame = Edit::Base {
            tables: tables.to_vec(),
            next_version,
            next_segment,
            next_table,
        };
        bytes.extend(encode_frame(&frame, FORMAT).at(&tmp)?);
        let base_end = bytes.len() as u64;
        bytes.extend_from_slice(tail);
        let f = self.fs.open(&tmp, OpenMode::CreateTruncate).at(&tmp)?;
        f.write_all_at(&bytes, 0).at(&tmp)?;
        f.sync().at(&tmp)?;
        drop(f);
        self.fs.rename(&tmp, &self.path).at(&self.path)?;
        self.renamed = true;
        self.fs.sync_dir(&self.dir).at(&self.dir)?;
        Ok(base_end)
    }
}

impl Drop for ManifestLog {
    /// A compaction or merge still in flight is put in place (taking `LOCK`, as an append
    /// would), not lost: a process that appends once and exits would otherwise never
    /// compact. If `LOCK` cannot be taken, their tables are deleted.
    fn drop(&mut self) {
        if self.inflight.is_none() && self.merging.is_none() {
            return;
        }
        let _ = self.settle();
        if let Some(job) = self.inflight.take() {
            if job.pid != std::process::id() {
                std::mem::forget(job.handle);
            } else if let Ok((created, _)) = job.handle.join() {
                remove_tables(&*self.fs, &self.dir, &created);
            }
        }
        self.drop_merge();
    }
}

/// Builds a compaction's new base from `state`, all at once (on the appender's thread):
/// its new table (`build_fresh`), then the newest tables merged as `merge_plan` says
/// (`build_merge`), and opens the result (reusing the base's open tables). Every table it
/// created is in `created`, to delete on failure.
fn build_tables(
    fs: &dyn FileSystem,
    dir: &Path,
    manifest: &Path,
    state: &State,
    next_table: u64,
    created: &mut Vec<u64>,
) -> Result<Compacted> {
    let fresh = build_fresh(fs, dir, manifest, state, next_table, created)?;
    let sizes = fresh.base.sizes();
    let k = merge_plan(&sizes);
    if k < 2 {
        return Ok(fresh);
    }
    let (merged, next) = build_merge(
        fs,
        dir,
        manifest,
        fresh.base.newest(k),
        k == sizes.len(),
        fresh.next_table,
        created,
    )?;
    let ids: Vec<u64> = std::iter::once(merged.0)
        .chain(sizes[k..].iter().map(|t| t.0))
        .collect();
    let counters = (state.next_version, state.next_segment);
    let opened = Base::open_reusing(fs, dir, &ids, counters, Some(&fresh.base))?;
    Ok(Compacted {
        base: opened,
        ids,
        // The old base's tables it merged, and this compaction's own new one.
        replaced: sizes[..k].iter().map(|t| t.0).collect(),
        next_table: next,
        next_version: state.next_version,
        next_segment: state.next_segment,
    })
}

/// Writes what changed since `state`'s base (the overlay: for a snapshot manifest,
/// everything) as a new table, newer than every table of the base, and opens the base of
/// it and those (reusing the base's open tables). Writes one table only, from id
/// `next_table` on, created new (`O_EXCL`) and synced, named by no manifest until
/// `install`: it may run on a thread of its own, without `LOCK`. Every table it created is
/// in `created`, to delete on failure.
fn build_fresh(
    fs: &dyn FileSystem,
    dir: &Path,
    manifest: &Path,
    state: &State,
    next_table: u64,
    created: &mut Vec<u64>,
) -> Result<Compacted> {
    let base = state.base();
    let (fresh, next) = new_table(fs, dir, manifest, next_table, created, |id| {
        let records = base::Records {
            runs: &mut state.overlay_runs(),
            segments: &mut state.overlay_inline(),
            versions: &mut state
                .overlay_versions()
                .map(|r| r.and_then(|m| base::version_record(&m))),
            drop_tombstones: base.is_empty(),
        };
        base::write_table(fs, dir, id, records)
    })?;
    sync_table_dirs(fs, dir)?;
    let ids: Vec<u64> = std::iter::once(fresh.0)
        .chain(base.sizes().iter().map(|t| t.0))
        .collect();
    let counters = (state.next_version, state.next_segment);
    let opened = Base::open_reusing(fs, dir, &ids, counters, Some(base))?;
    Ok(Compacted {
        base: opened,
        ids,
        replaced: Vec::new(),
        next_table: next,
        next_version: state.next_version,
        next_segment: state.next_segment,
    })
}

/// How many of a base's newest tables (`sizes`: id and length, newest first) to merge into
/// one: while the next older is at most `TIER_RATIO` times their sum, so sizes grow by that
/// ratio from new to old. 1 (or 0, for no table) is no merge.
fn merge_plan(sizes: &[(u64, u64)]) -> usize {
    let Some(newest) = sizes.first() else {
        return 0;
    };
    let mut k = 1;
    let mut sum = newest.1;
    while k < sizes.len() && sizes[k].1 <= TIER_RATIO.saturating_mul(sum) {
        sum = sum.saturating_add(sizes[k].1);
        k += 1;
    }
    k
}

/// Merges `tables` (newest first, a run of a base's list) into one new table, merged block
/// by block: a block no other table has a key inside is copied as it is stored
/// (`table::merge`), so newer versions' and segments' records are not compressed again at
/// every tier. Tombstones are dropped when `drop_tombstones` (the run ends at the base's
/// oldest table). Like `build_fresh`, it writes and syncs one table from `next_table` on,
/// named by no manifest until it is put in place. The new table's id and length, and the
/// next id.
fn build_merge(
    fs: &dyn FileSystem,
    dir: &Path,
    manifest: &Path,
    tables: &[Arc<table::Table>],
    drop_tombstones: bool,
    next_table: u64,
    created: &mut Vec<u64>,
) -> Result<((u64, u64), u64)> {
    let refs: Vec<&table::Table> = tables.iter().map(|t| &**t).collect();
    let merged = new_table(fs, dir, manifest, next_table, created, |id| {
        Ok(table::merge(fs, dir, id, &refs, drop_tombstones)?.len)
    })?;
    sync_table_dirs(fs, dir)?;
    Ok(merged)
}

/// Makes the tables' directory entries, and `manifest/`'s own in the store directory (made
/// by the first compaction), durable: before a manifest names a new table.
fn sync_table_dirs(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let d = dir.join(table::TABLE_DIR);
    fs.sync_dir(&d).at(&d)?;
    fs.sync_dir(dir).at(dir)
}

/// Deletes tables (best effort: a table left over is never read, and `gc` lists it).
fn remove_tables(fs: &dyn FileSystem, dir: &Path, ids: &[u64]) {
    for &t in ids {
        let _ = fs.remove_file(&table::table_path(dir, t));
    }
}

/// Writes a table (`write`, given its id) at the first id at or after `id` whose file does
/// not exist (a crashed compaction, or another process's compaction in flight, may hold
/// one). Its id and length, and the next id.
fn new_table(
    fs: &dyn FileSystem,
    dir: &Path,
    manifest: &Path,
    mut id: u64,
    created: &mut Vec<u64>,
    mut write: impl FnMut(u64) -> Result<u64>,
) -> Result<((u64, u64), u64)> {
    let exhausted = || Error::corrupt(manifest, 0, "manifest table ids are exhausted");
    loop {
        let path = table::table_path(dir, id);
        if io::exists(fs, &path).at(&path)? {
            id = id.checked_add(1).ok_or_else(exhausted)?;
            continue;
        }
        let next = id.checked_add(1).ok_or_else(exhausted)?;
        created.push(id);
        match write(id) {
            Ok(len) => return Ok(((id, len), next)),
            // Another compaction (of another process: tables are built without `LOCK`)
            // created this id since it was found free. The file is not this compaction's,
            // so not one to delete if it fails: the next id is tried.
            Err(Error::Io { path: p, source })
                if source.kind() == std::io::ErrorKind::AlreadyExists && p == path =>
            {
                created.pop();
                id = next;
            }
            Err(e) => return Err(e),
        }
    }
}
