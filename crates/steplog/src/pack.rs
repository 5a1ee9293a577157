//! Packing deep lineages: a run rewound after every crash of a fuzzing campaign is a chain
//! of thousands of short versions, and a read of its head would take every one of their
//! segments. A **pack** of an archived version copies the rows a read of it takes from the
//! first `n` hops of its ancestry (`Options::pack_fanout`) into one inline segment per
//! stream, recorded by one `pack` edit; a read through the version then takes the pack and
//! goes on at its base (`manifest/plan.rs`, [`Hop`]).
//!
//! The carry rule: when the first `n` hops of a version's read are all of one level (own
//! segments are level 0, a pack of level `l` hops is level `l + 1`), sealed, and hold at most
//! [`MAX_INLINE_SEGMENT_BYTES`] per stream, they become a pack of the next level, and the
//! rule is tried again one level up. Like a counter's carries, a read of a version at depth
//! `d` then takes at most `n - 1` hops per level, about `(n - 1) log_n d` in all, and each
//! row is copied once per level.
//!
//! Invariants: only an archived, unpurged version is packed (it never gains a row, so its
//! pack stays exact); a pack holds exactly the rows its hops give (`verify` checks it against
//! the versions' own segments); a pack is one manifest append, so a crash leaves it whole or
//! absent, and reads never depend on one existing.

use crate::error::{Error, Result};
use crate::limits::MAX_INLINE_SEGMENT_BYTES;
use crate::manifest::{
    plan_of, Cover, Edit, Hop, PackMeta, PackSegment, Piece, SealMeta, State, VersionMeta,
    MAX_PACK_LEVEL,
};
use crate::segment::builder::{BlockBuilder, BlockCut};
use crate::segment::encoder::EncodedBlock;
use crate::segment::writer::Image;
use crate::store::Store;
use crate::types::{Row, SegmentId, Stream, VersionId};

/// The level a hop reads at: 0 for a version's own segments, a pack's level for a pack.
fn hop_level(hop: &Hop) -> u32 {
    hop.pack().map_or(0, |p| p.level)
}

impl Store {
    /// Packs the lineage of archived version `v` as far as the carry rule goes; the number
    /// of packs written. A version that is not archived, is purged, or is in a manifest of a
    /// format before packs (5) is left as it is.
    pub(crate) fn pack_lineage(&self, v: VersionId) -> Result<usize> {
        let fanout = self.options().pack_fanout;
        if fanout < 2 {
            return Ok(0);
        }
        let mut written = 0;
        loop {
            // The state is dropped before the transaction (which would copy it if held).
            let Some((level, hops)) = self.pack_candidate(&*self.state()?, v, fanout)? else {
                return Ok(written);
            };
            let Some((base, images)) = self.pack_images(v, &hops)? else {
                return Ok(written);
            };
            drop(hops);
            let added = self.transact(|state| {
                let meta = state.meta_of(v)?;
                // Checked again under the lock: a purge or another pack may have come since.
                let wider = meta.packs.iter().any(|p| p.level > level);
                if !state.takes_packs() || !meta.archived || meta.purged || wider {
                    return Ok((Vec::new(), false));
                }
                Ok((vec![pack_edit(state, v, level + 1, base, &images)], true))
            })?;
            if !added {
                return Ok(written);
            }
            written += 1;
        }
    }

    /// The level and hops of `v`'s next pack, if the carry rule makes one: its first
    /// `fanout` hops, all of one level, sealed and small enough.
    fn pack_candidate(
        &self,
        state: &State,
        v: VersionId,
        fanout: usize,
    ) -> Result<Option<(u32, Vec<Hop>)>> {
        if !state.takes_packs() {
            return Ok(None);
        }
        let meta = state.meta_of(v)?;
        if !meta.archived || meta.purged {
            return Ok(None);
        }
        // The walk stops at the first hop of another level: most starts find no pack due
        // within a few hops, not `fanout`.
        let mut hops: Vec<Hop> = Vec::with_capacity(fanout);
        for hop in state.ancestry_of(meta).take(fanout) {
            let hop = hop?;
            if hops
                .first()
                .is_some_and(|h| hop_level(h) != hop_level(&hop))
            {
                return Ok(None);
            }
            hops.push(hop);
        }
        let level = hop_level(&hops[0]);
        if hops.len() < fanout || level >= MAX_PACK_LEVEL {
            return Ok(None);
        }
        // A head segment may still grow (a crashed writer's, never sealed): not packed.
        if hops
            .iter()
            .any(|h| h.segments().iter().any(|s| s.sealed.is_none()))
        {
            return Ok(None);
        }
        for stream in Stream::ALL {
            let bytes: u64 = plan_of(hops.clone(), stream, 0, u64::MAX)
                .map(|p| p.segment.sealed.map_or(0, |s| s.bytes))
                .sum();
            if bytes > MAX_INLINE_SEGMENT_BYTES as u64 {
                return Ok(None);
            }
        }
        Ok(Some((level, hops)))
    }

