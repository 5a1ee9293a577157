//! Many short runs written at once (`Store::bulk`): a bulk's runs read back exactly as the
//! same runs written by a writer each (rows of every stream, summaries, configs, statuses,
//! versions), with no file; a commit creates all of them or, refused, none; a run is refused
//! when it is added, with the bulk unchanged, for what a writer would refuse and for what
//! does not fit a bulk.

mod common;

use std::path::Path;

use common::describe;
use serde_json::json;
use steplog::{Batch, Error, Options, Status, Store, Stream, Value};

fn open(dir: &Path) -> Store {
    // Small blocks: a short run's streams hold several blocks; a small compaction threshold:
    // bulks are compacted into tables and stay in the tail.
    Options::new()
        .block_bytes(300)
        .manifest_compaction_bytes(20_000)
        .open(dir)
        .unwrap()
}

/// The rows of run `r`, logged the same way into a writer or a short run.
macro_rules! fill {
    ($w:expr, $r:expr) => {{
        let r: u64 = $r;
        let steps: Vec<u64> = (0..10).map(|i| i * 3).collect();
        let loss: Vec<f64> = steps.iter().map(|&s| 1.0 / (s + r + 1) as f64).collect();
        let epoch: Vec<i64> = steps.iter().map(|&s| (s / 9) as i64).collect();
        $w.log_columns(
            &steps,
            &[("loss", Batch::F64(&loss)), ("epoch", Batch::I64(&epoch))],
        )
        .unwrap();
        for step in 30..30 + r * 7 {
            $w.log_at(step, [("loss", Value::F64(step as f64 * 0.5))])
                .unwrap();
            if step % 4 == 0 {
                $w.log_at(step, [("eval/best", Value::Bool(step % 8 == 0))])
                    .unwrap();
                $w.log_at(step, [("note", Value::Str(format!("r{r} at {step} ✓")))])
                    .unwrap();
            }
            if step % 5 == 0 {
                $w.log_row(Stream::System, Some(step), [("gpu", Value::F64(r as f64))])
                    .unwrap();
                $w.log_row(Stream::Console, None, [("line", format!("line {step}"))])
                    .unwrap();
            }
        }
        $w.log([("odd", Value::F64(f64::NAN)), ("neg", Value::F64(-0.0))])
            .unwrap();
    }};
}

const RUNS: u64 = 12;

fn config(r: u64) -> serde_json::Value {
    json!({"trial": r, "lr": 0.01 * r as f64, "name": format!("t{r}")})
}

#[test]
fn bulk_runs_read_back_as_the_same_runs_written_by_writers() {
    let by_writers = tempfile::tempdir().unwrap();
    let a = open(by_writers.path());
    for r in 0..RUNS {
        let mut w = a
            .run(&format!("trial-{r:02}"))
            .config(config(r))
            .start()
            .unwrap();
        fill!(w, r);
        w.finish().unwrap();
    }
    let in_bulk = tempfile::tempdir().unwrap();
    let b = open(in_bulk.path());
    let mut bulk = b.bulk();
    for r in 0..RUNS {
        let mut run = bulk.run(&format!("trial-{r:02}"));
        run.set_config(config(r));
        fill!(run, r);
        bulk.add(run).unwrap();
    }
    assert_eq!(bulk.len(), RUNS as usize);
    assert!(bulk.bytes() > 0);
    let versions = bulk.commit().unwrap();
    assert!(bulk.is_empty(), "a commit empties the bulk");
    assert_eq!(bulk.bytes(), 0);
    assert_eq!(versions.len(), RUNS as usize);

    let want = describe(&a);
    assert_eq!(describe(&b), want, "in this process");
    for (r, v) in versions.iter().enumerate() {
        let info = b.version(format!("trial-{r:02}").as_str()).unwrap();
        assert_eq!(info.id, *v, "versions in the order the runs were added");
        assert_eq!(info.status, Status::Finished);
    }
    assert!(
        common::segment_files(in_bulk.path()).is_empty(),
        "a bulk writes no segment file"
    );
    assert!(b.verify().unwrap().is_ok());
    drop(b);
    let b = open(in_bulk.path());
    assert_eq!(describe(&b), want, "in a fresh process");
    // The runs are runs like any other: resumed, rewound, forked.
    let mut w = b.run("trial-03").resume_from(30).start().unwrap();
    w.log_at(31, [("loss", 9.0)]).unwrap();
    w.finish().unwrap();
    b.run("fork").fork_from("trial-04", 33).apply().unwrap();
    assert_eq!(common::rows(&b, "trial-03").last().unwrap().step, 31);
    assert_eq!(common::rows(&b, "fork").last().unwrap().step, 33);
    assert!(b.verify().unwrap().is_ok());
}

