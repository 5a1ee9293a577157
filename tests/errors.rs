//! Bad input gets a clear error naming the run, step, reference or line, from the library
//! and from the CLI (exit status 1, a message on stderr, never a panic).

mod common;
use common::*;
use steplog::{Error, Resume, Store};

#[test]
fn step_regression_names_run_last_step_and_step_given() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut run = store.run("train").start().unwrap();
    run.log_at(10, [("x", 1.0)]).unwrap();
    run.log_at(10, [("y", 2.0)]).unwrap(); // same step: merges
    let err = run.log_at(9, [("x", 0.0)]).unwrap_err();
    assert!(matches!(&err, Error::StepRegression { run, last: 10, got: 9, .. } if run == "train"));
    assert_eq!(
        err.to_string(),
        "run 'train': step 9 is not after the last step 10 of stream 'history'"
    );
    run.commit().unwrap();
    // A committed step is closed.
    assert!(matches!(
        run.log_at(10, [("z", 0.0)]),
        Err(Error::StepRegression {
            last: 10,
            got: 10,
            ..
        })
    ));
    run.log_at(11, [("x", 3.0)]).unwrap();
    run.finish().unwrap();
    let rows = rows(&store, "train");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].fields.len(),
        2,
        "calls at one step merged into one row"
    );

    let out = cli_in(dir.path(), &["log", "train"], "{\"_step\": 5, \"x\": 1}\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1") && err.contains("step 5 is not after the last step 11"),
        "{err}"
    );
}

#[test]
fn unknown_runs_versions_and_bad_references() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(store.summary("nope"), Err(Error::RunNotFound { run }) if run == "nope"));
    assert!(matches!(
        store.summary("v99"),
        Err(Error::VersionNotFound { .. })
    ));
    assert!(matches!(
        store.summary("r?step=3"),
        Err(Error::BadReference { .. })
    ));
    assert!(matches!(
        store.run("nope").resume_from(3).apply(),
        Err(Error::RunNotFound { .. })
    ));
    assert!(matches!(
        store.run("x").fork_from("nope", 3).apply().map(|s| s.head),
        Err(Error::RunNotFound { .. })
    ));
    assert!(matches!(
        store.run("v3").start(),
        Err(Error::InvalidName { .. })
    ));

    for (args, needle) in [
        (vec!["summary", "nope"], "no run named 'nope'"),
        (vec!["history", "v42"], "no version v42"),
        (vec!["history", "r?_step=x"], "bad reference 'r?_step=x'"),
        (vec!["rewind", "nope", "--step", "3"], "no run named 'nope'"),
        (vec!["rewind", "nope"], "no step given"),
        (
            vec!["fork", "nope?_step=1", "--name", "x"],
            "no run named 'nope'",
        ),
        (vec!["purge", "abc"], "not a version id"),
        (vec!["purge", "v1"], "no version v1"),
    ] {
        let out = cli_in(dir.path(), &args, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    }
}

#[test]
fn a_bad_json_line_names_its_number_and_keeps_the_rows_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = "{\"x\": 1}\n{\"x\": 2}\n\n{\"x\": oops}\n{\"x\": 4}\n";
    let out = cli_in(dir.path(), &["log", "r"], input);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // One line number, the input's; the position in the line as a column.
    assert!(
        err.contains("line 4: not valid JSON at column 7: expected value")
            && !err.contains("at line 1"),
        "{err}"
    );
    let store = Store::open(dir.path()).unwrap();
    let rows = rows(&store, "r");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].step, 1);

    for (line, needle) in [
        ("[1, 2]", "expected a JSON object"),
        ("{\"_step\": -3}", "_step must be an integer from 0 to"),
        ("{\"a\": [1]}", "arrays are not supported"),
    ] {
        let out = cli_in(dir.path(), &["log", "r"], &format!("{line}\n"));
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("line 1") && err.contains(needle),
            "{line}: {err}"
        );
    }
}

