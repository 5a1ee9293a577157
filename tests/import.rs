//! The importers on real files written by the real tools (tests/fixtures/import, whose
//! README says how each was made), and on truncated and corrupted copies of them: every damaged
//! copy either imports a prefix of the data (a cut that falls between records) or fails with
//! `BadSource` naming the copy and a byte offset inside it. Never a panic, never made-up rows.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use steplog::Quiet;
use steplog::{Durability, Options, Status, Store, Value};
use steplog_import::{self as import, Error};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(rel)
}

fn store(dir: &Path) -> Store {
    Options::new()
        .durability(Durability::Process)
        .open(dir)
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

fn config(store: &Store, reference: &str) -> serde_json::Value {
    store.version(reference).unwrap().config
}

#[test]
fn tensorboard_restart_becomes_a_rewind_and_both_attempts_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let r =
        import::tensorboard::import(&s, &fixture("tensorboard/tbx_restart"), "tb", &Quiet).unwrap();
    assert_eq!(r.archived.len(), 1, "one restart, one archived attempt");
    assert_eq!(r.skipped, 1, "the text summary has no steplog form");
    // The head: steps 0..=19 of the first attempt, then 20..=34 of the second.
    let head = rows(&s, "tb");
    assert_eq!(
        head.iter().map(|r| r.step).collect::<Vec<_>>(),
        (0..35).collect::<Vec<_>>()
    );
    for row in &head {
        let s_ = row.step as f64;
        let (loss, acc) = if row.step < 20 {
            (1.0 / (s_ + 1.0), s_ / 30.0)
        } else {
            (0.5 / (s_ + 1.0), 0.5 + s_ / 100.0)
        };
        // TensorBoard stores float32.
        assert_eq!(f(row, "loss"), f64::from(loss as f32), "step {}", row.step);
        assert_eq!(
            f(row, "train/acc"),
            f64::from(acc as f32),
            "step {}",
            row.step
        );
    }
    // The orphaned steps 20..=29 of the first attempt, readable under the archived version.
    let old = rows(&s, &r.archived[0].to_string());
    assert_eq!(old.len(), 30);
    assert_eq!(f(&old[25], "loss"), f64::from((1.0 / 26.0) as f32));
    let v = s.version(r.version).unwrap();
    assert_eq!(
        v.parent.map(|p| (p.version, p.step)),
        Some((r.archived[0], 19))
    );
    assert_eq!(config(&s, "tb")["_import"]["source"], "tensorboard");
}

#[test]
fn tensorboard_tensor_form_scalars() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let r =
        import::tensorboard::import(&s, &fixture("tensorboard/tb_tensor"), "t", &Quiet).unwrap();
    assert_eq!((r.rows, r.skipped), (10, 0));
    let all = rows(&s, "t");
    for row in &all {
        assert_eq!(row.step % 5, 0);
        let want = 2.0 - row.step as f64 / 50.0;
        assert!(close(f(row, "loss"), want), "step {}", row.step);
        assert!(close(f(row, "lr"), 0.1));
    }
    assert_eq!(all.last().unwrap().step, 45);
}

/// The steps `key` has values at in `rows`, with the values.
fn series(rows: &[steplog::Row], key: &str) -> Vec<(u64, f64)> {
    rows.iter()
        .filter_map(|r| match r.fields.get(key) {
            Some(Value::F64(v)) => Some((r.step, *v)),
            _ => None,
        })
        .collect()
}

#[test]
fn tensorboard_tags_on_their_own_step_clocks_are_not_restarts() {
    // train/loss and lr at the global step, eval/acc at the epoch: what TensorBoard draws
    // (every point of every tag at its own step) is what the head holds; nothing archived.
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let r =
        import::tensorboard::import(&s, &fixture("tensorboard/tbx_clocks"), "tb", &Quiet).unwrap();
    assert!(r.archived.is_empty(), "no restart: {:?}", r.archived);
    assert_eq!(r.rows, 500);
    let head = rows(&s, "tb");
    let loss = series(&head, "train/loss");
    assert_eq!(loss.len(), 500);
    for (step, v) in &loss {
        assert_eq!(
            *v,
            f64::from((1.0 / (*step as f64 + 1.0)) as f32),
            "step {step}"
        );
    }
    let lr = series(&head, "lr");
    assert_eq!(
        lr.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..500).step_by(10).collect::<Vec<_>>()
    );
    let acc = series(&head, "eval/acc");
    assert_eq!(
        acc,
        (0..5u64)
            .map(|e| (e, f64::from((0.5 + e as f64 / 10.0) as f32)))
            .collect::<Vec<_>>()
    );

    // The same with TensorBoard's own writer (tensor form).
    let r =
        import::tensorboard::import(&s, &fixture("tensorboard/tb_clocks"), "t2", &Quiet).unwrap();
    assert!(r.archived.is_empty());
    let head = rows(&s, "t2");
    assert_eq!(series(&head, "train/loss").len(), 300);
    let acc = series(&head, "eval/acc");
    assert_eq!(acc.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(close(acc[2].1, 0.75));
}