#[test]
fn bulks_past_manifest_compactions_read_back_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut want = Vec::new();
    for k in 0..8u64 {
        let mut bulk = store.bulk();
        for r in 0..25u64 {
            let name = format!("b{k}-{r:02}");
            let mut run = bulk.run(&name);
            for step in 0..(r % 7) + 1 {
                run.log([("x", (k * 1_000 + r * 10 + step) as f64)])
                    .unwrap();
            }
            want.push((name, (r % 7) + 1, k * 1_000 + r * 10));
            bulk.add(run).unwrap();
        }
        bulk.commit().unwrap();
        // A writer's run between bulks.
        let mut w = store.run(&format!("w{k}")).start().unwrap();
        w.log([("x", -1.0)]).unwrap();
        w.finish().unwrap();
    }
    let tables = std::fs::read_dir(dir.path().join("manifest"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(tables >= 1, "bulks were compacted into manifest tables");
    for store in [store.clone(), open(dir.path())] {
        let runs = store.runs().unwrap();
        assert_eq!(runs.len(), want.len() + 8);
        for (name, n, first) in &want {
            let rows = common::rows(&store, name);
            let got: Vec<f64> = rows.iter().map(|r| common::f(r, "x")).collect();
            let expect: Vec<f64> = (0..*n).map(|s| (first + s) as f64).collect();
            assert_eq!(got, expect, "{name}");
            assert_eq!(store.summary(name.as_str()).unwrap().keys["x"].count, *n);
        }
        assert!(store.verify().unwrap().is_ok());
    }
}

#[test]
fn a_commit_is_refused_whole_when_a_name_is_taken_by_then() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut bulk = store.bulk();
    for name in ["a", "b", "c"] {
        let mut run = bulk.run(name);
        run.log([("x", 1.0)]).unwrap();
        bulk.add(run).unwrap();
    }
    // Another writer (here the same process; any process alike) takes "b" first.
    let mut w = store.run("b").start().unwrap();
    w.log([("x", 2.0)]).unwrap();
    w.finish().unwrap();
    let bytes = bulk.bytes();
    match bulk.commit() {
        Err(Error::RunExists { run }) => assert_eq!(run, "b"),
        other => panic!("expected RunExists for b, got {other:?}"),
    }
    assert_eq!((bulk.len(), bulk.bytes()), (3, bytes), "the bulk is kept");
    let names: Vec<String> = store.runs().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["b"], "none of the bulk's runs was created");
    assert_eq!(common::f(&common::rows(&store, "b")[0], "x"), 2.0);
    // A name taken after the bulk held it is refused again, not overwritten.
    assert!(matches!(bulk.commit(), Err(Error::RunExists { .. })));
    drop(bulk);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_commit_is_refused_whole_when_a_name_is_taken_in_the_manifest_tables() {
    // The name is in the base's tables only (compacted, nothing over it): since 2026-12-07
    // (seventh session) the commit finds it on the lookups the transaction makes to apply
    // the edit, no longer on a lookup of its own.
    let dir = tempfile::tempdir().unwrap();
    let compacting = || {
        Options::new()
            .manifest_compaction_bytes(1)
            .open(dir.path())
            .unwrap()
    };
    let store = compacting();
    let mut w = store.run("b").start().unwrap();
    w.log([("x", 2.0)]).unwrap();
    w.finish().unwrap();
    drop(store);
    let store = compacting();
    let mut bulk = store.bulk();
    for name in ["a", "b"] {
        let mut run = bulk.run(name);
        run.log([("x", 1.0)]).unwrap();
        bulk.add(run).unwrap();
    }
    match bulk.commit() {
        Err(Error::RunExists { run }) => assert_eq!(run, "b"),
        other => panic!("expected RunExists for b, got {other:?}"),
    }
    let names: Vec<String> = store.runs().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["b"], "none of the bulk's runs was created");
    assert_eq!(common::f(&common::rows(&store, "b")[0], "x"), 2.0);
    // The store goes on: the refusal left the state as it reads.
    let mut bulk = store.bulk();
    let mut run = bulk.run("a");
    run.log([("x", 3.0)]).unwrap();
    bulk.add(run).unwrap();
    bulk.commit().unwrap();
    assert_eq!(common::f(&common::rows(&store, "a")[0], "x"), 3.0);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn add_refuses_what_a_writer_or_a_bulk_would_refuse_and_keeps_the_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .inline_segment_bytes(2_000)
        .open(dir.path())
        .unwrap();
    let mut bulk = store.bulk();
    let mut run = bulk.run("kept");
    run.log([("x", 1.0)]).unwrap();
    bulk.add(run).unwrap();
    let held = (bulk.len(), bulk.bytes());

    let refused = |bulk: &mut steplog::Bulk, run: steplog::ShortRun| {
        let e = bulk.add(run).expect_err("refused");
        assert_eq!(
            (bulk.len(), bulk.bytes()),
            held,
            "{e}: the bulk is unchanged"
        );
        e
    };
    // A name the bulk holds.
    let run = bulk.run("kept");
    assert!(matches!(refused(&mut bulk, run), Error::RunExists { .. }));
    // Names a writer refuses.
    for name in ["", "a?b", "bad\nname"] {
        let run = bulk.run(name);
        let e = refused(&mut bulk, run);
        let writer = store
            .run(name)
            .start()
            .expect_err("a writer refuses it too");
        assert_eq!(e.to_string(), writer.to_string(), "{name:?}");
    }
    // A config that is not a JSON object.
    let mut run = bulk.run("config");
    run.set_config(json!([1, 2]));
    let e = refused(&mut bulk, run);
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    // A stream that would not fit an inline segment: not a short run.
    let mut run = bulk.run("long");
    for step in 0..2_000u64 {
        run.log_at(step, [("x", (step as f64).sqrt())]).unwrap();
    }
    let e = refused(&mut bulk, run);
    assert!(
        matches!(&e, Error::TooLarge { run, limit: 2_000, .. } if run == "long"),
        "{e}"
    );
    // What is left commits.
    assert_eq!(bulk.commit().unwrap().len(), 1);
    let names: Vec<String> = store.runs().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["kept"]);
}

