//! A damaged, lost or crafted MANIFEST is reported, never taken for an empty or smaller store,
//! and never made worse (issue #11, items 4, 5 and 8).
//!
//! What broke: after `rm MANIFEST` or `truncate -s 1000000 MANIFEST`, `runs` showed nothing and
//! exited 0, that read cut MANIFEST to 24 bytes, `verify` said ok, and the next `steplog log`
//! reused segment id 1 and overwrote its file. Readers shrank a manifest whose last byte was
//! zeroed. A checksum-valid manifest whose run head or parent was missing panicked, and a
//! parent cycle looped forever.

mod common;

use std::path::Path;

use common::{cli_in, cli_no_panic, manifest_bytes, rows, segment_files, store_image};
use serde_json::json;
use steplog::{Error, Options, Store};

/// A store of a few finished runs, one with a rewind, with small segments so that there are
/// several files.
fn make_store(dir: &Path, runs: usize) {
    let store = Options::new().segment_bytes(2_000).open(dir).unwrap();
    for r in 0..runs {
        let mut w = store.run(&format!("r{r}")).start().unwrap();
        for step in 0..300u64 {
            w.log_at(step, [("loss", step as f64 * 0.5), ("i", step as f64)])
                .unwrap();
        }
        w.finish().unwrap();
    }
    store.run("r0").resume_from(100).apply().unwrap();
}

fn assert_corrupt_manifest(dir: &Path, what: &str) {
    match Store::open(dir) {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("MANIFEST"),
                "{what}: error names the manifest: {msg}"
            );
        }
        other => panic!("{what}: expected a corrupt manifest, got {other:?}"),
    }
    for args in [&["runs"][..], &["history", "r1"], &["verify"]] {
        let out = cli_no_panic(dir, args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: steplog {args:?} must fail"
        );
    }
}

#[test]
fn a_missing_manifest_beside_segments_is_damage_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path(), 3);
    let before = store_image(dir.path());
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    assert_corrupt_manifest(dir.path(), "MANIFEST removed");
    // Nothing was created or overwritten: a new run is refused too.
    let out = cli_in(dir.path(), &["log", "newrun"], "{\"x\": 1}\n");
    assert_eq!(out.status.code(), Some(1));
    let mut after = store_image(dir.path());
    after.remove(&dir.path().join("LOCK"));
    let mut expected = before;
    expected.remove(&dir.path().join("MANIFEST"));
    expected.remove(&dir.path().join("LOCK"));
    assert_eq!(after, expected, "no file of the store changed");
}

#[test]
fn a_manifest_cut_inside_its_base_or_header_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny compaction threshold: the manifest is compacted, so it starts with the base of
    // a compaction (the tables that hold its state).
    let store = Options::new()
        .manifest_compaction_bytes(512)
        .open(dir.path())
        .unwrap();
    for r in 0..40 {
        let mut w = store.run(&format!("r{r}")).start().unwrap();
        w.log_at(0, [("x", 1.0)]).unwrap();
        w.finish().unwrap();
    }
    drop(store);
    let path = dir.path().join("MANIFEST");
    let whole = std::fs::read(&path).unwrap();
    let snapshot_len = u32::from_le_bytes(whole[24..28].try_into().unwrap()) as usize;
    let first = String::from_utf8_lossy(&whole[36..36 + snapshot_len]).into_owned();
    assert!(
        first.contains("\"op\":\"base\"") && !first.contains("\"tables\":[]"),
        "the manifest was compacted into tables: {first}"
    );
    for cut in [
        0,
        10,
        24,
        30,
        24 + 12 + snapshot_len / 2,
        24 + 12 + snapshot_len - 1,
    ] {
        std::fs::write(&path, &whole[..cut]).unwrap();
        assert_corrupt_manifest(dir.path(), &format!("MANIFEST cut at {cut}"));
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            cut,
            "a reader never shortens the manifest"
        );
    }
}

