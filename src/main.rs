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

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("steplog: internal error: {info}");
        eprintln!("steplog: this is a bug; please report it with the command that caused it");
    }));
    let matches = args::Cli::command().get_matches();
    let chosen = match matches.value_source("store") {
        Some(clap::parser::ValueSource::CommandLine) => "from --store",
        Some(clap::parser::ValueSource::EnvVariable) => "from STEPLOG_STORE",
        _ => "the default; set --store or STEPLOG_STORE",
    };
    let cli = args::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let store = cli.store.clone();
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
