//! The read plan: which segments a read of a version takes its rows from, each with the
//! highest step taken from it and whether it is covered whole. Every reader (the block
//! cursor behind history and chunks, summaries, row counts, first and last steps,
//! downsampling) and purge's [`State::needed_segments`] follow it, so the rule of which part
//! of which segment of which ancestor a version reads lives in [`cover`] alone.
//!
//! A version's rows are its ancestors' rows up to their cutoffs, then its own (the manifest's
//! invariant): the plan is its ancestry's pieces, oldest first, each piece's own segments of
//! the stream in step order, with the piece's bound (its cutoff, lowered to the read's `to`).

use std::collections::HashMap;

use super::{SegmentMeta, State, VersionMeta};
use crate::error::Result;
use crate::types::{SegmentId, Stream, VersionId};

/// How much of a segment a read takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cover {
    /// A sealed segment whose every row is in the read's range: its footer's aggregate is
    /// the segment's answer, its manifest entry its row count.
    Whole,
    /// A head segment (the manifest knows nothing of its rows), or a sealed segment that
    /// straddles the range: its block index is walked from the range's start up to `hi`.
    Part,
}

/// One segment to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The version owning the segment (the read's version or one of its ancestors).
    pub version: VersionId,
    pub segment: SegmentMeta,
    /// The highest step taken from the segment.
    pub hi: u64,
    pub cover: Cover,
}

/// Whether a read of steps `from..=hi` takes anything from `seg`, and how much. A sealed
/// segment with no row, or whose steps lie outside the range, is not read; a head segment
/// is always read in part (its rows are known only to its file).
pub(crate) fn cover(seg: &SegmentMeta, from: u64, hi: u64) -> Option<Cover> {
    if hi < from {
        return None;
    }
    let Some(s) = seg.sealed else {
        return Some(Cover::Part);
    };
    match (s.first_step, s.last_step) {
        _ if s.rows == 0 => None,
        (Some(f), Some(l)) if f > hi || l < from => None,
        (Some(f), Some(l)) if f >= from && l <= hi => Some(Cover::Whole),
        (Some(_), Some(_)) => Some(Cover::Part),
        // Rows but no steps: a manifest that `validate` refuses; read it in part, and let
        // the file's index say what is there.
        _ => Some(Cover::Part),
    }
}

impl VersionMeta {
    /// The plan of this version's own segments of `stream` for steps `from..=hi`.
    pub fn own_plan(&self, stream: Stream, from: u64, hi: u64) -> impl Iterator<Item = Piece> + '_ {
        self.segments
            .iter()
            .filter(move |s| s.stream == stream)
            .filter_map(move |segment| {
                cover(segment, from, hi).map(|cover| Piece {
                    version: self.id,
                    segment: *segment,
                    hi,
                    cover,
                })
            })
    }
}

impl State {
    /// The plan of a read of version `v`'s `stream` over steps `from..=to`: every segment
    /// to read, oldest piece first and in step order within a piece.
    pub fn plan(
        &self,
        v: VersionId,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<impl Iterator<Item = Piece> + 'static> {
        let mut pieces = self.ancestry(v).collect::<Result<Vec<_>>>()?;
        pieces.reverse();
        Ok(pieces.into_iter().flat_map(move |(meta, limit)| {
            let hi = limit.map_or(to, |l| l.min(to));
            (0..meta.segments.len()).filter_map(move |i| {
                let segment = meta.segments[i];
                if segment.stream != stream {
                    return None;
                }
                cover(&segment, from, hi).map(|cover| Piece {
                    version: meta.id,
                    segment,
                    hi,
                    cover,
                })
            })
        }))
    }

