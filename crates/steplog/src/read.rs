//! The read path: a lazy block cursor over the segments a version's rows come from (its
//! plan, `manifest/plan.rs`), and on top of it history rows, one metric's
//! series, row counts and summaries. Summaries take whole segments from their footers and
//! decode only the blocks of a segment that straddles a cutoff, or of a head segment.

use std::collections::{HashSet, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::HeadEntry;
use crate::error::{Error, Result};
use crate::io::{FileHandle, OpenMode};
use crate::manifest::{Cover, Hop, Piece, SegmentMeta, State, VersionMeta};
use crate::reference::{IntoReference, Reference};
use crate::segment::block::{all_keys, Block};
use crate::segment::reader::{head_steps_at_most, read_head_block, HeadScan, Sealed, Tail};
use crate::segment::IndexEntry;
use crate::store::{lock_poisoned, resolve_target, Store};
use crate::summary::{Agg, Summary};
use crate::types::{Row, SegmentId, Stream, VersionId};

/// A segment as the read path sees it.
pub(crate) enum SegView {
    Sealed(Arc<Sealed>),
    Head {
        path: PathBuf,
        file: Option<Arc<dyn FileHandle>>,
        index: Vec<IndexEntry>,
    },
}

impl SegView {
    /// The sparse step index (a sealed segment's is decoded from its footer when first
    /// asked for).
    pub fn index(&self) -> Result<&[IndexEntry]> {
        match self {
            SegView::Sealed(s) => s.index(),
            SegView::Head { index, .. } => Ok(index),
        }
    }

    /// When block `i` starts a group of blocks whose aggregate the footer holds: the end of
    /// the group's blocks and its aggregate.
    pub fn group_at(&self, i: usize) -> Result<Option<(usize, &Agg)>> {
        match self {
            SegView::Sealed(s) => s.group_at(i),
            SegView::Head { .. } => Ok(None),
        }
    }

    /// The aggregate of the `i`-th block, where a footer holds it (sealed segments).
    pub fn block_agg(&self, i: usize) -> Result<Option<&Agg>> {
        match self {
            SegView::Sealed(s) => s.block_agg(i),
            SegView::Head { .. } => Ok(None),
        }
    }

    /// How many steps of the block of an index entry are at most `hi`, and the last of
    /// them: the block's directory's steps alone read.
    pub fn steps_at_most(&self, e: &IndexEntry, hi: u64) -> Result<(u64, Option<u64>)> {
        match self {
            SegView::Sealed(s) => s.steps_at_most(e, hi),
            SegView::Head { path, file, .. } => match file {
                Some(f) => head_steps_at_most(path, &**f, e, hi),
                None => Err(Error::corrupt(path, e.offset, "segment file vanished")),
            },
        }
    }

    /// The block of an index entry, with every column.
    pub fn block(&self, e: &IndexEntry) -> Result<Block> {
        self.block_keys(e, &all_keys)
    }

    /// The block of an index entry, with the columns whose key `keep` accepts.
    pub fn block_keys(&self, e: &IndexEntry, keep: &dyn Fn(&str) -> bool) -> Result<Block> {
        match self {
            SegView::Sealed(s) => s.block(e, keep),
            SegView::Head { path, file, .. } => match file {
                Some(f) => read_head_block(path, &**f, e, keep),
                None => Err(Error::corrupt(path, e.offset, "segment file vanished")),
            },
        }
    }
}

/// Which steps to read: a stream, optionally some keys, and a step range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub(crate) stream: Stream,
    pub(crate) keys: Option<Vec<String>>,
    pub(crate) from: u64,
    pub(crate) to: u64,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            stream: Stream::History,
            keys: None,
            from: 0,
            to: u64::MAX,
        }
    }
}

impl Query {
    /// Every row of the `history` stream, all keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read this stream instead of `history`.
    pub fn stream(mut self, stream: Stream) -> Self {
        self.stream = stream;
        self
    }

    /// Keep only these keys; rows holding none of them are skipped.
    pub fn keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// Keep only steps in this range (for example `100..=200` or `500..`).
    pub fn steps(mut self, range: impl RangeBounds<u64>) -> Self {
        (self.from, self.to) = bounds(range);
        self
    }
}

pub(crate) fn bounds(range: impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => match s.checked_sub(1) {
            Some(t) => t,
            None => return (1, 0),
        },
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

/// One metric's values in step order. Non-numeric values are left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// The steps holding a numeric value of the key.
    pub steps: Vec<u64>,
    /// The values, as floats (integers converted).
    pub values: Vec<f64>,
}

