//! The one error type of the crate, with structured variants that name the file, offset,
//! run, version or step involved.

use std::path::PathBuf;

/// Result alias used throughout steplog.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in steplog. Every variant names what it is about (a file and
/// byte offset, a run, a version, a step) so that the message alone tells a user where to look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes failed their crc32 check.
    #[error("checksum mismatch in {file} at byte offset {offset}: stored crc32 {expected:#010x}, computed {got:#010x}")]
    ChecksumMismatch {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// Byte offset of the frame whose checksum failed.
        offset: u64,
        /// The checksum stored on disk.
        expected: u32,
        /// The checksum of the bytes as read.
        got: u32,
    },
    /// Stored bytes are structurally invalid (bad magic, impossible length, undecodable data).
    #[error("corrupt data in {file} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// Byte offset of the structure that failed to decode.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A row was logged at a step that is not after the run's last step.
    #[error("run '{run}': step {got} is not after the last step {last} of stream '{stream}'")]
    StepRegression {
        /// The run being written.
        run: String,
        /// The stream being written.
        stream: String,
        /// The last step already logged (or the cutoff of a rewind or fork).
        last: u64,
        /// The step that was given.
        got: u64,
    },
    /// A step past [`MAX_STEP`](crate::limits::MAX_STEP) (also what the step after the
    /// largest one would be).
    #[error("run '{run}': step {step} is past the largest step {max}")]
    StepTooLarge {
        /// The run being written.
        run: String,
        /// The step asked for.
        step: u64,
        /// The largest step.
        max: u64,
    },
    /// Another writer holds the run.
    #[error("run '{run}' is locked: another writer (in this or another process) is writing it")]
    Locked {
        /// The run that is being written by someone else.
        run: String,
    },
    /// The directory holds no store (no manifest), and the store was opened with
    /// [`Options::create_if_missing(false)`](crate::Options::create_if_missing).
    #[error("no steplog store at {} (no MANIFEST there)", dir.display())]
    StoreNotFound {
        /// The directory.
        dir: PathBuf,
    },
    /// No run has this name.
    #[error("no run named '{run}'")]
    RunNotFound {
        /// The name that was looked up.
        run: String,
    },
    /// The version has no value for this key in the stream at any step (a key that exists but
    /// has no value in a range read is not this error): a typo, most likely.
    #[error(
        "version {version} of run '{run}' has no key '{key}'{}{}",
        if stream == "history" { String::new() } else { format!(" in its {stream} stream") },
        crate::names::did_you_mean(close)
    )]
    KeyNotFound {
        /// The run.
        run: String,
        /// The version read.
        version: String,
        /// The stream read.
        stream: String,
        /// The key asked for.
        key: String,
        /// The version's keys close to it, closest first (at most five).
        close: Vec<String>,
    },
    /// A run with this name exists already.
    #[error("a run named '{run}' already exists")]
    RunExists {
        /// The name that is taken.
        run: String,
    },
    /// No version has this id.
    #[error("no version {version}")]
    VersionNotFound {
        /// The id that was looked up.
        version: String,
    },
    /// The version was purged and its rows are gone.
    #[error("version {version} was purged")]
    Purged {
        /// The purged version.
        version: String,
    },
    /// A file the manifest records is not there: deleted by a purge while it was being read,
    /// or lost (removed by hand, a damaged file system). Never read as empty.
    #[error("{file} is missing: {reason}")]
    MissingFile {
        /// The file the manifest records.
        file: PathBuf,
        /// Why it was expected, and what likely removed it.
        reason: String,
    },
    /// A run or version reference could not be parsed.
    #[error("bad reference '{reference}': {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A run name or key is not acceptable.
    #[error("invalid name '{name}': {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The step of a reference (`NAME?_step=S`: read, rewound to or forked from) is past the
    /// end of the version's history.
    #[error("version {version} of run '{run}' has no step {step}: {reason}")]
    StepOutOfRange {
        /// The run.
        run: String,
        /// The version.
        version: String,
        /// The step asked for.
        step: u64,
        /// Why it is out of range.
        reason: String,
    },
    /// The config is not a JSON object, or other invalid input to an API call.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The operation needs an archived version.
    #[error(
        "version {version} is not archived (it is {status}); only archived versions can be purged"
    )]
    NotArchived {
        /// The version.
        version: String,
        /// Its current status.
        status: String,
    },
    /// Resume mode `must` on a missing run, or `never` on an existing one.
    #[error("run '{run}': {reason}")]
    ResumeRefused {
        /// The run.
        run: String,
        /// Why the resume mode refused.
        reason: String,
    },
    /// A previous fsync or write failed; the writer refuses further work because the state
    /// on disk is unknown.
    #[error(
        "writer of run '{run}' is poisoned by an earlier I/O failure and accepts no more writes"
    )]
    Poisoned {
        /// The run whose writer failed.
        run: String,
    },
    /// Another writer changed what this operation read before its edit could be made (a run
    /// rewound or resumed between sealing its crashed head and the edit). The run lock keeps
    /// this from happening between steplog processes; it is seen when the lock was bypassed
    /// (a lock file removed by hand while its writer ran). Nothing was changed.
    #[error("conflict with another writer: {reason}")]
    Conflict {
        /// What changed.
        reason: String,
    },
    /// An earlier manifest fsync failed in this process, so what the file holds is unknown:
    /// the store refuses further edits until it is opened again (reads go on).
    #[error("the store at {path} refuses edits: an earlier manifest fsync failed in this process; open the store again")]
    StorePoisoned {
        /// The manifest.
        path: PathBuf,
    },
    /// A lock stayed taken for longer than [`Options::lock_timeout`](crate::Options::lock_timeout):
    /// another process holds it (it may be stopped, or stuck).
    #[error("gave up after {waited_ms} ms waiting for the lock on {path}: another process holds it (is one stopped or stuck?)")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long it was waited for, in milliseconds.
        waited_ms: u64,
    },
    /// A value, key or row is larger than steplog stores (see [`limits`](crate::limits)).
    #[error("run '{run}': {what} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// The run being written.
        run: String,
        /// What is too large (the key named).
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The writer was already finished.
    #[error("writer of run '{run}' is already finished")]
    Finished {
        /// The run.
        run: String,
    },
    /// The writer was opened by another process, of which this one is a fork (`fork()`
    /// without `exec`, Python's `os.fork()` or `multiprocessing` with the fork start method).
    /// A forked child never writes to its parent's run: it would interleave with the parent's
    /// writes and corrupt the run.
    #[error(
        "the writer of run '{run}' was opened by process {owner}, and this process ({pid}) is a \
         fork of it: a forked child cannot write to its parent's run (open a run of its own in \
         the child)"
    )]
    Forked {
        /// The run.
        run: String,
        /// The process that opened the writer.
        owner: u32,
        /// This process.
        pid: u32,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for errors that mean stored data is damaged (checksum or structure).
    pub fn is_corruption(&self) -> bool {
        self.kind() == ErrorKind::Corruption
    }

    /// What kind of failure this is: the one classification callers (the Python bindings,
    /// a CLI's exit status, a retry loop) branch on, so that a new variant cannot fall
    /// through a wildcard unnoticed.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::ChecksumMismatch { .. } | Error::Corrupt { .. } | Error::MissingFile { .. } => {
                ErrorKind::Corruption
            }
            Error::StoreNotFound { .. }
            | Error::RunNotFound { .. }
            | Error::VersionNotFound { .. }
            | Error::KeyNotFound { .. }
            | Error::Purged { .. } => ErrorKind::NotFound,
            Error::RunExists { .. } => ErrorKind::AlreadyExists,
            Error::Locked { .. } | Error::LockTimeout { .. } => ErrorKind::Locked,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::StepRegression { .. } => ErrorKind::StepRegression,
            Error::ResumeRefused { .. } => ErrorKind::ResumeRefused,
            Error::Poisoned { .. } | Error::Finished { .. } | Error::Forked { .. } => {
                ErrorKind::WriterClosed
            }
            Error::StorePoisoned { .. } => ErrorKind::StorePoisoned,
            Error::BadReference { .. }
            | Error::InvalidName { .. }
            | Error::StepTooLarge { .. }
            | Error::StepOutOfRange { .. }
            | Error::InvalidInput(_)
            | Error::NotArchived { .. }
            | Error::TooLarge { .. } => ErrorKind::InvalidInput,
        }
    }
}

