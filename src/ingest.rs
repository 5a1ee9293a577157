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

/// `Ok` if a first row at `step` (none: the writer's own next step) is one the writer
/// `begin` starts would take; the writer's own `StepRegression` otherwise.
fn first_step_fits(
    begin: &steplog::StartRun,
    run: &str,
    stream: steplog::Stream,
    step: Option<u64>,
) -> steplog::Result<()> {
    let Some(step) = step else {
        return Ok(());
    };
    let lowest = begin.lowest_step(stream)?;
    if step < lowest {
        return Err(steplog::Error::StepRegression {
            run: run.to_owned(),
            stream: stream.name().into(),
            last: lowest.saturating_sub(1),
            got: step,
        });
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
    // Nothing is written to the store before the first row is accepted: a bad first line, or
    // no line at all, creates no run (a rewind or fork asked for is made at the end of input
    // that held no row, as `steplog rewind`/`fork` would make it).
    let mut start = Some(start);
    let mut writer: Option<steplog::RunWriter> = None;
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
                if let (true, Some(w)) = (dirty, writer.as_mut()) {
                    commit(w, last, report_commits)?;
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
        // Without `_step`, the engine's one rule: the step after the stream's last row.
        let step = parsed.step;
        if let Some(begin) = start.take() {
            // The first row, checked by the rules every logging call follows (in memory) and
            // against the lowest step the started writer would take, before the run is
            // created, resumed, rewound or forked.
            let mut probe = store.bulk().run(run);
            let checked = probe
                .log_row(stream, step, parsed.fields.iter().cloned())
                .and_then(|_| first_step_fits(&begin, run, stream, step));
            if let Err(e) = checked {
                start = Some(begin);
                break Some(CliError::Usage(format!("line {line_no}: {e}")));
            }
            writer = Some(begin.start()?);
        }
        let Some(w) = writer.as_mut() else {
            break Some(CliError::Usage("the run could not be started".into()));
        };
        let step = match w.log_row(stream, step, parsed.fields) {
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
            commit(w, last, report_commits)?;
            dirty = false;
            last_commit = Instant::now();
        }
    };
    let Some(mut writer) = writer else {
        // No row was accepted: nothing in the store changed, unless a rewind or fork was
        // asked for and the input held no row at all.
        let asked = resume_from.is_some() || fork_from.is_some();
        if let (None, true, Some(start)) = (&failure, asked, start) {
            let w = start.start()?;
            let version = w.version();
            w.finish()?;
            eprintln!("steplog: no rows on standard input; run '{run}' is version {version}");
            return Ok(ExitCode::SUCCESS);
        }
        let what = if store.run_names()?.iter().any(|n| n == run) {
            "left as it was"
        } else {
            "not created"
        };
        return match failure {
            Some(e) => Err(CliError::Usage(format!(
                "{e}; nothing was logged, and run '{run}' was {what}"
            ))),
            None => {
                eprintln!("steplog: no rows on standard input; run '{run}' was {what}");
                Ok(ExitCode::SUCCESS)
            }
        };
    };
    let version = writer.version();
    if failure.is_some() {
        // The rows before the bad line stay committed, and the run is left crashed, as a
        // script that died there would leave it: resume it, or rewind it. The bad line's
        // error is the one reported; a failed commit is said beside it.
        if let Err(e) = writer.commit() {
            eprintln!("steplog: committing the rows before the bad line failed too: {e}");
        }
        drop(writer);
    } else {
        writer.finish()?;
    }
    if let (true, Some(step)) = (report_commits, last) {
        println!("committed {step}");
    }
    let steps = match (first, last) {
        (Some(a), Some(b)) if a == b => format!(", step {a}"),
        (Some(a), Some(b)) => format!(", steps {a} to {b}"),
        _ => String::new(),
    };
    let rows = crate::output::count(rows, "row", "rows");
    let secs = began.elapsed().as_secs_f64();
    if failure.is_some() {
        eprintln!(
            "steplog: committed {rows} to run '{run}' (version {version}, stream {stream}){steps} \
             before the bad line; the run is left crashed"
        );
    } else {
        eprintln!(
            "steplog: logged {rows} to run '{run}' (version {version}, stream {stream}){steps} \
             in {secs:.2} s"
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