#[test]
fn resume_modes_configs_and_step_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.run("r").resume(Resume::Must).start(),
        Err(Error::ResumeRefused { .. })
    ));
    let mut run = store
        .run("r")
        .resume(Resume::Never)
        .config(serde_json::json!({"a": 1}))
        .start()
        .unwrap();
    run.log([("x", 1)]).unwrap();
    run.finish().unwrap();
    assert!(matches!(
        store.run("r").resume(Resume::Never).start(),
        Err(Error::ResumeRefused { .. })
    ));
    let mut run = store
        .run("r")
        .resume(Resume::Must)
        .config(serde_json::json!({"b": 2}))
        .start()
        .unwrap();
    assert_eq!(
        run.log([("x", 2)]).unwrap(),
        1,
        "a resumed run continues after its last step"
    );
    run.finish().unwrap();
    assert_eq!(
        store.version("r").unwrap().config,
        serde_json::json!({"a": 1, "b": 2})
    );

    assert!(matches!(
        store.run("q").config(serde_json::json!([1])).start(),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.run("r").resume_from(5).apply(),
        Err(Error::StepOutOfRange { step: 5, .. })
    ));
    assert!(matches!(
        store.run("f").fork_from("r", 2).apply().map(|s| s.head),
        Err(Error::StepOutOfRange { .. })
    ));
    assert!(matches!(
        store.run("r").fork_from("r", 0).apply().map(|s| s.head),
        Err(Error::RunExists { .. })
    ));
    let v = store.version("r").unwrap().id;
    assert!(matches!(store.purge(v), Err(Error::NotArchived { .. })));

    let out = cli_in(dir.path(), &["log", "r", "--config", "{bad"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config is not valid JSON"));
}

#[test]
fn a_writer_dropped_while_panicking_leaves_the_run_crashed_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s2 = store.clone();
    let result = std::panic::catch_unwind(move || {
        let mut run = s2.run("r").start().unwrap();
        run.log_at(0, [("x", 1.0)]).unwrap();
        run.log_at(1, [("x", 2.0)]).unwrap();
        run.commit().unwrap();
        run.log_at(2, [("x", 9.0)]).unwrap();
        panic!("training loop failed");
    });
    assert!(result.is_err());
    // The lock is released when the writer drops. A child process that another test thread
    // is spawning at that instant holds a copy of the lock's descriptor until it execs, so
    // the run may read `live` for that instant: wait for it, bounded (never another status).
    let mut status = store.runs().unwrap()[0].status;
    for _ in 0..500 {
        if status != steplog::Status::Running {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        status = store.runs().unwrap()[0].status;
    }
    assert_eq!(status, steplog::Status::Crashed);
    // A drop does no I/O (what a crash leaves): the committed rows stay, the row still
    // buffered when the thread panicked is not written.
    assert_eq!(
        rows(&store, "r").len(),
        2,
        "the committed rows, and nothing the drop would have had to write"
    );
    let mut run = store.run("r").start().unwrap();
    assert_eq!(run.log([("x", 3.0)]).unwrap(), 2);
    run.finish().unwrap();
    assert_eq!(store.runs().unwrap()[0].status, steplog::Status::Finished);
}

#[test]
fn a_resumed_run_continues_after_its_last_step_in_any_stream() {
    // Regression (found by the model test): streams left at different steps (a crash, or
    // console lines logged ahead) made a resumed run's streams disagree about its step.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut run = store.run("r").start().unwrap();
    run.log_at(3, [("x", 1.0)]).unwrap();
    run.log_row(steplog::Stream::Console, Some(9), [("line", "ahead")])
        .unwrap();
    run.finish().unwrap();
    let mut run = store.run("r").start().unwrap();
    for stream in steplog::Stream::ALL {
        assert_eq!(run.next_step(stream), 10, "{stream}");
    }
    // Console rows may still annotate the last step when given it.
    run.log_row(steplog::Stream::Console, Some(9), [("line", "at 9")])
        .unwrap();
    assert_eq!(
        run.log_row(steplog::Stream::Console, None, [("line", "next")])
            .unwrap(),
        10
    );
    assert_eq!(run.log([("x", 2.0)]).unwrap(), 10);
    run.finish().unwrap();
}

/// Issue #16: one rule for the step of a row logged without one, in every stream: the step
/// after the stream's last row in this writer, and a writer's first row of any stream after
/// the run's last step in any stream. A console line and a system row logged after a
/// session of history both take the next step (a console line used to take the last one).
#[test]
fn every_stream_takes_the_same_default_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut run = store.run("r").start().unwrap();
    for stream in steplog::Stream::ALL {
        assert_eq!(
            run.log_row(stream, None, [("v", 1.0)]).unwrap(),
            0,
            "{stream}"
        );
        assert_eq!(
            run.log_row(stream, None, [("v", 2.0)]).unwrap(),
            1,
            "{stream}"
        );
    }
    for step in 2..300u64 {
        run.log([("loss", step as f64)]).unwrap();
    }
    // Within a writer each stream keeps its own count; the history is at 299.
    assert_eq!(run.next_step(steplog::Stream::History), 300);
    assert_eq!(run.next_step(steplog::Stream::Console), 2);
    run.finish().unwrap();
    // The next session: every stream after 299, through the CLI as through the library.
    for (stream, want) in [("console", 300), ("system", 301), ("history", 302)] {
        let out = cli_in(
            dir.path(),
            &["log", "r", "--stream", stream],
            "{\"v\": 3}\n",
        );
        assert!(out.status.success());
        let rows = cli_ok(dir.path(), &["history", "r", "--stream", stream]);
        let last: serde_json::Value = serde_json::from_str(rows.lines().last().unwrap()).unwrap();
        assert_eq!(last["_step"], want, "{stream}: {rows}");
    }
}

