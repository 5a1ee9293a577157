//! The README's shell examples run as written, in order, on a fresh store (issue #16): every
//! ```` ```sh ```` block of README.md not marked `<!-- not run by tests/readme.rs: why -->`
//! on the line before it, as one bash script with `set -euo pipefail`, in a scratch directory
//! that holds what a user of each command would have: the repository's `examples/`, and the
//! files the import lines name, written by the real tools (`tests/fixtures/import`).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::copy_dir;

/// The shell blocks of `readme` that are to run, in order, each with its first line number.
fn runnable_blocks(readme: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() == "```sh" {
            let skipped = i > 0 && lines[i - 1].starts_with("<!-- not run by tests/readme.rs");
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && lines[end].trim_end() != "```" {
                end += 1;
            }
            assert!(
                end < lines.len(),
                "README.md:{start}: a ```sh block never ends"
            );
            if !skipped {
                out.push((start + 1, lines[start..end].join("\n")));
            }
            i = end;
        }
        i += 1;
    }
    out
}

/// The files the README's import lines name, copied from the fixtures the real tools wrote.
fn set_the_scene(root: &Path, scratch: &Path) {
    let fixtures = root.join("tests/fixtures/import");
    std::os::unix::fs::symlink(root.join("examples"), scratch.join("examples")).unwrap();
    copy_dir(
        &fixtures.join("tensorboard/tbx_clocks"),
        &scratch.join("runs/exp1"),
    );
    let wandb = scratch.join("wandb/offline-run-20261201_120000-fixture01");
    std::fs::create_dir_all(&wandb).unwrap();
    std::fs::copy(
        fixtures.join("wandb/run-fixture01.wandb"),
        wandb.join("run-fixture01.wandb"),
    )
    .unwrap();
    copy_dir(&fixtures.join("afl/resumed"), &scratch.join("out/default"));
    copy_dir(
        &fixtures.join("criterion"),
        &scratch.join("target/criterion"),
    );
}

#[test]
fn the_readme_runs_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = runnable_blocks(&readme);
    // The quick start, import, export and charts: a README that lost a block by a change of
    // markup would pass with nothing run.
    assert!(blocks.len() >= 4, "{} runnable blocks", blocks.len());
    let scratch = tempfile::tempdir().unwrap();
    set_the_scene(&root, scratch.path());
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_steplog")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut script = String::from("set -euo pipefail\n");
    for (line, block) in &blocks {
        script.push_str(&format!("echo '>>> README.md:{line}' >&2\n{block}\n"));
    }
    let out = Command::new("bash")
        .args(["-x", "-c", &script])
        .current_dir(scratch.path())
        .env("PATH", path)
        .env_remove("STEPLOG_STORE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README's commands failed ({:?}); stderr, the last command traced first by '+':\n{}",
        out.status,
        stderr
    );

    // What the commands promise, looked at.
    let at = |p: &str| scratch.path().join(p);
    let store = steplog::Options::new()
        .create_if_missing(false)
        .open(at("my-runs.steplog"))
        .expect("the quick start's store");
    let names = store.run_names().unwrap();
    for run in ["r1", "r2", "r1-sgd", "exp1", "fuzz-png"] {
        assert!(names.iter().any(|n| n == run), "{run} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "r3"),
        "r3 was deleted: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("criterion/")),
        "{names:?}"
    );
    // r1 was rewound to 200 and continued to 999: its head is whole again.
    let s = store.summary("r1").unwrap();
    assert_eq!((s.rows, s.last_step), (1000, Some(999)));
    assert!(store.verify().unwrap().is_ok());
    for file in [
        "r1.parquet",
        "part.csv",
        "store.parquet",
        "top5.csv",
        "chart.svg",
        "zoom.png",
    ] {
        let len = std::fs::metadata(at(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .len();
        assert!(len > 0, "{file} is empty");
    }
    let part = std::fs::read_to_string(at("part.csv")).unwrap();
    assert!(part.starts_with("_step,acc,loss\n100,"), "{part:.80}");
    assert_eq!(part.lines().count(), 1 + 401, "steps 100..=500");
    assert!(std::fs::read_dir(at("by-run")).unwrap().count() >= 6);
    let top5 = std::fs::read_to_string(at("top5.csv")).unwrap();
    assert!(top5.starts_with("_step,\"acc,top5\"\n0,0.6"), "{top5}");
}
