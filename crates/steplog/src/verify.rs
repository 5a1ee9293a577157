//! `verify`: checks every checksum of every file of a store and reports each failure with its
//! file and byte offset. It reads only; it never repairs.

use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};
use crate::io::{self, OpenMode};
use crate::manifest::log::HEADER_LEN;
use crate::manifest::State;
use crate::segment::block::all_keys;
use crate::segment::reader::{read_head_block, HeadScan, Sealed, Tail};
use crate::store::{Store, SEGMENT_DIR};
use crate::types::SegmentId;

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// The byte offset of the damaged structure, when known.
    pub offset: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(
                f,
                "{} at byte offset {o}: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files checked.
    pub files: usize,
    /// Blocks whose checksums were checked and which were decoded.
    pub blocks: u64,
    /// Manifest edits checked.
    pub edits: u64,
    /// Failures: damaged or missing data.
    pub problems: Vec<Problem>,
    /// Observations that are not failures (an interrupted append at the end of a head
    /// segment, an unreferenced file).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when no check failed.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, file: PathBuf, err: &Error) {
        let (offset, message) = match err {
            Error::ChecksumMismatch {
                offset,
                expected,
                got,
                ..
            } => (
                Some(*offset),
                format!("checksum mismatch: stored {expected:#010x}, computed {got:#010x}"),
            ),
            Error::Corrupt { offset, reason, .. } => (Some(*offset), reason.clone()),
            other => (None, other.to_string()),
        };
        self.problems.push(Problem {
            file,
            offset,
            message,
        });
    }
}