/// Visits the blocks of a version's rows in step order, lazily.
struct Cursor {
    store: Store,
    jobs: VecDeque<(SegmentMeta, u64)>,
    from: u64,
    cur: Option<(SegView, usize, u64)>,
}

impl Cursor {
    fn new(
        store: &Store,
        state: &State,
        v: VersionId,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<Cursor> {
        Ok(Cursor::of_plan(
            store,
            state.plan(v, stream, from, to)?,
            from,
        ))
    }

    /// A cursor over the pieces of a plan, from step `from`.
    fn of_plan(store: &Store, plan: impl Iterator<Item = Piece>, from: u64) -> Cursor {
        Cursor {
            store: store.clone(),
            jobs: plan.map(|p| (p.segment, p.hi)).collect(),
            from,
            cur: None,
        }
    }

    /// The next block holding steps in range (with the columns `keep` accepts), and the
    /// highest step to take from it.
    fn next_block(&mut self, keep: &dyn Fn(&str) -> bool) -> Result<Option<(Block, u64)>> {
        loop {
            if let Some((view, idx, hi)) = &mut self.cur {
                let index = view.index()?;
                if *idx < index.len() && index[*idx].first_step <= *hi {
                    let e = index[*idx];
                    *idx += 1;
                    let hi = *hi;
                    return Ok(Some((view.block_keys(&e, keep)?, hi)));
                }
                self.cur = None;
            }
            let Some((seg, hi)) = self.jobs.pop_front() else {
                return Ok(None);
            };
            let view = self.store.segment_view(&seg)?;
            let from = self.from;
            let start = view.index()?.partition_point(|e| e.last_step < from);
            self.cur = Some((view, start, hi));
        }
    }
}

/// The rows of a version in step order, read lazily block by block: a 10,000,000-step run
/// never has to fit in memory. Yields an error (and then stops) if a block is damaged.
pub struct History {
    blocks: Blocks,
    buf: VecDeque<Row>,
}

/// Whether a query limited to `keys` (`None`: every key) reads key `k`.
fn wanted(keys: &Option<HashSet<String>>, k: &str) -> bool {
    keys.as_ref().is_none_or(|s| s.contains(k))
}

/// The block cursor of a query with its key filter, ended by its first error: what
/// [`History`] and [`Chunks`] both read from.
struct Blocks {
    cursor: Cursor,
    keys: Option<HashSet<String>>,
    done: bool,
}

impl Blocks {
    fn new(store: &Store, reference: impl IntoReference, query: &Query) -> Result<Blocks> {
        let (state, v, step) = store.read_target(reference)?;
        let to = step.map_or(query.to, |s| s.min(query.to));
        Ok(Blocks {
            cursor: Cursor::new(store, &state, v, query.stream, query.from, to)?,
            keys: query.keys.as_ref().map(|k| k.iter().cloned().collect()),
            done: false,
        })
    }

    /// Whether the query reads key `k`.
    fn keeps(&self, k: &str) -> bool {
        wanted(&self.keys, k)
    }