#[test]
fn a_short_run_refuses_rows_as_a_writer_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bulk = store.bulk();
    let mut run = bulk.run("r");
    let mut w = store.run("r").start().unwrap();
    // The same call on both, the same outcome; whether it was refused.
    macro_rules! same {
        ($call:ident ( $($arg:expr),* )) => {{
            let a = run.$call($($arg),*);
            let b = w.$call($($arg),*);
            assert_eq!(
                a.as_ref().map_err(ToString::to_string).err(),
                b.as_ref().map_err(ToString::to_string).err(),
                stringify!($call)
            );
            a.is_err()
        }};
    }
    assert!(!same!(log_at(5, [("x", 1.0)])));
    assert!(same!(log_at(3, [("x", 1.0)]))); // a step before the last
    assert!(same!(log_at(steplog::limits::MAX_STEP + 1, [("x", 1.0)])));
    assert!(same!(log_at(6, [("", 1.0)]))); // an invalid key
    assert!(same!(log_at(6, [("_step", 1.0)])));
    assert!(same!(log_columns(
        &[7, 7],
        &[("y", Batch::F64(&[1.0, 2.0]))]
    )));
    assert!(same!(log_columns(&[8, 9], &[("y", Batch::F64(&[1.0]))])));
    assert_eq!(run.next_step(Stream::History), w.next_step(Stream::History));
    assert_eq!(run.next_step(Stream::History), 6);
    w.abort().unwrap();
}

#[test]
fn bulks_committed_from_many_threads_and_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .manifest_compaction_bytes(8_000)
        .open(dir.path())
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let store = store.clone();
            s.spawn(move || {
                for k in 0..5u64 {
                    if t == 3 {
                        let mut w = store.run(&format!("w-{k}")).start().unwrap();
                        w.log([("x", k as f64)]).unwrap();
                        w.finish().unwrap();
                        continue;
                    }
                    let mut bulk = store.bulk();
                    for r in 0..10u64 {
                        let mut run = bulk.run(&format!("t{t}-k{k}-r{r}"));
                        run.log([("x", (t * 100 + k * 10 + r) as f64)]).unwrap();
                        bulk.add(run).unwrap();
                    }
                    bulk.commit().unwrap();
                }
            });
        }
    });
    let fresh = Store::open(dir.path()).unwrap();
    for s in [&store, &fresh] {
        assert_eq!(s.runs().unwrap().len(), 3 * 5 * 10 + 5);
        for t in 0..3u64 {
            for k in 0..5u64 {
                for r in 0..10u64 {
                    let rows = common::rows(s, &format!("t{t}-k{k}-r{r}"));
                    assert_eq!(rows.len(), 1);
                    assert_eq!(common::f(&rows[0], "x"), (t * 100 + k * 10 + r) as f64);
                }
            }
        }
        assert!(s.verify().unwrap().is_ok());
    }
}

