//! The typed API (issue #13, item 5): every form of a reference names the same version; one
//! way to rewind and one to fork, each ending in a writer or in the edit alone; named
//! results; `Error::kind`; a dropped writer does what a crash would, and nothing more.

mod common;

use common::rows;
use steplog::{ErrorKind, Query, Reference, RowCount, Status, Store, VersionId};

fn store_with_run(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).unwrap();
    let mut w = store.run("r").start().unwrap();
    for step in 0..10u64 {
        w.log_at(step, [("x", step as f64)]).unwrap();
    }
    w.finish().unwrap();
    store
}

#[test]
fn every_form_of_a_reference_reads_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_run(dir.path());
    let rewound = store.run("r").resume_from(4).apply().unwrap();
    let archived = rewound.archived.unwrap();
    assert_eq!(rewound.run, "r");
    assert_ne!(archived, rewound.head);

    let text = archived.to_string();
    let q = Query::new();
    let by_id: Vec<_> = store
        .history(archived, &q)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(by_id.len(), 10);
    for same in [
        store.history(text.as_str(), &q).unwrap(),
        store.history(&text, &q).unwrap(),
        store.history(text.clone(), &q).unwrap(),
        store.history(Reference::from(archived), &q).unwrap(),
    ] {
        assert_eq!(same.map(Result::unwrap).collect::<Vec<_>>(), by_id);
    }
    // With a step: `v1?_step=6`, `archived.at(6)`, and `Reference::run(..).at(..)` for a run.
    let at6: Vec<_> = store
        .history(archived.at(6), &q)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(at6, by_id[..=6]);
    assert_eq!(rows(&store, &format!("{archived}?_step=6")), at6);
    assert_eq!(store.summary(Reference::run("r").at(2)).unwrap().rows, 3);

    let resolved = store.resolve(archived.at(6)).unwrap();
    assert_eq!((resolved.version, resolved.step), (archived, Some(6)));
    assert_eq!(store.resolve("r").unwrap().version, rewound.head);
    assert_eq!(
        store.rows(archived).unwrap(),
        RowCount {
            rows: 10,
            last_step: Some(9)
        }
    );
    // A step in the reference caps every read, counts included.
    assert_eq!(
        store.rows(archived.at(6)).unwrap(),
        RowCount {
            rows: 7,
            last_step: Some(6)
        }
    );
    assert_eq!(store.rows(Reference::run("r").at(2)).unwrap().rows, 3);
    assert_eq!(store.version(archived).unwrap().status, Status::Archived);
    assert_eq!(store.lineage(rewound.head).unwrap().root().id, archived);

    // A string that is not a reference is refused as one, wherever it is given.
    for bad in ["", "r?_step=x", "r?step=1"] {
        let e = store.summary(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}");
        assert!(
            matches!(e, steplog::Error::BadReference { .. }),
            "{bad}: {e}"
        );
    }
    let e = "v".parse::<VersionId>().unwrap_err();
    assert!(matches!(e, steplog::Error::BadReference { .. }), "{e}");
}

#[test]
fn a_fork_takes_its_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_run(dir.path());
    // The step beside a source naming the same step is accepted; another is refused.
    let f = store.run("f1").fork_from("r?_step=3", 3).apply().unwrap();
    assert_eq!(store.rows(f.head).unwrap().rows, 4);
    assert_eq!(f.archived, None);
    let e = store
        .run("f2")
        .fork_from("r?_step=3", 5)
        .apply()
        .unwrap_err();
    assert!(matches!(e, steplog::Error::BadReference { .. }), "{e}");
    assert!(store.resolve("f2").is_err(), "a refused fork made no run");
    // A writer on a fork starts after its step.
    let mut w = store.run("f3").fork_from("r", 7).start().unwrap();
    assert_eq!(w.next_step(steplog::Stream::History), 8);
    w.log([("x", -1.0)]).unwrap();
    w.finish().unwrap();
    assert_eq!(store.rows("f3").unwrap().rows, 9);
}

#[test]
#[allow(deprecated)]
fn the_deprecated_aliases_the_readme_used_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_run(dir.path());
    let head = store.fork("r", 5, "old-fork", None).unwrap();
    assert_eq!(store.resolve("old-fork").unwrap().version, head);
    assert_eq!(store.rows(head).unwrap().rows, 6);
    // As before: the step given wins over one the source names.
    let head = store.fork("r?_step=2", 5, "old-fork-2", None).unwrap();
    assert_eq!(store.rows(head).unwrap().rows, 6);
    let w = store
        .run("old-ref")
        .fork_from_ref("r?_step=2")
        .start()
        .unwrap();
    w.finish().unwrap();
    assert_eq!(store.rows("old-ref").unwrap().rows, 3);
}

