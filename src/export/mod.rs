//! `steplog export` (and the row formats `history` prints): a run or version, or every run of
//! the store, as CSV, JSON Lines or Parquet.
//!
//! Parquet columns: `run` and `version` (whole-store export only), `_step` (INT64), then one
//! nullable column per key, typed from the values it holds: INT64 when every value is an
//! integer, DOUBLE when numbers mix integers and floats, BOOLEAN, or UTF-8 for strings (a key
//! whose values mix kinds is UTF-8 too: its strings as they are, other values as JSON text).
//! Zstd-compressed, in row groups of at most 65,536 rows. Parquet and CSV are read column by
//! column (`Store::chunks`) in two streaming passes (the columns and their types, then the
//! values), JSON Lines row by row in one, so a run of any length exports in bounded memory.

mod csv;
mod parquet;

pub use csv::history_csv;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use steplog::{ChunkValues, Query, Store, Value};

use crate::args::{ExportArgs, Format};
use crate::error::{CliError, CliResult};
use crate::output::{self, json_text};
use crate::progress::Bar;

/// A column's type, widened as values are seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Bool,
    Str,
}

impl Kind {
    fn of(v: &Value) -> Kind {
        match v {
            Value::I64(_) => Kind::Int,
            Value::F64(_) => Kind::Float,
            Value::Bool(_) => Kind::Bool,
            Value::Str(_) => Kind::Str,
        }
    }

    fn widen(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
            _ => Kind::Str,
        }
    }
}

/// One source of rows: a run or version, and what `run`/`version` columns say of it.
struct Source {
    reference: String,
    run: String,
    version: String,
}

fn query(args: &ExportArgs) -> Query {
    let mut q = Query::new().steps(args.from.unwrap_or(0)..=args.to.unwrap_or(u64::MAX));
    if let Some(k) = args.keys.selected() {
        q = q.keys(k);
    }
    q
}