#[test]
fn tensorboard_tag_going_back_on_its_own_clock_is_a_restart_that_loses_nothing() {
    // loss at 0..59, then a checkpoint reload without purge_step: loss at 30..79 again, and
    // acc (at the epoch) back from 2 to 1. One rewind; each pass readable whole.
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let r =
        import::tensorboard::import(&s, &fixture("tensorboard/tbx_back"), "tb", &Quiet).unwrap();
    assert_eq!(r.archived.len(), 1);
    let old = rows(&s, &r.archived[0].to_string());
    assert_eq!(
        series(&old, "loss"),
        (0..60).map(|s| (s, s as f64)).collect::<Vec<_>>()
    );
    assert_eq!(
        series(&old, "acc").iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // The head keeps what comes before every step of the second pass (acc restarts at
    // epoch 1), then the second pass whole.
    let head = rows(&s, "tb");
    let mut want: Vec<(u64, f64)> = vec![(0, 0.0)];
    want.extend((30..80).map(|s| (s, 1000.0 + s as f64)));
    assert_eq!(series(&head, "loss"), want);
    let acc = series(&head, "acc");
    assert_eq!(
        acc.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(close(acc[0].1, 0.19) && close(acc[3].1, 0.79), "{acc:?}");
    let v = s.version(r.version).unwrap();
    assert_eq!(
        v.parent.map(|p| (p.version, p.step)),
        Some((r.archived[0], 0))
    );
}

/// Found by attacking issue #12: one tag steplog cannot take as a key (`loss/`, `a//b`, a
/// 2,000-byte name) ended the whole import, with an error naming no source position. Such
/// values are now left out and counted per key, and the import goes on.
#[test]
fn tags_steplog_cannot_store_are_left_out_and_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let tb = fixture("tensorboard/tbx_badtags");
    let got = import::tensorboard::import(&s, &tb, "bad", &Quiet).unwrap();
    assert_eq!(got.rows, 10);
    assert_eq!((got.refused_values, got.refused_keys), (30, 3));
    let keys: Vec<(&str, u64)> = got
        .refused
        .iter()
        .map(|k| (k.key.as_str(), k.values))
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.contains(&("loss/", 10)) && keys.contains(&("a//b", 10)),
        "{keys:?}"
    );
    let long = got
        .refused
        .iter()
        .find(|k| k.key.starts_with("ttt"))
        .unwrap();
    assert!(
        long.key.ends_with("...") && long.key.len() < 210,
        "shown shortened"
    );
    assert!(got.refused.iter().all(|k| !k.reason.is_empty()));
    let all = rows(&s, "bad");
    assert_eq!(all.len(), 10);
    for r in &all {
        let mut names: Vec<&str> = r.fields.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["acc", "loss"]);
    }
    assert_eq!(s.runs().unwrap()[0].status, Status::Finished);
    // The empty tag (proto3 writes no tag field for it) was "a summary value without a tag"
    // and ended the import: it is a key steplog cannot store, left out like the others.
    let empty =
        import::tensorboard::import(&s, &fixture("tensorboard/tbx_emptytag"), "empty", &Quiet)
            .unwrap();
    assert_eq!((empty.rows, empty.refused_values), (3, 3));
    assert_eq!(empty.refused[0].key, "");
    // Through the CLI: the report lists them, and stderr says so.
    let d = dir.path().join("cli");
    let o = cli_in(
        &d,
        &[
            "import",
            "tensorboard",
            tb.to_str().unwrap(),
            "--run",
            "bad",
        ],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(rep[0]["refused_values"], 30);
    assert_eq!(rep[0]["refused"].as_array().unwrap().len(), 3);
    assert!(String::from_utf8_lossy(&o.stderr).contains("30 values left out"));
}

/// Issue #12 (and its second attack): a source that starts over at step 0 was refused
/// ("a steplog rewind keeps at least step 0") with the run left crashed. It is now a restart:
/// the earlier attempt archived whole, the head holding only the new one.
#[test]
fn a_source_that_starts_over_at_step_zero_restarts_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let got = import::tensorboard::import(&s, &fixture("tensorboard/tbx_twice"), "twice", &Quiet)
        .unwrap();
    assert_eq!(got.archived.len(), 1);
    assert_eq!(
        series(&rows(&s, "twice"), "loss"),
        (0..5).map(|x| (x, 100.0 + x as f64)).collect::<Vec<_>>()
    );
    let old = got.archived[0].to_string();
    assert_eq!(
        series(&rows(&s, &old), "loss"),
        (0..10).map(|x| (x, x as f64)).collect::<Vec<_>>()
    );
    assert_eq!(
        s.version("twice").unwrap().restart_of,
        Some(got.archived[0])
    );
    assert_eq!(s.runs().unwrap()[0].status, Status::Finished);
    // AFL: a campaign started afresh at time 0 in the same file.
    let file = dir.path().join("plot_data");
    std::fs::write(
        &file,
        "# relative_time, edges\n0, 1\n5, 2\n9, 3\n0, 7\n4, 8\n",
    )
    .unwrap();
    let got = import::afl::import(&s, &file, "afl", &Quiet).unwrap();
    assert_eq!(got.archived.len(), 1);
    let steps: Vec<u64> = rows(&s, "afl").iter().map(|r| r.step).collect();
    assert_eq!(steps, [0, 4]);
    assert_eq!(rows(&s, &got.archived[0].to_string()).len(), 3);
}

