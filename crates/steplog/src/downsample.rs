//! M4 downsampling of one metric for charts: a step range cut into equal buckets (one per
//! pixel column), and for each the first, last, minimum and maximum point. A line through
//! those four points per bucket draws the same pixels as a line through every point (Jugel et
//! al., "M4: A Visualization-Oriented Time Series Data Aggregation", VLDB 2014), so a spike of
//! one step survives any zoom level.
//!
//! The buckets come from the aggregates steplog already keeps: a sealed segment, or a block
//! of one, that lies inside one bucket contributes its footer's per-key first/last/min/max
//! without being read; only blocks that straddle a bucket edge or a cutoff (and blocks of a
//! head segment, which has no footer yet) are decoded, and only their one column.
//!
//! Invariant: [`Store::downsample`] equals M4 over [`Store::metric`] of the same range (NaN
//! values are left out of min and max, as in summaries; non-numeric values are ignored).
//! [`Store::downsample_snapped`] trades exactness at bucket edges for never decoding a block
//! narrower than a bucket: such a block goes whole to the bucket of its middle step, so a
//! point may land one bucket off; counts, and the overall minimum and maximum, are kept.

use std::ops::RangeBounds;

use crate::error::Result;
use crate::manifest::{Cover, State};
use crate::read::bounds;
use crate::reference::IntoReference;
use crate::segment::block::Block;
use crate::store::Store;
use crate::summary::KeySummary;
use crate::types::{Stream, Value, VersionId};

/// One bucket's points, each `(step, value)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's first point.
    pub first: (u64, f64),
    /// Its last point.
    pub last: (u64, f64),
    /// Its lowest point (the first of equals); `None` if every value is NaN.
    pub min: Option<(u64, f64)>,
    /// Its highest point.
    pub max: Option<(u64, f64)>,
    /// Number of points in it.
    pub count: u64,
}

impl Bucket {
    fn point(step: u64, v: f64) -> Bucket {
        let m = (!v.is_nan()).then_some((step, v));
        Bucket {
            first: (step, v),
            last: (step, v),
            min: m,
            max: m,
            count: 1,
        }
    }

    /// Adds a point after this bucket's points: as `merge_later` of [`Bucket::point`].
    fn push(&mut self, step: u64, v: f64) {
        self.last = (step, v);
        self.count += 1;
        if !v.is_nan() {
            if self.min.is_none_or(|m| v < m.1) {
                self.min = Some((step, v));
            }
            if self.max.is_none_or(|m| v > m.1) {
                self.max = Some((step, v));
            }
        }
    }

    /// Folds in `later`, whose points all come after this bucket's.
    fn merge_later(&mut self, later: &Bucket) {
        self.last = later.last;
        self.count += later.count;
        if let Some(m) = later.min {
            if self.min.is_none_or(|x| m.1 < x.1) {
                self.min = Some(m);
            }
        }
        if let Some(m) = later.max {
            if self.max.is_none_or(|x| m.1 > x.1) {
                self.max = Some(m);
            }
        }
    }

    /// The four points in step order, without repeats: the polyline to draw.
    pub fn points(&self) -> Vec<(u64, f64)> {
        let mut p = vec![self.first, self.last];
        p.extend(self.min);
        p.extend(self.max);
        p.sort_by_key(|&(s, _)| s);
        p.dedup_by_key(|&mut (s, _)| s);
        p
    }
}

/// A metric downsampled to buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Downsampled {
    /// The first step of the range.
    pub from: u64,
    /// The last step of the range.
    pub to: u64,
    /// One entry per bucket of equal step width, `None` where the bucket holds no point.
    pub buckets: Vec<Option<Bucket>>,
    /// Segments and blocks taken from their footer aggregates without being read.
    pub from_aggregates: u64,
    /// Blocks decoded.
    pub decoded: u64,
    /// Whether a block narrower than a bucket may be placed whole in one bucket.
    snap: bool,
}

impl Downsampled {
    /// The bucket of `step` (which must lie in the range).
    fn index(&self, step: u64) -> usize {
        let n = self.buckets.len() as u128;
        let span = u128::from(self.to - self.from) + 1;
        ((u128::from(step - self.from) * n) / span) as usize
    }

    fn add(&mut self, i: usize, b: &Bucket) {
        match &mut self.buckets[i] {
            Some(mine) => mine.merge_later(b),
            slot @ None => *slot = Some(*b),
        }
    }

