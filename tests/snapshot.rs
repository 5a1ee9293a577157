//! `Store::snapshot`: reads through a snapshot see the store as it was when it was taken
//! (no run created later, no row committed later), agree with each other, and a version
//! purged after it was taken reads as `MissingFile`, never as fewer rows.

use steplog::{Error, Options, Query, Store};

fn open(dir: &std::path::Path, inline: usize) -> Store {
    Options::new()
        .block_bytes(200)
        .inline_segment_bytes(inline)
        .open(dir)
        .unwrap()
}

#[test]
fn a_snapshot_sees_no_run_or_version_made_after_it_was_taken() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let mut a = store.run("a").start().unwrap();
    for step in 0..20 {
        a.log_at(step, [("x", step as f64)]).unwrap();
    }
    let a_head = a.version();
    a.finish().unwrap();
    let mut w = store.run("live").start().unwrap();
    for step in 0..50 {
        w.log_at(step, [("x", step as f64)]).unwrap();
    }
    w.commit().unwrap();
    let snap = store.snapshot().unwrap();
    // Meanwhile, from another handle: a new run, and a rewind of "a"; then the live run
    // commits more rows and finishes.
    let other = open(dir.path(), 0);
    let mut n = other.run("new").start().unwrap();
    n.log_at(0, [("y", 1.0)]).unwrap();
    n.finish().unwrap();
    let rewound = other.run("a").resume_from(9).apply().unwrap();
    assert_eq!(rewound.archived, Some(a_head));
    for step in 50..80 {
        w.log_at(step, [("x", 100.0 + step as f64)]).unwrap();
    }
    w.finish().unwrap();

    let listed = snap.runs().unwrap();
    let names: Vec<&str> = listed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "live"]);
    assert_eq!((listed[0].head, listed[0].rows), (a_head, 20));
    // Its writer finished after the snapshot was taken: finished, never crashed.
    assert_eq!(listed[1].status, steplog::Status::Finished);
    assert!(matches!(
        snap.summary("new"),
        Err(Error::RunNotFound { .. })
    ));
    // "a" is the version the snapshot recorded as its head, all 20 rows of it.
    let s = snap.summary("a").unwrap();
    assert_eq!((s.version, s.rows, s.last_step), (a_head, 20, Some(19)));
    assert_eq!(snap.version("a").unwrap().id, a_head);
    let d = snap.downsample("a", "x", .., 10).unwrap().unwrap();
    assert_eq!((d.from, d.to), (0, 19));
    let points: u64 = d.buckets.iter().flatten().map(|b| b.count).sum();
    assert_eq!(points, 20);
    assert_eq!(
        snap.downsample_snapped("a", "x", .., 7)
            .unwrap()
            .unwrap()
            .to,
        19
    );
    // The store itself sees everything, and so does a new snapshot; the old one still not.
    assert_eq!(store.summary("a").unwrap().rows, 10);
    assert_eq!(store.runs().unwrap().len(), 3);
    assert_eq!(store.snapshot().unwrap().runs().unwrap().len(), 3);
    assert_eq!(snap.runs().unwrap().len(), 2);
    // The live head's rows are read as committed when read: all 80 now, and the summary
    // and the downsample of one snapshot count the same.
    let s = snap.summary("live").unwrap();
    assert_eq!(s.rows, 80);
    let d = snap.downsample("live", "x", .., 10).unwrap().unwrap();
    let points: u64 = d.buckets.iter().flatten().map(|b| b.count).sum();
    assert_eq!(points, s.rows);
}

#[test]
fn a_version_purged_or_deleted_after_a_snapshot_reads_as_missing_never_as_fewer_rows() {
    // Segments in files, and inline in the manifest.
    for inline in [0, 1 << 16] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), inline);
        // Rows 0..20 in one segment, 20..40 in a second (the run resumed), then a rewind
        // to step 9: the archived version alone reads the second segment.
        for (from, to) in [(0u64, 20u64), (20, 40)] {
            let mut w = store
                .run("r")
                .resume(steplog::Resume::Allow)
                .start()
                .unwrap();
            for step in from..to {
                w.log_at(step, [("x", step as f64)]).unwrap();
            }
            w.finish().unwrap();
        }
        let archived = store
            .run("r")
            .resume_from(9)
            .apply()
            .unwrap()
            .archived
            .unwrap();
        let mut d = store.run("d").start().unwrap();
        d.log_at(0, [("x", 1.0)]).unwrap();
        d.finish().unwrap();
        drop(store);
        // A fresh handle (nothing cached), its snapshot, then another handle purges the
        // archived version and deletes run "d".
        let store = open(dir.path(), inline);
        let snap = store.snapshot().unwrap();
        let other = open(dir.path(), inline);
        assert!(other.purge(archived).unwrap() <= 1);
        other.delete("d").unwrap();
        // A segment file is gone: MissingFile. An inline segment's bytes are still in the
        // manifest the snapshot holds: read whole. Never fewer rows.
        for (what, reference, rows) in [
            ("purged", archived.to_string(), 40),
            ("deleted", "d".into(), 1),
        ] {
            match (snap.summary(reference.as_str()), inline) {
                (Err(Error::MissingFile { .. }), _) => {}
                (Ok(s), i) if i > 0 && s.rows == rows => {}
                r => panic!("inline {inline}, {what}: {r:?}"),
            }
            match (snap.downsample(reference.as_str(), "x", .., 4), inline) {
                (Err(Error::MissingFile { .. }), _) => {}
                (Ok(Some(d)), i) if i > 0 => {
                    let points: u64 = d.buckets.iter().flatten().map(|b| b.count).sum();
                    assert_eq!(points, rows, "inline {inline}, {what}");
                }
                r => panic!("inline {inline}, {what}: {r:?}"),
            }
        }
        // The new head keeps its ten rows, through the snapshot and outside it.
        assert_eq!(snap.summary("r").unwrap().rows, 10);
        let rows: Vec<_> = store
            .history("r", &Query::new())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 10);
    }
}

#[test]
fn references_through_a_snapshot_follow_the_stores_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let mut w = store.run("r").start().unwrap();
    for step in 0..20 {
        w.log_at(step, [("x", step as f64)]).unwrap();
    }
    w.finish().unwrap();
    let snap = store.snapshot().unwrap();
    // NAME?_step=S reads up to S; past the last step it is refused, as by every read.
    assert_eq!(snap.summary("r?_step=4").unwrap().rows, 5);
    assert_eq!(
        snap.downsample("r?_step=4", "x", .., 3)
            .unwrap()
            .unwrap()
            .to,
        4
    );
    assert!(matches!(
        snap.summary("r?_step=20"),
        Err(Error::StepOutOfRange { .. })
    ));
    assert!(matches!(
        store.summary("r?_step=20"),
        Err(Error::StepOutOfRange { .. })
    ));
    assert!(matches!(
        snap.summary("v99"),
        Err(Error::VersionNotFound { .. })
    ));
    assert!(matches!(
        snap.downsample("r", "x", .., steplog::limits::MAX_BUCKETS + 1),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(snap.downsample("r", "nope", .., 3).unwrap(), None);
}