    /// Segments still needed by a version that is not purged: a version needs all its own
    /// segments and, of each ancestor, those its plan reads up to the cutoff. Linear in the
    /// versions: the highest step any reader takes from each version is found children first
    /// (a child's id is above its parent's), instead of walking a chain per version.
    /// With `purging`, that version is taken as purged too (what a purge of it would keep).
    pub fn needed_segments(
        &self,
        purging: Option<VersionId>,
    ) -> Result<std::collections::HashSet<SegmentId>> {
        let all = self.versions().collect::<Result<Vec<_>>>()?;
        let by_id: HashMap<VersionId, &VersionMeta> = all.iter().map(|m| (m.id, &**m)).collect();
        // reach[v]: None = needed whole (not purged); Some(s) = read by descendants up to s.
        let mut reach: HashMap<VersionId, Option<u64>> = HashMap::new();
        for (id, meta) in all.iter().rev().map(|m| (&m.id, m)) {
            if !meta.purged && purging != Some(*id) {
                reach.insert(*id, None);
            }
            let Some(&mine) = reach.get(id) else {
                continue;
            };
            if let Some((parent, step)) = meta.parent.filter(|&(p, _)| p < *id) {
                let through = Some(mine.map_or(step, |m| m.min(step)));
                let e = reach.entry(parent).or_insert(through);
                *e = match (*e, through) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b)),
                };
            }
        }
        let mut needed = std::collections::HashSet::new();
        for (id, limit) in reach {
            let Some(meta) = by_id.get(&id) else {
                continue;
            };
            for s in &meta.segments {
                // A live version keeps even its empty segments (verify reads them); an
                // ancestor only what a read up to the cutoff takes.
                if limit.is_none_or(|l| cover(s, 0, l).is_some()) {
                    needed.insert(s.id);
                }
            }
        }
        Ok(needed)
    }
}

#[cfg(test)]
mod tests {
    //! The plan against a brute force over random lineage trees: every row of every segment
    //! is listed, and a read's rows are found one by one by walking each row's version up to
    //! the read's version.
    use super::*;
    use crate::manifest::{Origin, SealMeta};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A segment: its stream, whether it is sealed, its steps.
    type Seg = (Stream, bool, Vec<u64>);
    /// A version: its parent (an earlier index) and cutoff, and its own segments.
    type Ver = (Option<(usize, u64)>, Vec<Seg>);

    /// A random tree: for each version, its parent (an earlier index) and cutoff, and its
    /// own segments.
    #[derive(Debug, Clone)]
    struct Tree {
        versions: Vec<Ver>,
        purged: Vec<bool>,
    }

    fn tree() -> impl Strategy<Value = Tree> {
        let segs = prop::collection::vec(
            (
                prop::sample::select(Stream::ALL.to_vec()),
                any::<bool>(),
                prop::collection::btree_set(0u64..40, 0..6),
            ),
            0..4,
        );
        let version = (
            any::<prop::sample::Index>(),
            0u64..40,
            any::<bool>(),
            segs,
            any::<bool>(),
        );
        prop::collection::vec(version, 1..8).prop_map(|raw| {
            let mut versions = Vec::new();
            let mut purged = Vec::new();
            for (i, (pick, cut, root, segs, gone)) in raw.into_iter().enumerate() {
                purged.push(gone);
                let parent = (i > 0 && !root).then(|| (pick.index(i), cut));
                // Own rows come after the parent cutoff, and each stream's segments
                // follow each other in step order (the manifest's invariants).
                let floor = parent.map_or(0, |(_, c)| c + 1);
                let mut next: BTreeMap<Stream, u64> = BTreeMap::new();
                let mut own = Vec::new();
                for (stream, sealed, steps) in segs {
                    let low = *next.get(&stream).unwrap_or(&floor);
                    let steps: Vec<u64> = steps.into_iter().map(|s| s + low).collect();
                    if let Some(&l) = steps.last() {
                        next.insert(stream, l + 1);
                    }
                    own.push((stream, sealed, steps));
                }
                versions.push((parent, own));
            }
            Tree { versions, purged }
        })
    }

