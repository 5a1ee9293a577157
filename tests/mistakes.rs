//! A newcomer's first mistakes are caught, not answered with empty results (issue #16): a
//! mistyped store path, a mistyped run name. Each error names what was searched, where, and
//! how that place was chosen.

mod common;
use common::*;

use std::process::Command;

/// Every command that only reads (or edits what exists) on a store path that holds no store.
const READERS: &[&[&str]] = &[
    &["runs"],
    &["runs", "--all"],
    &["history", "r1"],
    &["summary", "r1"],
    &["lineage", "r1"],
    &["verify"],
    &["rewind", "r1?_step=1"],
    &["fork", "r1?_step=1", "--name", "r2"],
    &["plot", "r1", "--keys", "loss", "-o", "-"],
    &["export", "r1", "--format", "csv", "-o", "-"],
    &["purge", "v1"],
    &["delete", "r1"],
    &["gc"],
    &["serve", "--bind", "127.0.0.1:0"],
];

#[test]
fn read_commands_on_a_missing_store_fail_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("rnus").join("deep");
    for args in READERS {
        let out = cli(&missing).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("no steplog store at {}", missing.display()))
                && err.contains("from --store"),
            "{args:?}: {err}"
        );
        assert!(
            !dir.path().join("rnus").exists(),
            "{args:?} created the path"
        );
    }
    // An empty directory is no store either, and stays empty.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = cli(&empty).arg("runs").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn the_error_says_how_the_store_was_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_steplog");
    let out = Command::new(bin)
        .arg("runs")
        .env("STEPLOG_STORE", dir.path().join("nope"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("from STEPLOG_STORE"), "{err}");
    let out = Command::new(bin)
        .arg("runs")
        .env_remove("STEPLOG_STORE")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no steplog store at ./steplog-data") && err.contains("the default"),
        "{err}"
    );
    assert!(!dir.path().join("steplog-data").exists());
}

#[test]
fn writing_commands_create_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("new").join("store");
    let out = cli_in(&store, &["log", "r1"], "{\"loss\": 1}\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cli_ok(&store, &["runs"]).contains("r1"));
}

