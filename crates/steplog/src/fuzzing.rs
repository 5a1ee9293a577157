//! Entry points for the fuzz targets in `fuzz/` and for replaying their corpus as a normal
//! test (`tests/fuzz_corpus.rs`). Not a stable API. Each function must return normally for
//! every input: a panic is a bug.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the finding

use std::path::Path;
use std::sync::Arc;

use crate::io::{CrashMode, FileSystem, OpenMode, SimFs};
use crate::manifest::log::{decode_frames, HEADER_LEN};
use crate::manifest::{Edit, State};
use crate::segment::reader::{read_head_block, HeadScan, Sealed};
use crate::segment::{block, footer};
use crate::{Options, Query, Store};

/// The block decoder, on a frame whose checksums are not checked (to reach the decoder);
/// then as readers take it, its parts' crcs checked: one key, and its steps alone.
pub fn block(data: &[u8]) {
    let first_key = block::decode_keys(data, &block::all_keys, false)
        .ok()
        .and_then(|b| b.columns.first().map(|c| c.key.clone()));
    if let Some(key) = first_key {
        let _ = block::decode_keys(data, &|k| k == key, true);
    }
    for hi in [0, 1, 1 << 20, u64::MAX] {
        let _ = block::steps_at_most(data, hi, true);
        let _ = block::steps_at_most(data, hi, false);
    }
    if let Ok(b) = block::decode(data) {
        let rows = b.into_rows(|_| true);
        // Whatever decodes must encode again and decode to the same rows.
        let frame = block::encode(&block::Block::from_rows(&rows), 1).expect("encode");
        let again = block::decode(&frame)
            .expect("re-decode")
            .into_rows(|_| true);
        assert_eq!(format!("{rows:?}"), format!("{again:?}"));
    }
}

/// The footer payload decoders (sparse index and aggregates), checksums bypassed: the
/// input as a format 4 payload (its table and every part) and as a format 2 or 3 one.
pub fn footer(data: &[u8]) {
    let _ = footer::decode_parts(data, 32, data.len() as u64 * 4);
    let _ = footer::decode_one(data, 32, data.len() as u64 * 4);
}

/// A whole segment file: opened as sealed, scanned as a head, every block read.
pub fn segment(data: &[u8]) {
    let fs = SimFs::new();
    let path = Path::new("/s/0000000000000001.seg");
    fs.create_dir_all(Path::new("/s")).expect("dir");
    let f = fs.open(path, OpenMode::CreateTruncate).expect("create");
    f.write_all_at(data, 0).expect("write");
    if let Ok(s) = Sealed::open(&fs, path) {
        let _ = s.check_footer();
        if let Ok(index) = s.index() {
            for e in index {
                let _ = s.block(e, &block::all_keys);
            }
        }
    }
    let mut scan = HeadScan::empty();
    if scan.rescan(path, &*f).is_ok() {
        for e in &scan.index {
            let _ = read_head_block(path, &*f, e, &block::all_keys);
        }
    }
}

