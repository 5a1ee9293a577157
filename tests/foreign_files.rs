//! Files that are not what the manifest records, found by attacking the CLI (issue #11): a
//! valid segment copied in from another store was read as this store's rows and `verify` said
//! ok; a FIFO where a store file should be hung every command; a removed MANIFEST beside the
//! lock files of runs read as an empty store.

mod common;

use std::process::{Command, Stdio};

use common::{cli, cli_in, rows};
use steplog::{Error, Store};

/// A store whose run `r` has `n` rows in a segment file (not inline: the files are attacked).
fn store_with(dir: &std::path::Path, n: u64) {
    let store = steplog::Options::new()
        .inline_segment_bytes(0)
        .open(dir)
        .unwrap();
    let mut w = store.run("r").start().unwrap();
    for step in 0..n {
        w.log_at(step, [("x", step as f64)]).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn a_segment_from_another_store_is_corruption_not_rows() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    store_with(a.path(), 300);
    store_with(b.path(), 20);
    let name = "segments/0000000000000001.seg";
    std::fs::copy(b.path().join(name), a.path().join(name)).unwrap();
    let store = Store::open(a.path()).unwrap();
    let read: Result<Vec<_>, _> = store
        .history("r", &steplog::Query::new())
        .unwrap()
        .collect();
    assert!(matches!(read, Err(Error::Corrupt { .. })), "{read:?}");
    assert!(matches!(store.summary("r"), Err(Error::Corrupt { .. })));
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.message.contains("not this store's segment")),
        "{:?}",
        report.problems
    );
    assert_eq!(rows(&Store::open(b.path()).unwrap(), "r").len(), 20);
}

#[test]
fn a_fifo_in_place_of_a_store_file_is_an_error_not_a_hang() {
    for victim in ["MANIFEST", "segments/0000000000000001.seg"] {
        let dir = tempfile::tempdir().unwrap();
        store_with(dir.path(), 10);
        let path = dir.path().join(victim);
        std::fs::remove_file(&path).unwrap();
        assert!(Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap()
            .success());
        for args in [&["history", "r"][..], &["verify"]] {
            let child = cli(dir.path())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let out = common::wait_or_hang(child, &format!("steplog {args:?} on a FIFO {victim}"));
            assert_eq!(out.status.code(), Some(1), "{victim}: steplog {args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            if args[0] == "history" {
                assert!(err.contains("not a regular file"), "{err}");
            }
        }
    }
}

#[test]
fn a_removed_manifest_beside_run_lock_files_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    // A run that logged nothing leaves no segment, only its lock file.
    let store = Store::open(dir.path()).unwrap();
    store.run("empty").start().unwrap().finish().unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(Error::Corrupt { .. })
    ));
    let out = cli_in(dir.path(), &["runs"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("MANIFEST").exists(), "nothing was created");
}

/// Copy tools drop empty directories: a store without `locks/` and `segments/` is read
/// without creating them, and the first writer makes them.
#[test]
fn a_store_missing_its_empty_directories_is_read_as_is_and_written_after() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    std::fs::remove_dir(dir.path().join("locks")).unwrap();
    std::fs::remove_dir(dir.path().join("segments")).unwrap();
    let out = cli_in(dir.path(), &["runs"], "");
    assert_eq!(out.status.code(), Some(0));
    assert!(!dir.path().join("locks").exists() && !dir.path().join("segments").exists());
    store_with(dir.path(), 5);
    assert_eq!(rows(&Store::open(dir.path()).unwrap(), "r").len(), 5);
}
