//! Deleting a run (issue #16): the run and all its versions go, its name is free again, the
//! segment files nobody else needs are deleted, and a run forked from it keeps every row it
//! reads; refused while a writer holds the run, in this process or another. The tombstone
//! survives manifest compaction and a fresh open.

mod common;
use common::*;
use steplog::{Error, ErrorKind, Options, Query, Status};

fn log(store: &steplog::Store, run: &str, steps: std::ops::Range<u64>, tag: f64) {
    let mut w = store.run(run).start().unwrap();
    for i in steps {
        w.log_at(i, [("x", i as f64 + tag)]).unwrap();
    }
    w.finish().unwrap();
}

fn xs(store: &steplog::Store, reference: &str) -> Vec<(u64, f64)> {
    rows(store, reference)
        .iter()
        .map(|r| (r.step, f(r, "x")))
        .collect()
}

/// Small segments and blocks, no inline segments: every version's rows are files, so what
/// a delete frees can be counted; a small compaction threshold, so tables hold the records.
fn open(dir: &std::path::Path) -> steplog::Store {
    Options::new()
        .segment_bytes(300)
        .block_bytes(60)
        .inline_segment_bytes(0)
        .manifest_compaction_bytes(2_048)
        .open(dir)
        .unwrap()
}

/// A version's status as `runs --all` lists it (a purged version is not looked up by id).
fn status(store: &steplog::Store, v: steplog::VersionId) -> Status {
    store
        .versions()
        .unwrap()
        .into_iter()
        .find(|i| i.id == v)
        .map(|i| i.status)
        .unwrap()
}

#[test]
fn a_deleted_run_is_gone_its_files_freed_and_its_forks_keep_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    log(&store, "keep", 0..300, 0.0);
    let files_of_keep = segment_files(dir.path()).len();
    // "doomed": written, rewound, continued, restarted, written again.
    log(&store, "doomed", 0..400, 0.0);
    store.run("doomed").resume_from(200).apply().unwrap();
    log(&store, "doomed", 201..300, 0.5);
    store.run("doomed").restart().apply().unwrap();
    log(&store, "doomed", 0..100, 0.25);
    // A fork of an archived version of it, at step 250 (the rewound head's row 250).
    let v2 = store.lineage("doomed").unwrap().versions[1].id;
    assert_eq!(store.version(v2).unwrap().status, Status::Archived);
    store.run("kid").fork_from(v2, 250).apply().unwrap();
    log(&store, "kid", 251..260, 0.75);
    let kid_before = xs(&store, "kid");
    assert_eq!(kid_before.len(), 260);
    let keep_before = xs(&store, "keep");
    let versions_before: Vec<_> = store
        .versions()
        .unwrap()
        .into_iter()
        .filter(|v| v.run == "doomed")
        .map(|v| v.id)
        .collect();
    assert_eq!(
        versions_before.len(),
        3,
        "the first, the rewound head, the restart"
    );
    let files_before = segment_files(dir.path()).len();

    let d = store.delete("doomed").unwrap();
    assert_eq!(d.run, "doomed");
    let mut purged = d.versions.clone();
    purged.sort();
    assert_eq!(purged, versions_before, "every version of the run");
    assert!(d.files > 0);
    let files_after = segment_files(dir.path()).len();
    assert_eq!(files_after, files_before - d.files);
    // What stays: the other runs' files, and the deleted run's that the fork reads.
    assert!(
        files_after > files_of_keep,
        "the fork's rows from the deleted run stay"
    );

    // Gone from every listing and lookup; the others read exactly as before.
    assert!(!store.run_names().unwrap().contains(&"doomed".to_owned()));
    assert!(store.runs().unwrap().iter().all(|r| r.name != "doomed"));
    assert!(matches!(
        store.history("doomed", &Query::new()),
        Err(Error::RunNotFound { .. })
    ));
    for v in &versions_before {
        assert!(matches!(
            store.history(*v, &Query::new()),
            Err(Error::Purged { .. })
        ));
        assert_eq!(status(&store, *v), Status::Purged);
    }
    assert_eq!(xs(&store, "kid"), kid_before);
    assert_eq!(xs(&store, "keep"), keep_before);
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(
        store.delete("doomed").unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // The name is free: a new run of it starts from nothing, linked to none of the old.
    log(&store, "doomed", 0..5, 9.0);
    assert_eq!(
        xs(&store, "doomed"),
        (0..5).map(|i| (i, i as f64 + 9.0)).collect::<Vec<_>>()
    );
    assert_eq!(store.lineage("doomed").unwrap().versions.len(), 1);

    // After compactions and in a fresh process's view, the same.
    let tables = |d: &std::path::Path| -> std::collections::BTreeSet<std::ffi::OsString> {
        std::fs::read_dir(d.join("manifest"))
            .map(|r| r.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default()
    };
    let tables_before = tables(dir.path());
    for i in 0..40 {
        log(&store, &format!("filler-{i}"), 0..3, 0.0);
    }
    assert!(
        !tables(dir.path()).is_empty() && tables(dir.path()) != tables_before,
        "the manifest was compacted into tables since the delete"
    );
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        xs(&store, "doomed"),
        (0..5).map(|i| (i, i as f64 + 9.0)).collect::<Vec<_>>()
    );
    assert_eq!(xs(&store, "kid"), kid_before);
    for v in &versions_before {
        assert_eq!(status(&store, *v), Status::Purged);
    }
    assert!(store.verify().unwrap().is_ok());
    // And deleted again, then compacted again: no name, no rows.
    store.delete("doomed").unwrap();
    for i in 40..80 {
        log(&store, &format!("filler-{i}"), 0..3, 0.0);
    }
    drop(store);
    let store = open(dir.path());
    assert!(!store.run_names().unwrap().contains(&"doomed".to_owned()));
    assert!(store.verify().unwrap().is_ok());
    // Every file the deletes freed is gone already: gc finds nothing left behind.
    let report = store.gc().unwrap();
    assert!(
        report.deleted.is_empty() && report.kept.is_empty(),
        "{report:?}"
    );
}