/// Manifest frames, then each edit applied to a state; and the input as one JSON edit.
pub fn manifest(data: &[u8]) {
    if let Ok(frames) = decode_frames(Path::new("/m"), data, HEADER_LEN as u64) {
        let mut edits = frames.edits.iter().map(|(_, e)| e).peekable();
        let mut state = match edits.peek() {
            Some(Edit::Snapshot { state }) => {
                edits.next();
                State::from(state.clone())
            }
            _ => State::default(),
        };
        for e in edits {
            if state.apply(e).is_err() {
                break;
            }
        }
    }
    // The input as a binary `batch` payload, applied to an empty state.
    if let Ok(runs) = crate::manifest::batch::decode(data) {
        let _ = State::default().apply(&Edit::Batch { runs });
    }
    if let Ok(edit) = serde_json::from_slice::<Edit>(data) {
        // A snapshot as a first frame (taken whole, unchecked until `validate`), any other
        // edit applied to an empty state.
        let state = match &edit {
            Edit::Snapshot { state } => State::from(state.clone()),
            other => {
                let mut s = State::default();
                let _ = s.apply(other);
                s
            }
        };
        // Even a state that fails validation (as a snapshot loaded from disk would) must not
        // make the lineage walks loop.
        let _ = state.validate();
        let ids: Vec<_> = state
            .versions()
            .filter_map(|m| m.ok().map(|m| m.id))
            .collect();
        for v in ids {
            for stream in crate::types::Stream::ALL {
                let _ = state.plan(v, stream, 0, u64::MAX).map(|p| p.count());
            }
        }
        let _ = state.needed_segments(&[]);
        // The input as the snapshot of a store, as the first frame of its manifest.
        if let Edit::Snapshot { .. } = edit {
            store_over_manifest(
                &crate::manifest::log::encode_frame(&edit, crate::manifest::log::FORMAT)
                    .expect("frame"),
            );
        }
    }
    // The frames as a whole store's manifest: whatever state it describes that opens (it
    // passed `State::validate`) must list, draw and read without a panic or an endless loop.
    store_over_manifest(data);
}

/// A manifest table file: opened, every record scanned, keys looked up; then the same bytes
/// as the one table of a store's base, whose runs and versions are listed and read.
pub fn table(data: &[u8]) {
    use crate::manifest::table::{table_path, Table};
    let fs = SimFs::new();
    let dir = Path::new("/store");
    let path = table_path(dir, 1);
    fs.create_dir_all(path.parent().expect("a parent"))
        .expect("dir");
    fs.create_dir_all(&dir.join("segments")).expect("dir");
    let f = fs.open(&path, OpenMode::CreateTruncate).expect("create");
    f.write_all_at(data, 0).expect("write");
    if let Ok(t) = Table::open(&fs, dir, 1) {
        let keys: Vec<Vec<u8>> = t.scan(b"").filter_map(|r| r.ok().map(|(k, _)| k)).collect();
        for k in keys.iter().take(64) {
            let _ = t.find(&crate::manifest::table::Probe::new(k));
        }
        let _ = t.find(&crate::manifest::table::Probe::new(b"r"));
        let _ = t.find(&crate::manifest::table::Probe::new(b"v"));
        // Merged alone (its blocks copied) and with itself (every key in both: record by
        // record), keeping and dropping tombstones.
        for (id, tables, drop) in [(7, vec![&t], false), (8, vec![&t, &t], true)] {
            let _ = crate::manifest::table::merge(&fs, dir, id, &tables, drop);
        }
    }
    let base = Edit::Base {
        tables: vec![1],
        next_version: 1 << 20,
        next_segment: 1 << 20,
        next_table: 2,
    };
    let frame =
        crate::manifest::log::encode_frame(&base, crate::manifest::log::FORMAT).expect("frame");
    let m = fs
        .open(&dir.join("MANIFEST"), OpenMode::CreateTruncate)
        .expect("create");
    let mut bytes = crate::manifest::log::header(1).to_vec();
    bytes.extend_from_slice(&frame);
    m.write_all_at(&bytes, 0).expect("write");
    read_everything(&fs, dir);
}

fn store_over_manifest(frames: &[u8]) {
    let fs = SimFs::new();
    let dir = Path::new("/store");
    fs.create_dir_all(&dir.join("segments")).expect("dir");
    let f = fs
        .open(&dir.join("MANIFEST"), OpenMode::CreateTruncate)
        .expect("create");
    let mut bytes = crate::manifest::log::header(1).to_vec();
    bytes.extend_from_slice(frames);
    f.write_all_at(&bytes, 0).expect("write");
    read_everything(&fs, dir);
}

