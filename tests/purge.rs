//! Purge: an archived version becomes unreadable, and its segment files are deleted once no
//! other version needs them; versions rewound or forked from it keep every row they had.

mod common;
use common::*;
use steplog::{Error, Options};

fn log(store: &steplog::Store, run: &str, steps: std::ops::Range<u64>, tag: f64) {
    let mut w = store.run(run).start().unwrap();
    for i in steps {
        w.log_at(i, [("x", i as f64 + tag)]).unwrap();
    }
    w.finish().unwrap();
}

fn check(store: &steplog::Store, reference: &str, expect: &[(u64, f64)]) {
    let got: Vec<(u64, f64)> = rows(store, reference)
        .iter()
        .map(|r| (r.step, f(r, "x")))
        .collect();
    assert_eq!(got, expect, "{reference}");
}

#[test]
fn purge_deletes_only_what_no_other_version_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .segment_bytes(300)
        .block_bytes(60)
        .open(dir.path())
        .unwrap();
    log(&store, "a", 0..1000, 0.0);
    let v1 = store.version("a").unwrap().id;
    let all_v1 = segment_files(dir.path()).len();
    assert!(all_v1 > 10, "the run spans many segments ({all_v1})");

    let r = store.run("a").resume_from(100).apply().unwrap();
    log(&store, "a", 101..500, 0.5);
    let v2 = r.head;
    let head_rows: Vec<(u64, f64)> = (0..=100)
        .map(|i| (i, i as f64))
        .chain((101..500).map(|i| (i, i as f64 + 0.5)))
        .collect();

    let before = segment_files(dir.path()).len();
    let deleted = store.purge(v1).unwrap();
    assert!(
        deleted > 0 && deleted < all_v1,
        "deleted {deleted} of {all_v1}: v2 still needs steps 0..=100"
    );
    assert_eq!(segment_files(dir.path()).len(), before - deleted);
    assert!(matches!(
        store.history(v1, &steplog::Query::new()),
        Err(Error::Purged { .. })
    ));
    check(&store, "a", &head_rows);
    assert!(matches!(store.purge(v1), Err(Error::Purged { .. })));
    assert!(matches!(store.purge(v2), Err(Error::NotArchived { .. })));

    // A fork from v2, then v2 archived by a rewind and purged: the fork keeps its rows.
    store.run("f").fork_from("a", 300).apply().unwrap();
    let r2 = store.run("a").resume_from(50).apply().unwrap();
    assert_eq!(r2.archived, Some(v2));
    store.purge(v2).unwrap();
    check(&store, "f", &head_rows[..=300]);
    check(&store, "a", &head_rows[..=50]);
    let report = store.verify().unwrap();
    assert!(report.is_ok() && report.notes.is_empty(), "{report:?}");

    // Once nothing needs them, all of v1's and v2's segments go.
    let rf = store.run("f").resume_from(10).apply().unwrap();
    store.purge(rf.archived.unwrap()).unwrap();
    check(&store, "f", &head_rows[..=10]);
    let r3 = store.run("a").resume_from(5).apply().unwrap();
    store.purge(r3.archived.unwrap()).unwrap();
    check(&store, "a", &head_rows[..=5]);
    let remaining = segment_files(dir.path()).len();
    assert!(
        remaining < 4,
        "only segments holding steps 0..=10 remain ({remaining})"
    );
    drop(store);
    let store = steplog::Store::open(dir.path()).unwrap();
    check(&store, "f", &head_rows[..=10]);
    assert!(store.verify().unwrap().is_ok());
}

