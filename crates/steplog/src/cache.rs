//! The store's cache of open segments: sealed segments (mapped, their footer's index decoded)
//! and head segments (an open handle and the scan of their frames so far). The store owns it;
//! readers get and put through it and purge and gc drop what they delete.
//!
//! **Invariants**: at most `Options::segment_cache` sealed segments are kept (each holds a
//! memory map, and a process may have only so many: Linux's default `vm.max_map_count` is
//! 65,530); past it, the least recently used quarter is dropped at once (so a long read pays
//! for evictions in batches, not per segment). Dropping an entry only drops a reference: a
//! reader holding the `Arc` goes on reading it. Head entries are few (one per unsealed segment
//! read, dropped when it is found sealed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::FileHandle;
use crate::segment::reader::{HeadScan, Sealed};
use crate::types::SegmentId;

/// A head segment being read: its handle and how far its frames have been scanned.
pub(crate) struct HeadEntry {
    pub file: Option<Arc<dyn FileHandle>>,
    pub scan: HeadScan,
}

/// The open segments of one store (shared by its clones).
pub(crate) struct SegmentCache {
    capacity: usize,
    sealed: Mutex<Sealeds>,
    heads: Mutex<HashMap<SegmentId, HeadEntry>>,
}

#[derive(Default)]
struct Sealeds {
    map: HashMap<SegmentId, (Arc<Sealed>, u64)>,
    /// A counter stamped on an entry at each use: the smallest stamps are the least recent.
    clock: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a cache that is still consistent (every change
    // is one map operation): go on with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SegmentCache {
    /// A cache keeping at most `capacity` sealed segments (at least one).
    pub fn new(capacity: usize) -> SegmentCache {
        SegmentCache {
            capacity: capacity.max(1),
            sealed: Mutex::new(Sealeds::default()),
            heads: Mutex::new(HashMap::new()),
        }
    }

    /// The sealed segment `id`, if it is open.
    pub fn sealed(&self, id: SegmentId) -> Option<Arc<Sealed>> {
        let mut c = lock(&self.sealed);
        c.clock += 1;
        let now = c.clock;
        c.map.get_mut(&id).map(|(s, used)| {
            *used = now;
            Arc::clone(s)
        })
    }

    /// Keeps the sealed segment `id`; past the capacity, the least recently used quarter goes.
    pub fn put_sealed(&self, id: SegmentId, s: Arc<Sealed>) {
        let mut c = lock(&self.sealed);
        c.clock += 1;
        let now = c.clock;
        c.map.insert(id, (s, now));
        if c.map.len() > self.capacity {
            let mut stamps: Vec<u64> = c.map.values().map(|(_, used)| *used).collect();
            let keep = self.capacity - self.capacity / 4;
            let cut = stamps.len() - keep;
            let (_, &mut oldest_kept, _) = stamps.select_nth_unstable(cut);
            c.map.retain(|_, (_, used)| *used >= oldest_kept);
        }
    }

    /// The head entries (a reader scans under this lock, so one scan per segment at a time).
    pub fn heads(&self) -> MutexGuard<'_, HashMap<SegmentId, HeadEntry>> {
        lock(&self.heads)
    }

    /// Forgets segment `id` (deleted by a purge or gc, or found sealed).
    pub fn forget(&self, id: SegmentId) {
        lock(&self.sealed).map.remove(&id);
        lock(&self.heads).remove(&id);
    }

    /// How many sealed segments are open.
    #[cfg(test)]
    pub fn sealed_len(&self) -> usize {
        lock(&self.sealed).map.len()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Options, Query};

    /// The bound holds whatever is read, evicted segments read again the same, and the most
    /// recently used stay.
    #[test]
    fn sealed_segments_stay_within_the_bound_and_read_the_same_after_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new()
            .segment_bytes(600)
            .block_bytes(200)
            .segment_cache(4)
            .open(dir.path())
            .unwrap();
        let mut w = store.run("r").start().unwrap();
        for step in 0..3_000u64 {
            w.log_at(step, [("x", step as f64)]).unwrap();
        }
        w.finish().unwrap();
        let segments = std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count();
        assert!(segments > 8, "{segments} segments");
        let read = || -> Vec<u64> {
            store
                .history("r", &Query::new())
                .unwrap()
                .map(|r| r.unwrap().step)
                .collect()
        };
        let first = read();
        assert_eq!(first, (0..3_000).collect::<Vec<_>>());
        assert!(store.inner.cache.sealed_len() <= 4);
        assert_eq!(read(), first, "read again through evicted segments");
        assert_eq!(store.summary("r").unwrap().keys["x"].count, 3_000);
        assert!(store.inner.cache.sealed_len() <= 4);
        assert!(store.verify().unwrap().is_ok());
    }
}