    /// The bucket of a whole aggregate, if its key's points are numeric and lie in one bucket.
    fn of_summary(&self, s: &KeySummary) -> Option<(usize, Bucket)> {
        let num =
            |p: &Option<(u64, Value)>| p.as_ref().and_then(|(st, v)| v.as_f64().map(|x| (*st, x)));
        if s.numeric_count != s.count || s.count == 0 {
            return None;
        }
        let (first, last) = (num(&s.first)?, num(&s.last)?);
        if first.0 < self.from || last.0 > self.to {
            return None;
        }
        let (i, j) = (self.index(first.0), self.index(last.0));
        let width = (u128::from(self.to - self.from) + 1) / self.buckets.len() as u128;
        let bucket = if i == j {
            i
        } else if self.snap && u128::from(last.0 - first.0) < width {
            // Snapped: the whole block goes to the bucket of its middle step; a point moves
            // by at most one bucket, and nothing is decoded.
            self.index(first.0 + (last.0 - first.0) / 2)
        } else {
            return None;
        };
        Some((
            bucket,
            Bucket {
                first,
                last,
                min: num(&s.min),
                max: num(&s.max),
                count: s.count,
            },
        ))
    }

    /// The first step of bucket `i` (`to + 1` for `i` = the number of buckets): the
    /// smallest offset `d` with `d * n / span >= i`, as [`index`](Self::index) rounds down.
    fn start_of(&self, i: usize) -> u64 {
        let n = self.buckets.len() as u128;
        let span = u128::from(self.to - self.from) + 1;
        // d <= span, so from + d <= to + 1, within u64 (steps are at most MAX_STEP).
        self.from + (i as u128 * span).div_ceil(n) as u64
    }

    /// Folds a decoded block's points, a bucket at a time, into `sink` (bucket index and its
    /// points), in step order: the points of one bucket are found by binary search on the
    /// block's steps (the bucket index, a 128-bit division, is computed once per bucket the
    /// block touches, not once per point), then folded over their slice of values.
    fn fold_block(&self, block: &Block, key: &str, hi: u64, mut sink: impl FnMut(usize, Bucket)) {
        let Some(col) = block.columns.iter().find(|c| c.key == key) else {
            return;
        };
        let step = |j: usize| block.steps[col.rows[j] as usize];
        let hi = hi.min(self.to);
        // The column's points lie in step order.
        let mut j = col
            .rows
            .partition_point(|&r| block.steps[r as usize] < self.from);
        let end = col.rows.partition_point(|&r| block.steps[r as usize] <= hi);
        while j < end {
            let b = self.index(step(j));
            let next = self.start_of(b + 1);
            let stop = j + col.rows[j..end].partition_point(|&r| block.steps[r as usize] < next);
            if let Some(bucket) = fold(&col.values, j..stop, step) {
                sink(b, bucket);
            }
            j = stop;
        }
    }
}

/// The bucket of the numeric points `rows` of a column (`None` if none is numeric); `step`
/// gives a point's step.
fn fold(
    values: &crate::segment::block::Values,
    rows: std::ops::Range<usize>,
    step: impl Fn(usize) -> u64,
) -> Option<Bucket> {
    use crate::segment::block::Values;
    if let Values::F64(v) = values {
        // The usual case, a float column: the extremes folded over four lanes (`f64::min`
        // and `max` pass NaN over, and the lanes keep the loop free of branches), then the
        // first point equal to each (ties keep the first). With no non-NaN value the folds
        // stay infinite and no point equals them, unless one is that infinity.
        let (lo, xs) = (rows.start, &v[rows]);
        let (first, last) = (*xs.first()?, *xs.last()?);
        let (mut mins, mut maxs) = ([f64::INFINITY; 4], [f64::NEG_INFINITY; 4]);
        let lanes = xs.chunks_exact(4);
        let tail = lanes.remainder();
        for c in lanes {
            for l in 0..4 {
                mins[l] = mins[l].min(c[l]);
                maxs[l] = maxs[l].max(c[l]);
            }
        }
        let lowest = tail
            .iter()
            .fold(mins.into_iter().fold(f64::INFINITY, f64::min), |a, &x| {
                a.min(x)
            });
        let highest = tail.iter().fold(
            maxs.into_iter().fold(f64::NEG_INFINITY, f64::max),
            |a, &x| a.max(x),
        );
        let min = xs.iter().position(|&x| x == lowest);
        let max = xs.iter().position(|&x| x == highest);
        let at = |k: usize| (step(lo + k), xs[k]);
        return Some(Bucket {
            first: (step(lo), first),
            last: (step(lo + xs.len() - 1), last),
            min: min.map(at),
            max: max.map(at),
            count: xs.len() as u64,
        });
    }
    let mut out: Option<Bucket> = None;
    for j in rows {
        if let Some(x) = values.f64_at(j) {
            match &mut out {
                Some(b) => b.push(step(j), x),
                None => out = Some(Bucket::point(step(j), x)),
            }
        }
    }
    out
}