#[test]
fn wandb_media_written_leaf_by_leaf_are_skipped_whole_and_counted() {
    // wandb 0.31 writes an image as items img/_type, img/path, img/sha256, ...: none of them
    // is a value. Plain nested dicts are values.
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let r = import::wandb::import(&s, &fixture("wandb/run-media01.wandb"), None, &Quiet).unwrap();
    assert_eq!(r.rows, 10);
    assert_eq!(
        r.skipped, 12,
        "an image, a histogram and a table at 4 steps"
    );
    let all = rows(&s, "media01");
    for row in &all {
        let keys: Vec<&str> = row.fields.keys().map(String::as_str).collect();
        for k in &keys {
            assert!(
                !["img", "hist", "tbl"].iter().any(|m| k.starts_with(m)),
                "step {}: media leaf {k} imported as a value",
                row.step
            );
        }
        assert!(close(f(row, "loss"), 1.0 / (row.step as f64 + 1.0)));
        assert_eq!(row.fields["nested/a"], Value::I64(row.step as i64));
        assert!(close(f(row, "nested/b/c"), row.step as f64 * 2.5));
    }
}

#[test]
fn wandb_history_config_summary_and_fork() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let a = import::wandb::import(&s, &fixture("wandb/run-fixture01.wandb"), None, &Quiet).unwrap();
    assert_eq!(a.run, "fixture01");
    assert_eq!(a.rows, 41);
    let all = rows(&s, "fixture01");
    for row in &all[..40] {
        let st = row.step as f64;
        assert!(close(f(row, "loss"), 1.0 / (st + 1.0)));
        assert!(close(f(row, "acc"), st / 40.0));
        assert_eq!(row.fields["epoch"], Value::I64(row.step as i64 / 10));
        assert!(close(
            f(row, "train/grad_norm"),
            0.5 + (row.step % 3) as f64
        ));
        assert_eq!(row.fields["ok"], Value::Bool(row.step % 2 == 0));
        assert!(!row.fields.contains_key("_step"));
    }
    assert_eq!(all[40].step, 40);
    assert_eq!(all[40].fields["note"], Value::Str("halfway".into()));
    let c = config(&s, "fixture01");
    assert_eq!(c["lr"], 0.001);
    assert_eq!(c["model"]["depth"], 4);
    assert!(c.get("_wandb").is_none());
    assert_eq!(c["_import"]["run_id"], "fixture01");
    assert_eq!(c["_import"]["project"], "steplog-fixture");
    assert_eq!(c["_import"]["summary"]["best_acc"], 0.975);
    assert_eq!(c["_import"]["exit_code"], 0);
    assert_eq!(s.runs().unwrap()[0].status, Status::Finished);

    // The fork: W&B's branch_point on fixture01 at step 20 becomes a steplog fork.
    let b = import::wandb::import(&s, &fixture("wandb/run-fixture02.wandb"), None, &Quiet).unwrap();
    assert_eq!(b.forked_from, Some(("fixture01".into(), 20)));
    let forked = rows(&s, "fixture02");
    assert_eq!(
        forked.len(),
        30,
        "steps 0..=20 from the source, 21..=29 its own"
    );
    assert!(close(f(&forked[20], "loss"), 1.0 / 21.0));
    assert!(close(f(&forked[25], "loss"), 0.5 / 26.0));
    assert_eq!(config(&s, "fixture02")["lr"], 0.0005);
    assert_eq!(s.lineage("fixture02").unwrap().root().run, "fixture01");
}

#[test]
fn wandb_resume_from_rewinds_the_run_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let a = import::wandb::import(&s, &fixture("wandb/run-fixture01.wandb"), None, &Quiet).unwrap();
    let b = import::wandb::import(
        &s,
        &fixture("wandb/run-fixture01-resumed.wandb"),
        None,
        &Quiet,
    )
    .unwrap();
    assert_eq!(b.run, "fixture01");
    assert_eq!(b.archived, vec![a.version], "the first attempt is archived");
    let head = rows(&s, "fixture01");
    assert_eq!(head.len(), 36);
    assert!(
        close(f(&head[30], "loss"), 1.0 / 31.0),
        "kept up to step 30"
    );
    assert!(
        close(f(&head[33], "loss"), 0.1 / 34.0),
        "the resumed attempt after it"
    );
    assert_eq!(
        rows(&s, &a.version.to_string()).len(),
        41,
        "the archived attempt whole"
    );
    assert_eq!(config(&s, "fixture01")["lr"], 0.0001);
    // Without the run in the store, the same file is a new run that keeps its branch point.
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let c = import::wandb::import(
        &s,
        &fixture("wandb/run-fixture01-resumed.wandb"),
        None,
        &Quiet,
    )
    .unwrap();
    assert!(c.archived.is_empty());
    assert_eq!(rows(&s, "fixture01").len(), 5);
}

#[test]
fn wandb_fork_of_a_run_the_store_lacks_is_a_new_run_that_keeps_its_branch_point() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let b = import::wandb::import(
        &s,
        &fixture("wandb/run-fixture02.wandb"),
        Some("alone"),
        &Quiet,
    )
    .unwrap();
    assert_eq!(b.forked_from, None);
    assert_eq!(rows(&s, "alone").len(), 9);
    let c = config(&s, "alone");
    assert_eq!(c["_import"]["branch_point"]["run"], "fixture01");
    assert_eq!(c["_import"]["branch_point"]["value"], 20.0);
}