#[test]
fn the_keys_of_a_version_are_those_of_its_rows_up_to_its_cut() {
    let dir = tempfile::tempdir().unwrap();
    // Small blocks, so that sealed footers, whole blocks and a straddling block all answer.
    let store = steplog::Options::new()
        .block_bytes(256)
        .segment_bytes(4096)
        .open(dir.path())
        .unwrap();
    let mut run = store.run("r").start().unwrap();
    for s in 0..200u64 {
        run.log_at(s, [("loss", s as f64)]).unwrap();
        if s % 50 == 0 {
            run.log_at(s, [("eval/acc", 0.5)]).unwrap();
        }
        // A key logged only after the step the run will be rewound to.
        if s == 150 {
            run.log_at(s, [("late", 1.0)]).unwrap();
        }
    }
    run.log_row(steplog::Stream::Console, Some(199), [("line", "x")])
        .unwrap();
    run.finish().unwrap();
    let archived = store
        .run("r")
        .resume_from(120)
        .apply()
        .unwrap()
        .archived
        .unwrap();
    let history = steplog::Stream::History;
    assert_eq!(store.keys("r", history).unwrap(), ["eval/acc", "loss"]);
    assert_eq!(
        store.keys(archived, history).unwrap(),
        ["eval/acc", "late", "loss"]
    );
    assert_eq!(
        store.keys("r?_step=10", history).unwrap(),
        ["eval/acc", "loss"]
    );
    assert_eq!(
        store.keys("r?_step=120", steplog::Stream::Console).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.keys(archived, steplog::Stream::Console).unwrap(),
        ["line"]
    );
    store
        .check_keys("r", history, ["loss", "eval/acc"])
        .unwrap();
    store.check_keys(archived, history, ["late"]).unwrap();
    let err = store.check_keys("r", history, ["loss", "lat"]).unwrap_err();
    assert_eq!(err.kind(), steplog::ErrorKind::NotFound);
    assert!(
        matches!(&err, Error::KeyNotFound { key, close, .. } if key == "lat" && close.is_empty()),
        "{err}"
    );
    let err = store.check_keys("r", history, ["los"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "version v2 of run 'r' has no key 'los' (did you mean 'loss'?)"
    );
    // A fork reads its parent's keys up to its branch step.
    store.run("f").fork_from(archived, 160).apply().unwrap();
    store.check_keys("f", history, ["late", "loss"]).unwrap();
    store.run("g").fork_from(archived, 140).apply().unwrap();
    assert!(store.check_keys("g", history, ["late"]).is_err());
}
