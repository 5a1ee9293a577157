//! Helpers shared by the scenario tests.
#![allow(dead_code)]

pub mod hooked;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value as Json};
use steplog::{Query, Row, Store, Stream, Value};

pub fn rows(store: &Store, reference: &str) -> Vec<Row> {
    rows_q(store, reference, &Query::new())
}

pub fn rows_q(store: &Store, reference: &str, q: &Query) -> Vec<Row> {
    store
        .history(reference, q)
        .expect("history")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows")
}

pub fn f(row: &Row, key: &str) -> f64 {
    row.fields[key].as_f64().expect("numeric")
}

pub fn val(v: impl Into<Value>) -> Value {
    v.into()
}

/// The `steplog` binary built for these tests, pointed at `store`.
pub fn cli(store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_steplog"));
    c.arg("--store").arg(store).env_remove("STEPLOG_STORE");
    c
}

/// Runs the CLI with `stdin` as input.
pub fn cli_in(store: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cli(store)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn steplog");
    let mut input = child.stdin.take().expect("stdin");
    // A child that fails before reading its input (a damaged store) closes the pipe: its
    // exit status and stderr tell what happened, not this write.
    if let Err(e) = input.write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    drop(input);
    child.wait_with_output().expect("wait")
}

pub fn cli_ok(store: &Path, args: &[&str]) -> String {
    let out = cli_in(store, args, "");
    assert!(
        out.status.success(),
        "steplog {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The segment files of a store, sorted by name.
pub fn segment_files(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(store.join("segments"))
        .expect("segments dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// Copies a store directory, as the image a crash (kill -9) would leave.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Every file of a store with its bytes, to check that an operation changed nothing.
pub fn store_image(store: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![store.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                todo.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).expect("read"));
            }
        }
    }
    out
}

/// A manifest file holding `frames` (JSON edits) after a header with `epoch`, framed and
/// checksummed as docs/FORMAT.md says: for crafting checksum-valid but inconsistent ones.
pub fn manifest_bytes(epoch: u64, frames: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"STEPLMAN");
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for f in frames {
        let payload = serde_json::to_vec(f).expect("json");
        let mut head = Vec::new();
        head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        head.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        let hcrc = crc32fast::hash(&head);
        out.extend_from_slice(&head);
        out.extend_from_slice(&hcrc.to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

/// Runs the CLI and returns its output, failing the test if it crashed (a panic or a
/// signal) instead of exiting 0 or 1.
pub fn cli_no_panic(store: &Path, args: &[&str]) -> Output {
    let out = cli_in(store, args, "");
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "steplog {args:?} exited with {:?} (a panic or a signal): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "steplog {args:?} panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits for a child, killing it and failing the test if it has not exited after a minute:
/// the bound only turns a hang into a failure; nothing is timed.
pub fn wait_or_hang(mut child: std::process::Child, what: &str) -> Output {
    let start = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().expect("kill");
            panic!("{what} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

/// Every value exactly: floats by their bits (NaN payloads, -0.0), the rest as they are.
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::F64(x) => json!({"f64": format!("{:016x}", x.to_bits())}),
        Value::I64(i) => json!({"i64": i}),
        Value::Bool(b) => json!({"bool": b}),
        Value::Str(s) => json!({"str": s}),
    }
}

/// What a store holds, in a form that survives any change of code (the golden stores'
/// `expected.json`): per version its status,
/// origin, parent, config and the rows of each stream; per run its head; per readable version
/// the summary of its history.
pub fn describe(store: &Store) -> Json {
    let mut versions = serde_json::Map::new();
    for v in store.versions().unwrap() {
        let mut d = json!({
            "run": v.run,
            "status": v.status.to_string(),
            "origin": format!("{:?}", v.origin),
            "parent": v.parent.map(|p| json!([p.version.to_string(), p.step])),
            "config": v.config,
        });
        // Only restarts (manifest format 2) have it: older goldens' descriptions stay as
        // they were written.
        if let Some(r) = v.restart_of {
            d["restart_of"] = json!(r.to_string());
        }
        if v.status != steplog::Status::Purged {
            let id = v.id.to_string();
            for stream in [Stream::History, Stream::System, Stream::Console] {
                let rows: Vec<Json> = store
                    .history(&id, &Query::new().stream(stream))
                    .unwrap()
                    .map(|r| {
                        let r = r.unwrap();
                        let fields: serde_json::Map<String, Json> = r
                            .fields
                            .iter()
                            .map(|(k, v)| (k.clone(), value_json(v)))
                            .collect();
                        json!([r.step, fields])
                    })
                    .collect();
                d[stream.name()] = Json::Array(rows);
            }
            let s = store.summary(&id).unwrap();
            let keys: serde_json::Map<String, Json> = s
                .keys
                .iter()
                .map(|(k, ks)| {
                    let at = |p: &Option<(u64, Value)>| {
                        p.as_ref().map(|(step, v)| json!([step, value_json(v)]))
                    };
                    (
                        k.clone(),
                        json!({
                            "count": ks.count, "numeric": ks.numeric_count, "nan": ks.nan_count,
                            "sum": format!("{:016x}", ks.sum.to_bits()),
                            "first": at(&ks.first), "last": at(&ks.last),
                            "min": at(&ks.min), "max": at(&ks.max),
                        }),
                    )
                })
                .collect();
            d["summary"] = json!({"rows": s.rows, "last_step": s.last_step, "keys": keys});
        }
        versions.insert(v.id.to_string(), d);
    }
    let runs: serde_json::Map<String, Json> = store
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| (r.name, json!(r.head.to_string())))
        .collect();
    json!({"runs": runs, "versions": versions})
}
