//! `steplog export` through the CLI: CSV and JSON Lines content, ranges and keys, the
//! whole-store forms, and clear errors. (The Parquet output is read back by independent
//! readers, pyarrow and DuckDB, in bindings/python/tests/test_export.py.)

mod common;
use common::*;

fn logged(d: &std::path::Path) {
    let rows: String = (0..50)
        .map(|i| {
            format!(
                "{{\"loss\": {}, \"tag\": \"t{i}\", \"n\": {i}}}\n",
                1.0 / (i + 1) as f64
            )
        })
        .collect();
    assert!(cli_in(d, &["log", "a/b"], &rows).status.success());
    assert!(cli_in(d, &["log", "a_b"], "{\"x\": 1}\n{\"x\": 2}\n")
        .status
        .success());
}

#[test]
fn csv_and_jsonl_of_a_range_with_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    logged(d);
    let out = d.join("out.csv");
    let rep = json_lines(&cli_ok(
        d,
        &[
            "export",
            "a/b",
            "--format",
            "csv",
            "--keys",
            "n,loss",
            "--from",
            "10",
            "--to",
            "12",
            "-o",
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(rep[0]["rows"], 3);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text, "_step,loss,n\n10,0.09090909090909091,10\n11,0.08333333333333333,11\n12,0.07692307692307693,12\n");

    let out = d.join("out.jsonl");
    cli_ok(
        d,
        &[
            "export",
            "a/b?_step=2",
            "--format",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let rows = json_lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[2],
        serde_json::json!({"_step": 2, "loss": 1.0 / 3.0, "n": 2, "tag": "t2"})
    );
}

#[test]
fn whole_store_exports_name_each_run_and_never_overwrite_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    logged(d);
    let all = d.join("all.csv");
    cli_ok(
        d,
        &[
            "export",
            "--all",
            "--format",
            "csv",
            "-o",
            all.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&all).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "run,version,_step,loss,n,tag,x");
    assert_eq!(text.lines().filter(|l| l.starts_with("a/b,")).count(), 50);
    assert_eq!(text.lines().filter(|l| l.starts_with("a_b,")).count(), 2);

    // 'a/b' and 'a_b' both become a_b.*: the second gets its version id.
    let split = d.join("split");
    let rep = json_lines(&cli_ok(
        d,
        &[
            "export",
            "--all",
            "--split",
            "--format",
            "jsonl",
            "-o",
            split.to_str().unwrap(),
        ],
    ));
    let files: Vec<String> = rep
        .iter()
        .map(|r| r["file"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files.len(), 2);
    assert_ne!(files[0], files[1]);
    let total: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert_eq!(total, 52);
}

#[test]
fn export_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    logged(d);
    let o = cli_in(d, &["export", "nope", "--format", "csv", "-o", "x.csv"], "");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
    let o = cli_in(d, &["export", "a/b", "--format", "csv"], "");
    assert!(!o.status.success(), "-o is required");
    let blocker = d.join("file");
    std::fs::write(&blocker, "x").unwrap();
    let target = blocker.join("out.csv");
    let o = cli_in(
        d,
        &[
            "export",
            "a/b",
            "--format",
            "csv",
            "-o",
            target.to_str().unwrap(),
        ],
        "",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("cannot create"),
        "{err}"
    );
}

/// Issue #11: `export --all --split` of runs `a/b`, `a_b-v3` and `a~b` wrote `a_b-v3.jsonl`
/// twice; and the whole-store table's `run` column silently replaced a key named `run`.
#[test]
fn split_names_are_unique_and_a_key_named_like_a_column_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (run, x) in [("a/b", 1), ("a_b-v3", 2), ("a~b", 3), ("a_b", 4)] {
        let line = format!("{{\"x\": {x}}}\n");
        assert!(cli_in(d, &["log", run], &line).status.success());
    }
    let out = d.join("split");
    let rep = json_lines(&cli_ok(
        d,
        &[
            "export",
            "--all",
            "--split",
            "--format",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(rep.len(), 4);
    let mut files: Vec<String> = rep
        .iter()
        .map(|r| r["file"].as_str().unwrap().to_owned())
        .collect();
    files.sort();
    files.dedup();
    assert_eq!(files.len(), 4, "{rep:?}");
    let mut xs: Vec<i64> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            json_lines(&text)[0]["x"].as_i64().unwrap()
        })
        .collect();
    xs.sort();
    assert_eq!(xs, [1, 2, 3, 4], "every run's rows in a file of its own");

    assert!(
        cli_in(d, &["log", "tagged"], "{\"run\": \"mine\", \"y\": 1}\n")
            .status
            .success()
    );
    for format in ["jsonl", "csv", "parquet"] {
        let path = d.join(format!("all.{format}"));
        let o = cli_in(
            d,
            &[
                "export",
                "--all",
                "--format",
                format,
                "-o",
                path.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(o.status.code(), Some(1), "{format}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("'run'") && err.contains("--split"), "{err}");
        assert!(!path.exists(), "nothing written");
    }
}

/// Found by attacking the CLI (issue #11): `export -o MANIFEST` (or a segment, or a symlink to
/// one) truncated that file and destroyed the store; and an export that failed on a damaged
/// store left the user's existing output file empty.
#[test]
fn an_export_never_writes_over_a_store_file_and_a_failed_one_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    logged(d);
    // And a run in a segment file (short runs are inline in the manifest).
    let store = steplog::Options::new()
        .inline_segment_bytes(0)
        .open(d)
        .unwrap();
    let mut w = store.run("filed").start().unwrap();
    w.log_at(0, [("x", 1.0)]).unwrap();
    w.finish().unwrap();
    drop(store);
    let before = store_image(d);
    let seg = segment_files(d)[0].clone();
    let link = dir
        .path()
        .join("..")
        .join(format!("link-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(d.join("MANIFEST"), &link).unwrap();
    for target in [
        d.join("MANIFEST"),
        seg.clone(),
        d.join("segments"),
        d.to_path_buf(),
        link.clone(),
    ] {
        for format in ["csv", "parquet"] {
            let o = cli_in(
                d,
                &[
                    "export",
                    "a_b",
                    "--format",
                    format,
                    "-o",
                    target.to_str().unwrap(),
                ],
                "",
            );
            assert_eq!(o.status.code(), Some(1), "{}", target.display());
            assert!(String::from_utf8_lossy(&o.stderr).contains("file of the store"));
        }
    }
    std::fs::remove_file(&link).unwrap();
    assert_eq!(store_image(d), before, "the store is untouched");
    // A failure midway (a damaged segment) leaves an existing output as it was, and no
    // temporary file behind.
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.csv");
    std::fs::write(&out, "precious\n").unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[60] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let o = cli_in(
        d,
        &[
            "export",
            "--all",
            "--format",
            "csv",
            "-o",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 1);
}

/// Issue #12: `-o -` wrote a file named `-`; it is standard output (the report then goes to
/// standard error), for every format and for charts. A key containing a comma could not be
/// selected: `--key` takes one whole.
#[test]
fn dash_is_standard_output_and_key_takes_a_key_with_commas() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    logged(d);
    assert!(cli_in(
        d,
        &["log", "c"],
        "{\"a,b\": 1, \"x\": 2}\n{\"a,b\": 3, \"x\": 4}\n"
    )
    .status
    .success());
    for format in ["csv", "jsonl", "parquet"] {
        let file = d.join(format!("out.{format}"));
        cli_ok(
            d,
            &[
                "export",
                "a/b",
                "--format",
                format,
                "-o",
                file.to_str().unwrap(),
            ],
        );
        let o = cli_in(d, &["export", "a/b", "--format", format, "-o", "-"], "");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            o.stdout,
            std::fs::read(&file).unwrap(),
            "{format}: the same bytes"
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("exported 50 rows"));
    }
    assert!(!d.join("-").exists() && !std::path::Path::new("-").exists());
    let o = cli_in(
        d,
        &["export", "--all", "--split", "--format", "csv", "-o", "-"],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--split"));
    let o = cli_in(d, &["plot", "a/b", "--keys", "loss", "-o", "-"], "");
    assert!(o.status.success());
    assert!(o.stdout.starts_with(b"<svg"), "an SVG on standard output");
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"points\""));

    // --key takes a key whole; --keys and --key combine.
    let out = cli_ok(d, &["history", "c", "--key", "a,b"]);
    assert_eq!(
        json_lines(&out),
        [
            serde_json::json!({"_step": 0, "a,b": 1}),
            serde_json::json!({"_step": 1, "a,b": 3})
        ]
    );
    let o = cli_in(
        d,
        &[
            "export", "c", "--format", "csv", "--keys", "x", "--key", "a,b", "-o", "-",
        ],
        "",
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "_step,\"a,b\",x\n0,1,2\n1,3,4\n"
    );
    let o = cli_in(d, &["plot", "c", "--key", "a,b", "-o", "-"], "");
    assert!(o.status.success() && o.stdout.starts_with(b"<svg"));
    // Without --keys, every metric, the one with a comma in its name too (issue #16).
    let o = cli_in(d, &["plot", "c", "-o", "-"], "");
    assert!(o.status.success());
    let svg = String::from_utf8_lossy(&o.stdout);
    assert!(
        svg.contains(">a,b</text>") && svg.contains(">x</text>"),
        "{svg}"
    );
}

/// Found by attacking issue #12: the output was always a temporary renamed over the path, so
/// `-o link` replaced the link (its file left as it was), `-o fifo` replaced the FIFO (its
/// reader got nothing), and, as root, `-o /dev/full` replaced the device with a regular
/// file. A link is followed to its file; a path that is not a regular file is written in
/// place, as a shell redirection would.
#[cfg(unix)]
#[test]
fn an_export_follows_links_and_writes_devices_and_fifos_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    logged(d);
    let export_csv = |path: &std::path::Path| {
        cli_ok(
            d,
            &[
                "export",
                "a_b",
                "--format",
                "csv",
                "-o",
                path.to_str().unwrap(),
            ],
        )
    };
    let out = tempfile::tempdir().unwrap();
    let real = out.path().join("real.csv");
    std::fs::write(&real, "old\n").unwrap();
    let link = out.path().join("link.csv");
    std::os::unix::fs::symlink("real.csv", &link).unwrap();
    export_csv(&link);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        "_step,x\n0,1\n1,2\n"
    );
    // A dangling link: the file it names is created.
    let dangling = out.path().join("dangling.csv");
    std::os::unix::fs::symlink("made.csv", &dangling).unwrap();
    export_csv(&dangling);
    assert!(out.path().join("made.csv").is_file());

    let fifo = out.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    export_csv(&fifo);
    assert_eq!(reader.join().unwrap(), "_step,x\n0,1\n1,2\n");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // Found by the next attack: a pipe behind /dev/stdout was taken for a missing file, a
    // 244-byte name made a temporary name past 255 bytes, a link loop was replaced.
    let o = cli_in(
        d,
        &["export", "a_b", "--format", "csv", "-o", "/dev/stdout"],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("_step,x\n0,1\n1,2\n"));
    let long = out.path().join(format!("{}.csv", "n".repeat(240)));
    export_csv(&long);
    assert!(long.is_file());
    let (a, b) = (out.path().join("a.csv"), out.path().join("b.csv"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let o = cli_in(
        d,
        &[
            "export",
            "a_b",
            "--format",
            "csv",
            "-o",
            a.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("loop of symbolic links"));
    assert!(std::fs::symlink_metadata(&a)
        .unwrap()
        .file_type()
        .is_symlink());

    cli_ok(
        d,
        &["export", "a_b", "--format", "parquet", "-o", "/dev/null"],
    );
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    if std::path::Path::new("/dev/full").exists() {
        let o = cli_in(
            d,
            &["export", "a_b", "--format", "csv", "-o", "/dev/full"],
            "",
        );
        assert_eq!(o.status.code(), Some(1), "a full device is an error");
        assert!(std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device());
    }
}