impl Store {
    /// Checks every checksum of the manifest and of every segment file, and decodes every
    /// block. Damage is reported in the returned report, not as an `Err`; `Err` means the
    /// check itself could not run (for example, the directory cannot be listed).
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with(&crate::Quiet)
    }

    /// [`verify`](Self::verify), telling `progress` the segment files checked.
    pub fn verify_with(&self, progress: &dyn crate::Progress) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let state = self.verify_manifest(&mut report);
        let dir = self.dir().join(SEGMENT_DIR);
        let mut names: Vec<String> = self.fs().read_dir(&dir).at(&dir)?;
        names.sort();
        let mut referenced = std::collections::HashMap::new();
        if let Some(s) = &state {
            for v in s.versions() {
                // A version the manifest cannot give was reported by `verify_manifest`.
                let Ok(v) = v else { break };
                referenced.extend(v.all_segments().map(|s| (s.id, *s)));
            }
        }
        progress.begin("verify", names.len() as u64, crate::progress::Unit::Items);
        for (done, name) in names.iter().enumerate() {
            progress.update(done as u64);
            let path = dir.join(name);
            let id = name
                .strip_suffix(".seg")
                .filter(|n| n.len() == 16)
                .and_then(|n| n.parse::<u64>().ok())
                .map(SegmentId);
            let Some(id) = id else {
                report
                    .notes
                    .push(format!("{}: not a segment file, ignored", path.display()));
                continue;
            };
            report.files += 1;
            // An inline segment's bytes are in the manifest: a file of its id is not it.
            let meta = referenced.get(&id).filter(|m| !m.inline);
            if meta.is_none() && state.is_some() {
                self.verify_unreferenced(&mut report, &path, state.as_ref());
            }
            self.verify_segment(&mut report, path, meta);
        }
        let mut inline: Vec<_> = referenced.values().filter(|m| m.inline).collect();
        inline.sort_by_key(|m| m.id);
        if let Some(state) = &state {
            for m in inline {
                let path = self.inline_path(m.id);
                match state
                    .inline_segment(m.id)
                    .and_then(|b| Sealed::from_bytes(&path, b))
                {
                    Ok(s) => self.verify_sealed(&mut report, &path, &s, Some(m)),
                    Err(e) => report.problem(path, &e),
                }
            }
            self.verify_packs(&mut report, state);
        }
        let present: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut missing: Vec<SegmentId> = referenced
            .values()
            .filter(|m| !m.inline)
            .map(|m| m.id)
            .filter(|id| !present.contains(id.file_name().as_str()))
            .collect();
        missing.sort();
        for id in missing {
            let sealed = if referenced[&id].sealed.is_some() {
                "sealed"
            } else {
                "head"
            };
            report.problems.push(Problem {
                file: self.segment_path(id),
                offset: None,
                message: format!(
                    "{sealed} segment {id} referenced by the manifest is missing: its rows cannot be read"
                ),
            });
        }
        Ok(report)
    }

    /// Every pack holds exactly the rows of the versions it stands for (a pack with valid
    /// checksums but other rows would be what reads through it show).
    fn verify_packs(&self, report: &mut VerifyReport, state: &State) {
        for v in state.versions() {
            // A version the manifest cannot give was reported by `verify_manifest`.
            let Ok(v) = v else { break };
            for pack in &v.packs {
                let file = pack
                    .segments
                    .first()
                    .map_or_else(|| self.manifest_path(), |s| self.inline_path(s.id));
                match self.pack_mismatch(state, &v, pack) {
                    Ok(None) => {}
                    Ok(Some(why)) => report.problems.push(Problem {
                        file,
                        offset: None,
                        message: format!("the pack of {} (level {}): {why}", v.id, pack.level),
                    }),
                    Err(e) => report.problem(file, &e),
                }
            }
        }
    }

    fn verify_manifest(&self, report: &mut VerifyReport) -> Option<State> {
        let path = self.manifest_path();
        report.files += 1;
        let tables = self.dir().join(crate::manifest::table::TABLE_DIR);
        // A compaction in another process may delete the tables of the manifest just read:
        // read it again (as `refresh` does); a table still missing then is reported.
        let mut attempt = 0;
        let replayed = loop {
            let bytes = match io::read_all(self.fs(), &path) {
                Ok(b) => b,
                Err(e) => {
                    report.problem(path.clone(), &Error::io(&path, e));
                    return None;
                }
            };
            if bytes.len() < HEADER_LEN {
                report.problem(
                    path.clone(),
                    &Error::corrupt(&path, 0, "shorter than its header"),
                );
                return None;
            }
            let replayed = crate::manifest::log::replay(self.fs(), self.dir(), &path, &bytes);
            match &replayed {
                Err(Error::Io { path: p, source })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && p.starts_with(&tables)
                        && attempt < 8 =>
                {
                    attempt += 1;
                }
                _ => break replayed,
            }
        };
        if let Err(e) = self.state() {
            report.problem(path.clone(), &e);
            return None;
        }
        match replayed {
            Err(e) => {
                report.problem(path.clone(), &e);
                None
            }
            Ok((state, frames)) => {
                report.edits += frames.edits.len() as u64;
                // Every record of every table read, and the whole state checked as one.
                if let Err(e) = state.base().verify(&mut report.files) {
                    report.problem(path.clone(), &e);
                    return None;
                }
                match state.materialize() {
                    Ok(whole) => {
                        if let Err(reason) = whole.validate() {
                            report.problem(path.clone(), &Error::corrupt(&path, 0, reason));
                            return None;
                        }
                    }
                    Err(e) => {
                        report.problem(path.clone(), &e);
                        return None;
                    }
                }
                if frames.complete_bad_tail {
                    let at = (HEADER_LEN + frames.valid_end) as u64;
                    let reason = "the last edit fails its checksum (an unwritten page after a power loss, or damage); opening ignores it";
                    report.problem(path.clone(), &Error::corrupt(&path, at, reason));
                } else if frames.torn {
                    report.notes.push(format!(
                        "{}: incomplete last edit at byte offset {} (an interrupted append; cut on the next write)",
                        path.display(),
                        HEADER_LEN + frames.valid_end
                    ));
                }
                Some(state)
            }
        }
    }

    /// A file no version references: left by an interrupted purge (its version is purged)
    /// or by a writer killed between creating and recording it (no block): a note, which
    /// `gc` clears. One that holds rows of a version the manifest does not purge is rows the
    /// store has lost (edits a crash or a cut took): a problem.
    fn verify_unreferenced(
        &self,
        report: &mut VerifyReport,
        path: &std::path::Path,
        state: Option<&State>,
    ) {
        let holds = match Sealed::open(self.fs(), path) {
            Ok(s) => Some((s.header.version, s.stats().0)),
            Err(_) => self.fs().open(path, OpenMode::Read).ok().and_then(|f| {
                let mut scan = HeadScan::empty();
                scan.rescan(path, &*f).ok()?;
                let rows: u64 = scan.index.iter().map(|e| u64::from(e.nrows)).sum();
                scan.header.map(|h| (h.version, rows))
            }),
        };
        let purged = |v| {
            state
                .and_then(|s| s.meta(v).ok().flatten())
                .is_some_and(|m| m.purged)
        };
        match holds {
            Some((version, rows)) if rows > 0 && !purged(version) => report.problems.push(Problem {
                file: path.to_owned(),
                offset: None,
                message: format!(
                    "holds {rows} rows of {version} that the manifest does not record: the \
                     manifest lost edits (cut back or damaged); these rows are not readable"
                ),
            }),
            _ => report.notes.push(format!(
                "{}: not referenced by the manifest (left by an interrupted purge or writer; `gc` removes it)",
                path.display()
            )),
        }
    }

    fn verify_segment(
        &self,
        report: &mut VerifyReport,
        path: PathBuf,
        meta: Option<&crate::manifest::SegmentMeta>,
    ) {
        let sealed = meta.is_some_and(|m| m.sealed.is_some());
        let opened = Sealed::open(self.fs(), &path);
        match opened {
            Ok(s) => {
                self.verify_sealed(report, &path, &s, meta);
                return;
            }
            Err(err) if sealed => {
                report.problem(path.clone(), &err);
                return;
            }
            Err(_) => {}
        }
        let file = match self.fs().open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) => return report.problem(path.clone(), &Error::io(&path, e)),
        };
        let mut scan = HeadScan::empty();
        if let Err(err) = scan.rescan(&path, &*file) {
            return report.problem(path.clone(), &err);
        }
        if scan.tail == Tail::Sealed {
            // The footer validated during the scan but not when opened: report why.
            if let Err(err) = Sealed::open(self.fs(), &path) {
                report.problem(path.clone(), &err);
            }
            return;
        }
        if let Tail::TornComplete { offset } = scan.tail {
            let reason = "the last block fails its checksum (an unwritten page after a power loss, or damage); readers ignore it and a resume cuts it";
            report.problem(path.clone(), &Error::corrupt(&path, offset, reason));
        }
        if let Tail::Torn { offset } = scan.tail {
            report.notes.push(format!(
                "{}: head segment ends with an incomplete block at byte offset {offset} (an interrupted append; cut when the run is resumed)",
                path.display()
            ));
        }
        for e in &scan.index {
            report.blocks += 1;
            if let Err(err) = read_head_block(&path, &*file, e, &all_keys) {
                report.problem(path.clone(), &err);
            }
        }
    }

    /// Checks a sealed segment (a file's or an inline one's): it is the one the manifest
    /// records, its footer's aggregates decode, every block decodes and every aggregate is
    /// that of its rows.
    fn verify_sealed(
        &self,
        report: &mut VerifyReport,
        path: &std::path::Path,
        s: &Sealed,
        meta: Option<&crate::manifest::SegmentMeta>,
    ) {
        if let Some(reason) = meta.and_then(|m| crate::read::sealed_mismatch(s, m)) {
            report.problem(path.to_owned(), &Error::corrupt(path, 0, reason));
        }
        // Every part of the footer is decoded, and every aggregate must be the aggregate of
        // the rows it summarises: a footer with a valid checksum but made-up numbers
        // would otherwise be what every summary shows.
        let index = match s.check_footer().and_then(|()| s.index()) {
            Ok(index) => index,
            Err(err) => {
                report.problem(path.to_owned(), &err);
                // Without the footer's aggregates, the blocks are still read.
                if let Ok(index) = s.index() {
                    for e in index {
                        report.blocks += 1;
                        if let Err(err) = s.verify_block(e) {
                            report.problem(path.to_owned(), &err);
                        }
                    }
                }
                return;
            }
        };
        let footer_problem = |report: &mut VerifyReport, reason: String| {
            report.problem(
                path.to_owned(),
                &Error::corrupt(path, s.footer_offset(), reason),
            );
        };
        let mut computed = Vec::with_capacity(index.len());
        for (i, e) in index.iter().enumerate() {
            report.blocks += 1;
            match s.verify_block(e) {
                Ok(block) => {
                    let mut agg = crate::summary::Agg::default();
                    agg.add_block(&block, u64::MAX);
                    let stored = s.block_agg(i).ok().flatten();
                    if let Some(why) = stored.and_then(|a| disagreement(a, &agg)) {
                        let reason = format!(
                            "the footer's aggregate of block {i} (at byte offset {}) \
                             is not that of its rows: {why}",
                            e.offset
                        );
                        footer_problem(report, reason);
                    }
                    computed.push(agg);
                }
                Err(err) => report.problem(path.to_owned(), &err),
            }
        }
        if computed.len() < index.len() {
            return;
        }
        let merged = |blocks: &[crate::summary::Agg]| {
            let mut all = crate::summary::Agg::default();
            for b in blocks {
                all.merge_later(b);
            }
            all
        };
        for i in 0..index.len() {
            if let Ok(Some((end, group))) = s.group_at(i) {
                if let Some(why) = disagreement(group, &merged(&computed[i..end])) {
                    let reason = format!(
                        "the footer's aggregate of blocks {i} to {} is not that of their rows: \
                         {why}",
                        end - 1
                    );
                    footer_problem(report, reason);
                }
            }
        }
        if let Some(why) = s
            .agg()
            .ok()
            .and_then(|a| disagreement(a, &merged(&computed)))
        {
            let reason =
                format!("the footer's aggregate of the segment is not that of its rows: {why}");
            footer_problem(report, reason);
        }
    }
}

