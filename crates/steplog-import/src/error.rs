//! The importers' error type: a damaged source or a bad line of JSON Lines, named by file
//! and byte offset or by line, beside the engine's errors (which it carries whole).

use std::path::PathBuf;

/// Result alias of the importers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in an import.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store refused or failed (a run that exists, a lock, an I/O error in the store...).
    #[error(transparent)]
    Store(#[from] steplog::Error),
    /// An I/O error on the source `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The source file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file being imported (TensorBoard, W&B, AFL++, criterion) is damaged or not in the
    /// format it claims: its checksum fails, it ends inside a record, or a record does not
    /// decode.
    #[error("cannot import {file} at byte offset {offset}: {reason}")]
    BadSource {
        /// The source file.
        file: PathBuf,
        /// Byte offset of the record that failed.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A line of JSON Lines input could not be taken.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A source, or what was asked of an importer, is not something it takes.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_source(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::BadSource {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// The run's writer was finished already (a sink used after its end).
    pub(crate) fn finished(run: &str) -> Self {
        Error::Store(steplog::Error::Finished {
            run: run.to_owned(),
        })
    }
}