#[test]
fn a_mistyped_run_name_suggests_the_close_ones_and_names_the_store() {
    let dir = tempfile::tempdir().unwrap();
    for run in ["train-1", "train-2", "eval"] {
        let out = cli_in(dir.path(), &["log", run], "{\"loss\": 1}\n");
        assert!(out.status.success());
    }
    let out = cli(dir.path())
        .args(["summary", "train-11"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("no run named 'train-11' (did you mean 'train-1', 'train-2'?)")
            && err.contains(&format!("in the store {}", dir.path().display()))
            && err.contains("from --store"),
        "{err}"
    );
    // Nothing close: no suggestion, the store still named.
    let out = cli(dir.path())
        .args(["history", "zzzzzz"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("did you mean") && err.contains("in the store"),
        "{err}"
    );
    let out = cli(dir.path()).args(["lineage", "v99"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("v99") && err.contains("in the store"), "{err}");
}

#[test]
fn export_takes_its_format_from_the_file_name_and_refuses_a_contradiction() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = cli_in(&store, &["log", "r1"], "{\"loss\": 1.5}\n{\"loss\": 0.5}\n");
    assert!(out.status.success());
    let file = |name: &str| dir.path().join(name);
    let export = |args: &[&str]| {
        cli(&store)
            .arg("export")
            .arg("r1")
            .args(args)
            .output()
            .unwrap()
    };

    for (name, starts) in [
        ("a.csv", &b"_step,loss"[..]),
        ("a.jsonl", b"{\"_step\":0"),
        ("a.NDJSON", b"{\"_step\":0"),
        ("a.parquet", b"PAR1"),
    ] {
        let path = file(name);
        let out = export(&["-o", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.starts_with(starts),
            "{name}: {:?}",
            &bytes[..bytes.len().min(20)]
        );
    }
    // --format that agrees, or a name that names nothing: as asked.
    let out = export(&["--format", "csv", "-o", file("b.csv").to_str().unwrap()]);
    assert!(out.status.success());
    let out = export(&["--format", "csv", "-o", file("b.txt").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(std::fs::read(file("b.txt"))
        .unwrap()
        .starts_with(b"_step,loss"));
    let out = export(&["--format", "jsonl", "-o", "-"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("{\"_step\":0"));

    // A contradiction, or nothing that names a format: refused, nothing written.
    let bad = file("c.parquet");
    let out = export(&["--format", "csv", "-o", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("--format csv but") && err.contains("names parquet"),
        "{err}"
    );
    assert!(!bad.exists());
    for args in [vec!["-o", "-"], vec!["-o", file("c.txt").to_str().unwrap()]] {
        let out = export(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(err.contains("give --format"), "{args:?}: {err}");
    }
    let out = cli(&store)
        .args([
            "export",
            "--all",
            "--split",
            "-o",
            file("split").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--split writes a directory"));
}

#[test]
fn plot_without_keys_draws_every_numeric_metric() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rows = "{\"loss\": 1.0, \"acc\": 0.5, \"_timestamp\": 1700000000.0, \"note\": \"a\"}\n\
                {\"loss\": 0.5, \"acc\": 0.7, \"_timestamp\": 1700000001.0, \"note\": \"b\"}\n";
    assert!(cli_in(&store, &["log", "r"], rows).status.success());
    let out = cli(&store).args(["plot", "r", "-o", "-"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8_lossy(&out.stdout);
    let panel = |k: &str| svg.contains(&format!("font-weight=\"bold\">{k}</text>"));
    assert!(
        panel("loss") && panel("acc"),
        "every numeric metric has a panel"
    );
    assert!(
        !panel("_timestamp") && !panel("note"),
        "no panel for _ keys and strings"
    );

    // More metrics than a chart holds: the first 60, said on standard error.
    let wide: serde_json::Map<String, serde_json::Value> =
        (0..61).map(|i| (format!("m{i:02}"), 1.0.into())).collect();
    let line = serde_json::Value::Object(wide).to_string() + "\n";
    assert!(cli_in(&store, &["log", "w"], &line).status.success());
    let out = cli(&store).args(["plot", "w", "-o", "-"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("the first 60 of 61 metrics"),
        "{err}"
    );
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains(">m59</text>") && !svg.contains(">m60</text>"));

    // Nothing numeric: an error that says so.
    assert!(cli_in(&store, &["log", "s"], "{\"note\": \"x\"}\n")
        .status
        .success());
    let out = cli(&store).args(["plot", "s"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no numeric metric to plot"),
        "{err}"
    );
}

/// Run `args` on `store`; its exit code and standard error.
fn fails(store: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = cli(store).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_key_the_version_never_had_is_an_error_naming_the_close_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rows = "{\"train\": {\"loss\": 1.0}, \"acc\": 0.5}\n{\"train\": {\"loss\": 0.5}}\n\
                {\"train\": {\"loss\": 0.25}, \"acc\": 0.9}\n";
    assert!(cli_in(&store, &["log", "r1"], rows).status.success());
    let out_file = dir.path().join("x.csv");
    let out_path = out_file.to_str().unwrap();
    for args in [
        &["history", "r1", "--keys", "train/los"][..],
        &["history", "r1", "--keys", "train/loss,acx"],
        &["export", "r1", "--keys", "train/los", "-o", out_path],
        &["plot", "r1", "--keys", "train/los", "-o", "-"],
    ] {
        let (code, err) = fails(&store, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains("has no key '") && err.contains("(did you mean '"),
            "{args:?}: {err}"
        );
    }
    let (_, err) = fails(&store, &["history", "r1", "--keys", "acx"]);
    assert!(
        err.contains("version v1 of run 'r1' has no key 'acx' (did you mean 'acc'?)"),
        "{err}"
    );
    assert!(!out_file.exists(), "a failed export writes no file");
    // Nothing close: the key is still named, with no suggestion.
    let (code, err) = fails(&store, &["history", "r1", "--keys", "zzzzzzzz"]);
    assert!(code == Some(1) && err.contains("no key 'zzzzzzzz'") && !err.contains("did you mean"));

    // A key that exists but has no value in the range is no error: no rows.
    let out = cli_ok(
        &store,
        &["history", "r1", "--keys", "acc", "--from", "1", "--to", "1"],
    );
    assert_eq!(out, "");
    // Keys of another stream are that stream's.
    let (code, err) = fails(
        &store,
        &["history", "r1", "--stream", "console", "--keys", "acc"],
    );
    assert!(
        code == Some(1) && err.contains("in its console stream"),
        "{err}"
    );

    // --all: a key no run has is an error; one some run has is not.
    assert!(cli_in(&store, &["log", "r2"], "{\"other\": 1}\n")
        .status
        .success());
    let all = dir.path().join("all.csv");
    let (code, err) = fails(
        &store,
        &[
            "export",
            "--all",
            "--keys",
            "othr",
            "-o",
            all.to_str().unwrap(),
        ],
    );
    assert!(
        code == Some(1)
            && err.contains("no run of the store has a key 'othr' (did you mean 'other'?)"),
        "{err}"
    );
    let (code, err) = fails(
        &store,
        &[
            "export",
            "--all",
            "--keys",
            "other",
            "-o",
            all.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_step_past_the_last_one_means_the_same_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rows: String = (0..=400)
        .map(|s| format!("{{\"_step\": {s}, \"loss\": 1}}\n"))
        .collect();
    assert!(cli_in(&store, &["log", "r1"], &rows).status.success());
    let csv = dir.path().join("x.csv");
    for args in [
        &["history", "r1?_step=500"][..],
        &["summary", "r1?_step=500"],
        &["export", "r1?_step=500", "-o", csv.to_str().unwrap()],
        &["plot", "r1?_step=500", "-o", "-"],
        &["lineage", "r1?_step=500"],
        &["rewind", "r1?_step=500"],
        &["fork", "r1?_step=500", "--name", "f"],
    ] {
        let (code, err) = fails(&store, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains("version v1 of run 'r1' has no step 500: its last step is 400"),
            "{args:?}: {err}"
        );
    }
    assert!(!csv.exists());
    // At or before the last step: read up to it.
    let out = cli_ok(&store, &["history", "r1?_step=400"]);
    assert_eq!(out.lines().count(), 401);
    let out = cli_ok(&store, &["history", "r1?_step=10"]);
    assert_eq!(out.lines().count(), 11);
}

/// The status `steplog runs --format jsonl` gives run `name`, if it is listed.
fn status_of(store: &std::path::Path, name: &str) -> Option<String> {
    json_lines(&cli_ok(store, &["runs", "--format", "jsonl"]))
        .into_iter()
        .find(|r| r["run"] == name)
        .map(|r| r["status"].as_str().unwrap().to_owned())
}

#[test]
fn a_failed_log_creates_no_empty_run_and_leaves_a_started_one_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert!(cli_in(&store, &["log", "keep"], "{\"loss\": 1}\n")
        .status
        .success());

    // A bad first line: nothing created.
    let out = cli_in(&store, &["log", "new"], "{\"loss\": 1,}\n{\"loss\": 2}\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 1:")
            && err.contains("nothing was logged, and run 'new' was not created"),
        "{err}"
    );
    assert_eq!(status_of(&store, "new"), None);
    // A first line the store refuses (a value past the limits), and empty input: the same.
    let huge = format!("{{\"s\": \"{}\"}}\n", "x".repeat(17 << 20));
    let out = cli_in(&store, &["log", "new"], &huge);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(status_of(&store, "new"), None);
    let out = cli_in(&store, &["log", "new"], "\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("no rows on standard input; run 'new' was not created"),
        "{err}"
    );
    assert_eq!(status_of(&store, "new"), None);

    // A bad first line on an existing run: it stays as it was, finished.
    let out = cli_in(&store, &["log", "keep"], "not json\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run 'keep' was left as it was"), "{err}");
    assert_eq!(status_of(&store, "keep").as_deref(), Some("finished"));

    // A bad line after good ones: the rows before it are committed, the run left crashed.
    let out = cli_in(
        &store,
        &["log", "mid"],
        "{\"loss\": 1}\n{\"loss\": 2}\n{oops\n{\"loss\": 3}\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("committed 2 rows to run 'mid'")
            && err.contains("steps 0 to 1")
            && err.contains("the run is left crashed"),
        "{err}"
    );
    assert_eq!(status_of(&store, "mid").as_deref(), Some("crashed"));
    assert_eq!(cli_ok(&store, &["history", "mid"]).lines().count(), 2);
    // It resumes as any crashed run does.
    assert!(cli_in(&store, &["log", "mid"], "{\"loss\": 3}\n")
        .status
        .success());
    assert_eq!(status_of(&store, "mid").as_deref(), Some("finished"));

    // A first row whose step the started writer would refuse (not after the run's last
    // step, or the rewind's or fork's step): refused before anything is changed.
    let versions = |store: &std::path::Path| {
        json_lines(&cli_ok(store, &["runs", "--all", "--format", "jsonl"])).len()
    };
    let before = versions(&store);
    for (args, input) in [
        (&["log", "keep"][..], "{\"_step\": 0, \"loss\": 2}\n"),
        (
            &["log", "mid", "--resume-from", "mid?_step=1"],
            "{\"_step\": 1, \"loss\": 2}\n",
        ),
        (
            &["log", "fk", "--fork-from", "mid?_step=1"],
            "{\"_step\": 0, \"loss\": 2}\n",
        ),
    ] {
        let out = cli_in(&store, args, input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("line 1:")
                && err.contains("is not after the last step")
                && err.contains("nothing was logged"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        versions(&store),
        before,
        "no rewind, fork or new version was made"
    );
    assert_eq!(status_of(&store, "keep").as_deref(), Some("finished"));
    assert_eq!(status_of(&store, "mid").as_deref(), Some("finished"));

    // A fork asked for with no rows to log is made, as `steplog fork` makes it.
    let out = cli_in(&store, &["log", "f", "--fork-from", "mid?_step=1"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cli_ok(&store, &["history", "f"]).lines().count(), 2);
    // One row: "1 row", "step 0".
    let out = cli_in(&store, &["log", "one"], "{\"loss\": 1}\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("logged 1 row to run 'one'") && err.contains(", step 0 "),
        "{err}"
    );
}

#[test]
fn runs_and_summary_speak_json_and_jsonl_alike_and_default_to_machine_output_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for run in ["a", "b"] {
        assert!(cli_in(&store, &["log", run], "{\"loss\": 1}\n")
            .status
            .success());
    }
    // JSON Lines: one object per line; the default when standard output is a pipe.
    let lines = cli_ok(&store, &["runs", "--format", "jsonl"]);
    assert_eq!(json_lines(&lines).len(), 2);
    assert_eq!(cli_ok(&store, &["runs"]), lines);
    // JSON: one document, an array.
    let doc: serde_json::Value =
        serde_json::from_str(&cli_ok(&store, &["runs", "--format", "json"])).unwrap();
    assert_eq!(doc.as_array().map(Vec::len), Some(2));
    let doc: serde_json::Value =
        serde_json::from_str(&cli_ok(&store, &["runs", "--all", "--format", "json"])).unwrap();
    assert_eq!(doc[1]["version"], "v2");
    // A table when asked for.
    assert!(cli_ok(&store, &["runs", "--format", "table"]).starts_with("run "));
    // summary: one object, whichever JSON word; the default when piped.
    let one = cli_ok(&store, &["summary", "a"]);
    assert_eq!(cli_ok(&store, &["summary", "a", "--format", "json"]), one);
    assert_eq!(cli_ok(&store, &["summary", "a", "--format", "jsonl"]), one);
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(v["run"], "a");
    // A store with no run (a `log` that got no row made the store, not the run): an empty
    // array, and no line.
    let empty = dir.path().join("empty");
    assert!(cli_in(&empty, &["log", "x"], "\n").status.success());
    assert_eq!(cli_ok(&empty, &["runs", "--format", "json"]), "[]\n");
    assert_eq!(cli_ok(&empty, &["runs", "--format", "jsonl"]), "");
}