    /// The pack of `hops` (the first hops of `v`'s read, newest first): where the read goes
    /// on below them, and one segment image per stream with rows. `None` if an image turns
    /// out larger than an inline segment may be.
    #[allow(clippy::type_complexity)]
    fn pack_images(
        &self,
        v: VersionId,
        hops: &[Hop],
    ) -> Result<Option<(Option<(VersionId, u64)>, Vec<Image>)>> {
        let last = &hops[hops.len() - 1];
        let base = last
            .below()
            .map(|(b, step)| (b, last.limit.map_or(step, |l| l.min(step))));
        let level = self.options().compression_level;
        let mut images = Vec::new();
        for stream in Stream::ALL {
            let rows = self.plan_rows(plan_of(hops.to_vec(), stream, 0, u64::MAX))?;
            if rows.is_empty() {
                continue;
            }
            let cut = self.options().block_cut(stream);
            let image =
                image_of(stream, v, rows, (level, cut)).map_err(|e| Error::io(self.dir(), e))?;
            if image.info.bytes as usize > MAX_INLINE_SEGMENT_BYTES {
                return Ok(None);
            }
            images.push(image);
        }
        Ok(Some((base, images)))
    }
}

/// The sealed segment of `rows` (in step order) of `stream`, owned by `version`, in blocks
/// cut as a writer cuts them ([`BlockCut`]).
fn image_of(
    stream: Stream,
    version: VersionId,
    rows: Vec<Row>,
    (level, cut): (i32, BlockCut),
) -> std::io::Result<Image> {
    let mut buf = BlockBuilder::default();
    let mut blocks = Vec::new();
    for row in rows {
        buf.start_row(row.step);
        for (key, value) in row.fields {
            buf.set(&key, value).map_err(|r| {
                // A row read back from the store passes every rule it passed when logged.
                std::io::Error::other(format!(
                    "a stored row at step {} is refused: {r:?}",
                    row.step
                ))
            })?;
        }
        buf.close_row();
        if buf.is_full(cut) {
            blocks.push(EncodedBlock::encode(&buf.take_closed(), level)?);
        }
    }
    if buf.has_closed() {
        blocks.push(EncodedBlock::encode(&buf.take_closed(), level)?);
    }
    Image::new(stream, version, blocks)
}

/// The `pack` edit of `images` as a pack of `level` of version `v` going on at `base`, its
/// segments taking the next ids of `state`'s counter (under `LOCK`).
fn pack_edit(
    state: &State,
    v: VersionId,
    level: u32,
    base: Option<(VersionId, u64)>,
    images: &[Image],
) -> Edit {
    let segments = (state.next_segment..)
        .zip(images)
        .map(|(id, image)| PackSegment {
            stream: image.stream(),
            segment: SegmentId(id),
            seal: seal_meta(image),
            bytes: image.with_id(SegmentId(id)),
        })
        .collect();
    Edit::Pack {
        version: v,
        level,
        base,
        segments,
    }
}

fn seal_meta(image: &Image) -> SealMeta {
    SealMeta {
        rows: image.info.rows,
        first_step: image.info.first_step,
        last_step: image.info.last_step,
        bytes: image.info.bytes,
    }
}

