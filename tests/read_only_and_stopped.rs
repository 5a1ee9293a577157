//! Reading needs read permission only, and a process stopped while holding a lock blocks no
//! reader (issue #11, items 6 and 7).
//!
//! What broke: opening a store took the store's exclusive `LOCK`, so `runs`, `history` and
//! `verify` failed with "Permission denied" on a read-only store, and hung forever while a
//! process stopped with SIGSTOP held that lock; a writer waited for it without a bound.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{cli, store_image, wait_or_hang};
use steplog::{Error, Options, Store};

fn make_store(dir: &Path) {
    let store = Store::open(dir).unwrap();
    for name in ["a", "b"] {
        let mut w = store.run(name).start().unwrap();
        for step in 0..200u64 {
            w.log_at(step, [("loss", 1.0 / (step + 1) as f64)]).unwrap();
        }
        w.finish().unwrap();
    }
    store.run("a").resume_from(100).apply().unwrap();
}

const READS: [&[&str]; 6] = [
    &["runs"],
    &["runs", "--all"],
    &["history", "a"],
    &["summary", "v1"],
    &["lineage", "a"],
    &["verify"],
];

fn run_reads(prefix: &[&str], store: &Path, how: &str) {
    for args in READS {
        let mut c = if prefix.is_empty() {
            cli(store)
        } else {
            let mut c = Command::new(prefix[0]);
            c.args(&prefix[1..])
                .arg(env!("CARGO_BIN_EXE_steplog"))
                .arg("--store")
                .arg(store)
                .env_remove("STEPLOG_STORE");
            c
        };
        let child = c
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_or_hang(child, &format!("steplog {args:?} ({how})"));
        assert!(
            out.status.success(),
            "steplog {args:?} ({how}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn chmod_r(path: &Path, mode: &str) {
    let ok = Command::new("chmod")
        .args(["-R", mode])
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_store_without_write_permission_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    make_store(&store);
    let before = store_image(&store);
    // Readable and traversable by anyone, writable by nobody.
    chmod_r(dir.path(), "a+rX,a-w");
    if is_root() {
        // Root ignores permission bits: read as the unprivileged user `nobody` instead.
        let nobody = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        run_reads(&nobody, &store, "as nobody");
        let out = Command::new("setpriv")
            .args(&nobody[1..])
            .arg(env!("CARGO_BIN_EXE_steplog"))
            .arg("--store")
            .arg(&store)
            .args(["log", "newrun"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                // A row to write: `log` writes nothing before its first row.
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(b"{\"x\": 1}\n")?;
                child.wait_with_output()
            })
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "a write fails cleanly");
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(msg.contains("Permission denied"), "{msg}");
    } else {
        run_reads(&[], &store, "read-only permissions");
    }
    chmod_r(dir.path(), "u+w");
    assert_eq!(store_image(&store), before, "reading changed nothing");
}

#[test]
fn a_store_on_a_read_only_mount_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    let before = store_image(dir.path());
    // A read-only bind mount of the store in a private mount namespace (needs root, or user
    // namespaces): the reads run inside it.
    let probe = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot make a mount namespace here (unshare -m)");
        return;
    }
    let d = dir.path().display().to_string();
    let bin = env!("CARGO_BIN_EXE_steplog");
    let mut script = format!(
        "set -e; mount --bind '{d}' '{d}'; mount -o remount,bind,ro '{d}'; \
         if touch '{d}/probe' 2>/dev/null; then echo 'not read-only' >&2; exit 3; fi; "
    );
    for args in READS {
        script.push_str(&format!(
            "'{bin}' --store '{d}' {} >/dev/null; ",
            args.join(" ")
        ));
    }
    script.push_str(&format!(
        "if echo '{{\"x\": 1}}' | '{bin}' --store '{d}' log newrun 2>err; then exit 4; fi; \
         grep -q 'Read-only file system' err"
    ));
    let child = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_hang(child, "reads on a read-only mount");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(store_image(dir.path()), before);
}

/// A process that holds a lock and is stopped (SIGSTOP): `new` takes the lock on `path`
/// with flock(1) and stops itself. `--no-fork`: flock becomes the command, so the holder is one process, killed
/// (SIGKILL works on a stopped process) when dropped.
struct StoppedHolder(Child);

impl StoppedHolder {
    fn new(path: &Path) -> StoppedHolder {
        // -w: fail rather than wait forever if the lock is unexpectedly taken.
        let child = Command::new("flock")
            .args(["--no-fork", "-w", "30"])
            .arg(path)
            .args(["sh", "-c", "echo held; kill -STOP $$"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut holder = StoppedHolder(child);
        // flock(1) runs the command only once it holds the lock.
        let mut line = String::new();
        use std::io::BufRead;
        let out = holder.0.stdout.take().unwrap();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "held", "flock took {}", path.display());
        holder
    }
}

impl StoppedHolder {
    /// A `steplog log` writer of `run` that has committed a row (so it holds the run's lock)
    /// and is then stopped.
    fn writer(store: &Path, run: &str) -> StoppedHolder {
        use std::io::{BufRead, Write};
        let mut child = common::cli(store)
            .args(["log", run, "--report-commits"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, r#"{{"_step": 300, "loss": 0.5}}"#).unwrap();
        stdin.flush().unwrap();
        // Kept open (leaked into the holder's life): closing stdin would end the writer.
        std::mem::forget(stdin);
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "committed 300",
            "the writer of {run} committed"
        );
        let stopped = Command::new("kill")
            .args(["-STOP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        StoppedHolder(child)
    }
}

impl Drop for StoppedHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_stopped_process_holding_a_lock_blocks_no_reader_and_a_writer_gives_up_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    // The store's manifest lock, as a process stopped while appending an edit holds it.
    {
        let _held = StoppedHolder::new(&dir.path().join("LOCK"));
        run_reads(&[], dir.path(), "LOCK held by a stopped process");
        let store = Options::new()
            .lock_timeout(Duration::from_millis(300))
            .open(dir.path())
            .unwrap();
        match store.run("new").start() {
            Err(e @ Error::LockTimeout { .. }) => {
                assert!(e.to_string().contains("LOCK"), "{e}");
            }
            other => panic!("expected LockTimeout, got {other:?}"),
        }
        assert!(matches!(
            store.run("a").resume_from(10).apply(),
            Err(Error::LockTimeout { .. })
        ));
        // A bulk's commit gives up the same way, and keeps its runs.
        let mut bulk = store.bulk();
        let mut run = bulk.run("bulked");
        run.log([("x", 1.0)]).unwrap();
        bulk.add(run).unwrap();
        assert!(matches!(bulk.commit(), Err(Error::LockTimeout { .. })));
        assert_eq!(bulk.len(), 1);
    }
    // Every run lock, as stopped writers hold them.
    let _held: Vec<_> = ["a", "b"]
        .iter()
        .map(|run| StoppedHolder::writer(dir.path(), run))
        .collect();
    run_reads(&[], dir.path(), "run locks held by stopped processes");
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(store.run("a").start(), Err(Error::Locked { .. })));
    // Other runs can still be written, by a writer or a bulk (which takes no run lock).
    let mut w = store.run("fresh").start().unwrap();
    w.log_at(0, [("x", 1.0)]).unwrap();
    w.finish().unwrap();
    let mut bulk = store.bulk();
    let mut run = bulk.run("bulked");
    run.log([("x", 1.0)]).unwrap();
    bulk.add(run).unwrap();
    bulk.commit().unwrap();
    assert_eq!(common::rows(&store, "bulked").len(), 1);
}
