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
