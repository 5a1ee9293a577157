//! Store options: durability, segment and block size targets, compression level.

use std::sync::Arc;

use crate::io::{FileSystem, OsFs};

/// What a committed row survives. Set per store with [`Options::durability`].
///
/// A row is *committed* by [`RunWriter::commit`](crate::RunWriter::commit) (and by
/// [`RunWriter::finish`](crate::RunWriter::finish)); rows are also written, without a commit,
/// whenever a block fills. Rows that were logged but not committed may be lost by a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `commit` hands the rows (and any manifest edit) to the operating system with `write`,
    /// without fsync. A committed row survives a crash of the process (`kill -9`, panic,
    /// abort) because the kernel holds it, and is visible to readers in every process at
    /// once. It does **not** survive a power loss or kernel crash: after one, the store opens
    /// to a consistent prefix of what was committed (a torn tail is cut back), possibly
    /// missing the most recent commits. The default.
    #[default]
    Process,
    /// `commit` also fsyncs the head segment (and every manifest edit and new file's
    /// directory is fsynced). A committed row survives power loss, on media that honour
    /// fsync. A failed fsync poisons the writer: it refuses all further writes.
    PowerLoss,
}

/// `Options::block_column_bytes` by default: a block of one float key holds 1,024 rows.
const DEFAULT_BLOCK_COLUMN_BYTES: usize = 8 << 10;

/// How to open a store; `Options::default()` gives the defaults documented on each method.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) durability: Durability,
    pub(crate) segment_bytes: u64,
    pub(crate) block_bytes: usize,
    pub(crate) block_column_bytes: usize,
    pub(crate) compression_level: i32,
    pub(crate) manifest_compaction_bytes: u64,
    pub(crate) segment_cache: usize,
    pub(crate) inline_segment_bytes: usize,
    pub(crate) pack_fanout: usize,
    pub(crate) lock_timeout: std::time::Duration,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) create: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Process,
            segment_bytes: 16 << 20,
            block_bytes: 64 << 10,
            block_column_bytes: DEFAULT_BLOCK_COLUMN_BYTES,
            compression_level: 3,
            manifest_compaction_bytes: 1 << 20,
            segment_cache: 32_768,
            inline_segment_bytes: 8 << 10,
            pack_fanout: 16,
            lock_timeout: std::time::Duration::from_secs(10),
            fs: Arc::new(OsFs),
            create: true,
        }
    }
}

impl Options {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether opening a directory that holds no store creates one there (the default), or
    /// fails with [`Error::StoreNotFound`](crate::Error::StoreNotFound) and creates nothing:
    /// what a reader wants, so that a mistyped path is an error rather than an empty store.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// What a committed row survives. Default: [`Durability::Process`].
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Size on disk after which a head segment is sealed and a new one started.
    /// Default: 16 MiB. Smaller segments make summaries after a rewind cheaper (at most one
    /// segment is decoded); larger ones mean fewer files.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// Uncompressed size (as the encoder will write it, estimated while logging) after which
    /// buffered rows are written as a block. Default: 64 KiB. A range read decodes one or
    /// two blocks, and only the columns it reads; larger blocks compress a little better.
    /// At most [`MAX_BLOCK_BYTES`](crate::limits::MAX_BLOCK_BYTES) (16 MiB); larger values
    /// are taken as that.
    pub fn block_bytes(mut self, bytes: usize) -> Self {
        self.block_bytes = bytes.clamp(1, crate::limits::MAX_BLOCK_BYTES);
        self
    }

    /// Uncompressed bytes per key after which the buffered rows of a run of few keys are
    /// written as a block: a block of `k` keys is cut at `k` × this or at
    /// [`block_bytes`](Self::block_bytes), whichever is less. Default: 8 KiB; `usize::MAX`
    /// turns it off (blocks cut at `block_bytes` alone, as before 2026-12-07).
    ///
    /// At 8 KiB, a block of a single float key (8 bytes a row) holds 1,024 rows instead of
    /// 8,192, so an exact chart's bucket edge, a range read or a summary cut inside it decodes
    /// an eighth as much: the exact M4 of a 10,000,000-step run at 1,000 px takes about a
    /// sixth of the time. The price, on such a run (docs/BENCHMARKS.md): about 8% more bytes
    /// and a quarter slower to write. (The footer keeps the first summary of a fresh process,
    /// and the first right after a rewind, as fast: segment format 4 reads the segment's
    /// aggregate, or those of groups of 64 blocks, without the blocks'.) Blocks of eight keys
    /// or more, the console stream, and keys whose blocks would compress to under 2 KiB a key
    /// (counters, schedules: `BlockCut::after`) are cut at `block_bytes` all the same. Only
    /// how a writer cuts new blocks changes; every store reads either way.
    pub fn block_column_bytes(mut self, bytes: usize) -> Self {
        self.block_column_bytes = bytes.max(1);
        self
    }

