//! `steplog log`: JSON Lines from stdin into a run. A reader thread feeds lines through a
//! channel so that the writer can commit when input pauses (rows become visible to readers
//! within ~100 ms of arriving) and at least every second while it flows.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use steplog::Store;

use crate::args::LogArgs;
use crate::error::{CliError, CliResult};

/// Commits, and reports the last committed step if asked to.
fn commit(writer: &mut steplog::RunWriter, last: Option<u64>, report: bool) -> CliResult {
    writer.commit()?;
    if let (true, Some(step)) = (report, last) {
        let mut out = io::stdout().lock();
        writeln!(out, "committed {step}")?;
        out.flush()?;
    }
    Ok(())
}

pub fn log(store: &Store, args: LogArgs) -> CliResult<ExitCode> {
    let LogArgs {
        run,
        resume_from,
        fork_from,
        resume,
        config,
        stream,
        commit_every,
        report_commits,
    } = args;
    let run = run.as_str();
    let config = crate::args::parse_config(config.as_deref())?;
    let mut start = store.run(run).resume(resume);
    if let Some(r) = &resume_from {
        let parsed: steplog::Reference = r.parse()?;
        let step = parsed.step.ok_or_else(|| {
            CliError::Usage(format!("--resume-from needs a step: '{run}?_step=S'"))
        })?;
        if parsed.target != steplog::Target::Run(run.to_owned()) {
            return Err(CliError::Usage(format!(
                "--resume-from '{r}' must name the run being logged ('{run}?_step={step}')"
            )));
        }
        start = start.resume_from(step);
    }
    if let Some(r) = &fork_from {
        let parsed: steplog::Reference = r.parse()?;
        let Some(step) = parsed.step else {
            return Err(CliError::Usage(format!(
                "--fork-from '{r}' needs a step: NAME?_step=STEP"
            )));
        };
        start = start.fork_from(parsed, step);
    }
    if let Some(c) = config {
        start = start.config(c);
    }
    let mut writer = start.start()?;
    let began = Instant::now();

    let (tx, rx) = mpsc::sync_channel::<io::Result<String>>(4096);
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let stop = line.is_err();
            if tx.send(line).is_err() || stop {
                break;
            }
        }
    });

    let (mut rows, mut first, mut last, mut line_no) = (0u64, None, None, 0u64);
    let mut prev: Option<u64> = None;
    let mut dirty = false;
    let mut last_commit = Instant::now();
    let failure: Option<CliError> = loop {
        let line = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => break Some(CliError::Usage(format!("reading stdin: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if dirty {
                    commit(&mut writer, last, report_commits)?;
                    dirty = false;
                    last_commit = Instant::now();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        };
        line_no += 1;
        let parsed = match steplog_import::jsonl::parse_line(&line, line_no) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => break Some(e.into()),
        };
        let step = parsed.step.or(prev.map(|p| p + 1));
        let step = match writer.log_row(stream, step, parsed.fields) {
            Ok(s) => s,
            Err(e) => {
                break Some(CliError::Usage(format!("line {line_no}: {e}")));
            }
        };
        if prev != Some(step) || !stream.merges_steps() {
            rows += 1;
        }
        prev = Some(step);
        first = first.or(Some(step));
        last = Some(step);
        dirty = true;
        let every = commit_every.is_some_and(|n| n > 0 && rows % n == 0);
        if every || last_commit.elapsed() > Duration::from_secs(1) {
            commit(&mut writer, last, report_commits)?;
            dirty = false;
            last_commit = Instant::now();
        }
    };
    let version = writer.version();
    // Rows before a bad line stay committed; the run is finished either way.
    writer.finish()?;
    if let (true, Some(step)) = (report_commits, last) {
        println!("committed {step}");
    }
    eprintln!(
        "steplog: {} {rows} rows to run '{run}' (version {version}, stream {stream}){} in {:.2} s",
        if failure.is_some() {
            "committed"
        } else {
            "logged"
        },
        match (first, last) {
            (Some(a), Some(b)) => format!(", steps {a}..={b}"),
            _ => String::new(),
        },
        began.elapsed().as_secs_f64()
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
