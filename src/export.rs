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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use clap::{Args, ValueEnum};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use steplog::{ChunkColumn, ChunkValues, Query, Store, Value};

use crate::error::{CliError, CliResult};
use crate::outfile::Sink;
use crate::output::{self, json_text};
use crate::progress::Bar;

const ROW_GROUP: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run (its head), a version id (v12), or RUN?_step=S. Leave out with --all.
    #[arg(required_unless_present = "all")]
    pub reference: Option<String>,
    /// Export every run of the store (each run's head) as one table with `run` and
    /// `version` columns, or, with --split, as one file per run in the directory -o names.
    #[arg(long, conflicts_with = "reference")]
    pub all: bool,
    /// With --all: one file per run (named after the run) instead of one table.
    #[arg(long, requires = "all")]
    pub split: bool,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    #[command(flatten)]
    pub keys: crate::args::KeySelection,
    /// First step.
    #[arg(long)]
    pub from: Option<u64>,
    /// Last step.
    #[arg(long)]
    pub to: Option<u64>,
    /// The output file (the directory, with --split); `-` is standard output (then the
    /// report of rows written goes to standard error).
    #[arg(short, long)]
    pub output: PathBuf,
}

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

    fn data_type(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Str => DataType::Utf8,
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

pub fn export(store: &Store, args: ExportArgs, out: &mut impl Write) -> CliResult {
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
            let (v, _) = store.resolve(r)?;
            let info = store.version(&v.to_string())?;
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
    let q = query(&args);
    let bar = Bar::new();
    let total: u64 = sources
        .iter()
        .map(|s| store.rows(&s.reference).map(|(n, _)| n))
        .sum::<Result<u64, _>>()?;
    let mut written = Vec::new();
    if args.split {
        std::fs::create_dir_all(&args.output).map_err(|e| {
            CliError::Usage(format!("cannot create {}: {e}", args.output.display()))
        })?;
        let ext = match args.format {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        };
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
                args.format,
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
        let n = write_file(
            store,
            &sources,
            &q,
            args.format,
            args.all,
            &args.output,
            &bar,
            0,
        )?;
        written.push((args.output.clone(), None, n));
    }
    bar.done();
    if to_stdout {
        // Standard output holds the data: the report goes to standard error.
        let rows: u64 = written.iter().map(|w| w.2).sum();
        eprintln!("steplog: exported {rows} rows to standard output");
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
            write_csv(store, sources, q, &keys, with_run, &mut f, &mut |rows| {
                n = rows;
                tick(rows);
            })?;
        }
        Format::Parquet => {
            let (rows, sink) = write_parquet(store, sources, q, with_run, f, &mut tick)?;
            n = rows;
            f = sink;
        }
    }
    // Only a complete file replaces what was at `path` (a failure leaves it as it was).
    file.finish(f)?;
    Ok(n)
}

/// CSV with a header: `[run,version,]_step,KEY...`; cells as `history --format csv`. Read
/// column by column (`Store::chunks`); `each` is told the rows written so far per block.
fn write_csv(
    store: &Store,
    sources: &[Source],
    q: &Query,
    keys: &[String],
    with_run: bool,
    out: &mut impl Write,
    each: &mut dyn FnMut(u64),
) -> CliResult {
    let quote = |s: &str| output::csv_field(Some(&Value::Str(s.to_owned())));
    let mut header: Vec<String> = Vec::new();
    if with_run {
        header.extend(["run".to_string(), "version".to_string()]);
    }
    header.push("_step".into());
    header.extend(keys.iter().map(|k| quote(k)));
    writeln!(out, "{}", header.join(","))?;
    let index: std::collections::HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut n = 0u64;
    let mut line = String::new();
    for s in sources {
        let prefix = if with_run {
            format!("{},{},", quote(&s.run), s.version)
        } else {
            String::new()
        };
        for chunk in store.chunks(&s.reference, q)? {
            let chunk = chunk?;
            // Per key: its column in this block and the next of its entries to write.
            let mut cursors: Vec<(Option<&ChunkColumn>, usize)> = vec![(None, 0); keys.len()];
            for c in &chunk.columns {
                if let Some(&i) = index.get(c.key.as_str()) {
                    cursors[i].0 = Some(c);
                }
            }
            for (r, step) in chunk.steps.iter().enumerate() {
                line.clear();
                line.push_str(&prefix);
                line.push_str(&step.to_string());
                for (col, pos) in &mut cursors {
                    line.push(',');
                    let Some(c) = col else { continue };
                    if c.rows.get(*pos).is_some_and(|&x| x as usize == r) {
                        let v = match &c.values {
                            ChunkValues::F64(x) => Value::F64(x[*pos]),
                            ChunkValues::I64(x) => Value::I64(x[*pos]),
                            ChunkValues::Any(x) => x[*pos].clone(),
                        };
                        line.push_str(&output::csv_field(Some(&v)));
                        *pos += 1;
                    }
                }
                line.push('\n');
                out.write_all(line.as_bytes())?;
            }
            n += chunk.steps.len() as u64;
            each(n);
        }
    }
    Ok(())
}