#[test]
fn errors_have_one_kind_to_branch_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_run(dir.path());
    let kind = |r: steplog::Result<steplog::Started>| r.unwrap_err().kind();
    assert_eq!(
        kind(store.run("nope").resume_from(1).apply()),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(store.run("r").fork_from("r", 1).apply()),
        ErrorKind::AlreadyExists
    );
    let refused = store
        .run("r")
        .resume(steplog::Resume::Never)
        .start()
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ResumeRefused);
    // `apply` makes rewinds, restarts and forks; a plain start has nothing to apply, and
    // leaves the run as it was.
    assert_eq!(kind(store.run("r").apply()), ErrorKind::InvalidInput);
    assert_eq!(kind(store.run("new").apply()), ErrorKind::InvalidInput);
    assert_eq!(store.runs().unwrap().len(), 1);
    assert_eq!(store.runs().unwrap()[0].status, Status::Finished);
    assert_eq!(
        kind(store.run("r").resume_from(99).apply()),
        ErrorKind::InvalidInput
    );
    let _w = store.run("r").start().unwrap();
    assert_eq!(
        kind(store.run("r").resume_from(1).apply()),
        ErrorKind::Locked
    );
    let e = "sideways".parse::<steplog::Resume>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = "stdout".parse::<steplog::Stream>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

/// A writer dropped without `finish` writes nothing in its drop: it leaves what a crash at
/// that point would. Committed rows stay; buffered rows are gone; the run reads `crashed`
/// and resumes where its committed rows end.
#[test]
fn a_dropped_writer_leaves_what_a_crash_would() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut w = store.run("r").start().unwrap();
    for step in 0..5u64 {
        w.log_at(step, [("x", step as f64)]).unwrap();
    }
    w.commit().unwrap();
    for step in 5..8u64 {
        w.log_at(step, [("x", step as f64)]).unwrap();
    }
    let manifest = std::fs::read(dir.path().join("MANIFEST")).unwrap();
    drop(w);
    assert_eq!(
        std::fs::read(dir.path().join("MANIFEST")).unwrap(),
        manifest,
        "a drop makes no manifest edit"
    );
    let steps: Vec<u64> = rows(&store, "r").iter().map(|r| r.step).collect();
    assert_eq!(steps, (0..5).collect::<Vec<_>>(), "committed rows only");
    assert_eq!(store.runs().unwrap()[0].status, Status::Crashed);
    let mut w = store.run("r").start().unwrap();
    assert_eq!(w.next_step(steplog::Stream::History), 5);
    w.log([("x", 5.0)]).unwrap();
    w.finish().unwrap();
    assert_eq!(store.runs().unwrap()[0].status, Status::Finished);
    assert_eq!(store.rows("r").unwrap().rows, 6);
}

#[test]
fn a_store_opened_for_reading_only_is_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("a").join("b");
    let e = steplog::Options::new()
        .create_if_missing(false)
        .open(&missing)
        .unwrap_err();
    assert_eq!(e.kind(), steplog::ErrorKind::NotFound);
    assert!(
        matches!(&e, steplog::Error::StoreNotFound { dir } if *dir == missing),
        "{e}"
    );
    assert!(!dir.path().join("a").exists(), "nothing created");
    // Once a writer made it, it opens for reading.
    let store = steplog::Store::open(&missing).unwrap();
    let mut w = store.run("r").start().unwrap();
    w.log([("x", 1.0)]).unwrap();
    w.finish().unwrap();
    let reader = steplog::Options::new()
        .create_if_missing(false)
        .open(&missing)
        .unwrap();
    assert_eq!(reader.run_names().unwrap(), ["r"]);
}

/// `Status::Live` (before 2026-12-04) still names the status of a run a writer holds.
#[test]
#[allow(deprecated)]
fn the_old_name_of_running_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let store = steplog::Store::open(dir.path()).unwrap();
    let w = store.run("r").start().unwrap();
    let status = store.version("r").unwrap().status;
    assert!(matches!(status, steplog::Status::Live));
    assert_eq!(status.name(), "running");
    w.finish().unwrap();
}
