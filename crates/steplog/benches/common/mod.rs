//! Shared set-up of the criterion benches.
#![allow(dead_code)]

use steplog::{Options, Store};
use steplog_workload::Train;

/// A store in a temp dir holding run `r` of the train workload with `steps` steps.
pub fn train_store(steps: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().open(dir.path()).unwrap();
    let mut w = store.run("r").start().unwrap();
    for (step, row) in Train::new(steps, 42) {
        w.log_at(step, row).unwrap();
    }
    w.finish().unwrap();
    (dir, store)
}