#[test]
fn a_manifest_cut_back_at_an_edit_never_makes_a_writer_overwrite_a_segment() {
    // A power loss at Durability::Process may keep segment files whose manifest edits were
    // lost. Simulated here by restoring an older MANIFEST over a store that grew since.
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path(), 1);
    let old_manifest = std::fs::read(dir.path().join("MANIFEST")).unwrap();
    {
        // Segment files (inline segments are lost with the edits that carry them).
        let store = Options::new()
            .segment_bytes(2_000)
            .inline_segment_bytes(0)
            .open(dir.path())
            .unwrap();
        let mut w = store.run("later").start().unwrap();
        for step in 0..300u64 {
            w.log_at(step, [("y", step as f64)]).unwrap();
        }
        w.finish().unwrap();
    }
    let files_before = store_image(&dir.path().join("segments"));
    std::fs::write(dir.path().join("MANIFEST"), &old_manifest).unwrap();

    let store = Options::new()
        .segment_bytes(2_000)
        .open(dir.path())
        .unwrap();
    let mut w = store.run("new").start().unwrap();
    for step in 0..300u64 {
        w.log_at(step, [("z", step as f64)]).unwrap();
    }
    w.finish().unwrap();
    let files_after = store_image(&dir.path().join("segments"));
    for (path, bytes) in &files_before {
        assert_eq!(
            files_after.get(path),
            Some(bytes),
            "{} was overwritten",
            path.display()
        );
    }
    assert_eq!(rows(&store, "new").len(), 300);
    assert_eq!(rows(&store, "r0").len(), 101);
    // The orphaned files of the forgotten run are reported as rows the store lost, not taken.
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.message.contains("the manifest does not record")),
        "{:?}",
        report.problems
    );
    assert!(!store.gc().unwrap().kept.is_empty(), "gc keeps them");
}

#[test]
fn readers_never_modify_a_store_with_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path(), 2);
    // A crashed writer: committed rows, then a torn block at the end of its head segment.
    {
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.run("crashed").start().unwrap();
        for step in 0..50u64 {
            w.log_at(step, [("a", step as f64)]).unwrap();
        }
        w.commit().unwrap();
        std::mem::forget(w); // leaves the run crashed, as kill -9 would
    }
    let heads: Vec<_> = segment_files(dir.path());
    let last = heads.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    bytes.extend_from_slice(b"SLB2\x40\x00\x00\x00 torn");
    std::fs::write(last, &bytes).unwrap();
    // And an interrupted manifest append: a frame header promising more bytes than follow.
    let m = dir.path().join("MANIFEST");
    let mut mb = std::fs::read(&m).unwrap();
    mb.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
    std::fs::write(&m, &mb).unwrap();

    let before = store_image(dir.path());
    let out_dir = tempfile::tempdir().unwrap();
    let export = out_dir.path().join("e.csv");
    let export = export.to_str().unwrap();
    let chart = out_dir.path().join("c.svg");
    let chart = chart.to_str().unwrap();
    for args in [
        &["runs"][..],
        &["runs", "--all", "--format", "json"],
        &["history", "crashed"],
        &["history", "v1", "--format", "csv"],
        &["summary", "r0"],
        &["lineage", "r0"],
        &["verify"],
        &["export", "crashed", "--format", "csv", "-o", export],
        &["plot", "r0", "--keys", "loss", "-o", chart],
    ] {
        let out = cli_no_panic(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "steplog {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            store_image(dir.path()),
            before,
            "steplog {args:?} changed the store"
        );
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(rows(&store, "crashed").len(), 50);
    let report = store.verify().unwrap();
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("MANIFEST") && n.contains("incomplete")),
        "verify notes the torn manifest tail: {:?}",
        report.notes
    );
    assert!(
        report.notes.iter().any(|n| n.contains("incomplete block")),
        "verify notes the torn head: {:?}",
        report.notes
    );
    assert_eq!(store_image(dir.path()), before);
}

#[test]
fn a_zeroed_last_manifest_byte_is_reported_and_left_alone_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path(), 2);
    let m = dir.path().join("MANIFEST");
    let mut bytes = std::fs::read(&m).unwrap();
    let n = bytes.len();
    bytes[n - 1] = 0;
    std::fs::write(&m, &bytes).unwrap();
    for args in [&["history", "r1"][..], &["runs"], &["summary", "r1"]] {
        cli_no_panic(dir.path(), args);
        assert_eq!(
            std::fs::read(&m).unwrap(),
            bytes,
            "steplog {args:?} changed MANIFEST"
        );
    }
    let out = cli_no_panic(dir.path(), &["verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify reports the damaged last edit"
    );
    assert_eq!(std::fs::read(&m).unwrap(), bytes);
}