/// The kinds of [`Error`], from [`Error::kind`]. Not `non_exhaustive` on purpose: a new kind
/// is a breaking change, and every exhaustive match on it (the Python bindings' exception
/// classes) must be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An operating-system I/O error.
    Io,
    /// Stored data is damaged or missing (a checksum, a structure, a recorded file).
    Corruption,
    /// No such store, run, version or key, or the version was purged.
    NotFound,
    /// A run of that name exists already.
    AlreadyExists,
    /// Another writer holds the run, or a lock was waited for too long.
    Locked,
    /// Another writer changed what the operation read; nothing was changed.
    Conflict,
    /// A step not after the run's last step.
    StepRegression,
    /// `Resume::Must` on a missing run, or `Resume::Never` on an existing one.
    ResumeRefused,
    /// The writer is finished, poisoned by an I/O error, or a forked process's copy.
    WriterClosed,
    /// The store refuses edits after a failed manifest fsync; open it again.
    StorePoisoned,
    /// Bad input: a name, reference, step, value, config or argument.
    InvalidInput,
}

/// `3 rows (steps 0 to 2)`, `1 row (step 5)`, `no row`: rows and their step range in a
/// message's words (not `Some(0)`).
pub(crate) fn rows_text(rows: u64, first: Option<u64>, last: Option<u64>) -> String {
    let steps = match (first, last) {
        (Some(a), Some(b)) if a == b => format!(" (step {a})"),
        (Some(a), Some(b)) => format!(" (steps {a} to {b})"),
        _ => String::new(),
    };
    match rows {
        0 => format!("no row{steps}"),
        1 => format!("1 row{steps}"),
        n => format!("{n} rows{steps}"),
    }
}

/// Adds the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_are_counted_in_words() {
        use super::rows_text;
        assert_eq!(rows_text(0, None, None), "no row");
        assert_eq!(rows_text(1, Some(5), Some(5)), "1 row (step 5)");
        assert_eq!(rows_text(3, Some(0), Some(2)), "3 rows (steps 0 to 2)");
    }
}
