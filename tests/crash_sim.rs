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

/// Many short runs while the manifest is compacted into tables (and the tables merged) again
/// and again: at every sync point, in every crash mode, every run finished by then reads all
/// its rows, no run reads a row it was not given, the store verifies clean and takes new runs.
#[test]
fn short_runs_across_manifest_compactions_survive_every_sync_point() {
    let fs = SimFs::new();
    let store = Options::new()
        .durability(Durability::PowerLoss)
        .manifest_compaction_bytes(700)
        .file_system(Arc::new(fs.clone()))
        .open(Path::new("/store"))
        .expect("open");
    fs.record_sync_points();
    let base = fs.syncs();
    let value = |r: u64, i: u64| (r * 10 + i) as f64;
    // (sync count when the run's finish returned, run, rows)
    let mut done: Vec<(u64, u64, u64)> = Vec::new();
    for r in 0..30u64 {
        let mut w = store.run(&format!("run-{r:02}")).start().unwrap();
        for i in 0..3 {
            w.log_at(i, [("x", value(r, i))]).unwrap();
        }
        w.finish().unwrap();
        done.push((fs.syncs(), r, 3));
    }
    let points = fs.sync_points();
    eprintln!(
        "crash sim: {} sync points x {} crash modes over 30 short runs",
        points.len(),
        MODES.len()
    );
    let tables = |fs: &SimFs| {
        fs.files()
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "tab"))
            .count()
    };
    assert!(tables(&fs) >= 1, "the manifest was compacted into tables");
    for (j, point) in points.iter().enumerate() {
        let at = base + j as u64 + 1;
        for (m, mode) in MODES.iter().enumerate() {
            let image = point.crash(mode(j as u64 * 3 + m as u64));
            let store = Options::new()
                .durability(Durability::PowerLoss)
                .manifest_compaction_bytes(700)
                .file_system(Arc::new(image.clone()))
                .open(Path::new("/store"))
                .unwrap_or_else(|e| panic!("sync point {j} {:?}: {e}", mode(0)));
            for r in 0..30u64 {
                let got = steps(&store, &format!("run-{r:02}"));
                let committed = done.iter().any(|&(s, run, _)| run == r && s <= at);
                if committed {
                    assert_eq!(got.len(), 3, "sync point {j}: run {r} was finished");
                }
                for (i, (s, x)) in got.iter().enumerate() {
                    assert_eq!((*s, *x), (i as u64, value(r, i as u64)), "run {r}");
                }
            }
            let report = store.verify().unwrap();
            assert!(
                report.is_ok(),
                "sync point {j} {:?}: {:?}",
                mode(0),
                report.problems
            );
            let mut w = store.run("after").start().unwrap();
            w.log_at(0, [("x", 1.0)]).unwrap();
            w.finish().unwrap();
            assert!(store.verify().unwrap().is_ok());
        }
    }
}