#[test]
fn afl_resumed_campaign_continues_as_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let text = std::fs::read_to_string(fixture("afl/resumed/plot_data")).unwrap();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(',').map(str::trim).collect())
        .collect();
    let r = import::afl::import(&s, &fixture("afl/resumed"), "fuzz", &Quiet).unwrap();
    let got = rows(&s, "fuzz");
    // Repeated lines (same time) merge into one row.
    let mut steps: Vec<u64> = lines.iter().map(|l| l[0].parse().unwrap()).collect();
    steps.dedup();
    assert_eq!(got.iter().map(|r| r.step).collect::<Vec<_>>(), steps);
    assert_eq!(r.rows, steps.len() as u64);
    let last = lines.last().unwrap();
    let row = got.last().unwrap();
    assert_eq!(
        row.fields["total_execs"],
        Value::I64(last[11].parse().unwrap())
    );
    assert_eq!(
        f(row, "map_size"),
        last[6].trim_end_matches('%').parse::<f64>().unwrap()
    );
    assert_eq!(f(row, "execs_per_sec"), last[10].parse::<f64>().unwrap());
    let c = config(&s, "fuzz");
    assert_eq!(c["_import"]["fuzzer_stats"]["afl_version"], "++4.04c");
}

/// Follows `inst` into the run `live` while `script` changes its files in another thread.
/// `script` is handed `wait(step)`, which returns once the follower has committed a batch
/// ending at `step` (each stage waits for the one before: no timing assumption; a follower
/// that never gets there fails the test after 30 s instead of hanging it). The follow stops
/// when `script` returns (or panics). Returns the follow's result and its batches.
fn follow_while(
    s: &Store,
    inst: &Path,
    script: impl FnOnce(&dyn Fn(u64)) + Send,
) -> (steplog_import::Result<import::Imported>, Vec<(u64, u64)>) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let seen = AtomicU64::new(u64::MAX);
    let done = AtomicBool::new(false);
    let mut batches = Vec::new();
    let result = std::thread::scope(|sc| {
        let (seen, done_w) = (&seen, &done);
        sc.spawn(move || {
            let _done = Done(done_w);
            let wait = |step: u64| {
                let t = std::time::Instant::now();
                while seen.load(Ordering::SeqCst) != step {
                    assert!(
                        t.elapsed().as_secs() < 30,
                        "the follower never logged step {step}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            };
            script(&wait);
        });
        import::afl::follow(
            s,
            inst,
            "live",
            import::afl::FollowOptions {
                poll: std::time::Duration::from_millis(10),
                idle_exit: None,
                stop: &|| done.load(Ordering::SeqCst),
                on_batch: &mut |rows, last| {
                    batches.push((rows, last));
                    seen.store(last, Ordering::SeqCst);
                },
            },
        )
    });
    (result, batches)
}

#[test]
fn afl_follow_tails_appends_and_survives_a_rewritten_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("store"));
    let inst = dir.path().join("default");
    std::fs::create_dir_all(&inst).unwrap();
    let plot = inst.join("plot_data");
    let first = std::fs::read_to_string(fixture("afl/first_plot_data")).unwrap();
    let resumed = std::fs::read_to_string(fixture("afl/resumed/plot_data")).unwrap();
    let restarted = std::fs::read_to_string(fixture("afl/restarted/plot_data")).unwrap();
    assert!(resumed.starts_with(&first), "AFL++ appends on resume");
    let step_of = |text: &str| -> Vec<u64> {
        let mut v: Vec<u64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(',').next().unwrap().trim().parse().unwrap())
            .collect();
        v.dedup();
        v
    };
    // A writer thread plays the campaign: the first file with its last line half-written,
    // the rest of it, the resume's appended lines, then a fresh campaign replacing the file.
    let (head_text, tail_text) = first.split_at(first.len() - 10);
    let head_last = *step_of(&head_text[..head_text.rfind('\n').unwrap() + 1])
        .last()
        .unwrap();
    let (result, batches) = follow_while(&s, &inst, |wait| {
        use std::io::Write;
        let mut f = std::fs::File::create(&plot).unwrap();
        f.write_all(head_text.as_bytes()).unwrap();
        wait(head_last);
        f.write_all(tail_text.as_bytes()).unwrap();
        f.write_all(&resumed.as_bytes()[first.len()..]).unwrap();
        drop(f);
        wait(*step_of(&resumed).last().unwrap());
        // A restart: the campaign writes a new file in place of the old one.
        let tmp = plot.with_extension("new");
        std::fs::write(&tmp, &restarted).unwrap();
        std::fs::rename(&tmp, &plot).unwrap();
        wait(*step_of(&restarted).last().unwrap());
    });
    let r = result.unwrap();
    assert!(batches.len() >= 3, "logged as it was written: {batches:?}");
    let restart_step = step_of(&restarted)[0];
    assert_eq!(
        r.archived.len(),
        1,
        "the restart archived the first campaign"
    );
    assert_eq!(
        rows(&s, &r.archived[0].to_string())
            .iter()
            .map(|r| r.step)
            .collect::<Vec<_>>(),
        step_of(&resumed)
    );
    let head: Vec<u64> = rows(&s, "live").iter().map(|r| r.step).collect();
    let mut want: Vec<u64> = step_of(&resumed)
        .into_iter()
        .filter(|&st| st < restart_step)
        .collect();
    want.extend(step_of(&restarted));
    assert_eq!(head, want);
    assert_eq!(s.runs().unwrap()[0].status, Status::Finished);
}