/// How a stored aggregate differs from the one computed from the rows, if it does: the
/// first key that differs (values compared to the bit, NaN included).
fn disagreement(stored: &crate::summary::Agg, computed: &crate::summary::Agg) -> Option<String> {
    if (stored.rows, stored.first_step, stored.last_step)
        != (computed.rows, computed.first_step, computed.last_step)
    {
        return Some(format!(
            "{} stored, {} in the blocks",
            crate::error::rows_text(stored.rows, stored.first_step, stored.last_step),
            crate::error::rows_text(computed.rows, computed.first_step, computed.last_step)
        ));
    }
    let keys = stored.keys.keys().chain(computed.keys.keys());
    for key in keys {
        let (a, b) = (
            stored.keys.get(key).map(elided),
            computed.keys.get(key).map(elided),
        );
        if format!("{a:?}") != format!("{b:?}") {
            return Some(match (&a, &b) {
                (None, _) => format!("key '{key}' is missing from it"),
                (_, None) => format!("key '{key}' is in it but in no row"),
                _ => format!("key '{key}' differs ({a:?} stored, {b:?} in the rows)"),
            });
        }
    }
    None
}

/// `s` with a long first or last string in the elided form segment format 3 writes (its step
/// only), so that a format 2 footer, which kept such strings whole, compares equal.
fn elided(s: &crate::summary::KeySummary) -> crate::summary::KeySummary {
    use crate::summary::{ELIDED_FIRST, ELIDED_LAST};
    let mut s = s.clone();
    for (bit, slot) in [(ELIDED_FIRST, &mut s.first), (ELIDED_LAST, &mut s.last)] {
        if let Some((_, crate::Value::Str(text))) = slot {
            if text.len() > crate::limits::AGG_STRING_BYTES {
                text.clear();
                s.elided |= bit;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::segment::footer;
    use crate::summary::Agg;
    use crate::types::Value;

    /// The only segment file under the store `dir`: its path, its bytes, where its footer
    /// starts, and the footer decoded.
    fn only_segment(
        dir: &std::path::Path,
    ) -> (std::path::PathBuf, Vec<u8>, usize, footer::Decoded) {
        let path = std::fs::read_dir(dir.join("segments"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        let at = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap()) as usize;
        let payload = &bytes[at + footer::FOOTER_HEADER_LEN..n - footer::TRAILER_LEN];
        let decoded = footer::decode_parts(payload, 32, at as u64).unwrap();
        (path, bytes, at, decoded)
    }

    /// Rewrites the footer of the only segment file under `dir` with `change` applied to its
    /// aggregates (block 0 and the segment's), its checksum recomputed: a footer that passes
    /// every checksum and says something the rows do not.
    fn craft(dir: &std::path::Path, change: &dyn Fn(&mut Agg)) {
        let (path, bytes, at, (index, mut blocks, mut agg, _)) = only_segment(dir);
        change(&mut blocks[0]);
        change(&mut agg);
        let mut out = bytes[..at].to_vec();
        let format = crate::segment::SEGMENT_FORMAT;
        out.extend(footer::encode(format, &index, &blocks, &agg, at as u64).unwrap());
        std::fs::write(&path, out).unwrap();
    }

    /// Found by attacking issue #12: aggregates with a valid checksum but made-up numbers
    /// (a sum, a last value, a key left out) were what `summary` showed, and `verify` said
    /// ok. `verify` now recomputes every aggregate from its rows.
    #[test]
    fn verify_finds_footer_aggregates_that_are_not_those_of_the_rows() {
        type Change<'a> = (&'a str, &'a dyn Fn(&mut Agg));
        let changes: [Change<'_>; 3] = [
            ("a sum", &|a| a.keys.get_mut("x").unwrap().sum = 1e9),
            ("a last value", &|a| {
                let k = a.keys.get_mut("x").unwrap();
                k.last = k.last.take().map(|(s, _)| (s, Value::F64(123.0)));
            }),
            ("a key left out", &|a| {
                a.keys.remove("y");
            }),
        ];
        for (what, change) in changes {
            let dir = tempfile::tempdir().unwrap();
            // A segment file (not inline in the manifest), to be rewritten.
            let files = || crate::Options::new().inline_segment_bytes(0);
            let store = files().open(dir.path()).unwrap();
            let mut w = store.run("r").start().unwrap();
            for step in 0..100u64 {
                w.log_at(step, [("x", step as f64), ("y", 1.0)]).unwrap();
            }
            w.finish().unwrap();
            assert!(store.verify().unwrap().is_ok());
            drop(store);
            craft(dir.path(), change);
            let store = files().open(dir.path()).unwrap();
            let report = store.verify().unwrap();
            // (The re-encoded footer may differ in size from what the manifest records, a
            // problem of its own; the one looked for is the disagreement.)
            let p = report
                .problems
                .iter()
                .find(|p| p.message.contains("is not that of its rows"))
                .unwrap_or_else(|| panic!("{what}: {:?}", report.problems));
            assert_eq!(
                p.file.extension().unwrap(),
                "seg",
                "{what}: names the segment file"
            );
            assert!(p.offset.is_some(), "{what}: and the footer's offset");
            assert!(
                p.message.contains("is not that of its rows"),
                "{what}: {}",
                p.message
            );
        }
    }

    /// Segment format 4: a footer whose checksums hold but whose aggregate of a group of
    /// blocks is not that of their rows (what a cut summary would show) is found by
    /// `verify`, naming the blocks.
    #[test]
    fn verify_finds_a_group_aggregate_that_is_not_that_of_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let files = || crate::Options::new().inline_segment_bytes(0).block_bytes(1);
        let store = files().open(dir.path()).unwrap();
        let mut w = store.run("r").start().unwrap();
        for step in 0..2_000u64 {
            w.log_at(step, [("x", step as f64)]).unwrap();
        }
        w.finish().unwrap();
        assert!(store.verify().unwrap().is_ok());
        drop(store);
        let (path, bytes, at, (index, blocks, agg, mut groups)) = only_segment(dir.path());
        assert!(
            groups.len() > 1,
            "{} blocks: more than one group",
            index.len()
        );
        groups[1].keys.get_mut("x").unwrap().sum += 1.0;
        let mut out = bytes[..at].to_vec();
        let lying = footer::encode_lying_groups(&index, &blocks, &agg, &groups, at as u64);
        out.extend(lying.unwrap());
        std::fs::write(&path, out).unwrap();
        let store = files().open(dir.path()).unwrap();
        let report = store.verify().unwrap();
        let g = footer::GROUP_BLOCKS;
        let want = format!(
            "aggregate of blocks {g} to {} is not that of their rows",
            2 * g - 1
        );
        // (The footer's length may differ from what the manifest records, a problem of its
        // own; the one looked for is the group's, and no block's aggregate is blamed.)
        let problems = &report.problems;
        assert!(
            problems.iter().any(|p| p.message.contains(&want)),
            "{problems:?}"
        );
        assert!(
            !problems
                .iter()
                .any(|p| p.message.contains("aggregate of block ")),
            "{problems:?}"
        );
    }
}
