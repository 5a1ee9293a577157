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
use crate::manifest::Cover;
use crate::read::bounds;
use crate::reference::IntoReference;
use crate::segment::block::Block;
use crate::store::Store;
use crate::summary::KeySummary;
use crate::types::{Stream, Value};

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

    fn add_block(&mut self, block: &Block, key: &str, hi: u64) {
        let Some(col) = block.columns.iter().find(|c| c.key == key) else {
            return;
        };
        for (j, &i) in col.rows.iter().enumerate() {
            let s = block.steps[i as usize];
            if s < self.from || s > hi || s > self.to {
                continue;
            }
            if let Some(x) = col.values.f64_at(j) {
                let b = self.index(s);
                self.add(b, &Bucket::point(s, x));
            }
        }
    }
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
        if buckets > crate::limits::MAX_BUCKETS {
            return Err(crate::Error::InvalidInput(format!(
                "{buckets} buckets asked for: at most {} (a chart's pixel columns)",
                crate::limits::MAX_BUCKETS
            )));
        }
        let summary = self.summary_of(&reference, Some(key))?;
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
        let (state, v, step) = self.read_target(&reference)?;
        let mut out = Downsampled {
            from,
            to,
            buckets: vec![None; buckets],
            from_aggregates: 0,
            decoded: 0,
            snap,
        };
        let to = step.map_or(to, |s| s.min(to));
        for p in state.plan(v, Stream::History, from, to)? {
            let hi = p.hi;
            let view = self.segment_view(&p.segment)?;
            if let (Cover::Whole, crate::read::SegView::Sealed(sealed)) = (p.cover, &view) {
                if let Some((i, b)) = sealed.agg()?.keys.get(key).and_then(|k| out.of_summary(k)) {
                    out.add(i, &b);
                    out.from_aggregates += 1;
                    continue;
                }
            }
            for (i, e) in view.index().iter().enumerate() {
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
                            if let Some((b, bucket)) = out.of_summary(k) {
                                out.add(b, &bucket);
                                out.from_aggregates += 1;
                                continue;
                            }
                        }
                    }
                }
                let block = view.block_keys(e, &|k| k == key)?;
                out.decoded += 1;
                out.add_block(&block, key, hi);
            }
        }
        Ok(Some(out))
    }
}