#[test]
fn afl_follow_takes_a_longer_copy_as_the_same_file_and_notices_a_rewrite_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("store"));
    let inst = dir.path().join("default");
    std::fs::create_dir_all(&inst).unwrap();
    let plot = inst.join("plot_data");
    let first = std::fs::read_to_string(fixture("afl/first_plot_data")).unwrap();
    let resumed = std::fs::read_to_string(fixture("afl/resumed/plot_data")).unwrap();
    let restarted = std::fs::read_to_string(fixture("afl/restarted/plot_data")).unwrap();
    let steps = |text: &str| -> Vec<u64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(',').next().unwrap().trim().parse().unwrap())
            .collect()
    };
    // A fresh campaign written over the old file in place, longer than what was read (its
    // last line repeated at later times), so only its content tells it is new.
    let mut regrown = restarted.clone();
    let last_line = restarted.lines().last().unwrap().to_owned();
    let (t0, rest) = last_line.split_once(',').unwrap();
    let mut t: u64 = t0.trim().parse().unwrap();
    while regrown.len() <= resumed.len() + 10 {
        t += 1;
        regrown.push_str(&format!("{t},{rest}\n"));
    }
    let (result, _) = follow_while(&s, &inst, |wait| {
        std::fs::write(&plot, &first).unwrap();
        wait(*steps(&first).last().unwrap());
        // A symbolic link to a longer copy: the same campaign, read on from where it was.
        let copy = inst.join("copy_of_plot_data");
        std::fs::write(&copy, &resumed).unwrap();
        let tmp = inst.join("link.tmp");
        std::os::unix::fs::symlink(&copy, &tmp).unwrap();
        std::fs::rename(&tmp, &plot).unwrap();
        wait(*steps(&resumed).last().unwrap());
        // Truncated and regrown in place (one open, one write).
        std::fs::write(&copy, &regrown).unwrap();
        wait(*steps(&regrown).last().unwrap());
    });
    let r = result.unwrap();
    assert_eq!(r.archived.len(), 1, "one rewrite, one archived campaign");
    let mut old = steps(&resumed);
    old.dedup();
    assert_eq!(
        rows(&s, &r.archived[0].to_string())
            .iter()
            .map(|r| r.step)
            .collect::<Vec<_>>(),
        old,
        "the copy continued the first campaign"
    );
    let new = steps(&regrown);
    let head: Vec<u64> = rows(&s, "live").iter().map(|r| r.step).collect();
    assert_eq!(head.last(), new.last());
    assert!(head.ends_with(&new), "{head:?}");
}

/// Found by attacking issue #12: a rewritten `plot_data` whose first step equals the last
/// step already logged, or a line in the same second as the last one committed, died with
/// "step 1 is not after the last step 1" and left the run crashed. A committed step seen
/// again is a restart at that step: the old row stays in an archived version.
#[test]
fn afl_follow_takes_a_committed_step_seen_again_as_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("store"));
    let inst = dir.path().join("default");
    std::fs::create_dir_all(&inst).unwrap();
    let plot = inst.join("plot_data");
    let text = |lines: &[(u64, u64)]| {
        let body: String = lines.iter().map(|(t, e)| format!("{t}, {e}\n")).collect();
        format!("# relative_time, edges_found\n{body}")
    };
    let (result, _) = follow_while(&s, &inst, |wait| {
        std::fs::write(&plot, text(&[(1, 7)])).unwrap();
        wait(1);
        // A new campaign put in place, starting at the step last logged.
        let new = inst.join("new");
        std::fs::write(&new, text(&[(1, 8), (2, 8)])).unwrap();
        std::fs::rename(&new, &plot).unwrap();
        wait(2);
        // The file briefly a directory (polled ten times over) is waited out like a
        // deleted one.
        let aside = inst.join("aside");
        std::fs::rename(&plot, &aside).unwrap();
        std::fs::create_dir(&plot).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::remove_dir(&plot).unwrap();
        std::fs::rename(&aside, &plot).unwrap();
        // Two updates within one second: the second comes after the first was committed.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&plot)
            .unwrap();
        std::io::Write::write_all(&mut f, b"2, 9\n3, 9\n").unwrap();
        drop(f);
        wait(3);
    });
    let r = result.unwrap();
    let edges = |reference: &str| -> Vec<(u64, Value)> {
        rows(&s, reference)
            .into_iter()
            .map(|r| (r.step, r.fields["edges_found"].clone()))
            .collect()
    };
    assert_eq!(
        edges("live"),
        [(1, Value::I64(8)), (2, Value::I64(9)), (3, Value::I64(9))]
    );
    assert_eq!(r.archived.len(), 2, "{:?}", r.archived);
    assert_eq!(edges(&r.archived[0].to_string()), [(1, Value::I64(7))]);
    assert_eq!(
        edges(&r.archived[1].to_string()),
        [(1, Value::I64(8)), (2, Value::I64(8))]
    );
}