impl Store {
    /// Downsamples the metric `key` of the version `reference` names to `buckets` buckets
    /// over `steps` (clipped to the steps where the key has values), M4-style: per bucket the
    /// first, last, min and max point. Whole segments and blocks inside one bucket come from
    /// their aggregates. `None` when the key has no numeric value in the range.
    pub fn downsample(
        &self,
        reference: impl IntoReference,
        key: &str,
        steps: impl RangeBounds<u64>,
        buckets: usize,
    ) -> Result<Option<Downsampled>> {
        self.downsample_inner(
            reference.into_reference()?,
            key,
            bounds(steps),
            buckets,
            false,
        )
    }

    /// As [`downsample`](Self::downsample), but a block narrower than a bucket that straddles
    /// a bucket edge is placed whole in the bucket of its middle step instead of being
    /// decoded: every point lands in its own bucket or a neighbour (at most one pixel column
    /// off in a chart), every minimum and maximum is kept, and a long run is drawn from
    /// aggregates alone. `steplog plot` uses it.
    pub fn downsample_snapped(
        &self,
        reference: impl IntoReference,
        key: &str,
        steps: impl RangeBounds<u64>,
        buckets: usize,
    ) -> Result<Option<Downsampled>> {
        self.downsample_inner(
            reference.into_reference()?,
            key,
            bounds(steps),
            buckets,
            true,
        )
    }

    fn downsample_inner(
        &self,
        reference: crate::Reference,
        key: &str,
        (from, to): (u64, u64),
        buckets: usize,
        snap: bool,
    ) -> Result<Option<Downsampled>> {
        let (state, v, step) = self.read_target(&reference)?;
        self.downsample_in(&state, v, step, key, (from, to), buckets, snap)
    }

    /// [`downsample`](Self::downsample) of version `v` in `state`, up to `step`: one
    /// resolution of the reference for its summary and its blocks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn downsample_in(
        &self,
        state: &State,
        v: VersionId,
        step: Option<u64>,
        key: &str,
        (from, to): (u64, u64),
        buckets: usize,
        snap: bool,
    ) -> Result<Option<Downsampled>> {
        if buckets > crate::limits::MAX_BUCKETS {
            return Err(crate::Error::InvalidInput(format!(
                "{buckets} buckets asked for: at most {} (a chart's pixel columns)",
                crate::limits::MAX_BUCKETS
            )));
        }
        let summary = self.summary_in(state, v, step, Some(key))?;
        let Some(ks) = summary.keys.get(key) else {
            return Ok(None);
        };
        let (Some((first, _)), Some((last, _))) = (&ks.first, &ks.last) else {
            return Ok(None);
        };
        let (from, to) = (from.max(*first), to.min(*last));
        if from > to || buckets == 0 {
            return Ok(None);
        }
        let mut out = Downsampled {
            from,
            to,
            buckets: vec![None; buckets],
            from_aggregates: 0,
            decoded: 0,
            snap,
        };
        let to = step.map_or(to, |s| s.min(to));
        // What each piece adds, in step order: a bucket from an aggregate, or a block to
        // decode. The blocks are decoded first (on several threads when there are many:
        // they are independent), then everything is folded in order.
        let mut parts: Vec<Part> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        for p in state.plan(v, Stream::History, from, to)? {
            let hi = p.hi;
            let view = std::sync::Arc::new(self.segment_view(&p.segment)?);
            if let (Cover::Whole, crate::read::SegView::Sealed(sealed)) = (p.cover, &*view) {
                if let Some((i, b)) = sealed.agg()?.keys.get(key).and_then(|k| out.of_summary(k)) {
                    parts.push(Part::Bucket(i, b));
                    out.from_aggregates += 1;
                    continue;
                }
            }
            for (i, e) in view.index()?.iter().enumerate() {
                if e.last_step < from {
                    continue;
                }
                if e.first_step > hi {
                    break;
                }
                let inside = e.first_step >= from && e.last_step <= hi;
                if let Some(agg) = view.block_agg(i)?.filter(|_| inside) {
                    match agg.keys.get(key) {
                        None => {
                            out.from_aggregates += 1;
                            continue;
                        }
                        Some(k) => {
                            if let Some(b) = out.of_summary(k) {
                                parts.push(Part::Bucket(b.0, b.1));
                                out.from_aggregates += 1;
                                continue;
                            }
                        }
                    }
                }
                parts.push(Part::Decoded(jobs.len()));
                jobs.push(Job {
                    view: view.clone(),
                    entry: *e,
                    hi,
                });
            }
        }
        out.decoded = jobs.len() as u64;
        let decoded = out.decode_all(&jobs, key)?;
        for part in parts {
            match part {
                Part::Bucket(i, b) => out.add(i, &b),
                Part::Decoded(j) => {
                    for (i, b) in &decoded[j] {
                        out.add(*i, b);
                    }
                }
            }
        }
        Ok(Some(out))
    }
}