/// Issue #11: a purge killed between its edit and its deletions left files that nothing could
/// reclaim (a second purge said the version was purged). `gc` reclaims them, and an orphan
/// left between creating a segment and recording it, and keeps what may hold rows.
#[test]
fn gc_reclaims_what_an_interrupted_purge_left_and_keeps_what_may_hold_rows() {
    use std::sync::Arc;
    use steplog::io::{FaultyFs, IoOp, OsFs, EIO};
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyFs::new(Arc::new(OsFs));
    let store = Options::new()
        .segment_bytes(300)
        .block_bytes(60)
        .inline_segment_bytes(0)
        .file_system(Arc::new(faulty.clone()))
        .open(dir.path())
        .unwrap();
    log(&store, "b", 0..5, 0.0);
    let b_segment = segment_files(dir.path()).pop().unwrap();
    log(&store, "a", 0..1000, 0.0);
    let r = store.run("a").resume_from(100).apply().unwrap();
    let files_before = segment_files(dir.path()).len();
    // The purge's edit lands, its first deletion fails: as if killed right after the edit.
    faulty.fail_nth(IoOp::Remove, 1, EIO);
    assert!(store.purge(r.archived.unwrap()).is_err());
    faulty.heal();
    assert!(matches!(
        store.purge(r.archived.unwrap()),
        Err(Error::Purged { .. })
    ));
    assert_eq!(
        segment_files(dir.path()).len(),
        files_before,
        "nothing was deleted"
    );
    let report = store.verify().unwrap();
    assert!(report.is_ok());
    assert!(report.notes.iter().any(|n| n.contains("not referenced")));
    // An orphan: a segment file created (header only) whose edit never came.
    let orphan = dir.path().join("segments").join("0000000000999999.seg");
    std::fs::write(
        &orphan,
        &std::fs::read(&segment_files(dir.path())[0]).unwrap()[..32],
    )
    .unwrap();
    // And a file holding rows the manifest does not know of (its edits lost): kept.
    let lost = dir.path().join("segments").join("0000000000999998.seg");
    std::fs::copy(&b_segment, &lost).unwrap();

    let out = cli_ok(dir.path(), &["gc"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["deleted_files"].as_u64().unwrap() > 1, "{v}");
    assert_eq!(v["kept"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["kept"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("0000000000999998.seg"));
    assert!(!orphan.exists() && lost.exists());
    let store = Options::new().open(dir.path()).unwrap();
    check(
        &store,
        "a",
        &(0..=100).map(|i| (i, i as f64)).collect::<Vec<_>>(),
    );
    // What is left unreferenced is the kept file, which verify reports as lost rows.
    let report = store.verify().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].file.ends_with("0000000000999998.seg"));
    let notes = report.notes.iter().filter(|n| n.contains("not referenced"));
    assert_eq!(notes.count(), 0, "{:?}", report.notes);
    // Nothing left to do: a second gc deletes nothing.
    assert!(store.gc().unwrap().deleted.is_empty());
}

/// Purging a head that is not archived is refused with its status, for every status a head
/// can have. A crashed head's status is read under the manifest's lock: a status that took
/// that lock again deadlocked here (found by the `ops` fuzz target). Run on a thread, so
/// that a deadlock fails the test instead of hanging the suite.
#[test]
fn purging_a_head_names_its_status_whatever_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().open(dir.path()).unwrap();
    log(&store, "finished", 0..10, 0.0);
    let mut w = store.run("crashed").start().unwrap();
    w.log_at(0, [("x", 1.0)]).unwrap();
    w.commit().unwrap();
    drop(w);
    let mut live = store.run("running").start().unwrap();
    live.log_at(0, [("x", 1.0)]).unwrap();
    live.commit().unwrap();
    for (run, status) in [
        ("finished", "finished"),
        ("crashed", "crashed"),
        ("running", "running"),
    ] {
        let v = store.version(run).unwrap().id;
        let (tx, rx) = std::sync::mpsc::channel();
        let s = store.clone();
        std::thread::spawn(move || tx.send(s.purge(v)).unwrap());
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("purging the {status} head {v} did not return"));
        match got {
            Err(Error::NotArchived { status: s, .. }) => assert_eq!(s, status, "{run}"),
            other => panic!("{run}: {other:?}"),
        }
    }
    live.finish().unwrap();
}