    fn state_of(tree: &Tree) -> (State, BTreeMap<SegmentId, Vec<u64>>) {
        let mut state = State::default();
        let mut rows = BTreeMap::new();
        let mut next_seg = 1;
        for (i, (parent, segs)) in tree.versions.iter().enumerate() {
            let id = VersionId(i as u64 + 1);
            let mut segments = Vec::new();
            for (stream, sealed, steps) in segs {
                let sid = SegmentId(next_seg);
                next_seg += 1;
                rows.insert(sid, steps.clone());
                segments.push(SegmentMeta {
                    id: sid,
                    stream: *stream,
                    sealed: sealed.then(|| SealMeta {
                        rows: steps.len() as u64,
                        first_step: steps.first().copied(),
                        last_step: steps.last().copied(),
                        bytes: 0,
                    }),
                    inline: false,
                });
            }
            state.versions.insert(
                id,
                std::sync::Arc::new(VersionMeta {
                    id,
                    run: format!("r{i}"),
                    origin: if parent.is_some() {
                        Origin::Fork
                    } else {
                        Origin::New
                    },
                    parent: parent.map(|(p, c)| (VersionId(p as u64 + 1), c)),
                    restart_of: None,
                    config: Default::default(),
                    created: 0,
                    finished: false,
                    archived: false,
                    purged: tree.purged[i],
                    segments,
                }),
            );
        }
        (state, rows)
    }

    /// Whether the row at `step` of version `owner` is a row of version `v`: `owner` is on
    /// `v`'s ancestry, and every cutoff on the way down from it lets the step through.
    fn visible(state: &State, v: VersionId, owner: VersionId, step: u64) -> bool {
        let mut cur = v;
        loop {
            if cur == owner {
                return true;
            }
            match state.versions[&cur].parent {
                Some((p, cut)) if step <= cut => cur = p,
                _ => return false,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn the_plan_reads_exactly_the_rows_of_a_version(
            tree in tree(),
            pick in any::<prop::sample::Index>(),
            stream in prop::sample::select(Stream::ALL.to_vec()),
            a in 0u64..60,
            b in 0u64..60,
        ) {
            let (state, rows) = state_of(&tree);
            let v = VersionId(pick.index(tree.versions.len()) as u64 + 1);
            let (from, to) = (a.min(b), a.max(b));
            // Brute force: every row of every segment of the stream, kept if visible from v.
            let mut want: BTreeMap<SegmentId, BTreeSet<u64>> = BTreeMap::new();
            for meta in state.versions.values() {
                for seg in meta.segments.iter().filter(|s| s.stream == stream) {
                    let kept: BTreeSet<u64> = rows[&seg.id]
                        .iter()
                        .copied()
                        .filter(|&s| s >= from && s <= to && visible(&state, v, meta.id, s))
                        .collect();
                    if !kept.is_empty() {
                        want.insert(seg.id, kept);
                    }
                }
            }
            let plan: Vec<_> = state.plan(v, stream, from, to).unwrap().collect();
            let mut got: BTreeMap<SegmentId, BTreeSet<u64>> = BTreeMap::new();
            let mut order = Vec::new();
            for p in &plan {
                let all = &rows[&p.segment.id];
                let kept: BTreeSet<u64> =
                    all.iter().copied().filter(|&s| s >= from && s <= p.hi).collect();
                // Whole: every row of the sealed segment is read, so its footer answers.
                if p.cover == Cover::Whole {
                    prop_assert!(p.segment.sealed.is_some());
                    prop_assert_eq!(kept.len(), all.len(), "whole but not all rows: {:?}", p);
                }
                // A sealed segment is read only if its steps overlap the range (a part read
                // may still find no row between them: the manifest knows its ends only).
                if let Some(m) = p.segment.sealed {
                    let (f, l) = (m.first_step.unwrap(), m.last_step.unwrap());
                    prop_assert!(f <= p.hi && l >= from, "{:?}", p);
                }
                order.extend(kept.iter().copied());
                if !kept.is_empty() {
                    got.insert(p.segment.id, kept);
                }
            }
            prop_assert_eq!(&got, &want);
            // The plan's order is step order: a cursor that follows it yields sorted rows.
            prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "{:?}", order);
            // Every segment a live version reads (any stream, any range) is one purge keeps.
            let needed = state.needed_segments(None).unwrap();
            for meta in state.versions.values().filter(|m| !m.purged) {
                for s in Stream::ALL {
                    for p in state.plan(meta.id, s, 0, u64::MAX).unwrap() {
                        prop_assert!(needed.contains(&p.segment.id), "{:?} of {}", p, meta.id);
                    }
                }
            }
        }
    }
}
