//! Replays the fuzzing seeds and every saved fuzz finding (`fuzz/seeds/<target>/`,
//! `fuzz/regressions/<target>/`, and a local `fuzz/corpus/<target>/` if present) through the
//! fuzz targets' entry points, as an ordinary test: a decoder bug found once stays fixed.
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` regenerates the seeds from real
//! files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use steplog::io::{CrashMode, SimFs};
use steplog::{fuzzing, Options, Stream, Value};

type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 8] = [
    ("block", fuzzing::block),
    ("footer", fuzzing::footer),
    ("segment", fuzzing::segment),
    ("manifest", fuzzing::manifest),
    ("table", fuzzing::table),
    ("jsonl", steplog_import::fuzzing::jsonl),
    ("ops", fuzzing::ops),
    ("import", steplog_import::fuzzing::import),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn every_seed_and_saved_finding_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, run) in TARGETS {
        let mut inputs = 0;
        for kind in ["seeds", "regressions", "corpus"] {
            for file in files(&root.join(kind).join(name)) {
                run(&std::fs::read(&file).unwrap());
                inputs += 1;
            }
        }
        assert!(inputs > 0, "no seeds for fuzz target {name}");
        total += inputs;
    }
    eprintln!("fuzz corpus: {total} inputs replayed");
}

/// A sealed segment's first block frame (after the 32-byte header; its length is in the
/// frame's header) and its footer's payload (between the footer's 12-byte header and the
/// 16-byte trailer, which locates it).
fn first_frame_and_footer(sealed: &[u8]) -> (&[u8], &[u8]) {
    let frame_len = 40 + u32::from_le_bytes(sealed[36..40].try_into().unwrap()) as usize;
    let n = sealed.len();
    let footer_at = u64::from_le_bytes(sealed[n - 16..n - 8].try_into().unwrap()) as usize;
    (&sealed[32..32 + frame_len], &sealed[footer_at + 12..n - 16])
}

/// The bytes of the one segment file of the store on `fs`.
fn only_segment(fs: &SimFs) -> Vec<u8> {
    let seg = fs
        .files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    fs.read(&seg).unwrap()
}

#[test]
#[ignore = "writes fuzz/seeds; run by hand when the formats change"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    let fs = SimFs::new();
    let store = Options::new()
        .segment_bytes(500)
        .block_bytes(150)
        .file_system(Arc::new(fs.clone()))
        .open("/s")
        .unwrap();
    let mut w = store
        .run("r")
        .config(serde_json::json!({"lr": 0.1}))
        .start()
        .unwrap();
    for i in 0..40u64 {
        let mut fields = vec![
            ("x", Value::F64(i as f64 * 0.5)),
            ("n", Value::I64(i as i64 - 3)),
        ];
        if i % 3 == 0 {
            fields.push(("s", Value::Str(format!("t{i}"))));
            fields.push(("b", Value::Bool(i % 2 == 0)));
        }
        if i == 7 {
            fields.push(("x", Value::Str("mixed".into())));
        }
        w.log_at(i, fields).unwrap();
    }
    w.finish().unwrap();
    store.run("r").resume_from(10).apply().unwrap();
    store.run("f").fork_from("r", 5).apply().unwrap();
    let mut live = store.run("live").start().unwrap();
    for i in 0..12u64 {
        live.log_at(i, [("y", i as f64)]).unwrap();
        live.commit().unwrap();
    }
    let image = fs.crash(CrashMode::Process);
    drop(live);

    let mut segs: Vec<PathBuf> = image
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let sealed = image.read(&segs[0]).unwrap();
    let head = image.read(segs.last().unwrap()).unwrap();
    write("segment", "sealed", &sealed);
    write("segment", "head", &head);
    let (frame, footer) = first_frame_and_footer(&sealed);
    write("block", "frame", frame);
    write("footer", "payload", footer);
    let manifest = image.read(Path::new("/s/MANIFEST")).unwrap();
    write("manifest", "frames", &manifest[24..]);
    // Segment format 4: a segment of more than one group of blocks (the footer's groups'
    // aggregates and a part per group), and its footer's payload.
    let grouped = SimFs::new();
    let store = Options::new()
        .block_bytes(1)
        .inline_segment_bytes(0)
        .file_system(Arc::new(grouped.clone()))
        .open("/g")
        .unwrap();
    let mut w = store.run("g").start().unwrap();
    for i in 0..600u64 {
        w.log_at(i, [("x", (i % 17) as f64)]).unwrap();
    }
    w.finish().unwrap();
    let sealed = only_segment(&grouped);
    write("segment", "sealed-groups", &sealed);
    write(
        "footer",
        "payload-groups",
        first_frame_and_footer(&sealed).1,
    );
    // Segment format 4: blocks of 4 KiB of sections or more are frames of parts (`SLB3`: a
    // crc per section and one of the directory).
    let big = SimFs::new();
    let store = Options::new()
        .inline_segment_bytes(0)
        .file_system(Arc::new(big.clone()))
        .open("/p3")
        .unwrap();
    let mut w = store.run("p").start().unwrap();
    for i in 0..1_500u64 {
        let x = i as f64;
        w.log_at(
            i,
            [
                ("a", Value::F64((x * 0.37).sin())),
                ("b", Value::I64((i * i % 977) as i64)),
            ],
        )
        .unwrap();
    }
    w.finish().unwrap();
    let sealed = only_segment(&big);
    assert_eq!(&sealed[32..36], b"SLB3");
    write("segment", "sealed-parts", &sealed);
    write("block", "frame-parts", first_frame_and_footer(&sealed).0);
    // A manifest table: a store compacted at a tiny threshold holds a few.
    let small = SimFs::new();
    let store = Options::new()
        .manifest_compaction_bytes(300)
        .file_system(Arc::new(small.clone()))
        .open("/t")
        .unwrap();
    for i in 0..6u64 {
        let mut w = store.run(&format!("run-{i}")).start().unwrap();
        w.log_at(i, [("x", i as f64)]).unwrap();
        w.finish().unwrap();
    }
    store.run("run-0").resume_from(0).apply().unwrap();
    // Closed: no merge in flight, every table left whole.
    drop(store);
    let mut tables: Vec<PathBuf> = small
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tab"))
        .collect();
    tables.sort();
    // (`runs`, of table format 1, was written by an earlier steplog and is kept.)
    write(
        "table",
        "runs-filter-per-block",
        &small.read(tables.last().unwrap()).unwrap(),
    );
    // Manifest format 5: a lineage rewound often enough to be packed at two levels.
    let packed = SimFs::new();
    let store = Options::new()
        .pack_fanout(2)
        .file_system(Arc::new(packed.clone()))
        .open("/p")
        .unwrap();
    for k in 0..5u64 {
        let start = if k == 0 {
            store.run("deep")
        } else {
            store.run("deep").resume_from(k)
        };
        let mut w = start.start().unwrap();
        w.log_at(k + 1, [("x", k as f64)]).unwrap();
        w.finish().unwrap();
    }
    let manifest = packed.read(Path::new("/p/MANIFEST")).unwrap();
    assert!(String::from_utf8_lossy(&manifest).contains("\"op\":\"pack\""));
    write("manifest", "frames-pack", &manifest[24..]);
    // Manifest format 6: short runs written in a bulk, one `batch` edit (binary since format
    // 8; the JSON one of formats 6 and 7, `edit-batch`, was written by an earlier steplog).
    let bulked = SimFs::new();
    let store = Options::new()
        .file_system(Arc::new(bulked.clone()))
        .open("/b")
        .unwrap();
    let mut bulk = store.bulk();
    for r in 0..3u64 {
        let mut run = bulk.run(&format!("b{r}"));
        run.set_config(serde_json::json!({"r": r}));
        for i in 0..4u64 {
            run.log_at(i, [("x", (r * 10 + i) as f64)]).unwrap();
        }
        if r == 1 {
            run.log_row(Stream::Console, None, [("line", "hi")])
                .unwrap();
        }
        bulk.add(run).unwrap();
    }
    bulk.commit().unwrap();
    let manifest = bulked.read(Path::new("/b/MANIFEST")).unwrap();
    write("manifest", "frames-batch", &manifest[24..]);
    // The batch edit alone: a frame is a length, two crc32s (payload, header), the payload,
    // whose first byte is 0x01 for a binary batch (the target reads its input as one).
    let mut at = 24;
    let batch = loop {
        let len = u32::from_le_bytes(manifest[at..at + 4].try_into().unwrap()) as usize;
        let payload = &manifest[at + 12..at + 12 + len];
        if payload.first() == Some(&0x01) {
            break payload;
        }
        at += 12 + len;
    };
    write("manifest", "batch-payload", batch);
    write(
        "manifest",
        "edit",
        br#"{"op":"fork","run":"f","version":3,"source":2,"step":5,"config":{},"time":1}"#,
    );
    write(
        "jsonl",
        "nested",
        br#"{"_step": 3, "train": {"loss": 0.5, "acc": 1}, "ok": true, "s": "x"}"#,
    );
    write("jsonl", "nan", br#"{"a": NaN, "b": -Infinity, "c": "NaN"}"#);
    write(
        "ops",
        "log-commit-crash",
        &[0, 0, 30, 1, 0, 0, 0, 0, 9, 7, 0, 2, 3, 0, 5, 7, 1, 1],
    );
    write(
        "ops",
        "rewind-fork-purge",
        &[
            0, 1, 39, 2, 0, 0, 3, 1, 10, 4, 1, 3, 5, 0, 1, 6, 0, 0, 7, 3, 2,
        ],
    );
}
