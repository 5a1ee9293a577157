//! A store of many short runs whose manifest is compacted into tables again and again while
//! old runs change (resumed, rewound, forked, purged): what a run reads is always its latest
//! record, whichever table or edit holds it, in this process and in a fresh one; listings
//! give every run once, in order; a store's files stay few.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use steplog::{Options, Status, Store};

/// What each run should read: its rows' values in step order, its config, and its status.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    values: Vec<f64>,
    config: serde_json::Value,
    status: Status,
}

fn open(dir: &Path) -> Store {
    Options::new()
        .manifest_compaction_bytes(2_048)
        .open(dir)
        .unwrap()
}

fn check(store: &Store, want: &BTreeMap<String, Expect>, when: &str) {
    let runs = store.runs().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let want_names: Vec<&str> = want.keys().map(String::as_str).collect();
    assert_eq!(names, want_names, "{when}: every run listed once, in order");
    assert_eq!(
        store.run_names().unwrap(),
        want_names,
        "{when}: the names alone, from the run records"
    );
    for r in &runs {
        let e = &want[&r.name];
        let got: Vec<f64> = common::rows(store, &r.name)
            .iter()
            .map(|row| common::f(row, "x"))
            .collect();
        assert_eq!(got, e.values, "{when}: rows of {}", r.name);
        assert_eq!(r.rows, e.values.len() as u64, "{when}: count of {}", r.name);
        assert_eq!(r.status, e.status, "{when}: status of {}", r.name);
        let info = store.version(r.name.as_str()).unwrap();
        assert_eq!(info.config, e.config, "{when}: config of {}", r.name);
        assert_eq!(info.id, r.head, "{when}: head of {}", r.name);
        let s = store.summary(r.name.as_str()).unwrap();
        let count = s.keys.get("x").map_or(0, |k| k.count);
        assert_eq!(
            count,
            e.values.len() as u64,
            "{when}: summary of {}",
            r.name
        );
    }
}

