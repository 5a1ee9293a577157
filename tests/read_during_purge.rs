//! A read that races a rewind and a purge of what it reads ends in an error, never in a
//! shorter history reported as complete (issue #11, items 3 and 10).
//!
//! What broke: while `history big` streamed a crashed 1,500,000-row run, `rewind
//! 'big?_step=10'; purge v1` ran, and the reader printed 1,195,448 rows with exit 0: a
//! segment missing from the disk was read as an empty one. Likewise a crashed run whose head
//! segment file was removed showed no rows, a summary of 0 rows, and a clean `verify`.

mod common;

use steplog::{Error, Options, Query, Store};

fn open(dir: &std::path::Path) -> Store {
    Options::new()
        .segment_bytes(4_000)
        .block_bytes(1_000)
        .open(dir)
        .unwrap()
}

/// A crashed run of `n` rows over many segments, its head segment unsealed.
fn crashed_run(store: &Store, n: u64) {
    let mut w = store.run("big").start().unwrap();
    for step in 0..n {
        w.log_at(step, [("x", step as f64), ("y", (step % 13) as f64)])
            .unwrap();
    }
    w.abort().unwrap(); // committed, not finished: the run is left crashed
}

/// Reads the rest of a history whose rows are steps `next..n`, purged meanwhile: every row in
/// order, then either the end after the last row or a `MissingFile` naming the purge, never
/// an early end. Returns whether it failed.
fn read_on(history: steplog::History, mut next: u64, n: u64) -> bool {
    for r in history {
        match r {
            Ok(row) => {
                assert_eq!(row.step, next, "rows are never skipped");
                next += 1;
            }
            Err(e) => {
                assert!(matches!(e, Error::MissingFile { .. }), "{e:?}");
                assert!(e.to_string().contains("purge"), "says why: {e}");
                return true;
            }
        }
    }
    assert_eq!(next, n, "a read that ends without an error has every row");
    false
}

#[test]
fn a_history_read_while_its_segments_are_purged_fails_instead_of_ending_early() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    crashed_run(&open(dir.path()), n);
    // The reader: another process's view, mid-way through the run.
    let reader = open(dir.path());
    let mut history = reader.history("big", &Query::new()).unwrap();
    let first = history.next().unwrap().unwrap();
    assert_eq!(first.step, 0);
    // Meanwhile: rewind the crashed run and purge the version the reader is reading.
    let other = Options::new().open(dir.path()).unwrap();
    let rewound = other.run("big").resume_from(10).apply().unwrap();
    assert!(other.purge(rewound.archived.unwrap()).unwrap() > 0);
    read_on(history, 1, n);
}

#[test]
fn a_missing_head_segment_of_a_crashed_run_is_an_error_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    crashed_run(&open(dir.path()), 300);
    let head = common::segment_files(dir.path()).pop().unwrap();
    std::fs::remove_file(&head).unwrap();
    let store = open(dir.path());
    let mut w = store.run("healthy").start().unwrap();
    w.log_at(0, [("x", 1.0)]).unwrap();
    w.finish().unwrap();
    // One damaged run hides no other: every run is listed, the damaged one marked.
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs[0]
            .damage
            .as_deref()
            .is_some_and(|d| d.contains("missing")),
        "{runs:?}"
    );
    assert_eq!((runs[1].rows, runs[1].damage.clone()), (1, None));
    for format in ["table", "json"] {
        let out = common::cli_no_panic(dir.path(), &["runs", "--format", format]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "damage is an error once all is listed"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("big") && text.contains("healthy"), "{text}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("big is damaged"));
    }
    let rows: Result<Vec<_>, _> = store.history("big", &Query::new()).unwrap().collect();
    assert!(matches!(rows, Err(Error::MissingFile { .. })), "{rows:?}");
    assert!(matches!(
        store.summary("big"),
        Err(Error::MissingFile { .. })
    ));
    assert!(matches!(
        store.run("big").start(),
        Err(Error::Io { .. } | Error::MissingFile { .. })
    ));
    let report = store.verify().unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems[0].message.contains("missing"),
        "{:?}",
        report.problems
    );
    for args in [&["history", "big"][..], &["summary", "big"], &["verify"]] {
        let out = common::cli_no_panic(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "steplog {args:?}");
        let msg = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
        assert!(
            msg.contains(&*head.to_string_lossy()),
            "names the file: {msg}"
        );
    }
}

