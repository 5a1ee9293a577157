//! The O(1) claims, checked by counting bytes rather than timing: a rewind and a fork of a
//! 1,000,000-step run write the same small number of bytes as those of a 1,000-step run
//! (one manifest edit each), and leave every existing segment file untouched.

mod common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use steplog::RowCount;
use steplog::Store;

fn sizes(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for sub in ["", "segments"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_file() {
                out.insert(e.path(), (m.len(), m.modified().unwrap()));
            }
        }
    }
    out
}

/// Bytes added by an operation: growth of existing files plus new files.
fn written(before: &BTreeMap<PathBuf, (u64, std::time::SystemTime)>, dir: &Path) -> u64 {
    let after = sizes(dir);
    let mut total = 0;
    for (path, (len, mtime)) in &after {
        match before.get(path) {
            None => total += len,
            Some((old, old_mtime)) => {
                if path.extension().is_some_and(|e| e == "seg") {
                    assert_eq!(
                        (old, old_mtime),
                        (len, mtime),
                        "segment {} was modified",
                        path.display()
                    );
                }
                total += len.saturating_sub(*old);
            }
        }
    }
    total
}

fn measure(steps: u64) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut run = store.run("r").start().unwrap();
    for i in 0..steps {
        run.log_at(i, [("loss", (i % 1000) as f64 * 0.001)])
            .unwrap();
    }
    run.finish().unwrap();
    let segments = common::segment_files(dir.path()).len() as u64;

    let before = sizes(dir.path());
    let r = store.run("r").resume_from(steps / 2).apply().unwrap();
    let rewind_bytes = written(&before, dir.path());

    let before = sizes(dir.path());
    store
        .run("f")
        .fork_from(r.archived.unwrap(), steps / 2 + 7)
        .apply()
        .unwrap();
    let fork_bytes = written(&before, dir.path());

    assert_eq!(
        store.rows("r").unwrap(),
        RowCount {
            rows: steps / 2 + 1,
            last_step: Some(steps / 2)
        }
    );
    assert_eq!(
        store.rows("f").unwrap(),
        RowCount {
            rows: steps / 2 + 8,
            last_step: Some(steps / 2 + 7)
        }
    );
    (rewind_bytes, fork_bytes, segments)
}

#[test]
fn rewind_and_fork_write_the_same_few_bytes_whatever_the_history_length() {
    let (small_rewind, small_fork, small_segs) = measure(1_000);
    let (big_rewind, big_fork, big_segs) = measure(1_000_000);
    assert!(big_segs >= small_segs);
    for (small, big, what) in [
        (small_rewind, big_rewind, "rewind"),
        (small_fork, big_fork, "fork"),
    ] {
        assert!(big < 1024, "{what} of 1M steps wrote {big} bytes");
        // Only the digits of the step numbers in the manifest edit differ.
        assert!(
            big.abs_diff(small) <= 16,
            "{what}: {small} bytes at 1k steps, {big} at 1M"
        );
    }
}
