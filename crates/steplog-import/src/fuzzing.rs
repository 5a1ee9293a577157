//! Entry points for the importers' fuzz targets in `fuzz/` and for replaying their corpus as a
//! normal test (`tests/fuzz_corpus.rs`). Not a stable API. Each function must return normally
//! for every input: a panic is a bug.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the finding

use std::sync::Arc;

use steplog::io::SimFs;
use steplog::{Options, Query};

/// One line of JSON Lines ingest.
pub fn jsonl(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::jsonl::parse_line(text, 1);
    }
}

/// An importer on a source file: `data[0]` picks TensorBoard (0), W&B (1) or AFL++ (2), the
/// rest is the file. The store lives on `SimFs`; the source in a per-process temp directory.
/// Whatever the bytes, the import must end in `Ok` or an error, and the run it made must
/// read back.
pub fn import(data: &[u8]) {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("steplog-fuzz-import-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    });
    let name = ["events.out.tfevents.fuzz", "run-fuzz.wandb", "plot_data"][kind as usize % 3];
    let file = dir.join(name);
    std::fs::write(&file, body).expect("write source");
    let store = Options::new()
        .file_system(Arc::new(SimFs::new()))
        .open("/store")
        .expect("open");
    let q = steplog::Quiet;
    let r = match kind % 3 {
        0 => crate::tensorboard::import(&store, &file, "r", &q),
        1 => crate::wandb::import(&store, &file, Some("r"), &q),
        _ => crate::afl::import(&store, &file, "r", &q),
    };
    if r.is_ok() || store.runs().map(|r| !r.is_empty()).unwrap_or(false) {
        let rows: Vec<_> = store
            .history("r", &Query::new())
            .expect("history")
            .collect::<Result<_, _>>()
            .expect("rows");
        if let Ok(imported) = r {
            assert!(rows.len() as u64 <= imported.rows);
        }
    }
}
