//! W&B's rewind example end to end: 300 steps of `metric = i`, rewind at 200, a spike logged
//! over 201..299; the head reads the new values, the archived version all 300 originals, the
//! summary is recomputed; then a fork of the head at 250.

mod common;
use common::*;
use steplog::{Query, Status, Store, Stream, Value};

#[test]
fn rewind_archives_the_old_head_and_fork_branches_from_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();

    let mut run = store
        .run("r1")
        .config(serde_json::json!({"lr": 0.1, "model": {"depth": 12}}))
        .start()
        .unwrap();
    for i in 0..300u64 {
        run.log_at(i, [("metric", i as f64)]).unwrap();
        run.log_row(Stream::Console, Some(i), [("line", format!("step {i}"))])
            .unwrap();
    }
    let v1 = run.version();
    run.finish().unwrap();
    assert_eq!(
        store.summary("r1").unwrap().keys["metric"].max,
        Some((299, Value::F64(299.0)))
    );

    // resume_from="r1?_step=200"
    let mut run = store
        .run("r1")
        .resume_from(200)
        .config(serde_json::json!({"lr": 0.01, "model": {"width": 4}}))
        .start()
        .unwrap();
    assert_eq!(run.archived(), Some(v1));
    let v2 = run.version();
    assert_ne!(v1, v2);
    // A step at or before the cutoff is refused.
    assert!(matches!(
        run.log_at(200, [("metric", 0.0)]),
        Err(steplog::Error::StepRegression {
            last: 200,
            got: 200,
            ..
        })
    ));
    for i in 201..300u64 {
        let spike = if (250..260).contains(&i) { 1000.0 } else { 0.0 };
        run.log_at(i, [("metric", -(i as f64) + spike)]).unwrap();
    }
    run.finish().unwrap();

    // The head: 0..=200 original, 201..299 new.
    let head = rows(&store, "r1");
    assert_eq!(head.len(), 300);
    for r in &head {
        let want = if r.step <= 200 {
            r.step as f64
        } else if (250..260).contains(&r.step) {
            1000.0 - r.step as f64
        } else {
            -(r.step as f64)
        };
        assert_eq!(f(r, "metric"), want, "step {}", r.step);
    }
    // The archived version still reads all 300 original rows, console included.
    let old = rows(&store, &v1.to_string());
    assert_eq!(old.len(), 300);
    assert!(old.iter().all(|r| f(r, "metric") == r.step as f64));
    let console_old = rows_q(
        &store,
        &v1.to_string(),
        &Query::new().stream(Stream::Console),
    );
    let console_new = rows_q(&store, "r1", &Query::new().stream(Stream::Console));
    assert_eq!(console_old.len(), 300);
    assert_eq!(
        console_new.len(),
        201,
        "the console stream is cut at the rewind step too"
    );

    // The summary is recomputed for the head and kept for the archived version.
    let s = store.summary("r1").unwrap();
    let m = &s.keys["metric"];
    assert_eq!((s.rows, s.last_step, m.count), (300, Some(299), 300));
    assert_eq!(m.max, Some((250, Value::F64(750.0))));
    assert_eq!(m.min, Some((299, Value::F64(-299.0))));
    assert_eq!(m.last, Some((299, Value::F64(-299.0))));
    let expected_sum: f64 = head.iter().map(|r| f(r, "metric")).sum();
    assert_eq!(m.sum, expected_sum);
    let old_s = store.summary(v1).unwrap();
    assert_eq!(old_s.keys["metric"].max, Some((299, Value::F64(299.0))));

    // Config: the old one with the new one merged over it.
    let info = store.version("r1").unwrap();
    assert_eq!(
        info.config,
        serde_json::json!({"lr": 0.01, "model": {"depth": 12, "width": 4}})
    );
    assert_eq!(store.version(v1).unwrap().status, Status::Archived);
    assert_eq!(
        info.parent,
        Some(steplog::Parent {
            version: v1,
            step: 200
        })
    );

    // fork_from="r1?_step=250"
    let mut fork = store.run("r1-fork").fork_from("r1", 250).start().unwrap();
    for i in 251..260u64 {
        fork.log_at(i, [("metric", 7.0)]).unwrap();
    }
    let v3 = fork.version();
    fork.finish().unwrap();
    let forked = rows(&store, "r1-fork");
    assert_eq!(forked.len(), 260);
    for r in &forked {
        let want = match r.step {
            s if s <= 200 => s as f64,
            s if s <= 250 => head[s as usize].fields["metric"].as_f64().unwrap(),
            _ => 7.0,
        };
        assert_eq!(f(r, "metric"), want, "step {}", r.step);
    }
    assert_eq!(
        store.version("r1-fork").unwrap().config,
        info.config,
        "a fork inherits its source's config"
    );

    // Lineage: v1 -> v2 (rewind at 200) -> v3 (fork at 250).
    let tree = store.lineage("r1-fork").unwrap();
    assert_eq!(tree.root().id, v1);
    assert_eq!(tree.children[0].len(), 1);
    let c = tree.children[0][0];
    assert_eq!(tree.versions[c].id, v2);
    let g = tree.children[c][0];
    assert_eq!(tree.versions[g].id, v3);
    assert_eq!(
        tree.versions[g].parent,
        Some(steplog::Parent {
            version: v2,
            step: 250
        })
    );

    // Fork from the archived version, at a step past the rewind cutoff.
    store
        .run("from-archived")
        .fork_from(v1.to_string(), 280)
        .apply()
        .unwrap();
    let fa = rows(&store, "from-archived");
    assert_eq!(fa.len(), 281);
    assert!(fa.iter().all(|r| f(r, "metric") == r.step as f64));

    // Everything survives reopening the store.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(rows(&store, "r1"), head);
    assert_eq!(rows(&store, "r1-fork"), forked);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn reading_with_step_references_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = steplog::Options::new()
        .block_bytes(512)
        .open(dir.path())
        .unwrap();
    let mut run = store.run("r").start().unwrap();
    for i in 0..1000u64 {
        let mut fields = vec![("a", Value::I64(i as i64))];
        if i % 10 == 0 {
            fields.push(("sparse", Value::Str(format!("s{i}"))));
        }
        run.log_at(i * 2, fields).unwrap();
    }
    run.finish().unwrap();
    let q = Query::new().steps(100..=120);
    let got: Vec<u64> = rows_q(&store, "r", &q).iter().map(|r| r.step).collect();
    assert_eq!(got, (100..=120).step_by(2).collect::<Vec<_>>());
    let sparse = rows_q(&store, "r", &Query::new().keys(["sparse"]));
    assert_eq!(sparse.len(), 100, "rows without any chosen key are skipped");
    assert_eq!(rows(&store, "r?_step=10").len(), 6);
    let m = store.metric("r", "a", 1990..).unwrap();
    assert_eq!(m.steps, vec![1990, 1992, 1994, 1996, 1998]);
    assert_eq!(m.values, vec![995.0, 996.0, 997.0, 998.0, 999.0]);
    assert_eq!(store.summary("r?_step=99").unwrap().rows, 50);
}

#[test]
fn an_aborted_writer_leaves_its_rows_and_a_crashed_run_that_resumes() {
    // What W&B does when the code inside `with wandb.init()` raises (the Python `with`).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut w = store.run("r").start().unwrap();
    for i in 0..10u64 {
        w.log_at(i, [("x", i as f64)]).unwrap();
    }
    w.abort().unwrap();
    let info = &store.runs().unwrap()[0];
    assert_eq!((info.status, info.rows), (Status::Crashed, 10));
    let mut w = store.run("r").start().unwrap();
    assert_eq!(w.next_step(Stream::History), 10);
    w.log([("x", 10.0)]).unwrap();
    w.finish().unwrap();
    assert_eq!(store.runs().unwrap()[0].status, Status::Finished);
    assert_eq!(rows(&store, "r").len(), 11);
}
