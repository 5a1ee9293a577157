//! I/O errors and a full disk in every phase (log, commit, seal, finish, rewind, fork, purge,
//! manifest compaction), injected one operation at a time: each gives a clear error and no
//! corruption; rows committed before it stay readable; once the fault is gone the store works
//! again. A failed fsync poisons the writer.

use std::path::Path;
use std::sync::Arc;

use steplog::io::{FaultyFs, IoOp, SimFs, EIO, ENOSPC};
use steplog::{Durability, Error, Options, Query, Store};

fn open(fs: Arc<dyn steplog::io::FileSystem>) -> steplog::Result<Store> {
    open_with(fs, 300)
}

/// `segment_bytes` small enough that the scenario seals several segments.
fn open_with(fs: Arc<dyn steplog::io::FileSystem>, segment_bytes: u64) -> steplog::Result<Store> {
    Options::new()
        .durability(Durability::PowerLoss)
        .segment_bytes(segment_bytes)
        .block_bytes(150)
        .manifest_compaction_bytes(2048)
        .file_system(fs)
        .open(Path::new("/store"))
}

/// What the scenario got done before it failed.
#[derive(Debug, Default)]
struct Progress {
    committed: u64,
    /// The rewind was attempted; its outcome is unknown if it returned an I/O error.
    rewinding: bool,
}

/// Every phase: log with commits (blocks, new segments, seals), finish, rewind, log again,
/// fork, purge, and enough manifest edits for compactions.
fn scenario(store: &Store, p: &mut Progress) -> steplog::Result<()> {
    let mut run = store.run("r").start()?;
    for i in 0..60u64 {
        run.log_at(i, [("x", i as f64)])?;
        if i % 10 == 9 {
            run.commit()?;
            p.committed = i + 1;
        }
    }
    run.finish()?;
    p.rewinding = true;
    let r = store.run("r").resume_from(20).apply()?;
    let mut run = store.run("r").start()?;
    for i in 21..40u64 {
        run.log_at(i, [("x", i as f64 + 0.25)])?;
    }
    run.finish()?;
    store.run("f").fork_from("r", 30).apply()?;
    store.purge(r.archived.unwrap())?;
    for k in 0..25 {
        store.run(&format!("extra-{k}")).start()?.finish()?;
    }
    Ok(())
}

/// Reads every run back and checks it holds only rows the scenario logged, in order.
fn check_consistent(store: &Store, p: &Progress) {
    let report = store.verify().expect("verify runs");
    assert!(report.is_ok(), "{:?}", report.problems);
    let Ok(it) = store.history("r", &Query::new()) else {
        assert_eq!(p.committed, 0, "run r lost after commits");
        return;
    };
    let rows: Vec<_> = it.collect::<Result<_, _>>().expect("rows of r");
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row.step, k as u64, "steps are contiguous");
        let x = row.fields["x"].as_f64().unwrap();
        assert!(
            x == k as f64 || (k > 20 && x == k as f64 + 0.25),
            "row {k} holds {x}"
        );
    }
    if !p.rewinding {
        assert!(
            rows.len() as u64 >= p.committed,
            "{} rows, {} committed",
            rows.len(),
            p.committed
        );
    } else {
        // Before the rewind: all 60 committed rows; after it: 0..=20 and what followed.
        assert!(
            rows.len() == 60 || (rows.len() >= 21 && rows.len() <= 40),
            "{} rows",
            rows.len()
        );
    }
}

/// After the fault: the store opens, is consistent, and takes writes, rewinds and forks.
fn check_recovers(fs: Arc<dyn steplog::io::FileSystem>, p: &Progress) {
    let store = open(fs).expect("reopen after the fault");
    check_consistent(&store, p);
    let mut w = store.run("r").start().expect("resume after the fault");
    let next = w.next_step(steplog::Stream::History);
    w.log_at(next, [("x", next as f64)]).unwrap();
    w.finish().unwrap();
    store.run("r").resume_from(next).apply().unwrap();
    store
        .run("after-fault")
        .fork_from("r", next)
        .apply()
        .unwrap();
    assert!(store.verify().unwrap().is_ok());
}

fn counts() -> Vec<(IoOp, u64)> {
    let faulty = FaultyFs::new(Arc::new(SimFs::new()));
    let store = open(Arc::new(faulty.clone())).unwrap();
    let before: Vec<u64> = OPS.iter().map(|op| faulty.count(*op)).collect();
    scenario(&store, &mut Progress::default()).unwrap();
    OPS.iter()
        .zip(before)
        .map(|(op, b)| (*op, faulty.count(*op) - b))
        .collect()
}

const OPS: [IoOp; 6] = [
    IoOp::Write,
    IoOp::Sync,
    IoOp::Create,
    IoOp::Rename,
    IoOp::SetLen,
    IoOp::Remove,
];

#[test]
fn each_single_failure_is_a_clear_error_and_the_store_recovers() {
    let counts = counts();
    let total: u64 = counts.iter().map(|c| c.1).sum();
    let counts_text = format!("{counts:?}");
    assert!(
        counts.iter().find(|c| c.0 == IoOp::Rename).unwrap().1 > 0,
        "compaction ran: {counts:?}"
    );
    assert!(
        counts.iter().find(|c| c.0 == IoOp::Remove).unwrap().1 > 0,
        "purge deleted files: {counts:?}"
    );
    let mut failed_runs = 0;
    for (op, n) in counts {
        for nth in 1..=n {
            let sim = SimFs::new();
            let faulty = FaultyFs::new(Arc::new(sim.clone()));
            let store = open(Arc::new(faulty.clone())).unwrap();
            let errno = if nth % 2 == 0 { ENOSPC } else { EIO };
            faulty.fail_nth(op, nth, errno);
            let mut p = Progress::default();
            let result = scenario(&store, &mut p);
            if let Err(e) = &result {
                failed_runs += 1;
                let msg = e.to_string();
                assert!(
                    matches!(e, Error::Io { .. } | Error::Poisoned { .. }),
                    "{op:?} #{nth}: unexpected error {e:?}"
                );
                if let Error::Io { path, .. } = e {
                    assert!(path.starts_with("/store"), "{op:?} #{nth}: {msg}");
                }
            }
            drop(store);
            faulty.heal();
            check_recovers(Arc::new(sim), &p);
        }
    }
    eprintln!("fault injection: {total} single faults injected ({counts_text}), {failed_runs} surfaced as errors");
    assert!(
        failed_runs as u64 > total / 2,
        "most injected faults surfaced as errors ({failed_runs} of {total})"
    );
}

