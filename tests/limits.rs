//! Every limit a reader enforces is enforced by the writers first, at log time, with an error
//! naming the run, the key and the size; at the limit everything is stored and read back
//! (issue #11, items 1, 9, 12 and 13).
//!
//! What broke: one 70,000,000-character string was acknowledged (`committed 0`), then `history`
//! and even `runs` failed with "footer raw length 280000077 too large"; 2,000 rows of ~110 KB
//! text committed one by one made their sealed segment unreadable, because block and segment
//! aggregates kept the first and last strings in full. Step 2^64 − 1 held several rows, and
//! the step after it wrapped to 0; a key named `_step` shadowed the step in every export.

mod common;

use steplog::limits::{MAX_CONFIG_BYTES, MAX_KEY_BYTES, MAX_ROW_BYTES, MAX_STEP, MAX_VALUE_BYTES};
use steplog::{Error, Options, Query, Store, Value};

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir).unwrap()
}

#[test]
fn a_string_at_the_value_limit_is_stored_and_one_byte_more_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.run("r").start().unwrap();
    let at_limit = "x".repeat(MAX_VALUE_BYTES);
    w.log_at(0, [("text", Value::Str(at_limit.clone()))])
        .unwrap();
    let over = "y".repeat(MAX_VALUE_BYTES + 1);
    match w.log_at(1, [("text", Value::Str(over))]) {
        Err(e @ Error::TooLarge { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("'text'") && msg.contains(&(MAX_VALUE_BYTES + 1).to_string()));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    w.finish().unwrap();
    let rows = common::rows(&store, "r");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].fields["text"], Value::Str(at_limit.clone()));
    let summary = store.summary("r").unwrap();
    assert_eq!(summary.keys["text"].last, Some((0, Value::Str(at_limit))));
    assert_eq!(store.runs().unwrap()[0].rows, 1);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_row_past_the_row_limit_is_refused_naming_its_step_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.run("r").start().unwrap();
    const { assert!(MAX_ROW_BYTES < 3 * MAX_VALUE_BYTES) };
    let big = "z".repeat(MAX_VALUE_BYTES - 64);
    w.log_at(
        5,
        [
            ("a", Value::Str(big.clone())),
            ("b", Value::Str(big.clone())),
        ],
    )
    .unwrap();
    // A merge into the same step counts too.
    let err = w.log_at(5, [("c", Value::Str(big.clone()))]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    assert!(
        err.to_string().contains("step 5") && err.to_string().contains("'c'"),
        "{err}"
    );
    // A row refused whole is not logged at all: no empty row is left behind.
    let three = [
        ("a", Value::Str(big.clone())),
        ("b", Value::Str(big.clone())),
        ("c", Value::Str(big.clone())),
    ];
    assert!(matches!(w.log_at(6, three), Err(Error::TooLarge { .. })));
    w.log_at(7, [("c", Value::Str(big))]).unwrap();
    w.finish().unwrap();
    let rows = common::rows(&store, "r");
    assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), [5, 7]);
    assert!(rows[0].fields.contains_key("b") && !rows[0].fields.contains_key("c"));
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn repeated_merges_of_large_strings_never_make_an_unwritable_block() {
    // The block size estimate only grows, so a block of rows merged into many times is still
    // cut before it passes what a reader accepts.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.run("r").start().unwrap();
    let big = "m".repeat(4 << 20);
    for step in 0..40u64 {
        w.log_at(step, [("s", Value::Str("small".into()))]).unwrap();
        w.log_at(step, [("s", Value::Str(big.clone()))]).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(common::rows(&store, "r").len(), 40);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn long_text_rows_committed_one_by_one_stay_readable_after_sealing() {
    // The issue's case: ~110 KB of text per row, a commit (so a block) per row. Aggregates
    // keep long strings by step only; the summary still gives the exact last value.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.run("log").start().unwrap();
    let text = |step: u64| format!("{step:08} {}", "lorem ipsum dolor sit amet ".repeat(4_000));
    let n = 2_000u64;
    for step in 0..n {
        w.log_at(
            step,
            [
                ("text", Value::Str(text(step))),
                ("n", Value::I64(step as i64)),
            ],
        )
        .unwrap();
        w.commit().unwrap();
    }
    w.finish().unwrap();
    let store = open(dir.path()); // a fresh reader, with no cache
    assert_eq!(store.runs().unwrap()[0].rows, n);
    let mut seen = 0;
    for row in store.history("log", &Query::new().keys(["text"])).unwrap() {
        let row = row.unwrap();
        assert_eq!(row.fields["text"], Value::Str(text(row.step)));
        seen += 1;
    }
    assert_eq!(seen, n);
    let s = store.summary("log").unwrap();
    assert_eq!(s.keys["text"].first, Some((0, Value::Str(text(0)))));
    assert_eq!(s.keys["text"].last, Some((n - 1, Value::Str(text(n - 1)))));
    // After a rewind into the middle, the summary's last value is the one at the cut.
    store.run("log").resume_from(1_234).apply().unwrap();
    let s = store.summary("log").unwrap();
    assert_eq!(s.keys["text"].last, Some((1_234, Value::Str(text(1_234)))));
    assert!(store.verify().unwrap().is_ok());
    // Sealed segments stay far smaller than the text would make their footers.
    let total: u64 = common::segment_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total < 200 << 20, "{total} bytes on disk");
}

#[test]
fn the_cli_refuses_a_huge_value_and_the_store_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!(
        "{{\"_step\": 0, \"ok\": 1}}\n{{\"_step\": 1, \"text\": \"{}\"}}\n",
        "a".repeat(70_000_000)
    );
    let out = common::cli_in(dir.path(), &["log", "r", "--report-commits"], &line);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'text'") && err.contains("70000000"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("committed 1"));
    for args in [&["runs"][..], &["history", "r"], &["verify"]] {
        let out = common::cli_no_panic(dir.path(), args);
        assert_eq!(out.status.code(), Some(0), "steplog {args:?}");
    }
    let store = open(dir.path());
    assert_eq!(common::rows(&store, "r").len(), 1);
}

