//! How long operations (imports, verify, purge) tell a caller how far they have come. The
//! library never draws anything; the CLI turns these calls into a progress bar on a terminal.

/// What a [`Progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (of an import's source).
    Bytes,
    /// Whole things: files, benchmarks.
    Items,
}

/// Told how far a long operation has come. The default methods do nothing.
pub trait Progress {
    /// The work ahead is `total` units of `unit`; `what` names the operation.
    fn begin(&self, _what: &str, _total: u64, _unit: Unit) {}
    /// `done` units are done.
    fn update(&self, _done: u64) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}
