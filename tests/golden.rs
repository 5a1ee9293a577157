//! Golden stores: a store written by each on-disk format steplog has shipped, committed under
//! `tests/fixtures/golden/`, is read back to the exact rows, summaries, statuses and lineage it
//! was written with (docs/FORMAT.md, "Formats are promises").
//!
//! Each fixture directory holds the store (`store/`) and `expected.json`, both written by
//! `make_golden` at the commit its README names:
//!
//! ```sh
//! STEPLOG_GOLDEN_OUT=tests/fixtures/golden/manifest-3 cargo test --test golden -- --ignored make_golden
//! ```

mod common;

use std::path::Path;

use common::describe;
use serde_json::{json, Value as Json};
use steplog::{Options, Store, Stream, Value};

/// Writes a golden store: every kind of value and column encoding, three streams, sparse
/// keys, several segments and blocks per version, a rewind, a fork of an archived version, a
/// purge, a restart (since manifest format 2), a crashed run whose head segment is
/// unsealed, deleted runs (since manifest format 7), and (since segment format 4) a segment of
/// several groups of blocks and blocks whose frames carry a crc per part.
#[test]
#[ignore = "writes a golden fixture; run by hand when a format changes (see the module doc)"]
fn make_golden() {
    let out = std::env::var("STEPLOG_GOLDEN_OUT").expect("STEPLOG_GOLDEN_OUT");
    let out = Path::new(&out);
    assert!(!out.exists(), "{} exists", out.display());
    let dir = out.join("store");
    // A small compaction threshold (since manifest format 3): the manifest is a base of
    // several tables and a tail of edits (since format 4, some of them inline segments).
    // Since format 5, a fanout of 4: the run `deep` gets packs of two levels.
    let store = Options::new()
        .segment_bytes(6_000)
        .block_bytes(1_500)
        .manifest_compaction_bytes(1_024)
        .pack_fanout(4)
        .open(&dir)
        .unwrap();
    let mut w = store
        .run("train")
        .config(json!({"lr": 0.001, "model": {"layers": 4}}))
        .start()
        .unwrap();
    for step in 0..1_200u64 {
        let x = step as f64;
        w.log_at(
            step,
            [
                ("loss", Value::F64(1.0 / (x + 1.0))),
                ("f32", Value::F64(f64::from((x * 0.1) as f32))),
                ("epoch", Value::I64((step / 100) as i64)),
                ("neg", Value::I64(-(step as i64) * 7)),
            ],
        )
        .unwrap();
        if step % 50 == 0 {
            w.log_at(
                step,
                [
                    ("eval/acc", Value::F64(x / 1200.0)),
                    ("eval/best", Value::Bool(step % 100 == 0)),
                    ("note", Value::Str(format!("step {step} ✓"))),
                ],
            )
            .unwrap();
        }
        if step % 97 == 0 {
            let odd = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0];
            w.log_at(step, [("odd", Value::F64(odd[(step / 97) as usize % 4]))])
                .unwrap();
            w.log_at(step, [("mixed", Value::I64(step as i64))])
                .unwrap();
        }
        if step % 101 == 0 {
            w.log_at(step, [("mixed", Value::Str("text".into()))])
                .unwrap();
        }
        if step % 150 == 7 {
            // Longer than aggregates keep (segment format 3 keeps it by step only).
            let long = format!("{step}:{}", "long text ".repeat(40));
            w.log_at(step, [("long", Value::Str(long))]).unwrap();
        }
        if step % 10 == 0 {
            w.log_row(Stream::System, Some(step), [("gpu", Value::F64(x % 97.0))])
                .unwrap();
            w.log_row(
                Stream::Console,
                Some(step),
                [("line", format!("at {step}"))],
            )
            .unwrap();
            w.log_row(Stream::Console, Some(step), [("line", "again")])
                .unwrap();
        }
        if step % 333 == 0 {
            w.commit().unwrap();
        }
    }
    w.finish().unwrap();
    let rewound = store
        .run("train")
        .resume_from(800)
        .config(json!({"lr": 0.0005}))
        .apply()
        .unwrap();
    let mut w = store
        .run("train")
        .resume(steplog::Resume::Must)
        .start()
        .unwrap();
    for step in 801..1_000u64 {
        w.log_at(step, [("loss", step as f64 * 1e-4)]).unwrap();
    }
    w.finish().unwrap();
    store
        .run("variant")
        .fork_from(rewound.archived.unwrap(), 1_000)
        .apply()
        .unwrap();
    let mut w = store.run("gone").start().unwrap();
    for step in 0..500u64 {
        w.log_at(step, [("y", step as f64)]).unwrap();
    }
    w.finish().unwrap();
    let purged = store.run("gone").resume_from(100).apply().unwrap();
    store.purge(purged.archived.unwrap()).unwrap();
    // Manifest format 2: a restart (the new head keeps no row of the archived version).
    let mut w = store.run("again").start().unwrap();
    for step in 0..40u64 {
        w.log_at(step, [("a", step as f64)]).unwrap();
    }
    w.finish().unwrap();
    let mut w = store.run("again").restart().start().unwrap();
    for step in 0..15u64 {
        w.log_at(step, [("a", -(step as f64))]).unwrap();
    }
    w.finish().unwrap();
    // Manifest format 4: short runs carried inline in the manifest (no segment file), in
    // every stream, one rewound and continued, its archived version purged (a tombstone).
    for r in 0..6u64 {
        let mut w = store
            .run(&format!("short-{r}"))
            .config(json!({"r": r}))
            .start()
            .unwrap();
        for step in 0..20u64 {
            let x = (step + r) as f64;
            w.log_at(step, [("loss", 1.0 / (x + 1.0)), ("acc", x / 40.0)])
                .unwrap();
            if step % 5 == 0 {
                w.log_row(Stream::System, Some(step), [("gpu", Value::F64(x))])
                    .unwrap();
                w.log_row(Stream::Console, Some(step), [("line", format!("s{step}"))])
                    .unwrap();
            }
        }
        w.finish().unwrap();
    }
    let mut w = store.run("short-0").resume_from(9).start().unwrap();
    for step in 10..15u64 {
        w.log_at(step, [("loss", -(step as f64))]).unwrap();
    }
    w.finish().unwrap();
    let mut w = store.run("short-1").restart().start().unwrap();
    for step in 0..5u64 {
        w.log_at(step, [("loss", step as f64)]).unwrap();
    }
    w.finish().unwrap();
    for run in ["short-0", "short-1"] {
        let archived = store.lineage(run).unwrap().root().id;
        store.purge(archived).unwrap();
    }
    // Manifest format 5: a run rewound 20 times, 2 rows a version, packed by level (some
    // packs in the tables, the last ones in the tail), one archived version forked.
    for k in 0..20u64 {
        let start = if k == 0 {
            store.run("deep")
        } else {
            store.run("deep").resume_from(2 * k)
        };
        let mut w = start.start().unwrap();
        for step in (2 * k + u64::from(k > 0))..=2 * k + 2 {
            w.log_at(step, [("x", k as f64), ("y", -(step as f64))])
                .unwrap();
            w.log_row(Stream::Console, Some(step), [("line", format!("v{k}"))])
                .unwrap();
        }
        w.finish().unwrap();
    }
    let v = store.lineage("deep").unwrap().versions[12].id;
    store.run("deep-fork").fork_from(v, 20).apply().unwrap();
    // Manifest format 6: short runs written in bulks, one `batch` edit each (this one
    // compacted into the tables, the last one left in the tail).
    let mut bulk = store.bulk();
    for r in 0..4u64 {
        let mut run = bulk.run(&format!("bulk-{r}"));
        run.set_config(json!({"bulk": r}));
        for step in 0..12u64 {
            let x = (step * 4 + r) as f64;
            run.log_at(
                step,
                [
                    ("loss", Value::F64(1.0 / (x + 1.0))),
                    ("i", Value::I64(x as i64)),
                ],
            )
            .unwrap();
            if step % 4 == 0 {
                run.log_row(Stream::System, Some(step), [("gpu", Value::F64(x))])
                    .unwrap();
                run.log_row(Stream::Console, None, [("line", format!("b{r} {step}"))])
                    .unwrap();
            }
        }
        bulk.add(run).unwrap();
    }
    bulk.commit().unwrap();
    // Segment format 4: a segment of many blocks (more than one group of them in its
    // footer), rewound inside its third group, so that the head's summary is cut through
    // the footer's aggregates of groups and of blocks.
    {
        let tiny = Options::new().block_bytes(1).open(&dir).unwrap();
        let mut w = tiny.run("grouped").start().unwrap();
        for step in 0..700u64 {
            let x = ((step * 7919) % 1000) as f64 / 8.0;
            w.log_at(step, [("x", x)]).unwrap();
            if step % 61 == 0 {
                w.log_at(step, [("sparse", Value::I64(step as i64))])
                    .unwrap();
            }
        }
        w.finish().unwrap();
        tiny.run("grouped").resume_from(450).apply().unwrap();
        // Blocks of the default size: frames of parts (`SLB3`, a crc per section).
        let big = Options::new().open(&dir).unwrap();
        let mut w = big.run("parts").start().unwrap();
        for step in 0..3_000u64 {
            let x = step as f64;
            w.log_at(
                step,
                [
                    ("sin", Value::F64((x * 0.37).sin())),
                    ("ramp", Value::F64(x / 7.0)),
                    ("count", Value::I64((step * step % 977) as i64)),
                ],
            )
            .unwrap();
        }
        w.finish().unwrap();
    }
    let mut w = store.run("crashed").start().unwrap();
    for step in 0..300u64 {
        w.log_at(step, [("z", step as f64 * 2.0)]).unwrap();
    }
    w.abort().unwrap();
    let mut w = store.run("short-last").start().unwrap();
    w.log_at(0, [("loss", 0.5)]).unwrap();
    w.finish().unwrap();
    // Manifest format 7: runs deleted. "doomed" was rewound and forked ("heir" keeps what it
    // read), then deleted and its name taken again; "doomed-short" (inline) is deleted too.
    let mut w = store.run("doomed").start().unwrap();
    for step in 0..400u64 {
        w.log_at(step, [("d", step as f64 * 3.0)]).unwrap();
    }
    w.finish().unwrap();
    store.run("doomed").resume_from(250).apply().unwrap();
    store.run("heir").fork_from("doomed", 120).apply().unwrap();
    let mut w = store.run("doomed-short").start().unwrap();
    w.log_at(0, [("d", 1.0)]).unwrap();
    w.finish().unwrap();
    store.delete("doomed").unwrap();
    store.delete("doomed-short").unwrap();
    let mut w = store.run("doomed").start().unwrap();
    w.log_at(0, [("d", -1.0)]).unwrap();
    w.finish().unwrap();
    // The last bulk stays in the tail: no compaction after it.
    drop(store);
    let store = Options::new()
        .manifest_compaction_bytes(1 << 20)
        .open(&dir)
        .unwrap();
    // Since manifest format 8, this batch of the tail is binary: a config, every stream.
    let mut bulk = store.bulk();
    for r in ["bulk-last-0", "bulk-last-1"] {
        let mut run = bulk.run(r);
        run.log([("loss", 0.25)]).unwrap();
        if r == "bulk-last-1" {
            run.set_config(json!({"lr": 0.5, "note": "ü \"quoted\""}));
            run.log_row(Stream::System, Some(0), [("gpu", 3.5)])
                .unwrap();
            run.log_row(Stream::Console, None, [("line", "last ✓")])
                .unwrap();
        }
        bulk.add(run).unwrap();
    }
    bulk.commit().unwrap();
    // A delete left in the tail (a tombstone in the overlay, over the tables' record).
    store.delete("short-last").unwrap();
    let expected = describe(&store);
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