#[test]
fn steps_end_at_max_step_and_one_step_is_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.run("r").start().unwrap();
    w.log_at(MAX_STEP, [("x", 1.0)]).unwrap();
    w.log_at(MAX_STEP, [("y", 2.0)]).unwrap(); // merges: the same row
    w.commit().unwrap();
    assert!(matches!(
        w.log_at(MAX_STEP, [("x", 3.0)]),
        Err(Error::StepRegression { .. })
    ));
    // The step after the last one does not exist: no wrap to 0.
    assert!(matches!(
        w.log([("x", 4.0)]),
        Err(Error::StepTooLarge { .. })
    ));
    assert!(matches!(
        w.log_at(MAX_STEP + 1, [("x", 5.0)]),
        Err(Error::StepTooLarge { .. })
    ));
    assert!(matches!(
        w.log_columns(
            &[1, MAX_STEP + 1],
            &[("x", steplog::Batch::F64(&[1.0, 2.0]))]
        ),
        Err(Error::StepTooLarge { .. })
    ));
    w.finish().unwrap();
    let rows = common::rows(&store, "r");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].step, MAX_STEP);
    assert_eq!(store.summary("r").unwrap().keys["x"].count, 1);
    // The CLI: the same rule, with the line named.
    let out = common::cli_in(
        dir.path(),
        &["log", "c"],
        &format!("{{\"_step\": {}}}\n", u64::MAX),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}

