//! `steplog serve`: the web view of `steplog-serve`, started from the command line.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use steplog::Store;
use steplog_serve::ServeOptions;

use crate::args::ServeArgs;
use crate::error::{CliError, CliResult};

pub fn run(dir: &Path, store: Store, args: &ServeArgs) -> CliResult<ExitCode> {
    let opts = ServeOptions {
        allow_write: args.allow_write,
        allowed_hosts: args.allow_host.clone(),
    };
    if !args.bind.ip().is_loopback() {
        eprintln!(
            "steplog: warning: listening on {}, which is not a loopback address: anyone who \
             can reach it reads every run of {}{}",
            args.bind,
            dir.display(),
            if args.allow_write {
                ", and can rewind and fork them (--allow-write)"
            } else {
                ""
            }
        );
    }
    let open = args.open;
    let mode = if args.allow_write {
        "rewind and fork allowed"
    } else {
        "read-only"
    };
    steplog_serve::serve_blocking(args.bind, store, &opts, |mut addr| {
        // Bound to every address: this machine reaches it on the loopback one.
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let url = format!("http://{addr}/");
        // The first line is the address, for scripts and tests that start the server.
        println!(
            "steplog: serving {} at {url} ({mode}; Ctrl-C stops)",
            dir.display()
        );
        let _ = std::io::stdout().flush();
        if open {
            open_browser(&url);
        }
    })
    .map_err(|e| CliError::Usage(format!("serve: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Opens `url` in the default browser, if one can be found; says so when not.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let started = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if started.is_err() {
        eprintln!("steplog: could not start {opener} to open {url}: open it by hand");
    }
}