/// Every sealed segment file of `store` ends with the footer its header's format has: a
/// head of an older format, recovered and sealed by this steplog, keeps its format's footer
/// (`SLF1` before segment format 4, `SLF2` from it), so an older steplog reads it or refuses
/// it by its header, never misreads it.
fn footers_match_headers(store: &Path) {
    for path in common::segment_files(store) {
        let bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        if n < 48 || &bytes[n - 8..] != b"STEPLEND" {
            continue;
        }
        let format = u16::from_le_bytes([bytes[8], bytes[9]]);
        let at = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap()) as usize;
        let magic = &bytes[at..at + 4];
        let want: &[u8] = if format >= 4 { b"SLF2" } else { b"SLF1" };
        assert_eq!(magic, want, "{}: segment format {format}", path.display());
    }
}

/// The manifest format this steplog writes (a compaction rewrites older ones as it).
const LATEST: u16 = 8;

#[test]
fn every_golden_store_reads_back_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let mut checked = 0;
    let mut table_formats = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let fixture = entry.unwrap().path();
        if !fixture.join("expected.json").exists() {
            continue;
        }
        for table in std::fs::read_dir(fixture.join("store/manifest"))
            .into_iter()
            .flatten()
        {
            let bytes = std::fs::read(table.unwrap().path()).unwrap();
            table_formats.insert(u16::from_le_bytes([bytes[8], bytes[9]]));
        }
        // Read a copy: the fixture must not depend on readers leaving it alone.
        let tmp = tempfile::tempdir().unwrap();
        common::copy_dir(&fixture.join("store"), tmp.path());
        let before = common::store_image(tmp.path());
        let store = Store::open(tmp.path()).unwrap();
        let expected: Json =
            serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
                .unwrap();
        assert_eq!(describe(&store), expected, "{}", fixture.display());
        let report = store.verify().unwrap();
        assert!(
            report.is_ok(),
            "{}: {:?}",
            fixture.display(),
            report.problems
        );
        assert_eq!(
            common::store_image(tmp.path()),
            before,
            "reading changed the store"
        );
        // Migrated: a writer's first edit compacts the manifest into the current format (a
        // base of tables), which reads back the same.
        let migrated = tempfile::tempdir().unwrap();
        common::copy_dir(&fixture.join("store"), migrated.path());
        {
            let m = Options::new()
                .manifest_compaction_bytes(1)
                .open(migrated.path())
                .unwrap();
            m.run("crashed").start().unwrap().abort().unwrap();
        }
        let manifest = std::fs::read(migrated.path().join("MANIFEST")).unwrap();
        assert!(
            String::from_utf8_lossy(&manifest).contains("\"op\":\"base\""),
            "{}: compacted into a base",
            fixture.display()
        );
        let m = Store::open(migrated.path()).unwrap();
        assert_eq!(describe(&m), expected, "{} migrated", fixture.display());
        assert!(
            m.verify().unwrap().is_ok(),
            "{} migrated",
            fixture.display()
        );
        // A format 3 manifest takes no inline segment (a steplog of format 3 appending to it
        // would not know one) until a compaction rewrites it as format 4: a short run gets a
        // segment file, as before.
        let format = |dir: &Path| {
            let m = std::fs::read(dir.join("MANIFEST")).unwrap();
            u16::from_le_bytes([m[8], m[9]])
        };
        let was = format(tmp.path());
        let files = common::segment_files(tmp.path()).len();
        let mut w = store.run("short-after-golden").start().unwrap();
        w.log_at(0, [("x", 1.0)]).unwrap();
        w.finish().unwrap();
        let added = common::segment_files(tmp.path()).len() - files;
        assert_eq!(format(tmp.path()), was, "{}", fixture.display());
        assert_eq!(added, usize::from(was < 4), "{}: files", fixture.display());
        assert_eq!(common::rows(&store, "short-after-golden").len(), 1);
        // Migrated, it is of format 4, and a short run is inline.
        let files = common::segment_files(migrated.path()).len();
        let mut w = m.run("short-after-golden").start().unwrap();
        w.log_at(0, [("x", 1.0)]).unwrap();
        w.finish().unwrap();
        assert_eq!(format(migrated.path()), LATEST, "{}", fixture.display());
        assert_eq!(common::segment_files(migrated.path()).len(), files);
        assert_eq!(common::rows(&m, "short-after-golden").len(), 1);
        // A manifest before format 5 takes no pack (a steplog of format 4 appending to it
        // would not know one); migrated, it does. Either way, a deep run reads back whole.
        let packs = |dir: &Path| {
            let m = std::fs::read(dir.join("MANIFEST")).unwrap();
            String::from_utf8_lossy(&m)
                .matches("\"op\":\"pack\"")
                .count()
        };
        for (s, dir, format_after) in [(&store, tmp.path(), was), (&m, migrated.path(), LATEST)] {
            let before = packs(dir);
            let deep = Options::new().pack_fanout(2).open(dir).unwrap();
            for k in 0..8u64 {
                let mut w = deep.run("deep-after-golden").resume_from(k).start();
                if k == 0 {
                    w = deep.run("deep-after-golden").start();
                }
                let mut w = w.unwrap();
                w.log_at(k + 1, [("x", k as f64)]).unwrap();
                w.finish().unwrap();
            }
            let rows = common::rows(s, "deep-after-golden");
            assert_eq!(rows.len(), 8, "{}", fixture.display());
            assert_eq!(
                packs(dir) > before,
                format_after >= 5,
                "{}: packs",
                fixture.display()
            );
            assert_eq!(format(dir), format_after, "{}", fixture.display());
        }
        // A bulk needs manifest format 6: its commit first rewrites an older manifest in
        // the latest format (a compaction); the store reads back as it was, with the bulk.
        let bulked = tempfile::tempdir().unwrap();
        common::copy_dir(&fixture.join("store"), bulked.path());
        {
            let b = Store::open(bulked.path()).unwrap();
            let mut bulk = b.bulk();
            let mut run = bulk.run("bulk-after-golden");
            run.log([("x", 1.0)]).unwrap();
            bulk.add(run).unwrap();
            bulk.commit().unwrap();
        }
        let after_bulk = if was < 6 { LATEST } else { was };
        assert_eq!(
            format(bulked.path()),
            after_bulk,
            "{}: bulk",
            fixture.display()
        );
        // Batches are JSON in a manifest of format 6 or 7 (a steplog of that format reads no
        // other), binary from format 8 on.
        let manifest = std::fs::read(bulked.path().join("MANIFEST")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&manifest).contains("\"run\":\"bulk-after-golden\""),
            after_bulk < 8,
            "{}: a batch in JSON",
            fixture.display()
        );
        let b = Store::open(bulked.path()).unwrap();
        assert_eq!(common::rows(&b, "bulk-after-golden").len(), 1);
        let mut d = describe(&b);
        let head = d["runs"]
            .as_object_mut()
            .unwrap()
            .remove("bulk-after-golden")
            .unwrap();
        d["versions"]
            .as_object_mut()
            .unwrap()
            .remove(head.as_str().unwrap())
            .unwrap();
        assert_eq!(d, expected, "{} after a bulk", fixture.display());
        assert!(b.verify().unwrap().is_ok(), "{}: bulk", fixture.display());
        // A delete needs manifest format 7: the same, and the other runs read as they did.
        let deleted = tempfile::tempdir().unwrap();
        common::copy_dir(&fixture.join("store"), deleted.path());
        {
            let d = Store::open(deleted.path()).unwrap();
            d.delete("gone").unwrap();
        }
        assert_eq!(
            format(deleted.path()),
            if was < 7 { LATEST } else { was },
            "{}: delete",
            fixture.display()
        );
        let d = Store::open(deleted.path()).unwrap();
        let mut after = describe(&d);
        assert!(after["runs"].get("gone").is_none(), "{}", fixture.display());
        // Its versions stay, each purged; everything else reads as before.
        let gone: Vec<&Json> = after["versions"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v["run"] == "gone")
            .collect();
        assert!(!gone.is_empty(), "{}", fixture.display());
        for v in gone {
            assert_eq!(v["status"], "purged", "{}: {v}", fixture.display());
        }
        let mut want = expected.clone();
        for e in [&mut after, &mut want] {
            e["runs"].as_object_mut().unwrap().remove("gone");
            let versions = e["versions"].as_object_mut().unwrap();
            versions.retain(|_, v| v["run"] != "gone");
        }
        assert_eq!(after, want, "{} after a delete", fixture.display());
        assert!(d.verify().unwrap().is_ok(), "{}: delete", fixture.display());
        // And it stays writable: the crashed run resumes, a new run is added.
        let mut w = store.run("crashed").start().unwrap();
        let next = w.next_step(Stream::History);
        w.log_at(next, [("z", -1.0)]).unwrap();
        w.finish().unwrap();
        assert_eq!(common::rows(&store, "crashed").len() as u64, next + 1);
        footers_match_headers(tmp.path());
        store
            .run("after-golden")
            .fork_from("train?_step=900", 900)
            .apply()
            .unwrap();
        assert!(store.verify().unwrap().is_ok());
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no golden store found under {}",
        root.display()
    );
    // Every manifest table format written (docs/FORMAT.md, "Version changes") has a golden
    // store: format 1 (one filter a table) and 2 (a filter a block, `tables-2`).
    assert_eq!(
        table_formats.into_iter().collect::<Vec<_>>(),
        [1, 2],
        "manifest table formats of the golden stores"
    );
}
