//! How long operations (imports, verify, purge) tell a caller how far they have come. The
//! library never draws anything; the CLI turns these calls into a progress bar on a terminal.

/// Told how far a long operation has come, in units it names when it begins (bytes of a
/// source, files, benchmarks). The default methods do nothing.
pub trait Progress {
    /// The work ahead is `total` units; `what` names the operation.
    fn begin(&self, _what: &str, _total: u64) {}
    /// `done` units are done.
    fn update(&self, _done: u64) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}