    /// The next block holding steps of the query (its columns filtered), and the highest step
    /// to take from it; after an error, nothing more.
    fn next_block(&mut self) -> Option<Result<(Block, u64)>> {
        if self.done {
            return None;
        }
        let keys = &self.keys;
        let next = self.cursor.next_block(&|k| wanted(keys, k));
        match next {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for History {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        loop {
            if let Some(r) = self.buf.pop_front() {
                return Some(Ok(r));
            }
            let (block, hi) = match self.blocks.next_block()? {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let (from, filtered) = (self.blocks.cursor.from, self.blocks.keys.is_some());
            let rows = block.into_rows(|k| self.blocks.keeps(k));
            self.buf.extend(
                rows.into_iter().filter(|r| {
                    r.step >= from && r.step <= hi && (!filtered || !r.fields.is_empty())
                }),
            );
        }
    }
}

/// Consecutive rows of a version read column by column: one stored block, clipped to the
/// query's steps (and, with a key filter, to the rows holding one of the keys). The bulk path
/// for readers that want columns (export, analytics): no [`Row`] or per-row map is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The rows' steps, increasing.
    pub steps: Vec<u64>,
    /// The keys present in these rows, each with the rows it has a value in.
    pub columns: Vec<ChunkColumn>,
}

/// One key of a [`Chunk`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkColumn {
    /// The key.
    pub key: String,
    /// Indices into [`Chunk::steps`] of the rows holding a value, increasing.
    pub rows: Vec<u32>,
    /// The values, one per entry of `rows`.
    pub values: ChunkValues,
}

pub use crate::segment::block::Values as ChunkValues;

/// The chunks of a version in step order; see [`Store::chunks`].
pub struct Chunks {
    blocks: Blocks,
}

impl Chunks {
    fn chunk(&self, block: Block, hi: u64) -> Option<Chunk> {
        let from = self.blocks.cursor.from;
        let a = block.steps.partition_point(|&s| s < from);
        let b = block.steps.partition_point(|&s| s <= hi);
        if a >= b {
            return None;
        }
        let mut columns: Vec<ChunkColumn> = block
            .columns
            .into_iter()
            .filter_map(|c| {
                let lo = c.rows.partition_point(|&r| (r as usize) < a);
                let up = c.rows.partition_point(|&r| (r as usize) < b);
                (lo < up).then(|| ChunkColumn {
                    key: c.key,
                    rows: c.rows[lo..up].iter().map(|&r| r - a as u32).collect(),
                    values: c.values.into_range(lo..up),
                })
            })
            .collect();
        let mut steps = block.steps[a..b].to_vec();
        if self.blocks.keys.is_some() {
            // Only rows holding one of the keys, as `history` returns them.
            let mut present = vec![false; steps.len()];
            for c in &columns {
                for &r in &c.rows {
                    present[r as usize] = true;
                }
            }
            if present.iter().any(|p| !p) {
                let mut new_index = vec![0u32; steps.len()];
                let mut n = 0u32;
                for (i, p) in present.iter().enumerate() {
                    new_index[i] = n;
                    n += u32::from(*p);
                }
                steps = steps
                    .iter()
                    .zip(&present)
                    .filter(|(_, p)| **p)
                    .map(|(s, _)| *s)
                    .collect();
                for c in &mut columns {
                    for r in &mut c.rows {
                        *r = new_index[*r as usize];
                    }
                }
            }
            if steps.is_empty() {
                return None;
            }
        }
        Some(Chunk { steps, columns })
    }
}

impl Iterator for Chunks {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        loop {
            match self.blocks.next_block()? {
                Err(e) => return Some(Err(e)),
                Ok((block, hi)) => {
                    if let Some(c) = self.chunk(block, hi) {
                        return Some(Ok(c));
                    }
                }
            }
        }
    }
}

/// Why a sealed segment's file is not the one the manifest records (`seg`): another id, another
/// stream, or (once sealed in the manifest) other rows, steps or length. `None` if it is.
pub(crate) fn sealed_mismatch(s: &Sealed, seg: &SegmentMeta) -> Option<String> {
    if s.header.segment != seg.id {
        return Some(format!(
            "file holds segment {}, not {}",
            s.header.segment, seg.id
        ));
    }
    if s.header.stream != seg.stream {
        return Some(format!(
            "file holds the {} stream, the manifest records {}",
            s.header.stream.name(),
            seg.stream.name()
        ));
    }
    let m = seg.sealed?;
    let (rows, first, last) = s.stats();
    let file = (rows, first, last, s.file_len());
    let recorded = (m.rows, m.first_step, m.last_step, m.bytes);
    (file != recorded).then(|| {
        use crate::error::rows_text;
        format!(
            "file holds {} in {} bytes, the manifest records {} in {} bytes: not this store's \
             segment",
            rows_text(file.0, file.1, file.2),
            file.3,
            rows_text(recorded.0, recorded.1, recorded.2),
            recorded.3
        )
    })
}

fn purged_reason(id: SegmentId) -> String {
    format!(
        "segment {id} was deleted by a purge while this read was under way; the rows it held \
         are no longer readable (read again to see the store as it is now)"
    )
}

/// Counts of ancestry suffixes: `(version, limit)` → rows and last step of reading that
/// version up to `limit` with its ancestors.
pub(crate) type RowMemo = std::collections::HashMap<(VersionId, Option<u64>), (u64, Option<u64>)>;

impl Store {
    /// Every row a plan's pieces give, in step order, each piece up to its highest step:
    /// what a pack copies, and what `verify` checks a pack against.
    pub(crate) fn plan_rows(&self, plan: impl Iterator<Item = Piece>) -> Result<Vec<Row>> {
        let mut cursor = Cursor::of_plan(self, plan, 0);
        let mut rows = Vec::new();
        while let Some((block, hi)) = cursor.next_block(&all_keys)? {
            rows.extend(
                block
                    .into_rows(all_keys)
                    .into_iter()
                    .filter(|r| r.step <= hi),
            );
        }
        Ok(rows)
    }