/// A run rewound again and again while its lineage is packed (a pack fanout of 2: packs of
/// several levels, each one manifest append) and the manifest compacted: at every sync
/// point, in every crash mode, every archived version reads exactly its rows (through
/// whatever packs the image holds), the head reads a prefix of its own that keeps every row
/// the rewind kept, and the store verifies clean (every pack is the rows it stands for).
#[test]
fn a_lineage_packed_as_it_is_rewound_survives_every_sync_point() {
    let open = |fs: &SimFs| {
        Options::new()
            .durability(Durability::PowerLoss)
            .manifest_compaction_bytes(2_000)
            .pack_fanout(2)
            .file_system(Arc::new(fs.clone()))
            .open(Path::new("/store"))
    };
    // Version k holds steps 0..=2k+2; step s was written by version max(0, (s - 1) / 2).
    let rows_of = |k: u64| -> Vec<(u64, f64)> {
        (0..=2 * k + 2)
            .map(|s| (s, (s.saturating_sub(1) / 2 * 100 + s) as f64))
            .collect()
    };
    let fs = SimFs::new();
    let store = open(&fs).unwrap();
    fs.record_sync_points();
    const DEPTH: u64 = 12;
    for k in 0..DEPTH {
        let start = if k == 0 {
            store.run("deep")
        } else {
            store.run("deep").resume_from(2 * k)
        };
        let mut w = start.start().unwrap();
        for &(s, x) in &rows_of(k)[if k == 0 { 0 } else { 2 * k as usize + 1 }..] {
            w.log_at(s, [("x", x)]).unwrap();
        }
        w.finish().unwrap();
    }
    assert_eq!(steps(&store, "deep"), rows_of(DEPTH - 1));
    let points = fs.sync_points();
    eprintln!(
        "crash sim: {} sync points x {} crash modes over {DEPTH} packed rewinds",
        points.len(),
        MODES.len()
    );
    for (j, point) in points.iter().enumerate() {
        for (m, mode) in MODES.iter().enumerate() {
            let image = point.crash(mode(j as u64 * 3 + m as u64));
            let store = open(&image).unwrap_or_else(|e| panic!("sync point {j}: {e}"));
            let Ok(lineage) = store.lineage("deep") else {
                continue; // crashed before the run was created
            };
            let head = lineage.versions.len() - 1;
            for (k, v) in lineage.versions.iter().enumerate() {
                let got = steps(&store, &v.id.to_string());
                let want = rows_of(k as u64);
                if k < head {
                    assert_eq!(got, want, "sync point {j} {:?}: {}", mode(0), v.id);
                } else {
                    let kept = if k == 0 { 0 } else { 2 * k + 1 };
                    assert!(
                        got.len() >= kept && want.starts_with(&got),
                        "sync point {j} {:?}: head {} reads {got:?}",
                        mode(0),
                        v.id
                    );
                }
            }
            let report = store.verify().unwrap();
            assert!(
                report.is_ok(),
                "sync point {j} {:?}: {:?}",
                mode(0),
                report.problems
            );
        }
    }
}

/// Bulks of short runs committed while the manifest is compacted: at every sync point, in
/// every crash mode, each bulk's runs are all there with all their rows or none is, every
/// bulk committed by then is there, and the store verifies clean and takes another bulk.
#[test]
fn a_bulk_commit_is_atomic_at_every_sync_point() {
    let fs = SimFs::new();
    let open = |fs: &SimFs| {
        Options::new()
            .durability(Durability::PowerLoss)
            .manifest_compaction_bytes(1_500)
            .file_system(Arc::new(fs.clone()))
            .open(Path::new("/store"))
            .expect("open")
    };
    let store = open(&fs);
    fs.record_sync_points();
    let base = fs.syncs();
    const BULKS: u64 = 6;
    const RUNS: u64 = 5;
    let value = |b: u64, r: u64, i: u64| (b * 100 + r * 10 + i) as f64;
    let name = |b: u64, r: u64| format!("b{b}-r{r}");
    // The sync count when each bulk's commit returned.
    let mut done = Vec::new();
    for b in 0..BULKS {
        let mut bulk = store.bulk();
        for r in 0..RUNS {
            let mut run = bulk.run(&name(b, r));
            for i in 0..=r {
                run.log_at(i, [("x", value(b, r, i))]).unwrap();
            }
            bulk.add(run).unwrap();
        }
        bulk.commit().unwrap();
        done.push(fs.syncs());
    }
    let points = fs.sync_points();
    eprintln!(
        "crash sim: {} sync points x {} crash modes over {BULKS} bulks",
        points.len(),
        MODES.len()
    );
    assert!(
        points.len() as u64 >= BULKS,
        "a sync point per commit at least"
    );
    for (j, point) in points.iter().enumerate() {
        let at = base + j as u64 + 1;
        for (m, mode) in MODES.iter().enumerate() {
            let image = point.crash(mode(j as u64 * 3 + m as u64));
            let store = open(&image);
            for b in 0..BULKS {
                let there: Vec<bool> = (0..RUNS)
                    .map(|r| {
                        let got = steps(&store, &name(b, r));
                        if got.is_empty() {
                            return false;
                        }
                        let want: Vec<(u64, f64)> = (0..=r).map(|i| (i, value(b, r, i))).collect();
                        assert_eq!(got, want, "sync point {j} {:?}: {}", mode(0), name(b, r));
                        true
                    })
                    .collect();
                assert!(
                    there.iter().all(|&t| t == there[0]),
                    "sync point {j} {:?}: bulk {b} is part there: {there:?}",
                    mode(0)
                );
                if done[b as usize] <= at {
                    assert!(there[0], "sync point {j}: bulk {b} was committed");
                }
            }
            let report = store.verify().unwrap();
            assert!(
                report.is_ok(),
                "sync point {j} {:?}: {:?}",
                mode(0),
                report.problems
            );
            let mut bulk = store.bulk();
            let mut run = bulk.run("after");
            run.log([("x", 1.0)]).unwrap();
            bulk.add(run).unwrap();
            bulk.commit().unwrap();
            assert_eq!(steps(&store, "after"), [(0, 1.0)]);
            assert!(store.verify().unwrap().is_ok());
        }
    }
}