/// A snapshot state as docs/FORMAT.md describes it.
fn version(id: u64, run: &str, parent: Option<(u64, u64)>, archived: bool) -> serde_json::Value {
    json!({
        "id": id, "run": run, "origin": if parent.is_some() { "rewind" } else { "new" },
        "parent": parent.map(|(v, s)| json!([v, s])), "config": {}, "created": 0,
        "finished": true, "archived": archived, "purged": false, "segments": []
    })
}

fn snapshot(runs: serde_json::Value, versions: Vec<serde_json::Value>, next: u64) -> Vec<u8> {
    manifest_bytes(
        1,
        &[json!({"op": "snapshot", "state": {
            "runs": runs, "versions": versions, "next_version": next, "next_segment": 1
        }})],
    )
}

#[test]
fn a_checksum_valid_but_inconsistent_manifest_is_corruption_naming_the_offset() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a run whose head version is missing",
            snapshot(json!({"r": 5}), vec![version(1, "r", None, false)], 6),
        ),
        (
            "a dangling parent",
            snapshot(
                json!({"r": 2}),
                vec![version(2, "r", Some((9, 0)), false)],
                10,
            ),
        ),
        (
            "a parent cycle",
            snapshot(
                json!({"r": 2}),
                vec![
                    version(1, "r", Some((2, 0)), true),
                    version(2, "r", Some((1, 0)), false),
                ],
                3,
            ),
        ),
        (
            "a self parent",
            snapshot(
                json!({"r": 1}),
                vec![version(1, "r", Some((1, 0)), false)],
                2,
            ),
        ),
        (
            "a head that is archived",
            snapshot(json!({"r": 1}), vec![version(1, "r", None, true)], 2),
        ),
        (
            "an id past the counter",
            snapshot(json!({"r": 7}), vec![version(7, "r", None, false)], 3),
        ),
        // Restarts (manifest format 2), and rules the second attack of issue #12 found
        // unchecked.
        (
            "a rewind that also names restart_of",
            snapshot(
                json!({"r": 2}),
                vec![version(1, "r", None, true), {
                    let mut v = version(2, "r", Some((1, 0)), false);
                    v["restart_of"] = json!(1);
                    v
                }],
                3,
            ),
        ),
        (
            "a restart of another run's live head",
            snapshot(
                json!({"r": 2, "o": 1}),
                vec![version(1, "o", None, false), {
                    let mut v = version(2, "r", None, false);
                    v["origin"] = json!("restart");
                    v["restart_of"] = json!(1);
                    v
                }],
                3,
            ),
        ),
        (
            "a restart without restart_of",
            snapshot(
                json!({"r": 1}),
                vec![{
                    let mut v = version(1, "r", None, false);
                    v["origin"] = json!("restart");
                    v
                }],
                2,
            ),
        ),
        ("a version holding a step not after its parent's cutoff", {
            let mut v = version(2, "r", Some((1, 5)), false);
            v["segments"] = json!([{"id": 1, "stream": "history", "sealed":
                    {"rows": 1, "first_step": 5, "last_step": 5, "bytes": 100}}]);
            let versions = json!([version(1, "r", None, true), v]);
            manifest_bytes(
                1,
                &[json!({"op": "snapshot", "state": {
                    "runs": {"r": 2}, "next_version": 3, "next_segment": 2,
                    "versions": versions
                }})],
            )
        }),
        (
            "a rewind edit without its step (not a restart)",
            manifest_bytes(
                1,
                &[
                    json!({"op": "snapshot", "state": {"runs": {"r": 1}, "versions":
                        [version(1, "r", None, false)], "next_version": 2, "next_segment": 1}}),
                    json!({"op": "rewind", "run": "r", "archived": 1, "version": 2,
                        "config": {}, "time": 0}),
                ],
            ),
        ),
        (
            // It would replace the state unchecked: only a first frame is a whole state.
            "a second snapshot, holding an archived head",
            manifest_bytes(
                1,
                &[
                    json!({"op": "snapshot", "state": {"runs": {"r": 1}, "versions":
                        [version(1, "r", None, false)], "next_version": 2, "next_segment": 1}}),
                    json!({"op": "snapshot", "state": {"runs": {"r": 1}, "versions":
                        [version(1, "r", None, true)], "next_version": 2, "next_segment": 1}}),
                ],
            ),
        ),
        (
            "a fork edit from a missing version",
            manifest_bytes(
                1,
                &[
                    json!({"op": "snapshot", "state": {"runs": {}, "versions": [],
                        "next_version": 1, "next_segment": 1}}),
                    json!({"op": "fork", "run": "f", "version": 1, "source": 0, "step": 0,
                        "config": {}, "time": 0}),
                ],
            ),
        ),
    ];
    for (what, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("segments")).unwrap();
        std::fs::write(dir.path().join("MANIFEST"), &bytes).unwrap();
        match Store::open(dir.path()) {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert!(file.ends_with("MANIFEST"), "{what}");
                assert!(offset >= 24, "{what}: the offset of the edit: {offset}");
            }
            other => panic!("{what}: expected corruption, got {other:?}"),
        }
        for args in [
            &["runs"][..],
            &["runs", "--all"],
            &["history", "r"],
            &["summary", "r"],
            &["lineage", "r"],
            &["verify"],
        ] {
            let out = cli_no_panic(dir.path(), args);
            assert_eq!(out.status.code(), Some(1), "{what}: steplog {args:?}");
        }
        assert_eq!(std::fs::read(dir.path().join("MANIFEST")).unwrap(), bytes);
    }
}