/// `history --format csv` for one reference.
pub fn history_csv(
    store: &Store,
    reference: &str,
    q: &Query,
    keys: Option<Vec<String>>,
    out: &mut impl Write,
) -> CliResult {
    let source = [Source {
        reference: reference.to_owned(),
        run: String::new(),
        version: String::new(),
    }];
    let keys = match keys {
        Some(k) => k,
        None => columns(store, &source, q)?
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
    };
    write_csv(store, &source, q, &keys, false, out, &mut |_| {})
}

/// Builders for one row group.
enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        // No room reserved: `new()` reserves 1,024 values, 8 KiB for each of 200,000 keys of a
        // one-row run (the buffers grow with the rows, and `finish` hands them over).
        match kind {
            Kind::Int => Builder::Int(Int64Builder::with_capacity(0)),
            Kind::Float => Builder::Float(Float64Builder::with_capacity(0)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(0)),
            Kind::Str => Builder::Str(StringBuilder::with_capacity(0, 0)),
        }
    }

    fn push(&mut self, v: Option<&Value>) {
        match (self, v) {
            (Builder::Int(b), Some(Value::I64(i))) => b.append_value(*i),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), Some(v)) => b.append_option(v.as_f64()),
            (Builder::Float(b), None) => b.append_null(),
            (Builder::Bool(b), Some(Value::Bool(x))) => b.append_value(*x),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Str(b), Some(Value::Str(s))) => b.append_value(s),
            (Builder::Str(b), Some(v)) => b.append_value(json_text(&output::value_json(v))),
            (Builder::Str(b), None) => b.append_null(),
        }
    }

    /// Appends `n` rows of which those in `col` (if any) have values; the others are null.
    fn push_column(&mut self, n: usize, col: Option<&ChunkColumn>) {
        let Some(col) = col else {
            match self {
                Builder::Int(b) => b.append_nulls(n),
                Builder::Float(b) => b.append_nulls(n),
                Builder::Bool(b) => b.append_nulls(n),
                Builder::Str(b) => {
                    for _ in 0..n {
                        b.append_null();
                    }
                }
            }
            return;
        };
        let mut next = 0usize;
        for (j, &r) in col.rows.iter().enumerate() {
            let r = r as usize;
            self.push_nulls(r - next);
            match (&mut *self, &col.values) {
                (Builder::Float(b), ChunkValues::F64(x)) => b.append_value(x[j]),
                (Builder::Float(b), ChunkValues::I64(x)) => b.append_value(x[j] as f64),
                (Builder::Int(b), ChunkValues::I64(x)) => b.append_value(x[j]),
                (me, ChunkValues::F64(x)) => me.push(Some(&Value::F64(x[j]))),
                (me, ChunkValues::I64(x)) => me.push(Some(&Value::I64(x[j]))),
                (me, ChunkValues::Any(x)) => me.push(Some(&x[j])),
            }
            next = r + 1;
        }
        self.push_nulls(n - next);
    }

    fn push_nulls(&mut self, n: usize) {
        for _ in 0..n {
            self.push(None);
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
        }
    }
}