#[test]
fn afl_header_columns_must_be_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("store"));
    let file = dir.path().join("plot_data");
    let n = std::cell::Cell::new(0);
    let refused = |text: &str, want: &str| {
        std::fs::write(&file, text).unwrap();
        n.set(n.get() + 1);
        match import::afl::import(&s, &file, &format!("r{}", n.get()), &Quiet) {
            Err(Error::BadSource { reason, .. }) => {
                assert!(reason.contains(want), "{reason}");
                reason
            }
            other => panic!("expected BadSource, got {other:?}"),
        }
    };
    refused("# relative_time, , edges_found\n1, 2, 3\n", "column 2");
    // Found by attacking issue #12: a column named twice kept only its last value, and a
    // NUL-filled tail (what a crash can leave) was echoed raw, 4,096 bytes of it.
    refused(
        "# relative_time, a, a\n1, 2, 3\n",
        "column 3 ('a') of the header repeats",
    );
    let zeros = format!("# relative_time, a\n1, 2\n{}5, 6\n", "\0".repeat(4096));
    let reason = refused(&zeros, "line 3");
    assert!(!reason.contains('\0') && reason.contains("\\0"), "escaped");
    assert!(reason.len() < 600, "shortened: {} bytes", reason.len());
}

#[test]
fn afl_lines_are_bounded_whatever_the_file() {
    // A 2 GiB sparse plot_data (no newline anywhere) is refused at its first 64 KiB, not read
    // into memory.
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("store"));
    let file = dir.path().join("plot_data");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    match import::afl::import(&s, &file, "r", &Quiet) {
        Err(Error::BadSource { offset, reason, .. }) => {
            assert_eq!(offset, 0);
            assert!(reason.contains("longer than"), "{reason}");
        }
        other => panic!("expected BadSource, got {other:?}"),
    }
}

#[test]
fn criterion_samples_and_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let runs = import::criterion::import(&s, &fixture("criterion"), "bench/", &Quiet).unwrap();
    let names: Vec<_> = runs.iter().map(|r| r.run.as_str()).collect();
    assert_eq!(
        names,
        ["bench/sort/100", "bench/sort/1000", "bench/sum 1000"]
    );
    for (run, sub) in [
        ("bench/sort/100", "sort/100"),
        ("bench/sum 1000", "sum 1000"),
    ] {
        let new = fixture("criterion").join(sub).join("new");
        let sample: serde_json::Value =
            serde_json::from_slice(&std::fs::read(new.join("sample.json")).unwrap()).unwrap();
        let est: serde_json::Value =
            serde_json::from_slice(&std::fs::read(new.join("estimates.json")).unwrap()).unwrap();
        let got = rows(&s, run);
        let iters = sample["iters"].as_array().unwrap();
        assert_eq!(got.len(), iters.len());
        for (row, (n, t)) in got
            .iter()
            .zip(iters.iter().zip(sample["times"].as_array().unwrap()))
        {
            let (n, t) = (n.as_f64().unwrap(), t.as_f64().unwrap());
            assert_eq!((f(row, "iters"), f(row, "time_ns")), (n, t));
            assert_eq!(f(row, "ns_per_iter"), t / n);
        }
        let c = config(&s, run);
        assert_eq!(
            c["_import"]["summary"]["mean_ns"],
            est["mean"]["point_estimate"]
        );
        assert_eq!(
            c["_import"]["summary"]["median_upper_ns"],
            est["median"]["confidence_interval"]["upper_bound"]
        );
    }
}

#[test]
fn criterion_walk_ignores_symlink_loops_and_refuses_one_id_twice() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("criterion");
    copy_dir(&fixture("criterion"), &c);
    // ln -s . c/a; ln -s . c/b: 2^40 paths if links were followed.
    std::os::unix::fs::symlink(".", c.join("a")).unwrap();
    std::os::unix::fs::symlink(".", c.join("b")).unwrap();
    std::os::unix::fs::symlink(".", c.join("sort").join("loop")).unwrap();
    let s = store(&dir.path().join("store"));
    let got = import::criterion::import(&s, &c, "", &Quiet).unwrap();
    assert_eq!(got.len(), 3, "each benchmark once");
    // A copied result directory: two results with one id.
    copy_dir(&c.join("sum 1000"), &c.join("sum copy"));
    let s = store(&dir.path().join("store2"));
    let e = import::criterion::import(&s, &c, "", &Quiet).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("sum 1000") && msg.contains("sum copy"),
        "{msg}"
    );
    assert!(
        s.runs().unwrap().is_empty(),
        "nothing imported before the refusal"
    );
}

/// Found by attacking issue #12: a criterion JSON file was read whole whatever its size
/// (`estimates.json` linked to `/dev/zero` grew to 24 GB). Files read whole are bounded.
#[cfg(unix)]
#[test]
fn criterion_files_are_bounded_whatever_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("criterion");
    copy_dir(&fixture("criterion"), &c);
    let est = c
        .join("sort")
        .join("1000")
        .join("new")
        .join("estimates.json");
    std::fs::remove_file(&est).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &est).unwrap();
    let s = store(&dir.path().join("store"));
    match import::criterion::import(&s, &c, "", &Quiet) {
        Err(Error::BadSource {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, est);
            assert_eq!(offset, import::MAX_SOURCE_FILE);
            assert!(reason.contains("more than"), "{reason}");
        }
        other => panic!("expected BadSource, got {other:?}"),
    }
}