/// The manifest's frames as (offset, payload): a length, two crc32s, the payload.
fn frames(manifest: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 12 <= manifest.len() {
        let len = u32::from_le_bytes(manifest[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, manifest[at + 12..at + 12 + len].to_vec()));
        at += 12 + len;
    }
    out
}

/// A frame of `payload`, its checksums right.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let hcrc = crc32fast::hash(&out);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_checksum_valid_but_undecodable_binary_batch_is_corruption_naming_its_frame() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut bulk = store.bulk();
        for r in ["a", "b"] {
            let mut run = bulk.run(r);
            run.set_config(json!({"lr": 0.1}));
            run.log_at(0, [("x", 1.0)]).unwrap();
            bulk.add(run).unwrap();
        }
        bulk.commit().unwrap();
    }
    let good = std::fs::read(dir.path().join("MANIFEST")).unwrap();
    let (at, payload) = frames(&good)
        .into_iter()
        .find(|(_, p)| p.first() == Some(&0x01))
        .expect("the bulk's binary batch");
    // The payload's fields in order: tag, count, then run "a": its name (a length, the
    // byte), version, time, config (a length, then the JSON).
    let config_at = 1 + 1 + 2 + 1;
    let config_at = config_at + {
        let mut n = 0;
        while payload[config_at + n] & 0x80 != 0 {
            n += 1;
        }
        n + 1
    };
    assert_eq!(payload[config_at] as usize, br#"{"lr":0.1}"#.len());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("cut short", payload[..payload.len() - 3].to_vec()),
        ("a byte after its last run", [&payload[..], &[0]].concat()),
        ("a count of runs it does not hold", {
            let mut p = payload.clone();
            p[1] = 3;
            p
        }),
        ("a name that is not UTF-8", {
            let mut p = payload.clone();
            p[3] = 0xff;
            p
        }),
        ("a config that is not a JSON object", {
            let mut p = payload.clone();
            p[config_at + 1] = b'[';
            p
        }),
    ];
    for (what, bad) in cases {
        let mut bytes = good[..at].to_vec();
        bytes.extend_from_slice(&frame(&bad));
        bytes.extend_from_slice(&good[at + 12 + payload.len()..]);
        std::fs::write(dir.path().join("MANIFEST"), &bytes).unwrap();
        match Store::open(dir.path()) {
            Err(e @ Error::Corrupt { .. }) => {
                let Error::Corrupt { file, offset, .. } = &e else {
                    unreachable!()
                };
                assert!(file.ends_with("MANIFEST"), "{what}");
                assert_eq!(*offset, at as u64, "{what}: the frame's offset ({e})");
            }
            other => panic!("{what}: expected corruption, got {other:?}"),
        }
        let out = cli_no_panic(dir.path(), &["verify"]);
        assert_eq!(out.status.code(), Some(1), "{what}: steplog verify");
    }
    // The manifest as it was reads back both runs.
    std::fs::write(dir.path().join("MANIFEST"), &good).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.summary("b").unwrap().keys["x"].count, 1);
}