/// The class: a flipped byte anywhere in one run's only segment (header, blocks, footer,
/// index, trailer) never hides the store's other runs from `runs`: each listing shows them
/// all, and if it notices the damage it names the run and exits 1, in both formats alike
/// (the JSON listing once printed a damaged run as healthy).
#[test]
fn a_flipped_byte_in_one_runs_segment_hides_no_other_run_from_listings() {
    let dir = tempfile::tempdir().unwrap();
    // Segment files, to be damaged (an inline segment is under the manifest's checksums).
    let store = Options::new()
        .block_bytes(1_000)
        .inline_segment_bytes(0)
        .open(dir.path())
        .unwrap();
    for (run, n) in [("a", 5u64), ("b", 40), ("c", 5)] {
        let mut w = store.run(run).start().unwrap();
        for step in 0..n {
            w.log_at(step, [("x", step as f64)]).unwrap();
        }
        w.finish().unwrap();
    }
    drop(store);
    let seg = common::segment_files(dir.path())[1].clone(); // b's, the second written
    let clean = std::fs::read(&seg).unwrap();
    let mut noticed = 0;
    let mut table_noticed = false;
    for offset in 0..clean.len() {
        let mut bytes = clean.clone();
        bytes[offset] ^= 0x10;
        std::fs::write(&seg, &bytes).unwrap();
        for format in ["table", "jsonl"] {
            let out = common::cli_no_panic(dir.path(), &["runs", "--format", format]);
            let text = String::from_utf8_lossy(&out.stdout);
            let listed: Vec<&str> = match format {
                "jsonl" => text.lines().collect(),
                _ => text.lines().skip(1).collect(),
            };
            assert_eq!(listed.len(), 3, "byte {offset}, {format}: {text}");
            if format == "jsonl" {
                for v in common::json_lines(&text) {
                    if v["run"] != "b" {
                        assert_eq!(v["rows"], 5, "byte {offset}: the others are whole: {v}");
                    }
                }
            }
            if format == "table" {
                table_noticed = out.status.code() == Some(1);
            } else {
                assert_eq!(
                    out.status.code() == Some(1),
                    table_noticed,
                    "byte {offset}: both formats mark the same damage"
                );
            }
            if out.status.code() == Some(1) {
                noticed += 1;
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("b is damaged"), "byte {offset}: {err}");
            }
        }
    }
    std::fs::write(&seg, &clean).unwrap();
    assert!(noticed > 0, "some flips are noticed by a listing");
}

/// The same race over inline segments (issue #14: a short version's rows are in the manifest,
/// not a file): a read of a chain of 200 short versions, whose every version is then purged
/// by another store handle, ends with every row or `MissingFile` naming the purge, never
/// early; and after the reader's store has seen the purge, the rows it has not read yet are
/// gone (its next segment is an error), as they are for a new reader (`Purged`).
#[test]
fn a_read_of_inline_segments_purged_meanwhile_fails_instead_of_ending_early() {
    for refresh_between in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let writer = Store::open(dir.path()).unwrap();
        for k in 0..200u64 {
            let start = if k == 0 {
                writer.run("chain")
            } else {
                writer.run("chain").resume_from(2 * k - 1)
            };
            let mut w = start.start().unwrap();
            w.log_at(2 * k, [("x", (2 * k) as f64)]).unwrap();
            w.log_at(2 * k + 1, [("x", (2 * k + 1) as f64)]).unwrap();
            w.finish().unwrap();
        }
        assert!(common::segment_files(dir.path()).is_empty(), "all inline");
        let head = writer.version("chain").unwrap().id;
        let reader = Store::open(dir.path()).unwrap();
        let mut history = reader
            .history(head.to_string().as_str(), &Query::new())
            .unwrap();
        assert_eq!(history.next().unwrap().unwrap().step, 0);
        // Meanwhile: the run starts over, and every version of the old chain is purged.
        let other = Store::open(dir.path()).unwrap();
        other.run("chain").restart().apply().unwrap();
        let mut purged = 0;
        for v in other.lineage("chain").unwrap().versions.iter().rev() {
            if v.status == steplog::Status::Archived {
                other.purge(v.id).unwrap();
                purged += 1;
            }
        }
        assert_eq!(purged, 200);
        if refresh_between {
            // The reader's store reads the manifest again (any call does).
            assert_eq!(reader.runs().unwrap().len(), 1);
        }
        let failed = read_on(history, 1, 400);
        // Once the reader's store has seen the purge, the next piece it opens is gone.
        assert!(
            !refresh_between || failed,
            "every row read after the purge was seen"
        );
        let fresh = Store::open(dir.path()).unwrap();
        assert!(matches!(
            fresh.history(head.to_string().as_str(), &Query::new()),
            Err(Error::Purged { .. })
        ));
        assert!(fresh.verify().unwrap().is_ok());
    }
}