#[test]
fn a_full_disk_fails_cleanly_and_the_store_works_once_space_is_back() {
    for start in [1u64, 5, 17, 40] {
        let sim = SimFs::new();
        let faulty = FaultyFs::new(Arc::new(sim.clone()));
        let store = open(Arc::new(faulty.clone())).unwrap();
        faulty.fail_from(IoOp::Write, start, ENOSPC);
        let mut p = Progress::default();
        let err = scenario(&store, &mut p).unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
        // While the disk is full, readers still read what was committed.
        check_consistent(&store, &p);
        drop(store);
        faulty.heal();
        check_recovers(Arc::new(faulty), &p);
    }
}

#[test]
fn a_failed_fsync_poisons_the_writer() {
    // The first commit of a run creates its head segment: the file's fsync (1), its
    // directory's (2), then the manifest edit's (3). Each is failed in turn.
    for nth in 1..=3 {
        let faulty = FaultyFs::new(Arc::new(SimFs::new()));
        let store = open(Arc::new(faulty.clone())).unwrap();
        let mut run = store.run("r").start().unwrap();
        run.log_at(0, [("x", 0.0)]).unwrap();
        faulty.fail_nth(IoOp::Sync, nth, EIO);
        let err = run.commit().unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        faulty.heal();
        // Never retried as if it worked: the writer refuses everything from now on.
        assert!(matches!(
            run.log_at(1, [("x", 1.0)]),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(run.commit(), Err(Error::Poisoned { .. })));
        assert!(matches!(run.finish(), Err(Error::Poisoned { .. })));
        let other = store.run("other").start();
        if nth == 3 {
            // The manifest's fsync failed: this store refuses manifest edits until reopened,
            // since the page cache can no longer be trusted.
            let err = other.unwrap_err();
            assert!(matches!(err, Error::StorePoisoned { .. }), "{err:?}");
            assert_eq!(err.kind(), steplog::ErrorKind::StorePoisoned);
            assert!(err.to_string().contains("open the store again"), "{err}");
        } else {
            // A segment's fsync failed before anything was recorded: the store is fine.
            other.unwrap().finish().unwrap();
        }
        drop(store);
        let store = open(Arc::new(faulty.clone())).unwrap();
        // The run is left crashed, and a new writer recovers it.
        let r = store
            .runs()
            .unwrap()
            .into_iter()
            .find(|r| r.name == "r")
            .unwrap();
        assert_eq!(r.status, steplog::Status::Crashed, "sync {nth}");
        let mut run = store.run("r").start().unwrap();
        run.log([("x", 2.0)]).unwrap();
        run.finish().unwrap();
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "sync {nth}: {:?}", report.problems);
    }
}

#[test]
fn a_failure_while_recovering_a_torn_head_leaves_it_recoverable() {
    // A crashed writer's image with a torn last block: its last commit was cut mid-write.
    // Segments are large enough here that the head stays open.
    let sim = SimFs::new();
    let store = open_with(Arc::new(sim.clone()), 4096).unwrap();
    let mut run = store.run("r").start().unwrap();
    for i in 0..30u64 {
        run.log_at(i, [("x", i as f64)]).unwrap();
        if i % 10 == 9 {
            run.commit().unwrap();
        }
    }
    let image = sim.crash(steplog::io::CrashMode::Process);
    drop(run);
    let head = image
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let bytes = image.read(&head).unwrap();
    image.write(&head, &bytes[..bytes.len() - 9]).unwrap();
    // What the torn image holds: every committed row, and the blocks that filled up since.
    let clean = open_with(Arc::new(image.crash(steplog::io::CrashMode::Process)), 4096).unwrap();
    let expect = clean
        .history("r", &Query::new())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .expect("the torn image reads back")
        .len();
    assert!((20..30).contains(&expect), "{expect} rows");

    for (op, errno) in [
        (IoOp::SetLen, EIO),
        (IoOp::Write, ENOSPC),
        (IoOp::Sync, EIO),
    ] {
        let trial = image.crash(steplog::io::CrashMode::Process);
        let faulty = FaultyFs::new(Arc::new(trial.clone()));
        let store = open_with(Arc::new(faulty.clone()), 4096).unwrap();
        faulty.fail_nth(op, 1, errno);
        let err = store.run("r").start().unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{op:?}: {err:?}");
        drop(store);
        faulty.heal();
        let store = open_with(Arc::new(trial), 4096).unwrap();
        let rows: Vec<_> = store
            .history("r", &Query::new())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows.len(),
            expect,
            "{op:?}: the valid prefix before the torn block"
        );
        let mut w = store.run("r").start().unwrap();
        assert_eq!(w.next_step(steplog::Stream::History), expect as u64);
        w.log([("x", 0.5)]).unwrap();
        w.finish().unwrap();
        assert!(store.verify().unwrap().is_ok(), "{op:?}");
    }
}