#[test]
fn old_runs_changed_after_compactions_read_their_latest_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut want: BTreeMap<String, Expect> = BTreeMap::new();
    let add = |store: &Store, want: &mut BTreeMap<String, Expect>, i: u64| {
        let name = format!("run-{i:04}");
        let config = json!({"i": i, "lr": 1e-3});
        let mut w = store.run(&name).config(config.clone()).start().unwrap();
        w.log_at(0, [("x", i as f64)]).unwrap();
        w.log_at(1, [("x", i as f64 + 0.5)]).unwrap();
        w.finish().unwrap();
        let values = vec![i as f64, i as f64 + 0.5];
        let status = Status::Finished;
        want.insert(
            name,
            Expect {
                values,
                config,
                status,
            },
        );
    };
    for i in 0..600 {
        add(&store, &mut want, i);
    }
    // Old runs, long since in the tables, change: a resume adds a row and a config key, a
    // rewind archives a head, a fork branches, a purge drops an archived version.
    for i in (0..600).step_by(9) {
        let name = format!("run-{i:04}");
        let mut w = store
            .run(&name)
            .config(json!({"resumed": true}))
            .start()
            .unwrap();
        w.log_at(2, [("x", -(i as f64))]).unwrap();
        w.finish().unwrap();
        let e = want.get_mut(&name).unwrap();
        e.values.push(-(i as f64));
        e.config["resumed"] = json!(true);
    }
    for i in (3..600).step_by(25) {
        let name = format!("run-{i:04}");
        let r = store.run(&name).resume_from(0).apply().unwrap();
        want.get_mut(&name).unwrap().values.truncate(1);
        if i % 2 == 1 {
            store.purge(r.archived.unwrap()).unwrap();
        } else {
            let fork = format!("fork-{i:04}");
            store
                .run(&fork)
                .fork_from(r.archived.unwrap(), 1)
                .apply()
                .unwrap();
            let mut e = want[&name].clone();
            e.values = vec![i as f64, i as f64 + 0.5];
            e.config = json!({"i": i, "lr": 1e-3});
            if i % 9 == 0 {
                e.config["resumed"] = json!(true);
            }
            want.insert(fork, e);
        }
    }
    // A crashed run: a writer dropped without finishing.
    {
        let mut w = store.run("run-0100").start().unwrap();
        w.log_at(3, [("x", 7.0)]).unwrap();
        w.commit().unwrap();
    }
    let e = want.get_mut("run-0100").unwrap();
    e.values.push(7.0);
    e.status = Status::Crashed;
    for i in 600..700 {
        add(&store, &mut want, i);
    }
    check(&store, &want, "in the writing process");
    let fresh = open(dir.path());
    check(&fresh, &want, "in a fresh store");
    assert!(fresh.verify().unwrap().is_ok());

    let tables = std::fs::read_dir(dir.path().join("manifest"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("tab".as_ref()))
        .count();
    assert!(
        tables >= 2,
        "the base is tiered ({tables} tables): lookups and listings cross tables"
    );
    // Files: the tables, MANIFEST, LOCK, one lock file, and one segment: the crashed run's
    // committed head (every finished short run is inline in the manifest).
    let segments = common::segment_files(dir.path()).len();
    assert_eq!(segments, 1, "no segment file per short run");
    let all = walk(dir.path());
    assert_eq!(
        all,
        segments + tables + 3,
        "no file per run besides its data"
    );

    // Tables the manifest does not list: an older one (a compaction's replaced table that a
    // crash kept) is deleted by gc; a newer one (a crashed compaction's) is kept and named.
    let tdir = dir.path().join("manifest");
    let listed: Vec<u64> = std::fs::read_dir(&tdir)
        .unwrap()
        .map(|e| {
            e.unwrap().file_name().to_string_lossy()[..16]
                .parse()
                .unwrap()
        })
        .collect();
    let newest = *listed.iter().max().unwrap();
    let older = (1..newest)
        .find(|i| !listed.contains(i))
        .expect("an unused older id");
    let old_path = tdir.join(format!("{older:016}.tab"));
    let new_path = tdir.join(format!("{:016}.tab", newest + 1000));
    std::fs::write(&old_path, b"replaced").unwrap();
    std::fs::write(&new_path, b"crashed").unwrap();
    let report = fresh.gc().unwrap();
    assert!(report.deleted.contains(&old_path), "{report:?}");
    assert!(!old_path.exists() && new_path.exists());
    assert!(
        report.kept.iter().any(|(p, _)| *p == new_path),
        "{report:?}"
    );
    check(&fresh, &want, "after gc");
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Issue #14: a short run (its rows one block, no commit before `finish`) is written with its
/// `finish`, inside the manifest: no file, and no `add_segment` or `seal` edit; what is too
/// big, committed before, or one of many blocks still goes to files. Every run reads back
/// the same in a fresh process, and through the CLI.
#[test]
fn short_runs_are_carried_in_the_manifest_and_longer_ones_in_files() {
    use steplog::{Query, Stream, Value};
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .manifest_compaction_bytes(1 << 30)
        .open(dir.path())
        .unwrap();
    for r in 0..50u64 {
        let mut w = store.run(&format!("short-{r:02}")).start().unwrap();
        for step in 0..20u64 {
            w.log_at(step, [("x", (r * 100 + step) as f64), ("y", 1.5)])
                .unwrap();
            if step % 4 == 0 {
                w.log_row(Stream::System, Some(step), [("gpu", Value::F64(0.5))])
                    .unwrap();
                w.log_row(Stream::Console, Some(step), [("line", "ok")])
                    .unwrap();
            }
        }
        w.finish().unwrap();
    }
    assert_eq!(
        common::segment_files(dir.path()).len(),
        0,
        "no segment file"
    );
    let manifest =
        String::from_utf8_lossy(&std::fs::read(dir.path().join("MANIFEST")).unwrap()).into_owned();
    let ops = |op: &str| manifest.matches(&format!("\"op\":\"{op}\"")).count();
    assert_eq!(
        (ops("create"), ops("inline"), ops("finish")),
        (50, 150, 50),
        "a create, an inline segment per stream and a finish per run"
    );
    assert_eq!((ops("add_segment"), ops("seal")), (0, 0));

    // Committed before finishing: the commit needs a file (its rows are durable then).
    let mut w = store.run("committed").start().unwrap();
    w.log_at(0, [("x", 1.0)]).unwrap();
    w.commit().unwrap();
    w.log_at(1, [("x", 2.0)]).unwrap();
    w.finish().unwrap();
    // One block, but its segment larger than the inline bound (random-looking floats).
    let mut w = store.run("big").start().unwrap();
    let mut v = 0.123_456_789f64;
    for step in 0..3_000u64 {
        v = (v * 3.999 * (1.0 - v)).abs();
        w.log_at(step, [("x", v)]).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(common::segment_files(dir.path()).len(), 2);

    let fresh = Store::open(dir.path()).unwrap();
    for r in 0..50u64 {
        let name = format!("short-{r:02}");
        let rows = common::rows(&fresh, &name);
        let xs: Vec<f64> = rows.iter().map(|row| common::f(row, "x")).collect();
        let want: Vec<f64> = (0..20).map(|s| (r * 100 + s) as f64).collect();
        assert_eq!(xs, want, "{name}");
        let system = fresh
            .history(&name, &Query::new().stream(Stream::System))
            .unwrap()
            .count();
        let console = fresh
            .history(&name, &Query::new().stream(Stream::Console))
            .unwrap()
            .count();
        assert_eq!((system, console), (5, 5), "{name}");
        let s = fresh.summary(name.as_str()).unwrap();
        assert_eq!(s.keys["x"].count, 20);
        assert_eq!(s.keys["y"].mean(), Some(1.5));
    }
    assert_eq!(common::rows(&fresh, "committed").len(), 2);
    assert_eq!(common::rows(&fresh, "big").len(), 3_000);
    let report = fresh.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        report.blocks >= 152,
        "inline segments are verified: {report:?}"
    );
    let out = common::cli_ok(dir.path(), &["summary", "short-07", "--format", "json"]);
    assert!(
        out.contains("\"count\":20") || out.contains("\"count\": 20"),
        "{out}"
    );
}

/// The largest inline segment a user can ask for: `inline_segment_bytes` past
/// `MAX_INLINE_SEGMENT_BYTES` is taken as that bound; a stream just under it is one manifest
/// edit and then one table record, read back exactly in a fresh process after compactions;
/// one just over it goes to a file.
#[test]
fn the_largest_inline_segment_round_trips_through_edits_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        // One block of up to 1 MiB (not cut at 8 KiB a key), so that a stream of 7,000
        // floats is still one buffered block when the run finishes.
        Options::new()
            .inline_segment_bytes(1 << 30)
            .block_bytes(1 << 20)
            .block_column_bytes(usize::MAX)
            .manifest_compaction_bytes(4_096)
            .open(dir.path())
            .unwrap()
    };
    let store = open();
    // Floats of a chaotic map: about 8 bytes each after compression.
    let values = |n: usize, seed: f64| -> Vec<f64> {
        let mut v = seed;
        (0..n)
            .map(|_| {
                v = 3.999 * v * (1.0 - v);
                v
            })
            .collect()
    };
    let write = |name: &str, xs: &[f64]| {
        let mut w = store.run(name).start().unwrap();
        for (step, x) in xs.iter().enumerate() {
            w.log_at(step as u64, [("x", *x)]).unwrap();
        }
        w.finish().unwrap();
    };
    let under = values(7_000, 0.123);
    let over = values(20_000, 0.321);
    write("under", &under);
    assert_eq!(
        common::segment_files(dir.path()).len(),
        0,
        "under the bound: inline"
    );
    write("over", &over);
    assert_eq!(
        common::segment_files(dir.path()).len(),
        1,
        "over it: a file"
    );
    // More edits, so that compactions move the inline segment into tables.
    for r in 0..40 {
        write(&format!("pad-{r}"), &[1.0]);
    }
    assert!(
        std::fs::read_dir(dir.path().join("manifest"))
            .unwrap()
            .count()
            >= 1
    );
    let fresh = open();
    for (name, xs) in [("under", &under), ("over", &over)] {
        let got: Vec<f64> = common::rows(&fresh, name)
            .iter()
            .map(|r| common::f(r, "x"))
            .collect();
        assert_eq!(&got, xs, "{name}");
    }
    let report = fresh.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// `steplog runs` writes its lines as it reads each run's sparklines, a batch of runs at a
