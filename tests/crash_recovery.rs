//! Crash recovery: the image a `kill -9` leaves (the store copied while its writer is alive),
//! with the head segment cut at every byte offset of its last block, opens to exactly the
//! committed prefix and can be resumed; a flipped byte in a sealed block is a checksum error
//! naming the file and the offset, from the library, `verify` and the CLI.

mod common;
use common::*;
use steplog::{Error, Options, Status, Store};

const STEP_BATCH: u64 = 10;

/// Logs 100 rows committing every 10, copies the store while the writer is still alive, and
/// returns the image and the byte range of the head segment's last block.
fn crashed_image(dir: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf, u64, u64) {
    let store = Options::new().open(dir).unwrap();
    let mut run = store.run("r").start().unwrap();
    let mut sizes = Vec::new();
    for i in 0..100u64 {
        run.log_at(i, [("x", i as f64), ("y", (i * i) as f64)])
            .unwrap();
        if i % STEP_BATCH == STEP_BATCH - 1 {
            run.commit().unwrap();
            let head = segment_files(dir).pop().unwrap();
            sizes.push(std::fs::metadata(&head).unwrap().len());
        }
    }
    let image = tempfile::tempdir().unwrap();
    copy_dir(dir, image.path());
    drop(run);
    let head = segment_files(image.path()).pop().unwrap();
    let n = sizes.len();
    (image, head, sizes[n - 2], sizes[n - 1])
}

#[test]
fn every_cut_of_the_last_block_recovers_the_committed_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (image, head, start, end) = crashed_image(dir.path());
    assert!(
        end > start + 40,
        "the last block has a header and a payload"
    );
    for cut in start..=end {
        let trial = tempfile::tempdir().unwrap();
        copy_dir(image.path(), trial.path());
        let seg = trial
            .path()
            .join("segments")
            .join(head.file_name().unwrap());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();

        let store = Store::open(trial.path()).unwrap();
        let expect = if cut == end { 100 } else { 90 };
        let got = rows(&store, "r");
        assert_eq!(got.len(), expect, "cut at {cut}");
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, r)| r.step == i as u64 && f(r, "x") == i as f64));
        assert_eq!(store.runs().unwrap()[0].status, Status::Crashed);
        assert_eq!(store.summary("r").unwrap().rows, expect as u64);

        // Resuming cuts the torn tail and continues after the recovered last step.
        let mut run = store.run("r").start().unwrap();
        assert_eq!(run.next_step(steplog::Stream::History), expect as u64);
        run.log([("x", -1.0)]).unwrap();
        run.finish().unwrap();
        let after = rows(&store, "r");
        assert_eq!(after.len(), expect + 1);
        assert_eq!(f(&after[expect], "x"), -1.0);
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "cut at {cut}: {:?}", report.problems);
        assert!(report.notes.is_empty(), "cut at {cut}: {:?}", report.notes);
    }
}

#[test]
fn rewind_of_a_crashed_run_recovers_its_head_first() {
    let dir = tempfile::tempdir().unwrap();
    let (image, head, start, _) = crashed_image(dir.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&head)
        .unwrap()
        .set_len(start + 7)
        .unwrap();
    let store = Store::open(image.path()).unwrap();
    let r = store.run("r").resume_from(50).apply().unwrap();
    assert_eq!(rows(&store, &r.archived.unwrap().to_string()).len(), 90);
    assert_eq!(rows(&store, "r").len(), 51);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_flipped_byte_in_a_sealed_block_is_a_checksum_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    // A segment file (an inline segment's bytes are covered by the manifest's checksums too:
    // tests/corruption.rs).
    let store = Options::new()
        .inline_segment_bytes(0)
        .open(dir.path())
        .unwrap();
    let mut run = store.run("r").start().unwrap();
    for i in 0..50u64 {
        run.log_at(i, [("x", i as f64)]).unwrap();
    }
    run.finish().unwrap();
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Segment header is 32 bytes, the first block frame starts there; its payload at +40.
    bytes[32 + 40 + 3] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let store = Store::open(dir.path()).unwrap();
    let err = store
        .history("r", &steplog::Query::new())
        .unwrap()
        .find_map(|r| r.err())
        .unwrap();
    match &err {
        Error::ChecksumMismatch { file, offset, .. } => {
            assert_eq!(file, &seg);
            assert_eq!(*offset, 32);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains("offset 32"),
        "{msg}"
    );

    let report = store.verify().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].file, seg);
    assert_eq!(report.problems[0].offset, Some(32));

    let out = cli_in(dir.path(), &["verify"], "");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&seg.display().to_string()) && text.contains("offset 32"),
        "{text}"
    );

    let out = cli_in(dir.path(), &["history", "r"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_flipped_byte_anywhere_in_a_small_store_never_panics_or_returns_wrong_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_bytes(600).open(dir.path()).unwrap();
    let mut run = store.run("r").start().unwrap();
    for i in 0..40u64 {
        run.log_at(i, [("x", i as f64)]).unwrap();
        if i % 8 == 7 {
            run.commit().unwrap();
        }
    }
    run.finish().unwrap();
    drop(store);
    let mut files = segment_files(dir.path());
    files.push(dir.path().join("MANIFEST"));
    for file in files {
        let original = std::fs::read(&file).unwrap();
        for i in 0..original.len() {
            let mut bad = original.clone();
            bad[i] ^= 0x40;
            std::fs::write(&file, &bad).unwrap();
            // Reading gives an error or exactly the right rows (a flip in bytes this read
            // does not use), never wrong rows; and since every byte is under a checksum,
            // either opening fails or verify reports the damage.
            let Ok(store) = Store::open(dir.path()) else {
                continue;
            };
            if let Ok(it) = store.history("r", &steplog::Query::new()) {
                if let Ok(got) = it.collect::<Result<Vec<_>, _>>() {
                    assert_eq!(got.len(), 40, "{} byte {i}", file.display());
                    assert!(got
                        .iter()
                        .enumerate()
                        .all(|(k, r)| r.step == k as u64 && f(r, "x") == k as f64));
                }
            }
            let report = store.verify().unwrap();
            assert!(
                !report.is_ok(),
                "flip at byte {i} of {} went unnoticed",
                file.display()
            );
        }
        std::fs::write(&file, &original).unwrap();
    }
}
