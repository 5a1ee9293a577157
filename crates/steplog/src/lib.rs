//! # steplog
//!
//! An embeddable storage engine for the history of experiment runs: at every step of a
//! training run, a benchmark or a fuzzing campaign, a set of named values. History is kept in
//! append-only, zstd-compressed, crc32-checked segment files; **rewinding** a run to a step
//! (W&B's `resume_from`) and **forking** a new run from any version (`fork_from`) are O(1)
//! manifest edits that copy no row, and a rewound version stays readable, archived, under its
//! immutable version id.
//!
//! ```
//! use steplog::{Query, Store};
//! # fn main() -> steplog::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path())?;
//!
//! // Log 300 steps (W&B's rewind example).
//! let mut run = store.run("r1").config(serde_json::json!({"lr": 0.1})).start()?;
//! for i in 0..300 {
//!     run.log_at(i, [("metric", i as f64)])?;
//! }
//! run.finish()?;
//!
//! // Rewind to step 200, then log a different future.
//! let mut run = store.run("r1").resume_from(200).start()?;
//! let archived = run.archived().unwrap();
//! for i in 201..300 {
//!     run.log_at(i, [("metric", -(i as f64))])?;
//! }
//! run.finish()?;
//!
//! assert_eq!(store.summary("r1")?.keys["metric"].last.as_ref().unwrap().0, 299);
//! // The archived version still reads its 300 original rows.
//! let old: Vec<_> = store.history(archived, &Query::new())?.collect::<Result<_, _>>()?;
//! assert_eq!(old.len(), 300);
//!
//! // Fork a new run from the head at step 250: one manifest edit, no row copied.
//! store.run("r1-variant").fork_from("r1", 250).apply()?;
//! assert_eq!(store.metric("r1-variant", "metric", ..)?.steps.len(), 251);
//! # Ok(()) }
//! ```
//!
//! See `docs/ARCHITECTURE.md` for the code map and `docs/FORMAT.md` for the bytes on disk.
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

mod cache;
mod codec;
mod delete;
mod downsample;
mod error;
#[cfg(test)]
mod format_doc;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gc;
pub mod io;
pub mod limits;
mod lock;
mod manifest;
mod mmap;
mod names;
mod options;
mod pack;
mod progress;
mod read;
mod reference;
mod segment;
mod snapshot;
mod store;
mod summary;
mod types;
mod verify;
mod writer;

pub use delete::Deleted;
pub use downsample::{Bucket, Downsampled};
pub use error::{Error, ErrorKind, Result};
pub use gc::GcReport;
pub use manifest::Origin;
pub use names::{close_matches, did_you_mean};
pub use options::{Durability, Options};
pub use progress::{Progress, Quiet, Unit};
pub use read::{Chunk, ChunkColumn, ChunkValues, Chunks, History, Query, Series};
pub use reference::{IntoReference, Reference, Target};
pub use snapshot::Snapshot;
pub use store::{Lineage, Parent, Resolved, RowCount, RunInfo, Status, Store, VersionInfo, Visit};
pub use summary::{KeySummary, Summary};
pub use types::{Row, Stream, Value, VersionId};
pub use verify::{Problem, VerifyReport};
pub use writer::{Batch, Bulk, Resume, RunWriter, ShortRun, StartRun, Started};

/// The README's examples, compiled as doctests so that they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
