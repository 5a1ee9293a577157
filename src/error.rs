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
