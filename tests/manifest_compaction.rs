//! Manifest compaction while two stores (as two processes would) append to one manifest:
//! each sees every edit of the other across compactions, the file stays small, and a
//! leftover temp file from an interrupted compaction is removed at open.

mod common;
use steplog::Options;

#[test]
fn two_stores_keep_in_step_across_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Options::new()
            .manifest_compaction_bytes(4096)
            .open(dir.path())
            .unwrap()
    };
    let (a, b) = (open(), open());
    for i in 0..300u64 {
        let (writer, other) = if i % 3 == 0 { (&b, &a) } else { (&a, &b) };
        let mut w = writer.run(&format!("run-{i}")).start().unwrap();
        w.log_at(i, [("x", i as f64)]).unwrap();
        w.finish().unwrap();
        if i % 7 == 0 {
            writer
                .run(&format!("run-{i}"))
                .resume_from(i)
                .apply()
                .unwrap();
        }
        let names = |s: &steplog::Store| {
            s.runs()
                .unwrap()
                .into_iter()
                .map(|r| (r.name, r.head, r.rows))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(writer), names(other), "after run {i}");
        assert_eq!(other.runs().unwrap().len() as u64, i + 1);
    }
    let size = std::fs::metadata(dir.path().join("MANIFEST"))
        .unwrap()
        .len();
    let versions = a.versions().unwrap();
    assert_eq!(versions.len(), 300 + 43);
    // A snapshot of 343 versions plus at most twice that in edits.
    assert!(size < 400_000, "manifest is {size} bytes");
    drop((a, b));

    std::fs::write(dir.path().join("MANIFEST.tmp"), b"half-written snapshot").unwrap();
    let c = open();
    // Opening reads only; the leftover goes with the next write, under the store's LOCK.
    assert_eq!(c.versions().unwrap(), versions);
    assert_eq!(common::rows(&c, "run-299").len(), 1);
    assert!(dir.path().join("MANIFEST.tmp").exists());
    c.run("after-leftover")
        .fork_from("run-299", 0)
        .apply()
        .unwrap();
    assert!(!dir.path().join("MANIFEST.tmp").exists());
    assert!(c.verify().unwrap().is_ok());
}
