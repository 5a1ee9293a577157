//! The bulk path: `log_columns` stores exactly what the same rows logged one `log_at` at a
//! time store, merges with the open step like `log_at`, and refuses bad batches whole.

mod common;
use common::*;
use steplog::{Batch, Error, Options, Value};

fn store(dir: &std::path::Path) -> steplog::Store {
    // Small blocks, so batches cross block boundaries.
    Options::new().block_bytes(512).open(dir).unwrap()
}

#[test]
fn a_batch_stores_what_row_by_row_logging_stores() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let steps: Vec<u64> = (0..3_000u64).map(|i| i * 2 + 5).collect();
    let loss: Vec<f64> = steps.iter().map(|&s| 1.0 / (s as f64 + 0.5)).collect();
    let epoch: Vec<i64> = steps.iter().map(|&s| (s / 700) as i64).collect();
    let best: Vec<bool> = steps.iter().map(|&s| s % 3 == 0).collect();

    let mut w = store.run("batch").start().unwrap();
    for chunk in (0..steps.len()).collect::<Vec<_>>().chunks(1_000) {
        let r = chunk[0]..chunk[chunk.len() - 1] + 1;
        let cols = [
            ("loss", Batch::F64(&loss[r.clone()])),
            ("epoch", Batch::I64(&epoch[r.clone()])),
            ("best", Batch::Bool(&best[r.clone()])),
        ];
        w.log_columns(&steps[r], &cols).unwrap();
    }
    // The last step stays open: a later call at it merges, as with log_at.
    w.log_at(steps[2_999], [("note", "last")]).unwrap();
    w.finish().unwrap();

    let mut w = store.run("rows").start().unwrap();
    for (i, &s) in steps.iter().enumerate() {
        w.log_at(
            s,
            [
                ("loss", Value::F64(loss[i])),
                ("epoch", Value::I64(epoch[i])),
                ("best", Value::Bool(best[i])),
            ],
        )
        .unwrap();
    }
    w.log_at(steps[2_999], [("note", "last")]).unwrap();
    w.finish().unwrap();

    let (a, b) = (rows(&store, "batch"), rows(&store, "rows"));
    assert_eq!(a.len(), 3_000);
    assert_eq!(a, b);
    assert_eq!(a[2_999].fields["note"], Value::Str("last".into()));
    assert_eq!(
        store.summary("batch").unwrap().keys,
        store.summary("rows").unwrap().keys
    );
}

#[test]
fn a_batch_starting_at_the_open_step_merges_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut w = store.run("r").start().unwrap();
    w.log_at(10, [("a", 1.0)]).unwrap();
    w.log_columns(&[10, 11], &[("b", Batch::I64(&[7, 8]))])
        .unwrap();
    w.finish().unwrap();
    let got = rows(&store, "r");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].fields["a"], Value::F64(1.0));
    assert_eq!(got[0].fields["b"], Value::I64(7));
    assert_eq!(got[1].fields["b"], Value::I64(8));
}

#[test]
fn a_bad_batch_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut w = store.run("r").start().unwrap();
    w.log_columns(&[0, 1, 2], &[("x", Batch::F64(&[0.0, 1.0, 2.0]))])
        .unwrap();
    w.commit().unwrap();

    let short = w.log_columns(&[3, 4], &[("x", Batch::F64(&[3.0]))]);
    assert!(
        matches!(&short, Err(Error::InvalidInput(m)) if m.contains("'x' has 1 values for 2 steps")),
        "{short:?}"
    );
    let unordered = w.log_columns(&[5, 5], &[("x", Batch::F64(&[5.0, 5.5]))]);
    assert!(
        matches!(&unordered, Err(Error::InvalidInput(m)) if m.contains("step 5 follows 5")),
        "{unordered:?}"
    );
    let back = w.log_columns(&[2, 3], &[("x", Batch::F64(&[9.0, 9.0]))]);
    assert!(
        matches!(
            back,
            Err(Error::StepRegression {
                last: 2,
                got: 2,
                ..
            })
        ),
        "{back:?}"
    );
    // None of them logged anything, and the writer still works.
    w.log_columns(&[3], &[("x", Batch::F64(&[3.0]))]).unwrap();
    w.finish().unwrap();
    let steps: Vec<u64> = rows(&store, "r").iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![0, 1, 2, 3]);
    assert!(rows(&store, "r").iter().all(|r| f(r, "x") == r.step as f64));
}