#[test]
fn a_run_a_writer_holds_is_not_deleted_in_any_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    log(&store, "r", 0..10, 0.0);
    let mut w = store.run("r").start().unwrap();
    w.log_at(10, [("x", 10.0)]).unwrap();
    w.commit().unwrap();
    assert!(matches!(store.delete("r"), Err(Error::Locked { .. })));
    let out = cli(dir.path()).args(["delete", "r"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains("is locked"),
        "{err}"
    );
    w.finish().unwrap();
    assert_eq!(xs(&store, "r").len(), 11, "nothing was deleted");
    // Finished, it can be; a crashed run too.
    let mut w = store.run("c").start().unwrap();
    w.log_at(0, [("x", 0.0)]).unwrap();
    w.commit().unwrap();
    drop(w);
    assert_eq!(store.version("c").unwrap().status, Status::Crashed);
    store.delete("c").unwrap();
    let out = cli_ok(dir.path(), &["delete", "r"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deleted"], "r");
    assert_eq!(v["versions"], serde_json::json!(["v1"]));
    assert_eq!(cli_ok(dir.path(), &["runs", "--format", "json"]), "[]\n");
    // A mistyped name: the close ones.
    log(&store, "train-1", 0..2, 0.0);
    let out = cli(dir.path())
        .args(["delete", "train-2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(did you mean 'train-1'?)"), "{err}");
    assert!(store.run_names().unwrap().contains(&"train-1".to_owned()));
}

#[test]
fn delete_upgrades_a_manifest_of_an_older_format() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/golden/manifest-6/store"),
        dir.path(),
    );
    let store = Store::open(dir.path()).unwrap();
    let before = store.run_names().unwrap();
    let victim = before[0].clone();
    store.delete(&victim).unwrap();
    let after = Store::open(dir.path()).unwrap().run_names().unwrap();
    assert_eq!(after.len(), before.len() - 1);
    assert!(!after.contains(&victim));
    assert!(Store::open(dir.path()).unwrap().verify().unwrap().is_ok());
}

use steplog::Store;

/// The tombstone hides the run's record in older tables through every tiered merge of the
/// newer ones, until a merge takes in the oldest table (then both go).
#[test]
fn a_deleted_run_stays_deleted_through_every_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let open = |d: &std::path::Path| {
        Options::new()
            .manifest_compaction_bytes(2_048)
            .open(d)
            .unwrap()
    };
    let store = open(dir.path());
    let mut bulk = store.bulk();
    for i in 0..300 {
        let mut run = bulk.run(&format!("r-{i:03}"));
        run.log_at(0, [("x", i as f64)]).unwrap();
        bulk.add(run).unwrap();
    }
    bulk.commit().unwrap();
    // Into a table of its own, the oldest.
    for i in 0..20 {
        log(&store, &format!("pad-{i}"), 0..2, 0.0);
    }
    store.delete("r-000").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..200 {
        log(&store, &format!("more-{i}"), 0..2, 0.0);
        let names = open(dir.path()).run_names().unwrap();
        assert!(!names.contains(&"r-000".to_owned()), "after edit {i}");
        assert!(names.contains(&"r-001".to_owned()));
        seen.insert(
            std::fs::read_dir(dir.path().join("manifest"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>(),
        );
    }
    assert!(seen.len() > 5, "several compactions ({})", seen.len());
    assert!(open(dir.path()).verify().unwrap().is_ok());
}
