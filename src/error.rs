//! The CLI's error: what a command reports on stderr before it exits with status 1.

use std::fmt;
use std::io;

/// A CLI failure: a store error, an import error, an output error, or a usage problem.
pub enum CliError {
    Steplog(steplog::Error),
    Import(steplog_import::Error),
    Io(io::Error),
    Usage(String),
}

impl CliError {
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Steplog(e) => write!(f, "{e}"),
            CliError::Import(e) => write!(f, "{e}"),
            CliError::Io(e) => write!(f, "writing output: {e}"),
            CliError::Usage(m) => f.write_str(m),
        }
    }
}

impl From<steplog::Error> for CliError {
    fn from(e: steplog::Error) -> Self {
        CliError::Steplog(e)
    }
}

impl From<steplog_import::Error> for CliError {
    fn from(e: steplog_import::Error) -> Self {
        match e {
            // The store's own errors read as they do from every other command.
            steplog_import::Error::Store(e) => CliError::Steplog(e),
            e => CliError::Import(e),
        }
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Io(e)
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// The message of a failed command, with what a user needs to find the mistake: for
/// something not found, the store that was searched and how it was chosen (`chosen`), and
/// for a run name, the names close to it.
pub fn with_context(e: &CliError, store: &std::path::Path, chosen: &str) -> String {
    let CliError::Steplog(inner) = e else {
        return e.to_string();
    };
    match inner {
        steplog::Error::StoreNotFound { .. } => format!("{e} ({chosen})"),
        steplog::Error::RunNotFound { run } => {
            let hint = close_runs(store, run);
            format!("{e}{hint} in the store {} ({chosen})", store.display())
        }
        // A key is looked up in a version the message names already.
        steplog::Error::KeyNotFound { .. } => e.to_string(),
        _ if inner.kind() == steplog::ErrorKind::NotFound => {
            format!("{e} in the store {} ({chosen})", store.display())
        }
        _ => e.to_string(),
    }
}

/// The run names of `store` a few edits from `name`, closest first, as a hint.
fn close_runs(store: &std::path::Path, name: &str) -> String {
    let Ok(store) = steplog::Options::new().create_if_missing(false).open(store) else {
        return String::new();
    };
    let names = store.run_names().unwrap_or_default();
    steplog::did_you_mean(&steplog::close_matches(
        name,
        names.iter().map(String::as_str),
    ))
}