/// What one piece of a downsample adds, in step order.
enum Part {
    /// A bucket from an aggregate.
    Bucket(usize, Bucket),
    /// The buckets of the `j`-th block to decode.
    Decoded(usize),
}

/// A block to decode for a downsample, and the highest step to take from it.
struct Job {
    view: std::sync::Arc<crate::read::SegView>,
    entry: crate::segment::IndexEntry,
    hi: u64,
}

/// Below this many blocks to decode, a downsample decodes them on the caller's thread alone:
/// a thread costs tens of microseconds to start, a block a few.
const PARALLEL_BLOCKS: usize = 64;
/// At most this many threads decode a downsample's blocks.
const MAX_THREADS: usize = 4;

impl Downsampled {
    /// Decodes each job's block (its one column) and folds it into the buckets it touches,
    /// in order; on up to [`MAX_THREADS`] scoped threads when there are at least
    /// [`PARALLEL_BLOCKS`] of them (an exact chart of a long run decodes a block at almost
    /// every bucket edge: a thousand blocks at 1,000 px). The first error, in job order, is
    /// returned.
    fn decode_all(&self, jobs: &[Job], key: &str) -> Result<Vec<Vec<(usize, Bucket)>>> {
        let one = |job: &Job| -> Result<Vec<(usize, Bucket)>> {
            let block = job.view.block_keys(&job.entry, &|k| k == key)?;
            let mut found = Vec::with_capacity(2);
            self.fold_block(&block, key, job.hi, |i, b| found.push((i, b)));
            Ok(found)
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_THREADS)
            .min(jobs.len() / PARALLEL_BLOCKS);
        if threads <= 1 {
            return jobs.iter().map(one).collect();
        }
        let chunk = jobs.len().div_ceil(threads);
        std::thread::scope(|s| {
            let run = move |part: &'_ [Job]| part.iter().map(one).collect::<Vec<_>>();
            // A chunk whose thread cannot be started (a process at its thread limit) is
            // decoded here, in its turn.
            let started: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| {
                    let thread = std::thread::Builder::new()
                        .name("steplog-m4".into())
                        .spawn_scoped(s, move || run(part));
                    (part, thread.ok())
                })
                .collect();
            let mut out = Vec::with_capacity(jobs.len());
            for (part, thread) in started {
                let results = match thread.map(|t| t.join()) {
                    Some(Ok(results)) => results,
                    Some(Err(panic)) => std::panic::resume_unwind(panic),
                    None => run(part),
                };
                for r in results {
                    out.push(r?);
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(from: u64, to: u64, n: usize) -> Downsampled {
        Downsampled {
            from,
            to,
            buckets: vec![None; n],
            from_aggregates: 0,
            decoded: 0,
            snap: false,
        }
    }

    #[test]
    fn a_buckets_start_is_the_first_step_its_index_gives() {
        for (from, to, n) in [
            (0, 9, 3),
            (0, 9_999_999, 1000),
            (5, 5, 1),
            (7, 1_000, 999),
            (0, 2, 7),
            (100, crate::limits::MAX_STEP, 1 << 20),
        ] {
            let d = buckets(from, to, n);
            assert_eq!(d.start_of(0), from);
            assert_eq!(d.start_of(n), to + 1);
            for i in (1..n).step_by((n / 500).max(1)) {
                let s = d.start_of(i);
                assert!(s >= from && s <= to + 1);
                if s > to {
                    continue;
                }
                if d.index(s) == i {
                    assert!(
                        s == from || d.index(s - 1) < i,
                        "{from}..={to}/{n}: bucket {i}"
                    );
                } else {
                    // More buckets than steps: bucket i holds no step and ends where it starts.
                    assert!(d.index(s) > i);
                    assert_eq!(d.start_of(i + 1), s, "{from}..={to}/{n}: bucket {i}");
                }
            }
        }
    }
}