impl Store {
    /// Why `pack` of version `meta` does not hold exactly the rows it stands for, if it does
    /// not: those a read of the version takes from its own segments and its ancestors' down
    /// to the pack's base (walked through own segments only), which the walk must reach at
    /// the recorded cutoff. `Err` only where a segment cannot be read.
    pub(crate) fn pack_mismatch(
        &self,
        state: &State,
        meta: &VersionMeta,
        pack: &PackMeta,
    ) -> Result<Option<String>> {
        let mut hops = Vec::new();
        let mut reached = pack.base.is_none();
        for hop in state.ancestry_unpacked(meta.id) {
            let hop = hop?;
            let next = hop
                .below()
                .map(|(b, step)| (b, hop.limit.map_or(step, |l| l.min(step))));
            hops.push(hop);
            if pack.base.is_some() && next == pack.base {
                reached = true;
                break;
            }
            if next.is_none() || next.is_some_and(|(b, _)| pack.base.is_some_and(|(p, _)| b < p)) {
                break;
            }
        }
        if let (false, Some((b, cut))) = (reached, pack.base) {
            return Ok(Some(format!(
                "it goes on at {b} at step {cut}, which {} does not reach on its lineage",
                meta.id
            )));
        }
        for stream in Stream::ALL {
            let want = self.plan_rows(plan_of(hops.clone(), stream, 0, u64::MAX))?;
            let packed = pack
                .segments
                .iter()
                .filter(|s| s.stream == stream)
                .map(|s| Piece {
                    version: meta.id,
                    segment: *s,
                    hi: u64::MAX,
                    cover: Cover::Whole,
                });
            let got = self.plan_rows(packed)?;
            if let Some(why) = row_difference(&got, &want) {
                return Ok(Some(format!(
                    "its {} stream is not the rows of the {} versions it stands for: {why}",
                    stream.name(),
                    hops.len()
                )));
            }
        }
        Ok(None)
    }
}

