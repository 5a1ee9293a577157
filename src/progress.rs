//! Progress on stderr for long commands: an indicatif bar when stderr is a terminal, nothing
//! otherwise (so pipes, logs and tests see only the command's output).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar that shows itself only on a terminal.
pub struct Bar(ProgressBar);

impl Bar {
    /// A hidden bar unless stderr is a terminal.
    pub fn new() -> Bar {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bar(ProgressBar::with_draw_target(None, target))
    }

    /// Starts a stage of `total` units; `bytes` picks the unit shown.
    pub fn stage(&self, what: &str, total: u64, bytes: bool) {
        let template = if bytes {
            "{msg:>12} [{bar:32}] {bytes}/{total_bytes} ({eta})"
        } else {
            "{msg:>12} [{bar:32}] {pos}/{len} ({eta})"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.0.set_style(style.progress_chars("=> "));
        }
        self.0.reset();
        self.0.set_message(what.to_owned());
        self.0.set_length(total);
        self.0.set_position(0);
    }

    /// Sets how far the stage is.
    pub fn set(&self, done: u64) {
        self.0.set_position(done);
    }

    /// Removes the bar.
    pub fn done(&self) {
        self.0.finish_and_clear();
    }
}

impl steplog::Progress for Bar {
    fn begin(&self, what: &str, total: u64, unit: steplog::Unit) {
        self.stage(what, total, unit == steplog::Unit::Bytes);
    }

    fn update(&self, done: u64) {
        self.set(done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
