//! The read plan: which segments a read of a version takes its rows from, each with the
//! highest step taken from it and whether it is covered whole. Every reader (the block
//! cursor behind history and chunks, summaries, row counts, first and last steps,
//! downsampling) and purge's [`State::needed_segments`] follow it, so the rule of which part
//! of which segment of which ancestor a version reads lives in [`cover`] alone.
//!
//! A version's rows are its ancestors' rows up to their cutoffs, then its own (the manifest's
//! invariant): the plan is its ancestry's hops, oldest first, each hop's segments of the
//! stream in step order, with the hop's bound (its cutoff, lowered to the read's `to`). A hop
//! is a version's own segments, or a pack of an archived version: the same rows as the hops
//! from it down to the pack's base, in one piece per stream, so a lineage rewound 10,000
//! times is read in a few dozen pieces (`pack.rs` builds packs; which pack a hop takes is
//! [`Hop::new`]'s rule).

use std::collections::HashMap;
use std::sync::Arc;

use super::{PackMeta, SegmentMeta, State, VersionMeta};
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

/// One step of a version's ancestry (`State::ancestry`): a version's own segments, or one
/// of its packs (the rows of the version and of its ancestors above the pack's base), read
/// up to `limit` (the lowest cutoff on the way from the version read; `None`: no cutoff).
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    pub meta: Arc<VersionMeta>,
    pub limit: Option<u64>,
    /// The pack read, as an index into `meta.packs`; `None`: the version's own segments.
    pack: Option<usize>,
}

impl Hop {
    /// The hop of `meta` read up to `limit`: its widest pack if `packed` and it has one.
    pub fn new(meta: Arc<VersionMeta>, limit: Option<u64>, packed: bool) -> Hop {
        let pack = packed
            .then(|| (0..meta.packs.len()).max_by_key(|&i| meta.packs[i].level))
            .flatten();
        Hop { meta, limit, pack }
    }

    /// The version the hop starts at.
    pub fn version(&self) -> VersionId {
        self.meta.id
    }

    /// The pack read, if the hop is one.
    pub fn pack(&self) -> Option<&PackMeta> {
        self.pack.map(|i| &self.meta.packs[i])
    }

    /// The segments the hop reads: the version's own, or its pack's.
    pub fn segments(&self) -> &[SegmentMeta] {
        self.pack().map_or(&self.meta.segments, |p| &p.segments)
    }

    /// Where the walk goes on, and the last step taken from there: the version's parent, or
    /// the pack's base.
    pub fn below(&self) -> Option<(VersionId, u64)> {
        self.pack().map_or(self.meta.parent, |p| p.base)
    }

    /// The plan of the hop's segments of `stream` for steps `from..=hi`.
    pub fn plan(&self, stream: Stream, from: u64, hi: u64) -> impl Iterator<Item = Piece> + '_ {
        self.segments()
            .iter()
            .filter(move |s| s.stream == stream)
            .filter_map(move |segment| {
                cover(segment, from, hi).map(|cover| Piece {
                    version: self.meta.id,
                    segment: *segment,
                    hi,
                    cover,
                })
            })
    }
}

impl State {
    /// The plan of a read of version `v`'s `stream` over steps `from..=to`: every segment
    /// to read, oldest hop first and in step order within a hop.
    pub fn plan(
        &self,
        v: VersionId,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<impl Iterator<Item = Piece> + 'static> {
        let hops = self.ancestry(v).collect::<Result<Vec<_>>>()?;
        Ok(plan_of(hops, stream, from, to))
    }