/// Deleting a run (issue #16): at every sync point, in every crash mode, and torn anywhere in
/// its unsynced writes, the image holds the run whole or holds it not at all (both are
/// seen); the fork of it reads every row either way, the store
/// verifies clean (a file left by a crash after the edit is one `gc` deletes), and the name
/// can be taken again.
#[test]
fn a_delete_is_atomic_at_every_sync_point() {
    let fs = SimFs::new();
    let store = open(&fs);
    let mut run = store.run("r").start().unwrap();
    for i in 0..80u64 {
        run.log_at(i, [("x", i as f64)]).unwrap();
    }
    run.finish().unwrap();
    store.run("f").fork_from("r", 30).apply().unwrap();
    let whole: Vec<(u64, f64)> = (0..80).map(|i| (i, i as f64)).collect();
    // Besides the sync points (each after the edit's fsync or a file deletion's), a delete
    // made with nothing fsynced, crashed by power losses that keep a random part of its
    // writes: the edit's frame torn at any byte.
    let unsynced = fs.crash(CrashMode::Process);
    fs.record_sync_points();
    store.delete("r").unwrap();
    let points = fs.sync_points();
    assert!(!points.is_empty());
    let mut images: Vec<SimFs> = points
        .iter()
        .enumerate()
        .flat_map(|(j, point)| {
            MODES
                .iter()
                .enumerate()
                .map(move |(m, mode)| point.crash(mode(j as u64 * 3 + m as u64)))
        })
        .collect();
    Options::new()
        .segment_bytes(900)
        .block_bytes(200)
        .file_system(Arc::new(unsynced.clone()))
        .open(Path::new("/store"))
        .unwrap()
        .delete("r")
        .unwrap();
    images.extend((0..24).map(|seed| unsynced.crash(CrashMode::PowerLossTorn { seed })));
    let (mut gone_seen, mut whole_seen) = (false, false);
    for (j, image) in images.iter().enumerate() {
        {
            let store = open(image);
            let r = steps(&store, "r");
            assert!(
                r == whole || r.is_empty(),
                "image {j}: r has {} rows",
                r.len()
            );
            gone_seen |= r.is_empty();
            whole_seen |= r == whole;
            assert_eq!(steps(&store, "f"), whole[..=30], "image {j}");
            assert!(store.verify().unwrap().is_ok(), "image {j}");
            store.gc().unwrap();
            if r.is_empty() {
                let mut w = store.run("r").start().unwrap();
                w.log_at(0, [("x", 7.0)]).unwrap();
                w.finish().unwrap();
                assert_eq!(steps(&store, "r"), [(0, 7.0)]);
            }
        }
    }
    assert!(gone_seen && whole_seen, "images before and after the edit");
    let last = open(&points[points.len() - 1].crash(CrashMode::PowerLoss));
    assert!(steps(&last, "r").is_empty());
}