/// A file name for a run: its name with path separators and odd characters replaced.
fn file_stem(run: &str) -> String {
    run.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A file stem for `run` that no stem in `used` has (compared without case, for file systems
/// that ignore it), and records it: runs whose names differ only in replaced characters
/// (`a/b`, `a_b`, `a~b`) get their version id, then a counter, added. Unique by construction,
/// so `--split` never writes one file twice.
fn unique_stem(run: &str, version: &str, used: &mut std::collections::HashSet<String>) -> String {
    // File names are at most 255 bytes: leave room for the suffixes and the extension.
    let base: String = file_stem(run).chars().take(200).collect();
    let mut stem = base.clone();
    let mut n = 1u64;
    while !used.insert(stem.to_lowercase()) {
        n += 1;
        stem = if n == 2 {
            format!("{base}-{version}")
        } else {
            format!("{base}-{version}-{n}")
        };
    }
    stem
}

/// The format a file name's extension names, if any.
fn format_of_name(path: &std::path::Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Some(Format::Csv),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "parquet" | "pq" => Some(Format::Parquet),
        _ => None,
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Csv => "csv",
        Format::Jsonl => "jsonl",
        Format::Parquet => "parquet",
    }
}

/// The export's format: `--format`, or the output file's extension; a `--format` the
/// extension contradicts (CSV into `a.parquet`) is refused.
fn resolve_format(
    given: Option<Format>,
    output: &std::path::Path,
    split: bool,
) -> CliResult<Format> {
    let named = if split || crate::outfile::is_stdout(output) {
        None
    } else {
        format_of_name(output)
    };
    match (given, named) {
        (Some(g), Some(n)) if g != n => Err(CliError::Usage(format!(
            "--format {} but {} names {}: drop --format or make them agree",
            format_name(g),
            output.display(),
            format_name(n)
        ))),
        (Some(g), _) => Ok(g),
        (None, Some(n)) => Ok(n),
        (None, None) => Err(CliError::Usage(format!(
            "give --format (csv, jsonl or parquet): {}",
            if split {
                "--split writes a directory of files".to_owned()
            } else if crate::outfile::is_stdout(output) {
                "-o - is standard output".to_owned()
            } else {
                format!(
                    "the name {} ends in no extension that names one",
                    output.display()
                )
            }
        ))),
    }
}

pub fn export(store: &Store, args: ExportArgs, out: &mut impl Write) -> CliResult {
    let format = resolve_format(args.format, &args.output, args.split)?;
    let to_stdout = crate::outfile::is_stdout(&args.output);
    if to_stdout && args.split {
        return Err(CliError::Usage(
            "--split writes one file per run into a directory: -o - (standard output) \
             cannot be one"
                .into(),
        ));
    }
    crate::outfile::refuse_inside_store(store.dir(), &args.output)?;
    let sources: Vec<Source> = match &args.reference {
        Some(r) => {
            let v = store.resolve(r)?.version;
            let info = store.version(v)?;
            vec![Source {
                reference: r.clone(),
                run: info.run,
                version: v.to_string(),
            }]
        }
        None => store
            .runs()?
            .into_iter()
            .map(|r| Source {
                reference: r.head.to_string(),
                run: r.name,
                version: r.head.to_string(),
            })
            .collect(),
    };
    if let Some(keys) = args.keys.selected() {
        check_keys(store, &args, &sources, &keys)?;
    }
    let q = query(&args);
    let bar = Bar::new();
    let total: u64 = sources
        .iter()
        .map(|s| store.rows(&s.reference).map(|c| c.rows))
        .sum::<Result<u64, _>>()?;
    let mut written = Vec::new();
    if args.split {
        std::fs::create_dir_all(&args.output).map_err(|e| {
            CliError::Usage(format!("cannot create {}: {e}", args.output.display()))
        })?;
        let ext = format_name(format);
        bar.stage("export", total, false);
        let mut done = 0;
        let mut used = std::collections::HashSet::new();
        for s in &sources {
            let stem = unique_stem(&s.run, &s.version, &mut used);
            let path = args.output.join(format!("{stem}.{ext}"));
            let n = write_file(
                store,
                std::slice::from_ref(s),
                &q,
                format,
                false,
                &path,
                &bar,
                done,
            )?;
            done += n;
            written.push((path, Some(s.run.clone()), n));
        }
    } else {
        bar.stage("export", total, false);
        let n = write_file(store, &sources, &q, format, args.all, &args.output, &bar, 0)?;
        written.push((args.output.clone(), None, n));
    }
    bar.done();
    if to_stdout {
        // Standard output holds the data: the report goes to standard error.
        let rows: u64 = written.iter().map(|w| w.2).sum();
        let rows = crate::output::count(rows, "row", "rows");
        eprintln!("steplog: exported {rows} to standard output");
        return Ok(());
    }
    for (path, run, rows) in written {
        let mut v = serde_json::json!({"file": path.display().to_string(), "rows": rows});
        if let Some(r) = run {
            v["run"] = r.into();
        }
        writeln!(out, "{v}")?;
    }
    Ok(())
}

/// A key asked for that the exported version never had is an error naming the close ones
/// (not a file of no rows); with `--all`, a key no run of the store has.
fn check_keys(store: &Store, args: &ExportArgs, sources: &[Source], keys: &[String]) -> CliResult {
    let keys = keys.iter().map(String::as_str);
    if let Some(r) = &args.reference {
        return Ok(store.check_keys(r, steplog::Stream::History, keys)?);
    }
    let mut all = std::collections::BTreeSet::new();
    for s in sources {
        all.extend(store.keys(&s.reference, steplog::Stream::History)?);
    }
    for key in keys {
        if !all.contains(key) {
            let close = steplog::close_matches(key, all.iter().map(String::as_str));
            return Err(CliError::Usage(format!(
                "no run of the store has a key '{key}'{}",
                steplog::did_you_mean(&close)
            )));
        }
    }
    Ok(())
}

/// The columns (in key order) and their kinds, over every source: the first pass.
fn columns(store: &Store, sources: &[Source], q: &Query) -> CliResult<Vec<(String, Kind)>> {
    let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
    let mut widen = |k: &str, kind: Kind| match kinds.get_mut(k) {
        Some(e) => *e = e.widen(kind),
        None => {
            kinds.insert(k.to_owned(), kind);
        }
    };
    for s in sources {
        for chunk in store.chunks(&s.reference, q)? {
            for c in chunk?.columns {
                match &c.values {
                    ChunkValues::F64(_) => widen(&c.key, Kind::Float),
                    ChunkValues::I64(_) => widen(&c.key, Kind::Int),
                    ChunkValues::Any(vs) => {
                        for v in vs {
                            widen(&c.key, Kind::of(v));
                        }
                    }
                }
            }
        }
    }
    Ok(kinds.into_iter().collect())
}

#[allow(clippy::too_many_arguments)]
fn write_file(
    store: &Store,
    sources: &[Source],
    q: &Query,
    format: Format,
    with_run: bool,
    path: &Path,
    bar: &Bar,
    done_before: u64,
) -> CliResult<u64> {
    if with_run {
        // The whole-store table adds `run` and `version` columns: a key of that name would be
        // overwritten or doubled. Refused before anything is written.
        for (key, _) in columns(store, sources, q)? {
            if key == "run" || key == "version" {
                return Err(CliError::Usage(format!(
                    "a run has a key named '{key}', which the '{key}' column of `export --all` \
                     would hide; export with --split, or one run at a time"
                )));
            }
        }
    }
    let (file, mut f) = crate::outfile::OutFile::create(path)?;
    let mut n = 0u64;
    // Called per row by the row formats, per block by Parquet; draws at most every 4,096.
    let mut drawn = 0u64;
    let mut tick = |n: u64| {
        if n >= drawn + 4096 {
            bar.set(done_before + n);
            drawn = n;
        }
    };
    match format {
        Format::Jsonl => {
            for s in sources {
                for row in store.history(&s.reference, q)? {
                    let mut j = output::row_json(&row?);
                    if with_run {
                        if let serde_json::Value::Object(m) = &mut j {
                            m.insert("run".into(), s.run.clone().into());
                            m.insert("version".into(), s.version.clone().into());
                        }
                    }
                    writeln!(f, "{}", json_text(&j))?;
                    n += 1;
                    tick(n);
                }
            }
        }
        Format::Csv => {
            let cols = columns(store, sources, q)?;
            let keys: Vec<String> = cols.into_iter().map(|(k, _)| k).collect();
            csv::write_csv(store, sources, q, &keys, with_run, &mut f, &mut |rows| {
                n = rows;
                tick(rows);
            })?;
        }
        Format::Parquet => {
            let (rows, sink) = parquet::write_parquet(store, sources, q, with_run, f, &mut tick)?;
            n = rows;
            f = sink;
        }
    }
    // Only a complete file replaces what was at `path` (a failure leaves it as it was).
    file.finish(f)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::unique_stem;

    /// Issue #11, item 11: runs `a/b`, `a_b-v3` and `a~b` gave `a_b-v3` twice.
    #[test]
    fn split_file_names_are_unique_whatever_the_run_names() {
        let mut used = std::collections::HashSet::new();
        let runs = [
            ("a/b", "v1"),
            ("a_b-v3", "v2"),
            ("a~b", "v3"),
            ("a_b", "v3"),
            ("A_B", "v4"),
            ("a_b-v3-3", "v5"),
        ];
        let stems: Vec<String> = runs
            .iter()
            .map(|(r, v)| unique_stem(r, v, &mut used))
            .collect();
        let lower: std::collections::HashSet<String> =
            stems.iter().map(|s| s.to_lowercase()).collect();
        assert_eq!(lower.len(), runs.len(), "{stems:?}");
        let long = "x".repeat(300);
        assert!(unique_stem(&long, "v9", &mut used).len() <= 200);
    }
}
