//! Concurrency: a reader thread and reader processes see a growing, consistent prefix while
//! a writer logs; a second writer on the same run gets `Locked`, in this process or another;
//! several processes writing different runs of one store lose nothing.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use steplog::{Error, Options, Store};

const N: u64 = 20_000;

fn assert_prefix(steps: &[u64], what: &str) {
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(*s, i as u64, "{what}: not a prefix at row {i}");
    }
}

#[test]
fn readers_in_threads_and_processes_see_a_growing_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(4096).open(dir.path()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    // Readers that have seen a partial run: the writer waits for both at its midpoint, so
    // that "some reads saw a partial run" does not depend on how threads are scheduled.
    let partial = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let done = done.clone();
            let partial = partial.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut counted = false;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    match store.history("r", &steplog::Query::new()) {
                        Ok(it) => {
                            let rows: Vec<_> =
                                it.collect::<Result<_, _>>().expect("reader thread rows");
                            let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
                            assert_prefix(&steps, "reader thread");
                            assert!(rows.iter().all(|r| f(r, "x") == r.step as f64));
                            if !counted && !steps.is_empty() && (steps.len() as u64) < N {
                                counted = true;
                                partial.fetch_add(1, Ordering::SeqCst);
                            }
                            seen.push(steps.len());
                        }
                        Err(Error::RunNotFound { .. }) => seen.push(0),
                        Err(e) => panic!("reader thread: {e}"),
                    }
                    if finished {
                        return seen;
                    }
                }
            })
        })
        .collect();

    let mut run = store.run("r").start().unwrap();
    let mut process_reads = Vec::new();
    for i in 0..N {
        run.log_at(i, [("x", i as f64)]).unwrap();
        if i % 50 == 49 {
            run.commit().unwrap();
        }
        if i == N / 2 {
            let t = std::time::Instant::now();
            while partial.load(Ordering::SeqCst) < 2 {
                assert!(
                    t.elapsed().as_secs() < 60,
                    "a reader never read the partial run"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        if i % 5000 == 4999 {
            // A reader process, while the writer is mid-run.
            let out = cli_ok(dir.path(), &["history", "r", "--keys", "x"]);
            let steps: Vec<u64> = json_lines(&out)
                .iter()
                .map(|v| v["_step"].as_u64().unwrap())
                .collect();
            assert_prefix(&steps, "reader process");
            assert!(
                steps.len() as u64 > i - 50,
                "committed rows are visible to another process"
            );
            process_reads.push(steps.len());
        }
    }
    run.finish().unwrap();
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        let seen = reader.join().unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "the prefix never shrinks"
        );
        assert_eq!(*seen.last().unwrap() as u64, N);
        assert!(
            seen.iter().any(|&n| n > 0 && (n as u64) < N),
            "some reads saw a partial run"
        );
    }
    assert!(process_reads.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_second_writer_gets_locked_in_this_process_and_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut run = store.run("r").start().unwrap();
    run.log([("x", 1.0)]).unwrap();
    run.commit().unwrap();

    assert!(matches!(store.run("r").start(), Err(Error::Locked { run }) if run == "r"));
    let other = Store::open(dir.path()).unwrap();
    assert!(matches!(other.run("r").start(), Err(Error::Locked { .. })));
    assert!(matches!(
        other.run("r").resume_from(0).apply(),
        Err(Error::Locked { .. })
    ));

    let out = cli_in(dir.path(), &["log", "r"], "{\"x\": 2}\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run 'r' is locked"), "{err}");
    assert_eq!(store.runs().unwrap()[0].status, steplog::Status::Running);

    // Another run is free to write meanwhile.
    other.run("s").start().unwrap().finish().unwrap();
    run.finish().unwrap();
    assert_eq!(store.runs().unwrap()[0].status, steplog::Status::Finished);
    store.run("r").start().unwrap().finish().unwrap();
}