/// Where two row lists differ, if they do (floats compared to the bit, NaN included).
fn row_difference(got: &[Row], want: &[Row]) -> Option<String> {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let fields = g.fields.len() == w.fields.len()
            && g.fields
                .iter()
                .zip(&w.fields)
                .all(|((ka, va), (kb, vb))| ka == kb && va.same_bits(vb));
        if g.step != w.step || !fields {
            return Some(format!(
                "row {i} is step {} with {} keys, the versions give step {} with {} keys",
                g.step,
                g.fields.len(),
                w.step,
                w.fields.len()
            ));
        }
    }
    (got.len() != want.len()).then(|| {
        format!(
            "{} rows packed, the versions give {}",
            got.len(),
            want.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, Query, Value};

    /// A run rewound `depth` times, 2 rows a version (steps 2k+1 and 2k+2 from version k).
    fn deep(dir: &std::path::Path, fanout: usize, depth: u64) -> Store {
        let store = Options::new().pack_fanout(fanout).open(dir).unwrap();
        for k in 0..depth {
            let start = if k == 0 {
                store.run("deep")
            } else {
                store.run("deep").resume_from(2 * k)
            };
            let mut w = start.start().unwrap();
            for step in (2 * k + u64::from(k > 0))..=2 * k + 2 {
                w.log_at(step, [("x", (k * 1_000 + step) as f64)]).unwrap();
            }
            w.finish().unwrap();
        }
        store
    }

    fn rows(store: &Store, reference: &str) -> Vec<(u64, f64)> {
        store
            .history(reference, &Query::new())
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.step, r.fields["x"].as_f64().unwrap())
            })
            .collect()
    }

    /// Packed by levels, a head 1,000 rewinds deep reads in a few dozen pieces (not 1,000),
    /// each row copied once per level, and every version reads what it read unpacked.
    #[test]
    fn a_deep_lineage_reads_in_few_pieces_and_every_version_reads_the_same() {
        let (packed, flat) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let depth = 1_000;
        let (p, f) = (deep(packed.path(), 4, depth), deep(flat.path(), 0, depth));
        let state = p.state().unwrap();
        let head = state.head("deep").unwrap().unwrap();
        let pieces = state
            .plan(head, Stream::History, 0, u64::MAX)
            .unwrap()
            .count();
        // 4^4 < 1,000 < 4^5: at most 3 hops per level at levels 0 to 4, and the root's.
        assert!(pieces <= 3 * 5 + 1, "{pieces} pieces");
        let unpacked = f.state().unwrap();
        let flat_head = unpacked.head("deep").unwrap().unwrap();
        assert_eq!(
            unpacked
                .plan(flat_head, Stream::History, 0, u64::MAX)
                .unwrap()
                .count(),
            depth as usize
        );
        let copied: u64 = state
            .versions()
            .map(|m| m.unwrap())
            .flat_map(|m| m.packs.clone())
            .flat_map(|p| p.segments)
            .map(|s| s.sealed.unwrap().rows)
            .sum();
        let total = 2 * depth + 1;
        assert!(copied <= total * 5, "{copied} rows copied for {total}");
        assert!(state
            .versions()
            .any(|m| m.unwrap().packs.iter().any(|p| p.level >= 4)));
        drop(state);
        for (a, b) in p.versions().unwrap().iter().zip(f.versions().unwrap()) {
            assert_eq!(
                rows(&p, &a.id.to_string()),
                rows(&f, &b.id.to_string()),
                "{}",
                a.id
            );
        }
        assert_eq!(
            p.summary("deep").unwrap().keys,
            f.summary("deep").unwrap().keys
        );
        assert_eq!(rows(&p, "deep?_step=777"), rows(&f, "deep?_step=777"));
        assert!(p.verify().unwrap().is_ok());
    }

    /// Purging a packed version that a fork still reads (below the version's last step)
    /// drops its packs (their rows are more than the purge keeps) and keeps what the fork
    /// reads: the fork reads the same, the versions above read the same, verify is clean.
    #[test]
    fn a_purged_version_loses_its_packs_and_what_reads_through_it_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = deep(dir.path(), 2, 8);
        let state = store.state().unwrap();
        let packed = store
            .versions()
            .unwrap()
            .into_iter()
            .map(|v| state.meta_of(v.id).unwrap())
            .filter(|m| !m.packs.is_empty())
            .map(|m| m.id)
            .nth(1)
            .expect("a packed version");
        drop(state);
        store.run("f").fork_from(packed, 3).apply().unwrap();
        let before: Vec<_> = store
            .versions()
            .unwrap()
            .iter()
            .map(|v| rows(&store, &v.id.to_string()))
            .collect();
        store.purge(packed).unwrap();
        let state = store.state().unwrap();
        assert!(state.meta_of(packed).unwrap().packs.is_empty());
        drop(state);
        for (v, want) in store.versions().unwrap().iter().zip(&before) {
            if v.id != packed {
                assert_eq!(&rows(&store, &v.id.to_string()), want, "{}", v.id);
            }
        }
        assert_eq!(rows(&store, "f").len(), 4, "steps 0 to 3");
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        // Compacted (the purged packs' bytes as tombstones), it reads and verifies the same.
        drop(store);
        let store = Options::new()
            .manifest_compaction_bytes(1)
            .pack_fanout(2)
            .open(dir.path())
            .unwrap();
        store.run("g").fork_from("f", 2).apply().unwrap();
        assert_eq!(rows(&store, "f").len(), 4);
        assert!(store.verify().unwrap().is_ok());
    }

    /// A pack whose checksums are good but whose rows are not those of the versions it stands
    /// for is what `verify` reports, naming the pack.
    #[test]
    fn verify_reports_a_pack_that_is_not_its_versions_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = deep(dir.path(), 0, 6);
        let state = store.state().unwrap();
        let lineage: Vec<_> = store
            .versions()
            .unwrap()
            .into_iter()
            .map(|v| v.id)
            .collect();
        // A pack of the fourth version standing for its 2 newest hops, with one value
        // changed (a valid segment, every checksum good).
        let hops: Vec<Hop> = state
            .ancestry(lineage[3])
            .take(2)
            .map(|h| h.unwrap())
            .collect();
        let mut got = store
            .plan_rows(plan_of(hops.clone(), Stream::History, 0, u64::MAX))
            .unwrap();
        got[1].fields.insert("x".into(), Value::F64(-1.0));
        let wrong = vec![image_of(
            Stream::History,
            lineage[3],
            got,
            (3, store.options().block_cut(Stream::History)),
        )
        .unwrap()];
        let base = hops[1].below();
        drop(state);
        store
            .transact(|state| Ok((vec![pack_edit(state, lineage[3], 1, base, &wrong)], ())))
            .unwrap();
        let report = store.verify().unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.message.contains(&format!("the pack of {}", lineage[3]))),
            "{:?}",
            report.problems
        );
    }
}