/// Imports `file` (a copy named in errors) with `import`, in a fresh store.
fn damaged(
    name: &str,
    bytes: &[u8],
    import: &dyn Fn(&Store, &Path) -> steplog_import::Result<u64>,
) -> Result<u64, (PathBuf, u64, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, bytes).unwrap();
    let s = store(&dir.path().join("store"));
    match import(&s, &file) {
        Ok(rows) => Ok(rows),
        Err(Error::BadSource {
            file: f,
            offset,
            reason,
        }) => {
            assert_eq!(f, file, "the error names the damaged file");
            assert!(offset <= bytes.len() as u64, "offset {offset} past the end");
            // What came before the damage stays, in a run not marked finished.
            for run in s.runs().unwrap() {
                assert_ne!(run.status, Status::Finished, "{name}: {reason} at {offset}");
            }
            Err((f, offset, reason))
        }
        Err(e) => panic!("{name}: expected BadSource, got {e}"),
    }
}

/// Cuts `original` at every `stride`-th byte and flips one bit at every `stride`-th byte:
/// a cut gives a prefix or a BadSource; a flip must always be caught (`checksummed`).
fn sweep(
    name: &str,
    original: &[u8],
    stride: usize,
    checksummed: bool,
    import: &dyn Fn(&Store, &Path) -> steplog_import::Result<u64>,
) {
    let full = damaged(name, original, import).expect("the original imports");
    let (mut cut_errors, mut flips) = (0, 0);
    for cut in (1..original.len()).step_by(stride) {
        match damaged(name, &original[..cut], import) {
            Ok(rows) => assert!(rows <= full, "cut at {cut}: {rows} rows > {full}"),
            Err((_, offset, _)) => {
                assert!(offset <= cut as u64);
                cut_errors += 1;
            }
        }
    }
    assert!(cut_errors > 0, "{name}: no truncation was detected");
    if checksummed {
        for at in (0..original.len()).step_by(stride) {
            let mut b = original.to_vec();
            b[at] ^= 0x10;
            let r = damaged(name, &b, import);
            assert!(r.is_err(), "{name}: bit flip at byte {at} went unnoticed");
            flips += 1;
        }
        assert!(flips > 0);
    }
}

#[test]
fn damaged_tensorboard_files_fail_with_file_and_offset() {
    let dir = fixture("tensorboard/tbx_restart");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(file).unwrap();
    sweep("events.out.tfevents.cut", &bytes, 7, true, &|s, p| {
        import::tensorboard::import(s, p, "r", &Quiet).map(|r| r.rows)
    });
    // The exact message, for one case.
    let err = damaged(
        "events.out.tfevents.x",
        &bytes[..bytes.len() - 3],
        &|s, p| import::tensorboard::import(s, p, "r", &Quiet).map(|r| r.rows),
    )
    .unwrap_err();
    assert!(err.2.contains("runs past the end of the file"), "{}", err.2);
}

#[test]
fn damaged_wandb_files_fail_with_file_and_offset() {
    let bytes = std::fs::read(fixture("wandb/run-fixture01.wandb")).unwrap();
    sweep("run-x.wandb", &bytes, 11, true, &|s, p| {
        import::wandb::import(s, p, Some("r"), &Quiet).map(|r| r.rows)
    });
}

#[test]
fn a_damaged_source_keeps_the_rows_before_the_damage_in_a_crashed_run() {
    // The README's promise, for every importer that reads records: cut the file two thirds
    // in (and flip a bit there): the rows before stay, the run is crashed, the error names
    // the file and an offset at or before the damage.
    type Import = fn(&Store, &Path) -> steplog_import::Result<u64>;
    let cases: [(&str, PathBuf, Import); 3] = [
        (
            "run-x.wandb",
            fixture("wandb/run-fixture01.wandb"),
            |s, p| import::wandb::import(s, p, Some("r"), &Quiet).map(|r| r.rows),
        ),
        (
            "events.out.tfevents.x",
            fixture("tensorboard/tbx_clocks/events.out.tfevents.1796173695.vm"),
            |s, p| import::tensorboard::import(s, p, "r", &Quiet).map(|r| r.rows),
        ),
        ("plot_data", fixture("afl/resumed/plot_data"), |s, p| {
            import::afl::import(s, p, "r", &Quiet).map(|r| r.rows)
        }),
    ];
    for (name, path, import) in cases {
        let bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() * 2 / 3;
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        for damaged in [&bytes[..at], &flipped[..]] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(name);
            std::fs::write(&file, damaged).unwrap();
            let s = store(&dir.path().join("store"));
            match import(&s, &file) {
                Err(Error::BadSource {
                    file: f, offset, ..
                }) => {
                    assert_eq!(f, file);
                    assert!(offset <= at as u64, "{name}: offset {offset} after {at}");
                }
                other => panic!("{name}: expected BadSource, got {other:?}"),
            }
            let runs = s.runs().unwrap();
            assert_eq!(
                runs.len(),
                1,
                "{name}: the rows before the damage were dropped"
            );
            // Crashed; `live` for a moment when another test of this binary is spawning a
            // process, whose child holds a copy of the lock's descriptor until its exec
            // (docs/RELIABILITY.md, "lock descriptors and fork").
            assert_ne!(runs[0].status, Status::Finished, "{name}");
            let kept = rows(&s, "r").len();
            assert!(kept > 0, "{name}: no row kept");
        }
    }
}