#[test]
fn keys_follow_one_rule_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.run("r").start().unwrap();
    let long = "k".repeat(MAX_KEY_BYTES);
    w.log_at(0, [(long.as_str(), 1.0)]).unwrap();
    for bad in [
        "",
        "_step",
        "a/",
        "/a",
        "a//b",
        "tab\tkey",
        &"k".repeat(MAX_KEY_BYTES + 1),
    ] {
        match w.log_at(1, [(bad, 1.0)]) {
            Err(Error::InvalidName { .. }) => {}
            other => panic!("key {bad:?}: {other:?}"),
        }
        assert!(matches!(
            w.log_columns(&[2], &[(bad, steplog::Batch::F64(&[1.0]))]),
            Err(Error::InvalidName { .. })
        ));
    }
    w.log_at(1, [("a/_step", 1.0), ("_stepx", 2.0)]).unwrap();
    w.finish().unwrap();
    assert_eq!(common::rows(&store, "r").len(), 2);
    // The CLI names the line and the key.
    for line in [r#"{"_step": 5, "a": {"": 1}}"#, r#"{"": 1}"#] {
        let out = common::cli_in(dir.path(), &["log", "c"], &format!("{line}\n"));
        assert_eq!(out.status.code(), Some(1), "{line}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("line 1") && err.contains("key"),
            "{line}: {err}"
        );
    }
}

#[test]
fn a_config_past_the_config_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().open(dir.path()).unwrap();
    let big = serde_json::json!({"blob": "c".repeat(MAX_CONFIG_BYTES)});
    let err = store.run("r").config(big.clone()).start().unwrap_err();
    assert!(err.to_string().contains("config"), "{err}");
    let ok = serde_json::json!({"blob": "c".repeat(MAX_CONFIG_BYTES - 20)});
    let mut w = store.run("r").config(ok).start().unwrap();
    w.log_at(0, [("x", 1.0)]).unwrap();
    w.finish().unwrap();
    // Merging over it must not pass the limit either.
    let more = serde_json::json!({"more": "d".repeat(100)});
    assert!(store.run("r").resume_from(0).config(more).apply().is_err());
    assert!(store.verify().unwrap().is_ok());
}

/// Issue #12, item 10: a wide row (here 20,000 keys, two rows so that sparklines have a
/// line) through every read command, each answer complete. What broke: `summary --format
/// table` merged every key's aggregate once per key's sparkline (287 s at 20,000 keys), the
/// JSON summary built one value of the whole run (1 GB at 200,000 keys), and the Parquet
/// export reserved 8 KiB per column before reading a row.
#[test]
fn a_row_of_twenty_thousand_keys_goes_through_every_read_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = 20_000usize;
    let row = |step: usize| {
        let fields: serde_json::Map<String, serde_json::Value> = (0..keys)
            .map(|i| (format!("k{i:05}"), ((i + step) as f64).into()))
            .collect();
        serde_json::Value::Object(fields).to_string()
    };
    let input = format!("{}\n{}\n", row(0), row(1));
    assert!(common::cli_in(d, &["log", "wide"], &input).status.success());

    let summary = common::json_lines(&common::cli_ok(d, &["summary", "wide"]));
    let metrics = summary[0]["metrics"].as_object().unwrap();
    assert_eq!(metrics.len(), keys);
    assert_eq!(metrics["k19999"]["max"], 20_000.0);
    let table = common::cli_ok(d, &["summary", "wide", "--format", "table"]);
    assert!(table.lines().count() > keys, "a line per key");
    assert!(table.contains("k19999"));
    let history = common::json_lines(&common::cli_ok(d, &["history", "wide"]));
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].as_object().unwrap().len(), keys + 1);
    for format in ["csv", "jsonl", "parquet"] {
        let out = d.join(format!("wide.{format}"));
        let rep = common::json_lines(&common::cli_ok(
            d,
            &[
                "export",
                "wide",
                "--format",
                format,
                "-o",
                out.to_str().unwrap(),
            ],
        ));
        assert_eq!(rep[0]["rows"], 2, "{format}");
    }
    let csv = std::fs::read_to_string(d.join("wide.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap().split(',').count(), keys + 1);
    let runs = common::cli_ok(d, &["runs", "--format", "table"]);
    assert!(runs.contains("wide") && runs.contains("k00000"), "{runs}");
    let plot = common::cli_ok(d, &["plot", "wide", "--keys", "k00007,k19999"]);
    assert!(plot.contains("k19999"));
}