    /// A sealed segment, from the cache or mapped and checked against what the manifest
    /// records of it: its id, its stream, and (once the manifest has its seal) its rows, step
    /// range and length. A file swapped in from elsewhere, even a valid one, is corruption.
    pub(crate) fn open_sealed(&self, seg: &SegmentMeta) -> Result<Arc<Sealed>> {
        let id = seg.id;
        if let Some(s) = self.inner.cache.sealed(id) {
            return Ok(s);
        }
        let (s, path) = if seg.inline {
            let path = self.inline_path(id);
            (
                Arc::new(Sealed::from_bytes(&path, self.inline_bytes(id)?)?),
                path,
            )
        } else {
            let path = self.segment_path(id);
            match Sealed::open(self.fs(), &path) {
                Ok(s) => (Arc::new(s), path),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    return Err(self.missing_segment(id, path))
                }
                Err(e) => return Err(e),
            }
        };
        let mismatch = sealed_mismatch(&s, seg);
        if let Some(reason) = mismatch {
            return Err(Error::corrupt(&path, 0, reason));
        }
        self.inner.cache.put_sealed(id, Arc::clone(&s));
        Ok(s)
    }

    /// The bytes of inline segment `id`, from the manifest as this process last read it (a
    /// segment's bytes never change, and a table stays readable once open), or, if that
    /// state does not have them (a purge, or a state being reloaded), as it is now.
    fn inline_bytes(&self, id: SegmentId) -> Result<bytes::Bytes> {
        if let Ok(b) = self.current_state().inline_segment(id) {
            return Ok(b);
        }
        match self.state()?.inline_segment(id) {
            Err(_) if self.purged_meanwhile(id) => Err(Error::MissingFile {
                file: self.inline_path(id),
                reason: purged_reason(id),
            }),
            r => r,
        }
    }

    /// Whether no version of the latest manifest holds segment `id` (one that a read's
    /// state named is gone: a purge ran meanwhile).
    fn purged_meanwhile(&self, id: SegmentId) -> bool {
        self.state().ok().is_some_and(|state| {
            !state
                .versions()
                .any(|v| v.is_ok_and(|v| v.all_segments().any(|s| s.id == id)))
        })
    }

    /// The error for a recorded segment whose file is gone: the latest manifest tells a purge
    /// that ran during this read (the version read from this process's snapshot lost the
    /// segment) from a file lost by other means.
    fn missing_segment(&self, id: SegmentId, path: PathBuf) -> Error {
        let reason = if self.purged_meanwhile(id) {
            purged_reason(id)
        } else {
            format!(
                "the manifest records segment {id}, but its file is gone (removed by hand, or \
                 lost by the file system); its rows cannot be read"
            )
        };
        Error::MissingFile { file: path, reason }
    }

