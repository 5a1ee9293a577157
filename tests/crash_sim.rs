//! Crashes at every sync point, on the crash-simulating file system: with
//! `Durability::PowerLoss`, the image after a process crash, after a power loss, and after a
//! power loss that keeps part of the unsynced writes (the last torn at a random byte) always
//! opens to a prefix of what was logged that holds every row committed before the crash;
//! `verify` finds nothing wrong, and the run can be resumed. Rewinds and forks are atomic:
//! an image shows the store before or after them, never in between.

use std::path::Path;
use std::sync::Arc;

use steplog::io::{CrashMode, SimFs};
use steplog::{Durability, Options, Query, Store};

fn open(fs: &SimFs) -> Store {
    Options::new()
        .durability(Durability::PowerLoss)
        .segment_bytes(900)
        .block_bytes(200)
        .file_system(Arc::new(fs.clone()))
        .open(Path::new("/store"))
        .expect("open")
}

fn steps(store: &Store, reference: &str) -> Vec<(u64, f64)> {
    match store.history(reference, &Query::new()) {
        Err(steplog::Error::RunNotFound { .. }) => Vec::new(),
        Err(e) => panic!("history: {e}"),
        Ok(it) => it
            .map(|r| r.expect("row"))
            .map(|r| (r.step, r.fields["x"].as_f64().expect("x")))
            .collect(),
    }
}

const MODES: [fn(u64) -> CrashMode; 3] = [
    |_| CrashMode::Process,
    |_| CrashMode::PowerLoss,
    |seed| CrashMode::PowerLossTorn { seed },
];

#[test]
fn every_sync_point_keeps_every_committed_row_and_invents_none() {
    let fs = SimFs::new();
    let store = open(&fs);
    fs.record_sync_points();
    let base = fs.syncs();
    // (sync count when a commit returned, rows committed by then)
    let mut commits = vec![(base, 0u64)];
    let mut run = store.run("r").start().unwrap();
    for i in 0..120u64 {
        run.log_at(i, [("x", i as f64 * 0.5)]).unwrap();
        if i % 7 == 6 {
            run.commit().unwrap();
            commits.push((fs.syncs(), i + 1));
        }
    }
    run.finish().unwrap();
    commits.push((fs.syncs(), 120));

    let points = fs.sync_points();
    eprintln!(
        "crash sim: {} sync points x {} crash modes while logging",
        points.len(),
        MODES.len()
    );
    assert!(
        points.len() >= commits.len() - 1,
        "at least one sync point per commit ({})",
        points.len()
    );
    for (j, point) in points.iter().enumerate() {
        let at = base + j as u64 + 1;
        let must_have = commits
            .iter()
            .filter(|(s, _)| *s <= at)
            .map(|c| c.1)
            .max()
            .unwrap_or(0);
        for (m, mode) in MODES.iter().enumerate() {
            let image = point.crash(mode(j as u64 * 3 + m as u64));
            let store = open(&image);
            let got = steps(&store, "r");
            assert!(
                got.len() as u64 >= must_have,
                "sync point {j}, {:?}: {} rows, {must_have} committed",
                mode(0),
                got.len()
            );
            for (k, (s, x)) in got.iter().enumerate() {
                assert_eq!(
                    (*s, *x),
                    (k as u64, k as f64 * 0.5),
                    "sync point {j}: an invented row"
                );
            }
            let report = store.verify().unwrap();
            assert!(
                report.is_ok(),
                "sync point {j} {:?}: {:?}",
                mode(0),
                report.problems
            );
            // The store works on: resume the run and log after what survived.
            let mut w = store.run("r").start().unwrap();
            let next = got.len() as u64;
            w.log_at(next, [("x", next as f64 * 0.5)]).unwrap();
            w.finish().unwrap();
            assert_eq!(steps(&store, "r").len() as u64, next + 1);
            assert!(store.verify().unwrap().is_ok());
        }
    }
}

#[test]
fn rewind_and_fork_are_atomic_at_every_sync_point() {
    let fs = SimFs::new();
    let store = open(&fs);
    let mut run = store.run("r").start().unwrap();
    for i in 0..60u64 {
        run.log_at(i, [("x", i as f64 * 0.5)]).unwrap();
        if i % 9 == 8 {
            run.commit().unwrap();
        }
    }
    run.finish().unwrap(); // all committed
    let before: Vec<(u64, f64)> = (0..60).map(|i| (i, i as f64 * 0.5)).collect();

    fs.record_sync_points();
    store.run("r").resume_from(30).apply().unwrap();
    store.run("f").fork_from("r", 20).apply().unwrap();
    let points = fs.sync_points();
    eprintln!(
        "crash sim: {} sync points x {} crash modes during rewind and fork",
        points.len(),
        MODES.len()
    );
    assert!(points.len() >= 2);
    for (j, point) in points.iter().enumerate() {
        for (m, mode) in MODES.iter().enumerate() {
            let store = open(&point.crash(mode(j as u64 * 3 + m as u64)));
            let r = steps(&store, "r");
            assert!(
                r == before || r == before[..=30],
                "sync point {j}: r has {} rows",
                r.len()
            );
            let f = steps(&store, "f");
            assert!(
                f.is_empty() || f == before[..=20],
                "sync point {j}: f has {} rows",
                f.len()
            );
            assert!(store.verify().unwrap().is_ok());
        }
    }
    // After the last sync point, both are there.
    let last = open(&points[points.len() - 1].crash(CrashMode::PowerLoss));
    assert_eq!(steps(&last, "r"), before[..=30]);
    assert_eq!(steps(&last, "f"), before[..=20]);
}

/// A restart (issue #12: the head archived whole, a new head with no row) is one manifest
/// edit too: at every sync point the run has its rows or none, never a part.
#[test]
fn a_restart_is_atomic_at_every_sync_point() {
    let fs = SimFs::new();
    let store = open(&fs);
    let mut run = store.run("r").start().unwrap();
    for i in 0..40u64 {
        run.log_at(i, [("x", i as f64 * 0.5)]).unwrap();
    }
    run.finish().unwrap();
    let before: Vec<(u64, f64)> = (0..40).map(|i| (i, i as f64 * 0.5)).collect();
    fs.record_sync_points();
    store.run("r").restart().start().unwrap().finish().unwrap();
    let points = fs.sync_points();
    assert!(!points.is_empty());
    for (j, point) in points.iter().enumerate() {
        for (m, mode) in MODES.iter().enumerate() {
            let store = open(&point.crash(mode(j as u64 * 3 + m as u64)));
            let r = steps(&store, "r");
            assert!(
                r == before || r.is_empty(),
                "sync point {j}: r has {} rows",
                r.len()
            );
            let versions = store.versions().unwrap();
            if r.is_empty() {
                // The old head is archived whole, never lost.
                let old = versions
                    .iter()
                    .find(|v| v.status == steplog::Status::Archived);
                assert_eq!(steps(&store, &old.unwrap().id.to_string()), before);
            }
            assert!(store.verify().unwrap().is_ok());
        }
    }
    let last = open(&points[points.len() - 1].crash(CrashMode::PowerLoss));
    assert!(steps(&last, "r").is_empty());
}
