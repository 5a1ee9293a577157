//! The CLI end to end, through the forms users and scripts rely on: log from JSON Lines,
//! history as JSON Lines and CSV, summary, rewind and fork with W&B references, runs, lineage,
//! verify and purge.

mod common;
use common::*;

fn input(range: std::ops::Range<u64>, f: impl Fn(u64) -> String) -> String {
    range.map(|i| f(i) + "\n").collect()
}

#[test]
fn the_wandb_rewind_example_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = cli_in(
        d,
        &["log", "r1", "--config", "{\"lr\": 0.1}"],
        &input(0..300, |i| {
            format!(
                "{{\"metric\": {i}, \"train\": {{\"loss\": {}}}}}",
                1.0 / (i + 1) as f64
            )
        }),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("logged 300 rows to run 'r1'") && err.contains("steps 0 to 299"),
        "{err}"
    );

    let rewound: serde_json::Value =
        serde_json::from_str(&cli_ok(d, &["rewind", "r1?_step=200"])).unwrap();
    assert_eq!(rewound["run"], "r1");
    assert_eq!(rewound["step"], 200);
    let (archived, head) = (
        rewound["archived"].as_str().unwrap().to_string(),
        rewound["head"].as_str().unwrap().to_string(),
    );
    assert_ne!(archived, head);

    let out = cli_in(
        d,
        &["log", "r1"],
        &input(201..300, |i| {
            format!(
                "{{\"_step\": {i}, \"metric\": {}}}",
                if i == 250 { 1e6 } else { -(i as f64) }
            )
        }),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hist = json_lines(&cli_ok(
        d,
        &[
            "history", "r1", "--keys", "metric", "--from", "199", "--to", "202",
        ],
    ));
    assert_eq!(
        hist,
        vec![
            serde_json::json!({"_step": 199, "metric": 199}),
            serde_json::json!({"_step": 200, "metric": 200}),
            // `-201` in the input is an integer, and stays one.
            serde_json::json!({"_step": 201, "metric": -201}),
            serde_json::json!({"_step": 202, "metric": -202}),
        ]
    );
    let old = json_lines(&cli_ok(d, &["history", &archived]));
    assert_eq!(old.len(), 300);
    assert_eq!(
        old[299],
        serde_json::json!({"_step": 299, "metric": 299, "train/loss": 1.0 / 300.0})
    );

    let s: serde_json::Value = serde_json::from_str(&cli_ok(d, &["summary", "r1"])).unwrap();
    assert_eq!(s["run"], "r1");
    assert_eq!(s["version"], head);
    assert_eq!(s["last_step"], 299);
    let m = &s["metrics"]["metric"];
    assert_eq!(
        (m["count"].as_u64(), m["max"].as_f64(), m["min"].as_f64()),
        (Some(300), Some(1e6), Some(-299.0))
    );
    assert_eq!(m["nan_count"], 0);
    assert_eq!(
        s["metrics"]["train/loss"]["count"], 201,
        "train/loss was not logged after the rewind"
    );
    let table = cli_ok(d, &["summary", "r1", "--format", "table"]);
    assert!(
        table.contains("metric") && table.contains("1000000"),
        "{table}"
    );
    // A sparkline per numeric key, 24 characters: 'metric' has one step at 1000000 among
    // values of a few hundred, and that spike keeps the top bar; the rest stays low.
    let line = table.lines().find(|l| l.starts_with("metric ")).unwrap();
    let spark: String = line.chars().filter(|c| ('▁'..='█').contains(c)).collect();
    assert_eq!(spark.chars().count(), 24, "{table}");
    assert_eq!(spark.matches('█').count(), 1, "{table}");
    assert_eq!(spark.chars().filter(|&c| c <= '▁').count(), 23, "{table}");
    let runs = cli_ok(d, &["runs", "--format", "table"]);
    assert!(runs.lines().next().unwrap().ends_with("metrics"), "{runs}");
    assert!(runs.lines().nth(1).unwrap().contains("metric ▁"), "{runs}");

    let forked: serde_json::Value =
        serde_json::from_str(&cli_ok(d, &["fork", "r1?_step=250", "--name", "r1-fork"])).unwrap();
    assert_eq!(
        (
            forked["run"].as_str(),
            forked["source"].as_str(),
            forked["step"].as_u64()
        ),
        (Some("r1-fork"), Some(head.as_str()), Some(250))
    );
    let fh = json_lines(&cli_ok(d, &["history", "r1-fork", "--keys", "metric"]));
    assert_eq!(fh.len(), 251);
    assert_eq!(fh[250]["metric"], 1e6);

    let csv = cli_ok(d, &["history", "r1", "--format", "csv", "--to", "1"]);
    assert_eq!(csv, "_step,metric,train/loss\n0,0,1\n1,1,0.5\n");

    let runs = json_lines(&cli_ok(d, &["runs", "--format", "jsonl"]));
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[0],
        serde_json::json!({"run": "r1", "head": head, "status": "finished", "last_step": 299, "rows": 300})
    );
    let all = json_lines(&cli_ok(d, &["runs", "--all", "--format", "jsonl"]));
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["status"], "archived");
    assert_eq!(
        (all[1]["parent"].as_str(), all[1]["parent_step"].as_u64()),
        (Some(archived.as_str()), Some(200))
    );
    assert!(cli_ok(d, &["runs"]).contains("r1-fork"));

    let tree = cli_ok(d, &["lineage", "r1-fork"]);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 3, "{tree}");
    assert!(lines[0].starts_with(&format!("{archived} r1 [archived] new run")));
    assert!(lines[1].starts_with(&format!(
        "└── {head} r1 [finished] rewound from {archived} at step 200"
    )));
    assert!(lines[2].contains(&format!("forked from {head} at step 250")));

    assert!(cli_ok(d, &["verify"]).starts_with("ok:"));

    // Purge the archived version: unreadable, while the head and the fork keep their rows.
    let purged: serde_json::Value =
        serde_json::from_str(&cli_ok(d, &["purge", &archived])).unwrap();
    assert_eq!(purged["purged"], archived);
    let out = cli_in(d, &["history", &archived], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("was purged"));
    assert_eq!(json_lines(&cli_ok(d, &["history", "r1"])).len(), 300);
    assert_eq!(json_lines(&cli_ok(d, &["history", "r1-fork"])).len(), 251);
    assert!(cli_ok(d, &["verify"]).starts_with("ok:"));
}