    /// Opens a segment for reading: sealed ones from the cache or by mapping them, head
    /// segments by scanning the frames appended since the last look.
    pub(crate) fn segment_view(&self, seg: &SegmentMeta) -> Result<SegView> {
        if seg.sealed.is_some() {
            self.inner.cache.heads().remove(&seg.id);
            return Ok(SegView::Sealed(self.open_sealed(seg)?));
        }
        let path = self.segment_path(seg.id);
        let mut heads = self.inner.cache.heads();
        let entry = match heads.entry(seg.id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(HeadEntry {
                file: None,
                scan: HeadScan::empty(),
            }),
        };
        if entry.file.is_none() {
            entry.file = match self.fs().open(&path, OpenMode::Read) {
                Ok(f) => Some(f),
                // Segments are created before they are recorded: a recorded one is there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    drop(heads);
                    return Err(self.missing_segment(seg.id, path));
                }
                Err(e) => return Err(Error::io(&path, e)),
            };
        }
        if let Some(f) = &entry.file {
            entry.scan.rescan(&path, &**f)?;
        }
        if entry.scan.tail == Tail::Sealed {
            heads.remove(&seg.id);
            drop(heads);
            return Ok(SegView::Sealed(self.open_sealed(seg)?));
        }
        Ok(SegView::Head {
            path,
            file: entry.file.clone(),
            index: entry.scan.index.clone(),
        })
    }

    /// The version a reference names, and its step. A reference `NAME?_step=S` means the
    /// version's rows up to step S, and S must be one of its steps or before its last
    /// (`StepOutOfRange` otherwise): the same rule for reading as for a rewind or a fork
    /// from it, so `r1?_step=500` of a run whose last step is 400 is refused everywhere.
    pub(crate) fn read_target(
        &self,
        reference: impl IntoReference,
    ) -> Result<(Arc<State>, VersionId, Option<u64>)> {
        let r = reference.into_reference()?;
        let state = self.state()?;
        let (v, step) = self.target_in(&state, &r)?;
        Ok((state, v, step))
    }

    /// The version `r` names in `state`, and the step it names (checked to be at most the
    /// version's last): the one rule of what a reference reads, for the store as it is now
    /// and for a [`Snapshot`](crate::Snapshot).
    pub(crate) fn target_in(
        &self,
        state: &State,
        r: &Reference,
    ) -> Result<(VersionId, Option<u64>)> {
        let v = resolve_target(state, &r.target)?;
        if let Some(step) = r.step {
            self.check_step(state, v, step)?;
        }
        Ok((v, r.step))
    }

    /// `Ok` if version `v` has rows up to `step` in some stream: `step` is at most its last.
    pub(crate) fn check_step(&self, state: &State, v: VersionId, step: u64) -> Result<()> {
        let meta = state.meta_of(v)?;
        let out_of_range = |reason: String| Error::StepOutOfRange {
            run: meta.run.clone(),
            version: v.to_string(),
            step,
            reason,
        };
        match self.last_step_any(state, v)? {
            None => Err(out_of_range("it has no rows".into())),
            Some(last) if step > last => Err(out_of_range(format!("its last step is {last}"))),
            Some(_) => Ok(()),
        }
    }

    /// The rows of the version `reference` names (a run's head, a version id; with
    /// `?_step=S`, only steps up to S), as selected by `query`.
    pub fn history(&self, reference: impl IntoReference, query: &Query) -> Result<History> {
        Ok(History {
            blocks: Blocks::new(self, reference, query)?,
            buf: VecDeque::new(),
        })
    }

    /// The rows of the version `reference` names, as selected by `query`, column by column:
    /// the same rows as [`history`](Self::history) in [`Chunk`]s of consecutive rows.
    pub fn chunks(&self, reference: impl IntoReference, query: &Query) -> Result<Chunks> {
        Ok(Chunks {
            blocks: Blocks::new(self, reference, query)?,
        })
    }

    /// One metric of the `history` stream as (steps, values), in a step range.
    pub fn metric(
        &self,
        reference: impl IntoReference,
        key: &str,
        steps: impl RangeBounds<u64>,
    ) -> Result<Series> {
        let (state, v, step) = self.read_target(reference)?;
        let (from, to) = bounds(steps);
        let to = step.map_or(to, |s| s.min(to));
        // Reserve for every row in range: growing a Vec of millions by doubling costs more in
        // copies and page faults than the decoding. A short range reserves its length; only a
        // long one asks the manifest and index for the row count (a range read stays as it was).
        let span = to.saturating_sub(from).saturating_add(1);
        let cap = if span <= 1 << 16 {
            span
        } else {
            span.min(self.count_rows(&state, v, Stream::History)?.0)
        } as usize;
        let mut out = Series {
            steps: Vec::with_capacity(cap),
            values: Vec::with_capacity(cap),
        };
        let mut cursor = Cursor::new(self, &state, v, Stream::History, from, to)?;
        while let Some((block, hi)) = cursor.next_block(&|k| k == key)? {
            let Some(col) = block.columns.iter().find(|c| c.key == key) else {
                continue;
            };
            // The rows in range: the column's rows are in step order.
            let step = |j: usize| block.steps[col.rows[j] as usize];
            let lo = col
                .rows
                .partition_point(|&i| block.steps[i as usize] < from);
            let end = col.rows.partition_point(|&i| block.steps[i as usize] <= hi);
            match &col.values {
                // A float column (the usual case): its values copied as they are.
                crate::segment::block::Values::F64(xs) => {
                    out.steps.extend((lo..end).map(step));
                    out.values.extend_from_slice(&xs[lo..end]);
                }
                values => {
                    for j in lo..end {
                        if let Some(x) = values.f64_at(j) {
                            out.steps.push(step(j));
                            out.values.push(x);
                        }
                    }
                }
            }
        }
        if out.steps.len() < out.steps.capacity() / 2 {
            // A sparse key: give back what the reservation did not use.
            out.steps.shrink_to_fit();
            out.values.shrink_to_fit();
        }
        Ok(out)
    }

    /// The summary of a version's `history`: per key count, first, last, min, max, sum,
    /// mean and NaN count. Whole segments come from their footers; only a segment that
    /// straddles a rewind or fork cutoff, and the head segment, are decoded.
    pub fn summary(&self, reference: impl IntoReference) -> Result<Summary> {
        self.summary_of(reference, None)
    }

    /// [`summary`](Self::summary) of every key, or only of `only` (a chart's or sparkline's
    /// one metric: a summary of every key for each of a wide run's keys was quadratic).
    pub(crate) fn summary_of(
        &self,
        reference: impl IntoReference,
        only: Option<&str>,
    ) -> Result<Summary> {
        let (state, v, step) = self.read_target(reference)?;
        self.summary_in(&state, v, step, only)
    }

    /// [`summary_of`](Self::summary_of) version `v` in `state`, up to `step`.
    pub(crate) fn summary_in(
        &self,
        state: &State,
        v: VersionId,
        step: Option<u64>,
        only: Option<&str>,
    ) -> Result<Summary> {
        let mut agg = Agg::default();
        for p in state.plan(v, Stream::History, 0, step.unwrap_or(u64::MAX))? {
            if p.cover == Cover::Whole {
                agg.merge_later_of(self.open_sealed(&p.segment)?.agg()?, only);
                continue;
            }
            // A segment straddling the cutoff (or a head): whole groups of blocks and whole
            // blocks from the footer's aggregates; only the block holding the cutoff is
            // decoded.
            let view = self.segment_view(&p.segment)?;
            let index = view.index()?;
            let mut i = 0;
            while let Some(e) = index.get(i).filter(|e| e.first_step <= p.hi) {
                if let Some((end, group)) = view.group_at(i)? {
                    if index[end - 1].last_step <= p.hi {
                        agg.merge_later_of(group, only);
                        i = end;
                        continue;
                    }
                }
                // The block holding the cut is decoded; its aggregate is not read.
                let whole = if e.last_step <= p.hi {
                    view.block_agg(i)?
                } else {
                    None
                };
                match (whole, only) {
                    (Some(b), _) => agg.merge_later_of(b, only),
                    (None, None) => agg.add_block(&view.block(e)?, p.hi),
                    (None, Some(key)) => agg.add_block(&view.block_keys(e, &|k| k == key)?, p.hi),
                }
                i += 1;
            }
        }
        // Long strings are kept in aggregates by their step only: read the values.
        for (key, ks) in &mut agg.keys {
            use crate::summary::{ELIDED_FIRST, ELIDED_LAST};
            for (bit, slot) in [(ELIDED_FIRST, &mut ks.first), (ELIDED_LAST, &mut ks.last)] {
                if ks.elided & bit != 0 {
                    if let Some((step, value)) = slot {
                        *value = self.value_at(state, v, key, *step)?;
                    }
                }
            }
            ks.elided = 0;
        }
        let meta = state.meta_of(v)?;
        Ok(Summary {
            run: meta.run.clone(),
            version: v,
            last_step: agg.last_step,
            rows: agg.rows,
            keys: agg.keys,
        })
    }

    /// The value of `key` at `step` in version `v`'s history (one block decoded, one column).
    fn value_at(&self, state: &State, v: VersionId, key: &str, step: u64) -> Result<crate::Value> {
        let mut cursor = Cursor::new(self, state, v, Stream::History, step, step)?;
        while let Some((block, hi)) = cursor.next_block(&|k| k == key)? {
            let Some(col) = block.columns.iter().find(|c| c.key == key) else {
                continue;
            };
            if let Some(j) = col
                .rows
                .iter()
                .position(|&i| block.steps[i as usize] == step && step <= hi)
            {
                return Ok(col.values.get(j));
            }
        }
        // The footer that made the claim: that of the sealed segment whose steps cover it.
        let (file, offset) = state
            .plan(v, Stream::History, step, step)?
            .find(|p| p.segment.sealed.is_some())
            .map_or((self.segment_dir(), 0), |p| {
                self.open_sealed(&p.segment)
                    .map_or((self.segment_path(p.segment.id), 0), |x| {
                        (x.path.clone(), x.footer_offset())
                    })
            });
        Err(Error::corrupt(
            file,
            offset,
            format!(
                "the footer's aggregate of {v} names step {step} for key '{key}', which holds no \
                 value there"
            ),
        ))
    }

    /// Number of rows of a version's stream and its last step, from the manifest and block
    /// index; only a block straddling a cutoff is decoded.
    pub(crate) fn count_rows(
        &self,
        state: &State,
        v: VersionId,
        stream: Stream,
    ) -> Result<(u64, Option<u64>)> {
        self.count_rows_memo(state, v, None, stream, &mut RowMemo::new())
    }

    /// [`count_rows`](Self::count_rows) of the rows up to `cap` (a reference's `?_step=`),
    /// sharing `memo` (the count of each ancestry suffix already counted): counting every
    /// version of a lineage is linear in its versions, not in their depths summed.
    pub(crate) fn count_rows_memo(
        &self,
        state: &State,
        v: VersionId,
        cap: Option<u64>,
        stream: Stream,
        memo: &mut RowMemo,
    ) -> Result<(u64, Option<u64>)> {
        self.count_rows_of(state, state.meta_of(v)?, cap, stream, memo)
    }

    /// [`count_rows_memo`](Self::count_rows_memo) of a version whose metadata the caller has
    /// (a listing that streams the versions looks none up).
    pub(crate) fn count_rows_of(
        &self,
        state: &State,
        meta: Arc<VersionMeta>,
        cap: Option<u64>,
        stream: Stream,
        memo: &mut RowMemo,
    ) -> Result<(u64, Option<u64>)> {
        let mut pieces = Vec::new();
        let mut base = (0u64, None);
        // Each piece up to its cutoff, lowered to the cap: a memo entry is "this version and
        // its ancestors read up to this step", however the walk got there.
        let capped = state.ancestry_of(meta).map(|r| {
            r.map(|mut hop| {
                hop.limit = match (hop.limit, cap) {
                    (Some(l), Some(c)) => Some(l.min(c)),
                    (l, c) => l.or(c),
                };
                hop
            })
        });
        for hop in capped {
            let hop = hop?;
            let (id, limit) = (hop.version(), hop.limit);
            // Only ancestors' pieces are kept (with their cutoff): a version read whole
            // (`limit` None) is no other version's ancestor piece, so a listing of a million
            // heads keeps none of them.
            if let Some(&hit) = limit.and_then(|_| memo.get(&(id, limit))) {
                base = hit;
                break;
            }
            // A history is in step order: one that starts after the limit gives no row, nor
            // does anything below it (a chain of rewinds, each before the last one's first
            // step, would otherwise walk to its root from every version).
            if let Some(limit) = limit {
                if self.starts_after(state, id, stream, limit)? {
                    break;
                }
            }
            pieces.push(hop);
        }
        let (mut rows, mut last) = base;
        for hop in pieces.iter().rev() {
            let (r, l) = self.hop_rows(hop, stream)?;
            rows = rows.saturating_add(r);
            last = last.max(l);
            if hop.limit.is_some() {
                memo.insert((hop.version(), hop.limit), (rows, last));
            }
        }
        Ok((rows, last))
    }

    /// Whether version `v`'s whole history of `stream` has no row up to `limit`: then
    /// neither has anything below it in an ancestry read up to `limit`.
    fn starts_after(
        &self,
        state: &State,
        v: VersionId,
        stream: Stream,
        limit: u64,
    ) -> Result<bool> {
        Ok(self
            .first_step_of(state, v, stream)?
            .is_none_or(|f| f > limit))
    }

    /// A lower bound of the first step of version `v`'s whole history of `stream` (`None`:
    /// no row): its parent's, if the parent gives it a row (a first step within the
    /// cutoff), else the first of its own rows. Found values are kept in the store's cache
    /// (a history's first step never goes down once it has one, so a kept step stays a
    /// lower bound; "no row" is kept only for versions no writer can add to), and a walk
    /// stops at the first version found there: each version is computed about once per
    /// process, whatever the depth.
    fn first_step_of(&self, state: &State, v: VersionId, stream: Stream) -> Result<Option<u64>> {
        let mut todo = Vec::new();
        let mut below = None;
        {
            let cache = lock_poisoned(&self.inner.first_steps);
            for hop in state.ancestry(v) {
                let hop = hop?;
                if let Some(&f) = cache.get(&(hop.version(), stream)) {
                    below = f;
                    break;
                }
                todo.push(hop);
            }
        }
        for hop in todo.iter().rev() {
            let piece = hop.version();
            let first = match (below, hop.below()) {
                (Some(f), Some((_, cut))) if f <= cut => Some(f),
                _ => self.hop_first_step(hop, stream)?,
            };
            // "No row" is kept only for a version no writer can add to: one that is not its
            // run's head (archived by a rewind; its run moved on).
            let settled = !state.is_head(&hop.meta)?;
            if first.is_some() || settled {
                lock_poisoned(&self.inner.first_steps).insert((piece, stream), first);
            }
            below = first;
        }
        Ok(below)
    }

    /// The first step of the rows of `stream` in `hop`'s segments, if it has any.
    fn hop_first_step(&self, hop: &Hop, stream: Stream) -> Result<Option<u64>> {
        for p in hop.plan(stream, 0, u64::MAX) {
            match (p.cover, p.segment.sealed) {
                (Cover::Whole, Some(s)) => return Ok(s.first_step),
                _ => {
                    if let Some(e) = self.segment_view(&p.segment)?.index()?.first() {
                        return Ok(Some(e.first_step));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Rows of `stream` in `hop`'s segments up to its limit, and the last of their steps.
    fn hop_rows(&self, hop: &Hop, stream: Stream) -> Result<(u64, Option<u64>)> {
        let (mut rows, mut last) = (0u64, None);
        let hi = hop.limit.unwrap_or(u64::MAX);
        for p in hop.plan(stream, 0, hi) {
            if let (Cover::Whole, Some(s)) = (p.cover, p.segment.sealed) {
                rows = rows.saturating_add(s.rows);
                last = s.last_step.max(last);
                continue;
            }
            let view = self.segment_view(&p.segment)?;
            for e in view.index()? {
                if e.first_step > hi {
                    break;
                }
                if e.last_step > hi {
                    // Steps only: the directory's steps are read, no key and no column.
                    let (n, l) = view.steps_at_most(e, hi)?;
                    rows += n;
                    last = l.max(last);
                } else {
                    rows += u64::from(e.nrows);
                    last = Some(e.last_step).max(last);
                }
            }
        }
        Ok((rows, last))
    }

    /// The last step of `stream` in `hop`'s segments up to its limit: a whole sealed
    /// segment's from the manifest, a segment in part's by a binary search of its index and
    /// the steps of the one block holding the limit (a rewind's check of its step costs the
    /// same in a run of a thousand blocks as in one of ten thousand).
    fn hop_last(&self, hop: &Hop, stream: Stream) -> Result<Option<u64>> {
        let mut last = None;
        let hi = hop.limit.unwrap_or(u64::MAX);
        for p in hop.plan(stream, 0, hi) {
            if let (Cover::Whole, Some(s)) = (p.cover, p.segment.sealed) {
                last = s.last_step.max(last);
                continue;
            }
            let view = self.segment_view(&p.segment)?;
            let index = view.index()?;
            let whole = index.partition_point(|e| e.last_step <= hi);
            last = index[..whole].last().map(|e| e.last_step).max(last);
            if let Some(e) = index.get(whole).filter(|e| e.first_step <= hi) {
                // Steps only: the directory's steps are read, no key and no column.
                last = view.steps_at_most(e, hi)?.1.max(last);
            }
        }
        Ok(last)
    }

    /// The last step of any stream of a version.
    pub(crate) fn last_step_any(&self, state: &State, v: VersionId) -> Result<Option<u64>> {
        let mut last = None;
        for stream in Stream::ALL {
            last = last.max(self.last_step(state, v, stream)?);
        }
        Ok(last)
    }

    /// The last step of `stream` in version `v`: that of the newest piece of its ancestry
    /// with rows up to its limit (a piece's own rows all come after what its ancestors give
    /// it), so a version with rows of its own answers without walking its lineage.
    pub(crate) fn last_step(
        &self,
        state: &State,
        v: VersionId,
        stream: Stream,
    ) -> Result<Option<u64>> {
        for hop in state.ancestry(v) {
            let hop = hop?;
            if let Some(l) = hop.limit {
                if self.starts_after(state, hop.version(), stream, l)? {
                    break;
                }
            }
            if let Some(last) = self.hop_last(&hop, stream)? {
                return Ok(Some(last));
            }
        }
        Ok(None)
    }
}