/// Opens the store in `dir` and reads every run and version every way: no panic, no
/// endless loop, whatever its manifest holds.
fn read_everything(fs: &SimFs, dir: &Path) {
    let Ok(store) = Options::new().file_system(Arc::new(fs.clone())).open(dir) else {
        return;
    };
    if let Ok(runs) = store.runs() {
        for r in runs {
            let _ = store.lineage(&r.name);
            let _ = store.summary(&r.name);
            if let Ok(h) = store.history(&r.name, &Query::new()) {
                let _ = h.count();
            }
        }
    }
    if let Ok(versions) = store.versions() {
        for v in versions {
            let _ = store.lineage(v.id);
        }
    }
    let _ = store.verify();
}

fn open(fs: &SimFs) -> Option<Store> {
    Options::new()
        .durability(crate::Durability::PowerLoss)
        .segment_bytes(600)
        .block_bytes(100)
        .manifest_compaction_bytes(2048)
        .file_system(Arc::new(fs.clone()))
        .open(Path::new("/store"))
        .ok()
}

/// A sequence of operations read from the bytes (log, commit, finish, rewind, fork, purge or
/// delete, reopen, crash in three modes), on the crash-simulating file system. Errors are allowed;
/// panics are not, and after every crash the store must verify clean.
pub fn ops(data: &[u8]) {
    let mut fs = SimFs::new();
    let Some(mut store) = open(&fs) else { return };
    let mut writer: Option<crate::RunWriter> = None;
    let names = ["a", "b"];
    for chunk in data.chunks(3) {
        let (op, a, b) = (
            chunk[0] % 8,
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        );
        let name = names[(a % 2) as usize];
        match op {
            0 => {
                if writer.is_none() {
                    writer = store.run(name).start().ok();
                }
                if let Some(w) = writer.as_mut() {
                    let start = w.next_step(crate::Stream::History);
                    for i in 0..u64::from(b % 40) {
                        let v = if i % 5 == 0 {
                            f64::NAN
                        } else {
                            (a as f64) * i as f64
                        };
                        let _ = w.log_at(
                            start + i,
                            [
                                ("x", crate::Value::F64(v)),
                                ("k", crate::Value::I64(i as i64)),
                            ],
                        );
                    }
                }
            }
            1 => {
                if let Some(w) = writer.as_mut() {
                    let _ = w.commit();
                }
            }
            2 => {
                if let Some(w) = writer.take() {
                    let _ = w.finish();
                }
            }
            3 => {
                let _ = store.run(name).resume_from(u64::from(b)).apply();
            }
            4 => {
                let _ = store
                    .run(&format!("f{a}{b}"))
                    .fork_from(name, u64::from(b))
                    .apply();
            }
            // The low bit chooses: a delete, or a purge of any of the first eight versions.
            5 if b % 2 == 1 => {
                let _ = store.delete(name);
            }
            5 => {
                let _ = store.purge(crate::VersionId(u64::from((b / 2) % 8)));
            }
            6 => {
                writer = None;
                match open(&fs) {
                    Some(s) => store = s,
                    None => return,
                }
            }
            _ => {
                let mode = match b % 3 {
                    0 => CrashMode::Process,
                    1 => CrashMode::PowerLoss,
                    _ => CrashMode::PowerLossTorn { seed: u64::from(a) },
                };
                let image = fs.crash(mode);
                writer = None;
                fs = image;
                let Some(s) = open(&fs) else {
                    panic!("a crash image does not open");
                };
                store = s;
                let report = store.verify().expect("verify");
                assert!(report.is_ok(), "after a crash: {:?}", report.problems);
            }
        }
        for run in store
            .runs()
            .map(|r| r.into_iter().map(|r| r.name).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if let Ok(h) = store.history(&run, &Query::new()) {
                for row in h {
                    let _ = row;
                }
            }
            let _ = store.summary(&run);
        }
    }
}

/// Encodes rows as a block frame (for the criterion benches).
pub fn encode_block(rows: &[crate::Row], level: i32) -> Vec<u8> {
    block::encode(&block::Block::from_rows(rows), level).expect("encode")
}

/// Decodes a block frame into rows (for the criterion benches).
pub fn decode_block(frame: &[u8]) -> Vec<crate::Row> {
    block::decode(frame).expect("decode").into_rows(|_| true)
}