/// The compression level changes bytes, never rows: a store at any level (blocks at the
/// level, footers and manifest tables at their own, alternating on one thread as short runs
/// finish) reads back what the default level's store reads, long runs, short runs and bulks.
#[test]
fn every_compression_level_stores_the_same_rows() {
    let write = |level: i32| {
        let dir = tempfile::tempdir().unwrap();
        // Blocks of 4,000 bytes: sections of about 2 KB, which are compressed (sections
        // under 512 bytes are stored raw at any level).
        let store = Options::new()
            .compression_level(level)
            .block_bytes(4_000)
            .manifest_compaction_bytes(20_000)
            .open(dir.path())
            .unwrap();
        let mut w = store.run("long").start().unwrap();
        for step in 0..3_000u64 {
            w.log_at(step, [("x", (step as f64).sin()), ("y", step as f64)])
                .unwrap();
        }
        w.finish().unwrap();
        for r in 0..6u64 {
            let mut w = store.run(&format!("short-{r}")).start().unwrap();
            fill!(w, r);
            w.finish().unwrap();
        }
        let mut bulk = store.bulk();
        for r in 0..6u64 {
            let mut run = bulk.run(&format!("bulk-{r}"));
            fill!(run, r);
            bulk.add(run).unwrap();
        }
        bulk.commit().unwrap();
        assert!(store.verify().unwrap().is_ok(), "level {level}");
        let reopened = Store::open(dir.path()).unwrap();
        let bytes: u64 = common::segment_files(dir.path())
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        (describe(&reopened), bytes)
    };
    let (want, _) = write(3);
    let mut sizes = Vec::new();
    for level in [-5, 1, 9, 19] {
        let (got, bytes) = write(level);
        assert_eq!(got, want, "level {level}");
        sizes.push(bytes);
    }
    assert!(sizes[0] > sizes[3], "the level was applied: {sizes:?}");
}

/// The largest bulk: runs whose streams are each as large as an inline segment can be, added
/// until the next would pass `MAX_BULK_BYTES` (refused at `add`, the bulk unchanged); the
/// commit, one frame of about 22 MB of JSON, reads back whole in a fresh process.
#[test]
fn the_largest_bulk_commits_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .inline_segment_bytes(steplog::limits::MAX_INLINE_SEGMENT_BYTES)
        .open(dir.path())
        .unwrap();
    let mut bulk = store.bulk();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        f64::from_bits((seed >> 12) | 0x3ff0_0000_0000_0000)
    };
    let mut added = 0u64;
    loop {
        let mut run = bulk.run(&format!("big-{added:04}"));
        // Incompressible values: about 3,000 rows fill 64 KiB.
        for step in 0..2_900u64 {
            run.log_at(step, [("a", noise()), ("b", noise())]).unwrap();
        }
        let before = (bulk.len(), bulk.bytes());
        match bulk.add(run) {
            Ok(()) => added += 1,
            Err(Error::TooLarge { limit, .. }) => {
                assert_eq!(limit, steplog::limits::MAX_BULK_BYTES as u64);
                assert_eq!((bulk.len(), bulk.bytes()), before, "the bulk is unchanged");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(added > 100, "{added} runs");
    assert!(bulk.bytes() > steplog::limits::MAX_BULK_BYTES - (64 << 10));
    bulk.commit().unwrap();
    // Another store reads the bulk from the manifest's tail (one binary `batch` frame of
    // about 16 MiB): the writer's compaction is put in place only by its next locked
    // operation or its close.
    let other = Store::open(dir.path()).unwrap();
    assert_eq!(other.run_names().unwrap().len() as u64, added);
    assert_eq!(common::rows(&other, "big-0000").len(), 2_900);
    drop(other);
    drop(store);
    let fresh = Store::open(dir.path()).unwrap();
    assert_eq!(fresh.run_names().unwrap().len() as u64, added);
    let last = format!("big-{:04}", added - 1);
    assert_eq!(common::rows(&fresh, &last).len(), 2_900);
    assert!(fresh.verify().unwrap().is_ok());
}