    /// Segments still needed by a version that is not purged: a version needs all its own
    /// segments and, of each ancestor, those its plan reads up to the cutoff. Linear in the
    /// versions: the highest step any reader takes from each version is found children first
    /// (a child's id is above its parent's), instead of walking a chain per version.
    /// The versions in `purging` are taken as purged too (what purging them would keep).
    pub fn needed_segments(
        &self,
        purging: &[VersionId],
    ) -> Result<std::collections::HashSet<SegmentId>> {
        let purging: std::collections::HashSet<VersionId> = purging.iter().copied().collect();
        let all = self.versions().collect::<Result<Vec<_>>>()?;
        let by_id: HashMap<VersionId, &VersionMeta> = all.iter().map(|m| (m.id, &**m)).collect();
        // reach[v]: None = needed whole (not purged); Some(s) = read by descendants up to s.
        let mut reach: HashMap<VersionId, Option<u64>> = HashMap::new();
        for (id, meta) in all.iter().rev().map(|m| (&m.id, m)) {
            if !meta.purged && !purging.contains(id) {
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
            // A read through a live version may take any of its packs (the widest): all
            // stay. A purged version's packs go, whoever reads through it: those reads take
            // its own segments, kept up to what they read (a pack holds all its rows, which
            // a purge no longer keeps). The versions a pack stands for are kept as their
            // parent links say, so no read depends on a pack.
            if limit.is_none() {
                needed.extend(
                    meta.packs
                        .iter()
                        .flat_map(|p| p.segments.iter().map(|s| s.id)),
                );
            }
        }
        Ok(needed)
    }
}

/// The plan of `hops` (newest first, as an ancestry walk gives them) for `stream` over
/// steps `from..=to`: oldest hop first, each hop's segments in step order.
pub(crate) fn plan_of(
    mut hops: Vec<Hop>,
    stream: Stream,
    from: u64,
    to: u64,
) -> impl Iterator<Item = Piece> + 'static {
    hops.reverse();
    hops.into_iter().flat_map(move |hop| {
        let hi = hop.limit.map_or(to, |l| l.min(to));
        hop.plan(stream, from, hi).collect::<Vec<_>>()
    })
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
        /// Per version, a pack to add: how many hops it stands for (0: none) and its level.
        packs: Vec<(usize, u32)>,
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
            (0usize..4, 1u32..4),
        );
        prop::collection::vec(version, 1..8).prop_map(|raw| {
            let mut versions = Vec::new();
            let mut purged = Vec::new();
            let mut packs = Vec::new();
            for (i, (pick, cut, root, segs, gone, pack)) in raw.into_iter().enumerate() {
                purged.push(gone);
                packs.push(pack);
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
            Tree {
                versions,
                purged,
                packs,
            }
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
                    packs: Vec::new(),
                }),
            );
        }
        // Packs, built by brute force: the rows of the first `hops` versions of the walk
        // up from a version, each stream's in one segment, and where the walk goes on.
        for (i, &(hops, level)) in tree.packs.iter().enumerate() {
            // A purged version has no pack (its purge drops them).
            if hops == 0 || tree.purged[i] {
                continue;
            }
            let id = VersionId(i as u64 + 1);
            let mut chain = vec![id];
            let mut limit = None::<u64>;
            let mut base = None;
            while chain.len() <= hops {
                let m = &state.versions[chain.last().unwrap()];
                match m.parent {
                    Some((p, cut)) => {
                        let l = limit.map_or(cut, |l| l.min(cut));
                        limit = Some(l);
                        if chain.len() == hops {
                            base = Some((p, l));
                            break;
                        }
                        chain.push(p);
                    }
                    None => break,
                }
            }
            let mut segments = Vec::new();
            for stream in Stream::ALL {
                let mut steps = BTreeSet::new();
                for owner in &chain {
                    for seg in &state.versions[owner].segments {
                        if seg.stream == stream {
                            let seen = rows[&seg.id]
                                .iter()
                                .filter(|&&s| visible(&state, id, *owner, s));
                            steps.extend(seen.copied());
                        }
                    }
                }
                if steps.is_empty() {
                    continue;
                }
                let steps: Vec<u64> = steps.into_iter().collect();
                let sid = SegmentId(next_seg);
                next_seg += 1;
                segments.push(SegmentMeta {
                    id: sid,
                    stream,
                    sealed: Some(SealMeta {
                        rows: steps.len() as u64,
                        first_step: steps.first().copied(),
                        last_step: steps.last().copied(),
                        bytes: 0,
                    }),
                    inline: true,
                });
                rows.insert(sid, steps);
            }
            let meta = std::sync::Arc::make_mut(state.versions.get_mut(&id).unwrap());
            meta.packs.push(PackMeta {
                level,
                base,
                segments,
            });
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
            // Brute force: every row of every version's own segments of the stream, kept if
            // visible from v (packs hold copies of such rows, never rows of their own).
            let mut want = BTreeSet::new();
            for meta in state.versions.values() {
                for seg in meta.segments.iter().filter(|s| s.stream == stream) {
                    want.extend(
                        rows[&seg.id]
                            .iter()
                            .copied()
                            .filter(|&s| s >= from && s <= to && visible(&state, v, meta.id, s)),
                    );
                }
            }
            let plan: Vec<_> = state.plan(v, stream, from, to).unwrap().collect();
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
            }
            // Every row once, in step order: a cursor that follows the plan yields sorted rows.
            prop_assert_eq!(order, want.into_iter().collect::<Vec<_>>());
            // Every segment a live version reads (any stream, any range) is one purge keeps.
            let needed = state.needed_segments(&[]).unwrap();
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
