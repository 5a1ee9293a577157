//! The process kill loop: a child process logs at full speed (through the library, and
//! through `steplog log`) and reports each committed step; the parent kills it with SIGKILL
//! at a random moment, reopens the store and checks that the history is a prefix of what was
//! logged holding at least every reported step, and that `verify` passes. Rewinds and forks
//! happen between rounds; a second loop kills a writer of thousands of short runs while the
//! manifest is compacted again and again. `STEPLOG_KILL_ROUNDS=1000` runs the long mode (CI
//! runs 16 rounds, and 8 of short runs):
//!
//! ```sh
//! STEPLOG_KILL_ROUNDS=1000 cargo test --release --test kill_loop -- --nocapture
//! ```

mod common;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use steplog::{Options, Query, Store};
use steplog_workload::Rng;

const CHILD_ENV: &str = "STEPLOG_KILL_LOOP_CHILD";

fn value(step: u64) -> f64 {
    step as f64 * 0.5 + 1.0
}

fn open(dir: &Path) -> Store {
    Options::new()
        .segment_bytes(16 << 10)
        .block_bytes(2 << 10)
        .open(dir)
        .expect("open")
}

/// The child: logs run `r` from its next step on, forever, reporting commits on stdout.
#[test]
fn kill_loop_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only runs when spawned by the parent
    };
    let store = open(Path::new(&dir));
    let mut run = store.run("r").start().expect("child start");
    let mut step = run.next_step(steplog::Stream::History);
    let mut out = std::io::stdout().lock();
    loop {
        run.log_at(step, [("x", value(step)), ("y", (step % 7) as f64)])
            .expect("log");
        if step.is_multiple_of(5) {
            run.log_row(steplog::Stream::Console, Some(step), [("line", "tick")])
                .expect("console");
        }
        if step % 25 == 24 {
            run.commit().expect("commit");
            writeln!(out, "committed {step}").expect("report");
            out.flush().expect("flush");
        }
        step += 1;
    }
}

fn spawn_library_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_loop_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn spawn_cli_child(dir: &Path, next: u64) -> Child {
    let mut child = common::cli(dir)
        .args(["log", "r", "--commit-every", "25", "--report-commits"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        for step in next.. {
            let line = format!(
                "{{\"_step\": {step}, \"x\": {:?}, \"y\": {:?}}}\n",
                value(step),
                (step % 7) as f64
            );
            if stdin.write_all(line.as_bytes()).is_err() {
                return; // the child was killed
            }
        }
    });
    child
}

/// Reads `committed N` lines into `reported` until the pipe closes.
fn watch(child: &mut Child, reported: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(n) = line
                .strip_prefix("committed ")
                .and_then(|n| n.trim().parse::<u64>().ok())
            {
                reported.fetch_max(n + 1, Ordering::SeqCst);
            }
        }
    })
}

fn check(store: &Store, reference: &str) -> u64 {
    let rows: Vec<_> = match store.history(reference, &Query::new()) {
        Ok(it) => it.collect::<Result<_, _>>().expect("rows"),
        Err(steplog::Error::RunNotFound { .. }) => return 0,
        Err(e) => panic!("{e}"),
    };
    for (k, r) in rows.iter().enumerate() {
        assert_eq!(r.step, k as u64, "{reference}: steps are a prefix");
        assert_eq!(
            r.fields["x"].as_f64(),
            Some(value(k as u64)),
            "{reference}: step {k}"
        );
    }
    rows.len() as u64
}

#[test]
fn killed_writers_lose_nothing_committed() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(SHORT_ENV).is_ok() {
        return;
    }
    let rounds: u64 = std::env::var("STEPLOG_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x5eed);
    let mut killed_after_commit = 0;
    for round in 0..rounds {
        let reported = Arc::new(AtomicU64::new(0));
        let before = check(&open(dir.path()), "r");
        let mut child = if round % 2 == 0 {
            spawn_library_child(dir.path())
        } else {
            spawn_cli_child(dir.path(), before)
        };
        let watcher = watch(&mut child, reported.clone());
        // Half the rounds are killed after the child has reported a new commit (however
        // slow the machine: it is waited for, a hang fails after a minute), the others at a
        // random moment, which may fall before its first commit.
        let after_commit = round % 4 < 2;
        if after_commit {
            let t = std::time::Instant::now();
            while reported.load(Ordering::SeqCst) <= before {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "round {round}: the child reported no commit"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 150));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        watcher.join().unwrap();

        let store = open(dir.path());
        let got = check(&store, "r");
        let committed = reported.load(Ordering::SeqCst);
        assert!(
            got >= committed,
            "round {round}: {got} rows, {committed} reported committed"
        );
        assert!(got >= before, "round {round}: rows were lost");
        if committed > before {
            killed_after_commit += 1;
        } else {
            assert!(
                !after_commit,
                "round {round}: waited for a commit, saw none"
            );
        }
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);

        // Between rounds: rewind (the child continues after the cutoff with the same values)
        // and fork.
        if round % 4 == 3 && got > 10 {
            let step = got / 2 + rng.next_u64() % (got / 2);
            store.run("r").resume_from(step).apply().unwrap();
            assert_eq!(check(&store, "r"), step + 1);
            let name = format!("fork-{round}");
            let at = (step / 2).min(500);
            store.run(&name).fork_from("r", at).apply().unwrap();
            assert_eq!(check(&store, &name), at + 1);
        }
        // Keep each round's checks bounded: once the run is long, rewind it near its start
        // and purge what was archived.
        if got > 100_000 {
            let step = rng.next_u64() % 1000;
            let r = store.run("r").resume_from(step).apply().unwrap();
            store.purge(r.archived.unwrap()).unwrap();
            assert_eq!(check(&store, "r"), step + 1);
        }
    }
    eprintln!("kill loop: {rounds} rounds, {killed_after_commit} killed after at least one reported commit");
    // Structural, not timing: every round that waited for a commit counts.
    assert!(
        killed_after_commit >= rounds.div_ceil(2),
        "half the kills came after commits ({killed_after_commit} of {rounds})"
    );
}