#[test]
fn streams_steps_nan_and_the_store_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = "{\"_step\": 3, \"a\": 1}\n{\"b\": NaN}\n{\"_step\": 3, \"c\": \"x\"}\n";
    let out = cli_in(d, &["log", "r"], lines);
    assert_eq!(
        out.status.code(),
        Some(1),
        "step 4 then step 3 is a regression"
    );
    let out = cli_in(
        d,
        &["log", "s"],
        "{\"_step\": 3, \"a\": 1}\n{\"_step\": 3, \"c\": \"x\"}\n{\"b\": NaN}\n",
    );
    assert!(out.status.success());
    assert_eq!(
        cli_ok(d, &["history", "s"]),
        "{\"_step\":3,\"a\":1,\"c\":\"x\"}\n{\"_step\":4,\"b\":NaN}\n",
        "same-step lines merge; NaN is written as Python writes it"
    );
    // Non-finite values are written bare, as Python's json module writes and reads them.
    let text = cli_ok(d, &["summary", "s"]);
    assert!(
        text.contains("\"b\":{\"count\":1,\"first\":NaN,\"last\":NaN"),
        "{text}"
    );
    let s: serde_json::Value = serde_json::from_str(&text.replace("NaN", "null")).unwrap();
    assert_eq!(s["metrics"]["b"]["nan_count"], 1);
    assert_eq!(
        s["metrics"]["b"]["min"],
        serde_json::Value::Null,
        "min and max skip NaN"
    );
    assert_eq!(
        s["metrics"]["c"],
        serde_json::json!({"count": 1, "last": "x", "last_step": 3})
    );

    let out = cli_in(
        d,
        &["log", "s", "--stream", "console"],
        "{\"_step\": 4, \"line\": \"a\"}\n{\"_step\": 4, \"line\": \"b\"}\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = json_lines(&cli_ok(d, &["history", "s", "--stream", "console"]));
    assert_eq!(
        console.len(),
        2,
        "console lines at one step stay separate rows"
    );

    // STEPLOG_STORE chooses the store: `log` creates it there, `runs` reads it.
    let env_store = dir.path().join("from-env");
    let steplog = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_steplog"));
        c.args(args).env("STEPLOG_STORE", &env_store);
        c
    };
    let mut child = steplog(&["log", "e1"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"x\": 1}\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        env_store.join("MANIFEST").exists(),
        "STEPLOG_STORE chose the store"
    );
    let out = steplog(&["runs", "--format", "jsonl"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"e1\""));
}

#[test]
fn the_demo_runs_and_ends_with_a_clean_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_ok(dir.path(), &["demo", "--steps", "5000"]);
    for needle in [
        "Rewinding 'demo-1'",
        "archived",
        "Lineage",
        "forked from",
        "Verify",
        "ok:",
        "│",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    // The verify line reads as `steplog verify`'s does.
    let verify = cli_ok(dir.path(), &["verify"]);
    let line = verify.lines().last().unwrap();
    assert!(
        line.starts_with("ok: ") && line.ends_with(", 0 problems"),
        "{verify}"
    );
    // The same words; the counts may differ (the second demo's store is larger).
    let shape = |l: &str| l.replace(|c: char| c.is_ascii_digit(), "");
    let demo_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("ok: "))
        .unwrap();
    assert_eq!(shape(demo_line.trim_start()), shape(line), "{demo_line}");
    // It leaves a Parquet file and a chart in the store directory, named after the run.
    let svg = std::fs::read_to_string(dir.path().join("demo-1-chart.svg")).unwrap();
    assert!(svg.contains("rewound from") && svg.contains("forked from"));
    let parquet = std::fs::read(dir.path().join("demo-1.parquet")).unwrap();
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    // A second demo in the same store picks fresh run names, and files: the first stay.
    assert!(cli_ok(dir.path(), &["demo", "--steps", "2000"]).contains("demo-2"));
    assert!(dir.path().join("demo-2-chart.svg").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("demo-1-chart.svg")).unwrap(),
        svg
    );
}

/// The README shows the demo's chart as the demo draws it (docs/img/demo-chart.svg): after a
/// change to the demo or the charts, run `steplog demo` and copy its `demo-1-chart.svg` there.
#[test]
fn the_readme_chart_is_the_one_the_demo_draws() {
    let dir = tempfile::tempdir().unwrap();
    cli_ok(dir.path(), &["demo"]);
    let drawn = std::fs::read(dir.path().join("demo-1-chart.svg")).unwrap();
    let shown = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/img/demo-chart.svg"
    ))
    .unwrap();
    assert!(
        drawn == shown,
        "docs/img/demo-chart.svg is not what the demo draws now: copy the demo's demo-1-chart.svg there"
    );
}
