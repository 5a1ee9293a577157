//! A run rewound 20,000 times (a fuzzing campaign that rewinds after every crash), through
//! every command: nothing recurses on the depth (no stack overflow), listings, drawings and
//! purge stay linear, a drawing stays readable (straight chains collapsed) and a chart
//! overlays the versions one can tell apart. `STEPLOG_DEEP` sets the depth (default 5,000, so
//! that the debug build in CI takes about 30 s; the release run at 20,000 takes 72 s);
//! `STEPLOG_DEEP_KEEP=DIR` builds the store in DIR and keeps it (for the figures in
//! docs/BENCHMARKS.md).

mod common;
use common::*;

use steplog::{Durability, Options, Store};

fn depth() -> u64 {
    std::env::var("STEPLOG_DEEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

/// The runs `deep` and `flat` (`steplog_workload::write_deep`, which the harness's `deep`
/// workload writes too).
fn build(dir: &std::path::Path, depth: u64) -> Store {
    let s = Options::new()
        .durability(Durability::Process)
        .open(dir)
        .unwrap();
    steplog_workload::write_deep(&s, depth).unwrap();
    s
}

#[test]
fn a_lineage_twenty_thousand_deep_through_every_command() {
    let depth = depth();
    let tmp = tempfile::tempdir().unwrap();
    let dir = match std::env::var_os("STEPLOG_DEEP_KEEP") {
        Some(d) => std::path::PathBuf::from(d),
        None => tmp.path().join("store"),
    };
    let s = build(&dir, depth);
    let d = dir.as_path();

    // The library: the lineage is flat and whole; rows of every version counted together.
    let tree = s.lineage("deep").unwrap();
    assert_eq!(tree.versions.len() as u64, depth);
    assert_eq!(tree.depth_first().last().unwrap().depth as u64, depth - 1);
    let ids: Vec<_> = tree.versions.iter().map(|v| v.id).collect();
    let counts = s.rows_of(&ids).unwrap();
    for (k, c) in counts.iter().enumerate() {
        let c = c.as_ref().unwrap();
        assert_eq!(
            (c.rows, c.last_step),
            (2 * k as u64 + 3, Some(2 * k as u64 + 2)),
            "v{k}"
        );
    }
    let head = rows(&s, "deep");
    assert_eq!(head.len() as u64, 2 * depth + 1);
    assert_eq!(rows(&s, "flat"), head);

    // The CLI: the drawing has a line per branch end, not per version.
    let drawing = cli_ok(d, &["lineage", "deep"]);
    let lines: Vec<&str> = drawing.lines().collect();
    assert!(lines.len() <= 8, "{drawing}");
    assert!(
        drawing.contains(&format!("{} versions in a straight line", depth - 4)),
        "{drawing}"
    );
    assert!(lines.iter().all(|l| l.chars().count() < 200), "{drawing}");
    // An archived version in the middle is drawn when it is the one asked for.
    let middle = ids[ids.len() / 2].to_string();
    let drawing = cli_ok(d, &["lineage", &middle]);
    assert!(drawing.lines().any(|l| l.starts_with(&format!("{middle} ")) || l.contains(&format!(" {middle} deep"))), "{drawing}");

    // Listings: one line per version.
    let all = cli_ok(d, &["runs", "--all", "--format", "jsonl"]);
    assert_eq!(all.lines().count() as u64, depth + 1);
    assert!(cli_ok(d, &["runs"]).contains("deep"));

    // Charts: the plotted version and its nearest, not twenty thousand lines.
    let svg = d.parent().unwrap().join(format!("{}.svg", depth));
    let out: serde_json::Value = serde_json::from_str(&cli_ok(
        d,
        &["plot", "deep", "--keys", "x", "-o", svg.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(out["versions"].as_array().unwrap().len(), 8);
    assert_eq!(out["versions_not_drawn"].as_u64(), Some(depth - 8));
    let text = cli_ok(d, &["plot", "deep", "--keys", "x"]);
    assert!(
        text.contains("more versions of the lineage not drawn"),
        "{text}"
    );

    // Reads, summary, export, purge and verify.
    assert_eq!(
        json_lines(&cli_ok(d, &["history", "deep"])).len() as u64,
        2 * depth + 1
    );
    assert!(cli_ok(d, &["summary", "deep"]).contains('x'));
    let csv = d.parent().unwrap().join("deep.csv");
    cli_ok(
        d,
        &[
            "export",
            "deep",
            "--format",
            "csv",
            "-o",
            csv.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count() as u64,
        2 * depth + 2
    );
    cli_ok(d, &["purge", &middle]);
    assert_eq!(
        rows(&s, "deep"),
        head,
        "the purge kept every row the head reads"
    );
    assert!(cli_ok(d, &["verify"]).starts_with("ok:"));

    // Rewind and resume at this depth.
    let (archived, _) = {
        let r = s.run("deep").resume_from(2 * depth).apply().unwrap();
        (r.archived.unwrap(), r.head)
    };
    assert_eq!(rows(&s, &archived.to_string()), head);
    let mut w = s.run("deep").resume_from(2 * depth - 1).start().unwrap();
    w.log_at(2 * depth, [("x", -1.0)]).unwrap();
    w.finish().unwrap();
    assert_eq!(rows(&s, "deep").len() as u64, 2 * depth + 1);
}

/// The other deep shape (found by attacking issue #12): each rewind goes back before the
/// previous attempt's first step, as a TensorBoard tag stepping back one step at a time
/// imports. Every ancestor then gives a version nothing, and counting, the last step and
/// resume walked to the root from every version: `runs --all` took 47.6 s and 4.9 GB at
/// 10,000 versions, the import of 20,000 backward steps 64 s. Now each stops at the first
/// ancestor whose history starts after the cutoff.
#[test]
fn rewinds_that_each_go_back_before_the_last_attempt_count_and_resume_at_any_depth() {
    let depth = depth();
    let dir = tempfile::tempdir().unwrap();
    let s = Options::new()
        .durability(Durability::Process)
        .open(dir.path())
        .unwrap();
    // Attempt k logs one row at step depth + 1 - k, after a rewind to the step before it.
    let mut w = s.run("back").start().unwrap();
    w.log_at(depth + 1, [("x", 0.0)]).unwrap();
    w.finish().unwrap();
    for k in 1..=depth {
        let mut w = s.run("back").resume_from(depth - k).start().unwrap();
        assert_eq!(w.next_step(steplog::Stream::History), depth - k + 1);
        w.log_at(depth - k + 1, [("x", k as f64)]).unwrap();
        w.finish().unwrap();
    }
    let listed = json_lines(&cli_ok(dir.path(), &["runs", "--all", "--format", "jsonl"]));
    assert_eq!(listed.len() as u64, depth + 1);
    for v in &listed {
        assert_eq!(v["rows"], 1, "every version holds its own row only: {v}");
    }
    let head = rows(&s, "back");
    assert_eq!(head.len(), 1);
    assert_eq!(
        (head[0].step, head[0].fields["x"].as_f64()),
        (1, Some(depth as f64))
    );
    let runs = s.runs().unwrap();
    assert_eq!((runs[0].rows, runs[0].last_step), (1, Some(1)));
    // A fresh process resumes the head after its last step.
    let o = cli_in(dir.path(), &["log", "back"], "{\"x\": -1}\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(rows(&s, "back").last().unwrap().step, 2);
}