const SHORT_ENV: &str = "STEPLOG_KILL_LOOP_SHORT";

fn open_short(dir: &Path) -> Store {
    // A small compaction threshold: the manifest is compacted into tables (and the tables
    // merged) many times a round, so kills land inside compactions too.
    Options::new()
        .manifest_compaction_bytes(8 << 10)
        .open(dir)
        .expect("open")
}

/// The short-runs child: from run index `first` on, forever, starts run `s-NNNNNN`, logs 3
/// rows, finishes it, and reports `finished N`.
#[test]
fn kill_loop_short_child() {
    let Ok(spec) = std::env::var(SHORT_ENV) else {
        return; // only runs when spawned by the parent
    };
    let (dir, first) = spec.split_once('|').expect("dir|first");
    let store = open_short(Path::new(dir));
    let mut out = std::io::stdout().lock();
    for n in first.parse::<u64>().expect("first").. {
        let mut w = store.run(&format!("s-{n:06}")).start().expect("start");
        for i in 0..3u64 {
            w.log_at(i, [("x", (n * 10 + i) as f64)]).expect("log");
        }
        w.finish().expect("finish");
        writeln!(out, "committed {n}").expect("report");
        out.flush().expect("flush");
    }
}

/// Thousands of short runs in flight across kills: every run reported finished reads its
/// three rows, any other is a prefix of them (or absent), and the store verifies clean.
#[test]
fn killed_writers_of_short_runs_lose_no_finished_run() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(SHORT_ENV).is_ok() {
        return;
    }
    let rounds = std::env::var("STEPLOG_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(16)
        .div_ceil(2);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x5407);
    let mut finished: Vec<u64> = Vec::new();
    let mut next = 0u64;
    for round in 0..rounds {
        let reported = Arc::new(AtomicU64::new(0));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_loop_short_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SHORT_ENV, format!("{}|{next}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let watcher = watch(&mut child, reported.clone());
        // Killed once the child has finished at least 150 runs this round (waited for,
        // whatever the machine's speed), plus a random moment.
        let t = std::time::Instant::now();
        while reported.load(Ordering::SeqCst) < next + 150 {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "round {round}: the child finished too few runs"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 100));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        watcher.join().unwrap();
        let done = reported.load(Ordering::SeqCst);
        finished.extend(next..done);

        let store = open_short(dir.path());
        let runs = store.runs().unwrap();
        for r in &runs {
            let n: u64 = r.name[2..].parse().unwrap();
            let rows: Vec<_> = store
                .history(r.name.as_str(), &Query::new())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(row.step, i as u64, "{}", r.name);
                assert_eq!(row.fields["x"].as_f64(), Some((n * 10 + i as u64) as f64));
            }
            assert!(rows.len() <= 3, "{}", r.name);
        }
        let listed: std::collections::HashMap<&str, u64> =
            runs.iter().map(|r| (r.name.as_str(), r.rows)).collect();
        for n in &finished {
            let name = format!("s-{n:06}");
            assert_eq!(
                listed.get(name.as_str()),
                Some(&3),
                "round {round}: {name} finished"
            );
        }
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        // The next child starts after every run that exists (a crashed one included).
        next = runs
            .iter()
            .map(|r| r.name[2..].parse::<u64>().unwrap() + 1)
            .max()
            .unwrap_or(0);
    }
    eprintln!(
        "kill loop, short runs: {rounds} rounds, {} runs finished and kept",
        finished.len()
    );
    assert!(finished.len() as u64 >= rounds * 150);
}