#[test]
fn several_processes_write_different_runs_of_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..2000)
        .map(|i| format!("{{\"i\": {i}, \"half\": {}}}\n", i as f64 / 2.0))
        .collect();
    let children: Vec<_> = (0..4)
        .map(|k| {
            let mut c = cli(dir.path());
            c.args(["log", &format!("run-{k}")])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().unwrap();
            let mut input = child.stdin.take().unwrap();
            let text = lines.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                for chunk in text.as_bytes().chunks(4096) {
                    input.write_all(chunk).unwrap();
                }
            });
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = Store::open(dir.path()).unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 4);
    for r in &runs {
        assert_eq!((r.rows, r.last_step), (2000, Some(1999)), "{}", r.name);
        let rows = rows(&store, &r.name);
        assert!(rows
            .iter()
            .all(|row| row.fields["i"] == steplog::Value::I64(row.step as i64)));
    }
    let versions: Vec<_> = store.versions().unwrap().iter().map(|v| v.id).collect();
    assert_eq!(versions.len(), 4, "every process got its own version id");
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_rewind_while_a_reader_holds_the_old_head_keeps_its_view() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut run = store.run("r").start().unwrap();
    for i in 0..500u64 {
        run.log_at(i, [("x", i as f64)]).unwrap();
    }
    run.finish().unwrap();
    let mut it = store.history("r", &steplog::Query::new()).unwrap();
    let first = it.next().unwrap().unwrap();
    let other = Store::open(dir.path()).unwrap();
    other.run("r").resume_from(10).apply().unwrap();
    let rest: Vec<_> = it.collect::<Result<_, _>>().unwrap();
    assert_eq!(first.step, 0);
    assert_eq!(
        rest.len(),
        499,
        "an iterator keeps reading the version it started on"
    );
    assert_eq!(rows(&store, "r").len(), 11);
}

/// The real file system, on which the store's `MANIFEST` is looked for and not found
/// (by the store's open, then by its manifest's), and after the second look, before the
/// opener goes on to create one, another store creates the store and writes a run: two
/// processes opening a new store at once, the second a moment behind.
#[derive(Debug)]
struct CreatedMeanwhile {
    dir: std::path::PathBuf,
    looks: std::sync::atomic::AtomicUsize,
    done: AtomicBool,
}

impl common::hooked::Hooks for CreatedMeanwhile {
    fn opened(&self, path: &std::path::Path, found: bool) {
        if !found && path.ends_with("MANIFEST") && self.looks.fetch_add(1, Ordering::SeqCst) == 1 {
            self.done.store(true, Ordering::SeqCst);
            let other = Store::open(&self.dir).unwrap();
            let mut w = other.run("first").start().unwrap();
            w.log_at(0, [("x", 1.0)]).unwrap();
            w.finish().unwrap();
        }
    }
}

#[test]
fn a_store_another_process_creates_and_writes_while_this_one_opens_it_opens() {
    // Until 2026-12-07 an opener that found no manifest looked for signs of a lost one (run
    // lock files, segments, tables) before taking `LOCK`: another process that had created
    // the store and written a run meanwhile made it refuse the store as damaged (found by
    // `several_processes_write_different_runs_of_one_store`, once in a CI run).
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(CreatedMeanwhile {
        dir: dir.path().to_owned(),
        looks: Default::default(),
        done: AtomicBool::new(false),
    });
    let store = Options::new()
        .file_system(Arc::new(common::hooked::Hooked(fs.clone())))
        .open(dir.path())
        .unwrap();
    assert!(fs.done.load(Ordering::SeqCst), "the other store never ran");
    assert_eq!(common::f(&rows(&store, "first")[0], "x"), 1.0);
    let mut w = store.run("second").start().unwrap();
    w.log_at(0, [("x", 2.0)]).unwrap();
    w.finish().unwrap();
    assert_eq!(store.runs().unwrap().len(), 2);
}
