//! `steplog`: the command-line tool over a steplog store.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod args;
mod chart;
mod commands;
mod demo;
mod error;
mod export;
mod importing;
mod ingest;
mod lineage;
mod outfile;
mod output;
mod plot;
mod progress;
mod serve;

use std::process::ExitCode;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("steplog: internal error: {info}");
        eprintln!("steplog: this is a bug; please report it with the command that caused it");
    }));
    let cli = <args::Cli as clap::Parser>::parse();
    let (store, chosen) = cli.store_dir();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "steplog: error: {}",
                error::with_context(&e, &store, chosen)
            );
            ExitCode::FAILURE
        }
    }
}