/// time on every core: past a batch (4,096 runs) every run is still listed once, in name
/// order, with its own sparkline (rising for even runs, falling for odd: a line written
/// against another run's sparkline shows), in aligned columns, in both formats.
#[test]
fn a_listing_longer_than_a_batch_gives_every_run_its_own_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let runs = 5_000u64;
    let mut bulk = store.bulk();
    for r in 0..runs {
        let mut run = bulk.run(&format!("r{r:05}"));
        for step in 0..12u64 {
            let x = if r % 2 == 0 { step } else { 11 - step };
            run.log_at(step, [("x", x as f64)]).unwrap();
        }
        bulk.add(run).unwrap();
    }
    bulk.commit().unwrap();
    drop(store);
    let table = common::cli_ok(dir.path(), &["runs", "--format", "table"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        runs as usize + 1,
        "a header and a line per run"
    );
    let metrics_at = lines[0].find("metrics").unwrap();
    let spark = |line: &str| -> String {
        let cells: String = line.chars().skip(metrics_at).collect();
        cells
            .strip_prefix("x ")
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned()
    };
    let rising = spark(lines[1]);
    assert!(rising.starts_with('▁') && rising.ends_with('█'), "{rising}");
    let falling: String = rising.chars().rev().collect();
    for (r, line) in lines[1..].iter().enumerate() {
        assert!(line.starts_with(&format!("r{r:05} ")), "line {r}: {line}");
        let want = if r % 2 == 0 { &rising } else { &falling };
        assert_eq!(&spark(line), want, "line {r}: {line}");
    }
    let jsonl = common::json_lines(&common::cli_ok(dir.path(), &["runs", "--format", "jsonl"]));
    assert_eq!(jsonl.len(), runs as usize);
    for (r, v) in jsonl.iter().enumerate() {
        assert_eq!(v["run"], format!("r{r:05}"));
        assert_eq!(
            (v["rows"].as_u64(), v["last_step"].as_u64()),
            (Some(12), Some(11))
        );
    }
}