#[test]
fn damaged_afl_and_criterion_files_fail_with_file_and_offset() {
    let bytes = std::fs::read(fixture("afl/resumed/plot_data")).unwrap();
    sweep("plot_data", &bytes, 3, false, &|s, p| {
        import::afl::import(s, p, "r", &Quiet).map(|r| r.rows)
    });
    let mut bad = bytes.clone();
    let at = bytes.iter().rposition(|&b| b == b'%').unwrap();
    bad[at - 1] = b'x';
    let (_, offset, reason) = damaged("plot_data", &bad, &|s, p| {
        import::afl::import(s, p, "r", &Quiet).map(|r| r.rows)
    })
    .unwrap_err();
    assert!(
        reason.contains("map_size") && reason.contains("not a number"),
        "{reason}"
    );
    assert!(offset < at as u64 && bytes[offset as usize - 1] == b'\n');

    // criterion: a truncated sample.json, in a copy of the results tree.
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("crit/sum/new");
    std::fs::create_dir_all(&new).unwrap();
    let src = fixture("criterion/sum 1000/new");
    for f in ["benchmark.json", "estimates.json", "sample.json"] {
        std::fs::copy(src.join(f), new.join(f)).unwrap();
    }
    let sample = std::fs::read(src.join("sample.json")).unwrap();
    std::fs::write(new.join("sample.json"), &sample[..sample.len() / 2]).unwrap();
    let s = store(&dir.path().join("store"));
    match import::criterion::import(&s, &dir.path().join("crit"), "c/", &Quiet) {
        Err(Error::BadSource { file, offset, .. }) => {
            assert_eq!(file, new.join("sample.json"));
            assert_eq!(offset, sample.len() as u64 / 2);
        }
        other => panic!("expected BadSource, got {other:?}"),
    }
}

#[test]
fn import_through_the_cli_reports_runs_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tb = fixture("tensorboard/tbx_restart");
    let out = json_lines(&cli_ok(
        d,
        &["import", "tensorboard", tb.to_str().unwrap(), "--run", "tb"],
    ));
    assert_eq!(out[0]["run"], "tb");
    assert_eq!(out[0]["archived"].as_array().unwrap().len(), 1);
    let again = cli_in(
        d,
        &["import", "tensorboard", tb.to_str().unwrap(), "--run", "tb"],
        "",
    );
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains(
            "a run named 'tb' exists already, and an import never appends to a run: \
                      import into a new name with --run NAME"
        ),
        "{err}"
    );

    let crit = fixture("criterion");
    let out = json_lines(&cli_ok(d, &["import", "criterion", crit.to_str().unwrap()]));
    assert_eq!(out.len(), 3);
    assert_eq!(out[2]["run"], "criterion/sum 1000");
    // The source's own summary is shown beside steplog's (in JSON, as `imported`).
    let summary = json_lines(&cli_ok(d, &["summary", "criterion/sum 1000"]));
    assert_eq!(summary.len(), 1);
    assert!(
        summary[0]["metrics"]["time_ns"]["count"].as_u64() > Some(0),
        "{}",
        summary[0]
    );
    assert!(summary[0]["imported"].is_object(), "{}", summary[0]);

    // A damaged file: the message names it and the offset; the store keeps nothing made up.
    let bad = d.join("run-bad.wandb");
    let mut bytes = std::fs::read(fixture("wandb/run-fixture01.wandb")).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&bad, &bytes).unwrap();
    let o = cli_in(d, &["import", "wandb", bad.to_str().unwrap()], "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot import {}", bad.display())) && err.contains("byte offset"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn follow_through_the_cli_ends_cleanly_on_ctrl_c_and_on_idle() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inst = d.join("default");
    std::fs::create_dir_all(&inst).unwrap();
    std::fs::copy(fixture("afl/resumed/plot_data"), inst.join("plot_data")).unwrap();
    let mut child = cli(d)
        .args([
            "follow",
            "afl",
            inst.to_str().unwrap(),
            "--run",
            "live",
            "--poll-ms",
            "20",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it reports the first batch, then press Ctrl-C.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains(", last step") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "follow exited early");
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let report = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(report[0]["run"], "live");
    let s = Store::open(d).unwrap();
    let run = &s.runs().unwrap()[0];
    assert_eq!(
        (run.status, run.rows),
        (Status::Finished, report[0]["rows"].as_u64().unwrap())
    );

    // --idle-exit ends it by itself.
    let out = cli_ok(
        d,
        &[
            "follow",
            "afl",
            inst.to_str().unwrap(),
            "--run",
            "idle",
            "--poll-ms",
            "20",
            "--idle-exit",
            "1",
        ],
    );
    assert_eq!(json_lines(&out)[0]["run"], "idle");
}