    /// Where a writer cuts the blocks of `stream`: [`block_bytes`](Self::block_bytes) and
    /// [`block_column_bytes`](Self::block_column_bytes), but `block_bytes` alone for the
    /// console (text lines compress better in big blocks, and no chart reads them).
    pub(crate) fn block_cut(&self, stream: crate::Stream) -> crate::segment::builder::BlockCut {
        crate::segment::builder::BlockCut {
            bytes: self.block_bytes,
            column_bytes: match stream {
                crate::Stream::Console => usize::MAX,
                _ => self.block_column_bytes,
            },
        }
    }

    /// zstd compression level of blocks (1 to 22). Default: 3.
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = level.clamp(1, 22);
        self
    }

    /// Size of the manifest's tail of edits past which it is compacted into tables and a new
    /// base. The append that passes it starts the compaction on a thread of its own; the
    /// process's next append puts it in place once it is done, or waits for it when the
    /// tail has grown by this much again, so an open reads a tail of at most about twice
    /// this. Default: 1 MiB.
    pub fn manifest_compaction_bytes(mut self, bytes: u64) -> Self {
        self.manifest_compaction_bytes = bytes;
        self
    }

    /// How many sealed segments a store keeps open (mapped, their footer's index decoded)
    /// for the next read; past it the least recently used go. A process may map only so
    /// many files (Linux: `vm.max_map_count`, 65,530 by default), and a lineage thousands
    /// deep reads thousands of segments. Default: 32,768 (half of that limit).
    pub fn segment_cache(mut self, segments: usize) -> Self {
        self.segment_cache = segments.max(1);
        self
    }

    /// Largest stream of a finished run carried inside the manifest instead of a segment
    /// file: a stream with no head segment open whose rows are still one buffered block
    /// (nothing of it written since the run started or since its last segment was sealed,
    /// so no `commit` since) and whose sealed segment would be at most this many bytes is
    /// written with the run's `finish`, in the same manifest append, and later kept in the
    /// manifest's tables. A store of a million short runs then holds no file per run, and a
    /// short run costs two manifest edits (start, finish). Default: 8 KiB; at most
    /// [`MAX_INLINE_SEGMENT_BYTES`](crate::limits::MAX_INLINE_SEGMENT_BYTES) (64 KiB); 0
    /// writes every segment as a file.
    pub fn inline_segment_bytes(mut self, bytes: usize) -> Self {
        self.inline_segment_bytes = bytes.min(crate::limits::MAX_INLINE_SEGMENT_BYTES);
        self
    }

    /// How many pieces of a rewound lineage are packed into one (a deep lineage's read
    /// cost). A rewind or fork from an archived version packs that version's lineage when the
    /// first `n` hops of its read are of one level and hold at most
    /// [`MAX_INLINE_SEGMENT_BYTES`](crate::limits::MAX_INLINE_SEGMENT_BYTES) per stream: their
    /// rows are copied into a pack (inline segments in the manifest) that reads of the version
    /// and its descendants take in one piece, and packs of one level are packed in turn, so a
    /// read of a lineage rewound 10,000 times takes a few dozen pieces instead of 10,000, and
    /// each row is copied about once per level (log_n of the depth). What any version reads
    /// never changes. Default: 16; 0 (or 1) packs nothing; at most 1,024.
    pub fn pack_fanout(mut self, n: usize) -> Self {
        self.pack_fanout = n.min(1024);
        self
    }

    /// How long a manifest edit waits for the store's `LOCK` (held by another process while
    /// it appends an edit, a few milliseconds at most) before failing with
    /// [`Error::LockTimeout`](crate::Error::LockTimeout). Readers never wait for it. Default:
    /// 10 seconds.
    pub fn lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The file system the store lives on. Default: [`OsFs`], the operating system's. Tests
    /// use [`SimFs`](crate::io::SimFs) to simulate crashes and
    /// [`FaultyFs`](crate::io::FaultyFs) to inject I/O errors.
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.fs = fs;
        self
    }
}
