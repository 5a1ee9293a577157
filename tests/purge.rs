//! Purge: an archived version becomes unreadable, and its segment files are deleted once no
//! other version needs them; versions rewound or forked from it keep every row they had.

mod common;
use common::*;
use steplog::{Error, Options};

fn log(store: &steplog::Store, run: &str, steps: std::ops::Range<u64>, tag: f64) {
    let mut w = store.run(run).start().unwrap();
    for i in steps {
        w.log_at(i, [("x", i as f64 + tag)]).unwrap();
    }
    w.finish().unwrap();
}

fn check(store: &steplog::Store, reference: &str, expect: &[(u64, f64)]) {
    let got: Vec<(u64, f64)> = rows(store, reference)
        .iter()
        .map(|r| (r.step, f(r, "x")))
        .collect();
    assert_eq!(got, expect, "{reference}");
}

#[test]
fn purge_deletes_only_what_no_other_version_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .segment_bytes(300)
        .block_bytes(60)
        .open(dir.path())
        .unwrap();
    log(&store, "a", 0..1000, 0.0);
    let v1 = store.version("a").unwrap().id;
    let all_v1 = segment_files(dir.path()).len();
    assert!(all_v1 > 10, "the run spans many segments ({all_v1})");

    let r = store.rewind("a", 100, None).unwrap();
    log(&store, "a", 101..500, 0.5);
    let v2 = r.head;
    let head_rows: Vec<(u64, f64)> = (0..=100)
        .map(|i| (i, i as f64))
        .chain((101..500).map(|i| (i, i as f64 + 0.5)))
        .collect();

    let before = segment_files(dir.path()).len();
    let deleted = store.purge(v1).unwrap();
    assert!(
        deleted > 0 && deleted < all_v1,
        "deleted {deleted} of {all_v1}: v2 still needs steps 0..=100"
    );
    assert_eq!(segment_files(dir.path()).len(), before - deleted);
    assert!(matches!(
        store.history(&v1.to_string(), &steplog::Query::new()),
        Err(Error::Purged { .. })
    ));
    check(&store, "a", &head_rows);
    assert!(matches!(store.purge(v1), Err(Error::Purged { .. })));
    assert!(matches!(store.purge(v2), Err(Error::NotArchived { .. })));

    // A fork from v2, then v2 archived by a rewind and purged: the fork keeps its rows.
    store.fork("a", 300, "f", None).unwrap();
    let r2 = store.rewind("a", 50, None).unwrap();
    assert_eq!(r2.archived, v2);
    store.purge(v2).unwrap();
    check(&store, "f", &head_rows[..=300]);
    check(&store, "a", &head_rows[..=50]);
    let report = store.verify().unwrap();
    assert!(report.is_ok() && report.notes.is_empty(), "{report:?}");

    // Once nothing needs them, all of v1's and v2's segments go.
    let rf = store.rewind("f", 10, None).unwrap();
    store.purge(rf.archived).unwrap();
    check(&store, "f", &head_rows[..=10]);
    let r3 = store.rewind("a", 5, None).unwrap();
    store.purge(r3.archived).unwrap();
    check(&store, "a", &head_rows[..=5]);
    let remaining = segment_files(dir.path()).len();
    assert!(
        remaining < 4,
        "only segments holding steps 0..=10 remain ({remaining})"
    );
    drop(store);
    let store = steplog::Store::open(dir.path()).unwrap();
    check(&store, "f", &head_rows[..=10]);
    assert!(store.verify().unwrap().is_ok());
}
