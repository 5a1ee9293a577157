//! A restart: a run started again from nothing (issue #12). A source that starts over at
//! step 0 (a TensorBoard script run twice into one log directory, an AFL campaign started
//! afresh at time 0) cannot be a rewind, which keeps at least its step; `StartRun::restart`
//! archives the head whole and starts a head that keeps no row, in one manifest edit, and
//! the lineage keeps the link.

mod common;
use common::*;

use steplog::{Error, Options, Origin, Query, Status};

#[test]
fn a_restart_archives_the_head_whole_and_starts_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Small compaction threshold: the state also goes through a snapshot.
    let open = || {
        Options::new()
            .manifest_compaction_bytes(2_000)
            .open(dir.path())
            .unwrap()
    };
    let store = open();
    let mut w = store.run("r").start().unwrap();
    for step in 0..30u64 {
        w.log_at(step, [("x", step as f64)]).unwrap();
    }
    w.finish().unwrap();
    let mut w = store.run("r").restart().start().unwrap();
    let old = w.archived().expect("the old head is archived");
    assert_eq!(
        w.next_step(steplog::Stream::History),
        0,
        "steps start again at 0"
    );
    for step in 0..5u64 {
        w.log_at(step, [("x", -(step as f64))]).unwrap();
    }
    w.finish().unwrap();
    for _ in 0..20 {
        // Edits past the compaction threshold.
        store.run("pad").start().unwrap().finish().unwrap();
    }

    for store in [store, open()] {
        let head = rows(&store, "r");
        assert_eq!(head.len(), 5);
        assert!(
            head.iter().all(|r| f(r, "x") <= 0.0),
            "nothing of the old head"
        );
        assert_eq!(
            rows(&store, &old.to_string()).len(),
            30,
            "the old head, whole"
        );
        let info = store.version("r").unwrap();
        assert_eq!(
            (info.origin, info.parent, info.restart_of),
            (Origin::Restart, None, Some(old))
        );
        assert_eq!(store.version(old).unwrap().status, Status::Archived);
        let lineage = store.lineage("r").unwrap();
        assert_eq!(lineage.root().id, old);
        assert_eq!(lineage.versions.len(), 2);
        assert_eq!(lineage.children[0], [1]);
        assert_eq!(store.summary("r").unwrap().rows, 5);
        let runs = store.runs().unwrap();
        assert_eq!(runs.iter().find(|r| r.name == "r").unwrap().rows, 5);
        assert!(store.verify().unwrap().is_ok());
    }
    // The CLI shows it.
    let all = json_lines(&cli_ok(dir.path(), &["runs", "--all", "--format", "jsonl"]));
    let head = all
        .iter()
        .find(|v| v["run"] == "r" && v["status"] != "archived")
        .unwrap();
    assert_eq!(head["origin"], "restart");
    assert_eq!(head["restart_of"], old.to_string());
    assert_eq!(head["rows"], 5);
    let drawn = cli_ok(dir.path(), &["lineage", "r"]);
    assert!(drawn.contains(&format!("restarted from {old}")), "{drawn}");

    // The archived attempt needs no segment of the new head, nor the head of it: a purge
    // of it leaves the head whole.
    let store = open();
    store.purge(old).unwrap();
    assert!(matches!(store.version(old), Err(Error::Purged { .. })));
    assert_eq!(rows(&store, "r").len(), 5);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_restart_needs_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().open(dir.path()).unwrap();
    assert!(matches!(
        store.run("none").restart().start(),
        Err(Error::RunNotFound { .. })
    ));
    // And it takes the run's lock like a rewind.
    let mut w = store.run("r").start().unwrap();
    w.log_at(0, [("x", 1.0)]).unwrap();
    assert!(matches!(
        store.run("r").restart().start(),
        Err(Error::Locked { .. })
    ));
    w.finish().unwrap();
    let history: Vec<_> = store.history("r", &Query::new()).unwrap().collect();
    assert_eq!(history.len(), 1);
}