/// The rows buffered for the next Parquet row group.
struct RowGroup {
    runs: StringBuilder,
    versions: StringBuilder,
    steps: Int64Builder,
    builders: Vec<Builder>,
    rows: usize,
}

impl RowGroup {
    /// Writes the buffered rows as one batch (the writer cuts row groups at 65,536 rows).
    fn write(
        &mut self,
        schema: &Arc<Schema>,
        with_run: bool,
        writer: &mut ArrowWriter<Sink>,
    ) -> CliResult {
        let mut arrays: Vec<ArrayRef> = Vec::new();
        if with_run {
            arrays.push(Arc::new(self.runs.finish()));
            arrays.push(Arc::new(self.versions.finish()));
        }
        arrays.push(Arc::new(self.steps.finish()));
        arrays.extend(self.builders.iter_mut().map(Builder::finish));
        self.rows = 0;
        let batch = RecordBatch::try_new(Arc::clone(schema), arrays)
            .map_err(|e| CliError::Usage(format!("building a Parquet row group: {e}")))?;
        writer.write(&batch).map_err(parquet_error("output"))
    }
}

fn parquet_error(path: &str) -> impl Fn(parquet::errors::ParquetError) -> CliError + '_ {
    move |e| CliError::Usage(format!("writing Parquet {path}: {e}"))
}

fn write_parquet(
    store: &Store,
    sources: &[Source],
    q: &Query,
    with_run: bool,
    out: Sink,
    tick: &mut dyn FnMut(u64),
) -> CliResult<(u64, Sink)> {
    let cols = columns(store, sources, q)?;
    let mut fields = Vec::new();
    if with_run {
        fields.push(Field::new("run", DataType::Utf8, false));
        fields.push(Field::new("version", DataType::Utf8, false));
    }
    fields.push(Field::new("_step", DataType::Int64, false));
    fields.extend(
        cols.iter()
            .map(|(k, kind)| Field::new(k, kind.data_type(), true)),
    );
    let schema = Arc::new(Schema::new(fields));
    // Dictionaries only for strings: numbers rarely repeat enough to pay for the hashing.
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_size(ROW_GROUP)
        .set_dictionary_enabled(false);
    for f in schema.fields() {
        if f.data_type() == &DataType::Utf8 {
            props = props.set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from(f.name().as_str()),
                true,
            );
        }
    }
    let props = props.build();
    let err = parquet_error("output");
    let mut writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(props)).map_err(&err)?;
    let mut n = 0u64;
    let mut group = RowGroup {
        runs: StringBuilder::new(),
        versions: StringBuilder::new(),
        steps: Int64Builder::new(),
        builders: cols.iter().map(|(_, k)| Builder::new(*k)).collect(),
        rows: 0,
    };
    let index: std::collections::HashMap<&str, usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.as_str(), i))
        .collect();
    for s in sources {
        for chunk in store.chunks(&s.reference, q)? {
            let chunk = chunk?;
            let rows = chunk.steps.len();
            for &st in &chunk.steps {
                let step = i64::try_from(st).map_err(|_| {
                    CliError::Usage(format!(
                        "run '{}': step {st} does not fit Parquet's INT64",
                        s.run
                    ))
                })?;
                group.steps.append_value(step);
                if with_run {
                    group.runs.append_value(&s.run);
                    group.versions.append_value(&s.version);
                }
            }
            let mut by_column: Vec<Option<&ChunkColumn>> = vec![None; cols.len()];
            for c in &chunk.columns {
                if let Some(&i) = index.get(c.key.as_str()) {
                    by_column[i] = Some(c);
                }
            }
            for (b, c) in group.builders.iter_mut().zip(by_column) {
                b.push_column(rows, c);
            }
            group.rows += rows;
            n += rows as u64;
            tick(n);
            if group.rows >= ROW_GROUP {
                group.write(&schema, with_run, &mut writer)?;
            }
        }
    }
    if group.rows > 0 || n == 0 {
        group.write(&schema, with_run, &mut writer)?;
    }
    let sink = writer.into_inner().map_err(parquet_error("output"))?;
    Ok((n, sink))
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
