//! The systems measured: steplog, SQLite (rusqlite, bundled), Parquet (arrow-rs) and a raw
//! file of little-endian (step, value) pairs. Each is used the way its documentation advises
//! for bulk loading.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use steplog::{Query, Store, Value};

use crate::{many_config, many_config_value, sweep_data, Columns, System};

type Series = (Vec<u64>, Vec<f64>);
use crate::SummaryMap;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// ---------------------------------------------------------------- steplog

#[derive(Default)]
pub struct Steplog {
    stores: HashMap<PathBuf, Store>,
}

impl Steplog {
    fn store(&mut self, dir: &Path) -> &Store {
        self.stores.entry(dir.to_owned()).or_insert_with(|| {
            // STEPLOG_BLOCK_BYTES / STEPLOG_SEGMENT_BYTES / STEPLOG_PACK_FANOUT: for tuning
            // experiments only.
            let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
            let mut o = steplog::Options::new();
            if let Some(b) = env("STEPLOG_BLOCK_BYTES") {
                o = o.block_bytes(b as usize);
            }
            if let Some(b) = env("STEPLOG_SEGMENT_BYTES") {
                o = o.segment_bytes(b);
            }
            // STEPLOG_PACK_FANOUT=0: the deep workload without packs (before and after).
            if let Some(n) = env("STEPLOG_PACK_FANOUT") {
                o = o.pack_fanout(n as usize);
            }
            o.open(dir).unwrap()
        })
    }
}

/// Logs rows through steplog's bulk path, as a tracker that buffers its steps would: runs of
/// rows holding the keys of the first row (same order, same types) go in as typed columns
/// (`log_columns`), up to 4,096 steps at a time; a row's further keys are merged into its
/// step right after its batch; any other row is logged alone.
fn log_batched(w: &mut steplog::RunWriter, rows: &[(u64, Vec<(&'static str, Value)>)]) {
    enum Col {
        F(Vec<f64>),
        I(Vec<i64>),
    }
    let Some((_, first)) = rows.first() else {
        return;
    };
    let dense: Vec<(&str, bool)> = first
        .iter()
        .map(|(k, v)| (*k, matches!(v, Value::I64(_))))
        .collect();
    let regular = |row: &[(&str, Value)]| {
        row.len() >= dense.len()
            && row.iter().zip(&dense).all(|((k, v), (dk, int))| {
                k == dk
                    && matches!(v, Value::I64(_)) == *int
                    && !matches!(v, Value::Bool(_) | Value::Str(_))
            })
    };
    let new_cols = || -> Vec<Col> {
        dense
            .iter()
            .map(|(_, int)| {
                if *int {
                    Col::I(Vec::new())
                } else {
                    Col::F(Vec::new())
                }
            })
            .collect()
    };
    let (mut steps, mut cols) = (Vec::new(), new_cols());
    let flush = |w: &mut steplog::RunWriter, steps: &mut Vec<u64>, cols: &mut Vec<Col>| {
        if steps.is_empty() {
            return;
        }
        let batch: Vec<(&str, steplog::Batch<'_>)> = dense
            .iter()
            .zip(cols.iter())
            .map(|((k, _), c)| match c {
                Col::F(v) => (*k, steplog::Batch::F64(v)),
                Col::I(v) => (*k, steplog::Batch::I64(v)),
            })
            .collect();
        w.log_columns(steps, &batch).unwrap();
        steps.clear();
        *cols = new_cols();
    };
    for (step, row) in rows {
        if !regular(row) {
            flush(w, &mut steps, &mut cols);
            w.log_at(*step, row.iter().map(|(k, v)| (*k, v.clone())))
                .unwrap();
            continue;
        }
        steps.push(*step);
        for ((_, v), c) in row.iter().zip(cols.iter_mut()) {
            match (v, c) {
                (Value::F64(x), Col::F(xs)) => xs.push(*x),
                (Value::I64(x), Col::I(xs)) => xs.push(*x),
                _ => unreachable!("checked by regular"),
            }
        }
        let extra = &row[dense.len()..];
        if !extra.is_empty() || steps.len() == 4096 {
            flush(w, &mut steps, &mut cols);
        }
        if !extra.is_empty() {
            w.log_at(*step, extra.iter().map(|(k, v)| (*k, v.clone())))
                .unwrap();
        }
    }
    flush(w, &mut steps, &mut cols);
}

/// Points per bulk commit: the SQLite peer's transaction size.
const BULK_POINTS: u64 = 100_000;

/// The sweep shape's runs, run `r` named `run-{r}`; with `configs`, each with the many
/// workload's config. Written through `Store::bulk`, committed every `BULK_POINTS` points
/// (as the SQLite peer commits), or with `STEPLOG_WRITER_PER_RUN=1` a writer each (the path
/// before bulks, for a before and after in one build).
fn log_short_runs(store: &Store, runs: u64, steps: u64, configs: bool) {
    if std::env::var_os("STEPLOG_WRITER_PER_RUN").is_some() {
        return log_writer_runs(store, runs, steps, configs);
    }
    let mut bulk = store.bulk();
    let mut current: Option<(u64, steplog::ShortRun)> = None;
    let mut points = 0;
    for (r, s, row) in sweep_data(runs, steps) {
        if current.as_ref().is_none_or(|c| c.0 != r) {
            if let Some((_, run)) = current.take() {
                bulk.add(run).unwrap();
                if points >= BULK_POINTS {
                    bulk.commit().unwrap();
                    points = 0;
                }
            }
            let mut run = bulk.run(&format!("run-{r}"));
            if configs {
                run.set_config(many_config_value(r));
            }
            current = Some((r, run));
        }
        points += row.len() as u64;
        current.as_mut().unwrap().1.log_at(s, row).unwrap();
    }
    if let Some((_, run)) = current {
        bulk.add(run).unwrap();
    }
    bulk.commit().unwrap();
}

/// The sweep shape's runs, a writer each (finished before the next starts).
fn log_writer_runs(store: &Store, runs: u64, steps: u64, configs: bool) {
    let mut current: Option<(u64, steplog::RunWriter)> = None;
    for (r, s, row) in sweep_data(runs, steps) {
        if current.as_ref().is_none_or(|c| c.0 != r) {
            if let Some((_, w)) = current.take() {
                w.finish().unwrap();
            }
            let mut start = store.run(&format!("run-{r}"));
            if configs {
                start = start.config(many_config_value(r));
            }
            current = Some((r, start.start().unwrap()));
        }
        current.as_mut().unwrap().1.log_at(s, row).unwrap();
    }
    if let Some((_, w)) = current {
        w.finish().unwrap();
    }
}

/// count, min, max, mean of every key of `run`.
fn steplog_summary(store: &Store, run: &str) -> SummaryMap {
    let s = store.summary(run).unwrap();
    let num =
        |v: &Option<(u64, Value)>| v.as_ref().and_then(|(_, v)| v.as_f64()).unwrap_or(f64::NAN);
    s.keys
        .iter()
        .map(|(k, ks)| {
            let mean = ks.mean().unwrap_or(f64::NAN);
            (k.clone(), (ks.count, num(&ks.min), num(&ks.max), mean))
        })
        .collect()
}

impl System for Steplog {
    fn name(&self) -> &'static str {
        "steplog"
    }
    fn durability(&self) -> &'static str {
        "Durability::Process (commit = write(2), no fsync: survives kill -9, not power loss)"
    }
    fn ingest(&mut self, dir: &Path, data: &Columns) {
        let store = self.store(dir);
        let mut w = store.run("run").start().unwrap();
        log_batched(&mut w, &data.rows);
        w.finish().unwrap();
    }
    fn ingest_sweep(&mut self, dir: &Path, runs: u64, steps: u64) {
        log_short_runs(self.store(dir), runs, steps, false);
        // Closed, as the process that wrote it would be: a compaction still in flight is put
        // in place (timed), and the store's size is that of a store at rest.
        self.stores.remove(dir);
    }
    fn open_sweep(&mut self, dir: &Path) -> u64 {
        Store::open(dir).unwrap().run_names().unwrap().len() as u64
    }
    fn build_deep(&mut self, dir: &Path, depth: u64) -> bool {
        steplog_workload::write_deep(self.store(dir), depth).unwrap();
        true
    }
    fn read_deep(&mut self, dir: &Path, run: &str) -> (u64, u64) {
        let store = Store::open(dir).unwrap();
        let rows = store.history(run, &Query::new()).unwrap().count() as u64;
        let count = store.summary(run).unwrap().keys["x"].count;
        (rows, count)
    }
    fn ingest_many(&mut self, dir: &Path, runs: u64, steps: u64) -> bool {
        log_short_runs(self.store(dir), runs, steps, true);
        self.stores.remove(dir);
        true
    }
    fn list_many(&mut self, dir: &Path) -> Vec<String> {
        let runs = Store::open(dir).unwrap().runs().unwrap();
        runs.into_iter().map(|r| r.name).collect()
    }
    fn many_summary(&mut self, dir: &Path, run: u64) -> (String, SummaryMap) {
        let store = Store::open(dir).unwrap();
        let name = format!("run-{run}");
        let config = store.version(name.as_str()).unwrap().config.to_string();
        (config, steplog_summary(&store, &name))
    }
    fn scan(&mut self, dir: &Path, key: &str) -> Series {
        let s = self.store(dir).metric("run", key, ..).unwrap();
        (s.steps, s.values)
    }
    fn range(&mut self, dir: &Path, key: &str, from: u64, len: u64) -> Series {
        let s = self
            .store(dir)
            .metric("run", key, from..from + len)
            .unwrap();
        (s.steps, s.values)
    }
    fn summary(&mut self, dir: &Path) -> SummaryMap {
        steplog_summary(self.store(dir), "run")
    }
    fn summary_around_rewind(&mut self, dir: &Path, step: u64) -> Option<(Duration, Duration)> {
        let store = self.store(dir).clone();
        let count = |s: &steplog::Summary| s.keys.get("m").map_or(0, |k| k.count);
        let rows = store.rows("run").unwrap().rows;
        // Untimed first call: maps the segment and decodes its footer, as any earlier read of
        // the run would have (the train run's summary is timed after its scans, too).
        store.summary("run").unwrap();
        let t = Instant::now();
        let whole = store.summary("run").unwrap();
        let whole_t = t.elapsed();
        assert_eq!(count(&whole), rows, "steplog summary count");
        store.run("run").resume_from(step).apply().unwrap();
        let t = Instant::now();
        let after = store.summary("run").unwrap();
        let after_t = t.elapsed();
        assert_eq!(
            count(&after),
            step + 1,
            "steplog summary count after a rewind"
        );
        let max = after.keys["m"].max.as_ref().and_then(|(_, v)| v.as_f64());
        assert_eq!(
            max,
            Some(step as f64 * 0.25),
            "steplog summary max after a rewind"
        );
        Some((whole_t, after_t))
    }
    fn rewind_fork(&mut self, dir: &Path, step: u64) -> Option<(Duration, Duration)> {
        let store = self.store(dir).clone();
        let (mut rewinds, mut forks) = (Vec::new(), Vec::new());
        for i in 0..11 {
            let t = Instant::now();
            store.run("run").resume_from(step - i).apply().unwrap();
            rewinds.push(t.elapsed());
            let t = Instant::now();
            store
                .run(&format!("fork-{i}"))
                .fork_from("run", step - i)
                .apply()
                .unwrap();
            forks.push(t.elapsed());
        }
        assert_eq!(
            store.rows("fork-10").unwrap().rows,
            step - 10 + 1,
            "steplog fork rows"
        );
        let _ = store.history("run", &Query::new()).unwrap();
        Some((median(rewinds), median(forks)))
    }
}

// ---------------------------------------------------------------- SQLite

#[derive(Default)]
pub struct Sqlite {
    conns: HashMap<PathBuf, rusqlite::Connection>,
}

/// Rows of the `runs` table (and, with `configs`, of a `configs` table made for them: the
/// many workload's), in one transaction.
fn insert_runs(c: &mut rusqlite::Connection, runs: u64, configs: bool) {
    if configs {
        c.execute_batch("CREATE TABLE configs (run INTEGER PRIMARY KEY, config TEXT NOT NULL);")
            .unwrap();
    }
    let tx = c.transaction().unwrap();
    for r in 0..runs {
        tx.execute(
            "INSERT INTO runs VALUES (?1, ?2)",
            rusqlite::params![r as i64, format!("run-{r}")],
        )
        .unwrap();
        if configs {
            tx.execute(
                "INSERT INTO configs VALUES (?1, ?2)",
                rusqlite::params![r as i64, many_config(r)],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// count, min, max, mean of every key of run `run`.
fn sqlite_summary(c: &rusqlite::Connection, run: u64) -> SummaryMap {
    let mut stmt = c
        .prepare("SELECT key, COUNT(*), MIN(value), MAX(value), AVG(value) FROM points WHERE run = ?1 GROUP BY key")
        .unwrap();
    let rows = stmt
        .query_map([run as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, i64>(1)? as u64, r.get(2)?, r.get(3)?, r.get(4)?),
            ))
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

fn sqlite_open(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS points (run INTEGER NOT NULL, key TEXT NOT NULL,
             step INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (run, key, step)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS runs (run INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    )
    .unwrap();
    c
}

impl Sqlite {
    fn conn(&mut self, dir: &Path) -> &mut rusqlite::Connection {
        self.conns
            .entry(dir.to_owned())
            .or_insert_with(|| sqlite_open(dir))
    }

    fn insert_rows<'a>(
        c: &mut rusqlite::Connection,
        rows: impl Iterator<Item = (u64, u64, &'a str, f64)>,
    ) {
        let mut tx = c.transaction().unwrap();
        let mut n = 0;
        let mut pending = rows.peekable();
        while pending.peek().is_some() {
            {
                let mut stmt = tx
                    .prepare_cached("INSERT INTO points VALUES (?1, ?2, ?3, ?4)")
                    .unwrap();
                for (run, step, key, value) in pending.by_ref().take(100_000) {
                    stmt.execute(rusqlite::params![run as i64, key, step as i64, value])
                        .unwrap();
                    n += 1;
                }
            }
            tx.commit().unwrap();
            tx = c.transaction().unwrap();
        }
        tx.commit().unwrap();
        let _ = n;
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

impl System for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }
    fn durability(&self) -> &'static str {
        "WAL, synchronous=NORMAL, 100,000 points per transaction (survives a process crash; power loss may lose the last transactions)"
    }
    fn ingest(&mut self, dir: &Path, data: &Columns) {
        let c = self.conn(dir);
        let rows = data
            .rows
            .iter()
            .flat_map(|(s, row)| row.iter().map(move |(k, v)| (0, *s, *k, num(v))));
        Sqlite::insert_rows(c, rows);
    }
    fn ingest_sweep(&mut self, dir: &Path, runs: u64, steps: u64) {
        let c = self.conn(dir);
        insert_runs(c, runs, false);
        let data: Vec<_> = sweep_data(runs, steps).collect();
        let rows = data
            .iter()
            .flat_map(|(r, s, row)| row.iter().map(move |(k, v)| (*r, *s, *k, num(v))));
        Sqlite::insert_rows(c, rows);
    }
    fn open_sweep(&mut self, dir: &Path) -> u64 {
        let c = sqlite_open(dir);
        c.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }
    fn ingest_many(&mut self, dir: &Path, runs: u64, steps: u64) -> bool {
        let c = self.conn(dir);
        insert_runs(c, runs, true);
        let rows = sweep_data(runs, steps)
            .flat_map(|(r, s, row)| row.into_iter().map(move |(k, v)| (r, s, k, num(&v))));
        Sqlite::insert_rows(c, rows);
        true
    }
    fn list_many(&mut self, dir: &Path) -> Vec<String> {
        let c = sqlite_open(dir);
        let mut stmt = c.prepare("SELECT name FROM runs ORDER BY name").unwrap();
        let names = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        names.map(|n| n.unwrap()).collect()
    }
    fn many_summary(&mut self, dir: &Path, run: u64) -> (String, SummaryMap) {
        let c = sqlite_open(dir);
        let config = c
            .query_row(
                "SELECT config FROM configs WHERE run = ?1",
                [run as i64],
                |r| r.get(0),
            )
            .unwrap();
        (config, sqlite_summary(&c, run))
    }
    fn scan(&mut self, dir: &Path, key: &str) -> Series {
        let c = self.conn(dir);
        let mut stmt = c
            .prepare_cached(
                "SELECT step, value FROM points WHERE run = 0 AND key = ?1 ORDER BY step",
            )
            .unwrap();
        let mut out = (Vec::new(), Vec::new());
        let mut rows = stmt.query([key]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            out.0.push(r.get::<_, i64>(0).unwrap() as u64);
            out.1.push(r.get(1).unwrap());
        }
        out
    }
    fn range(&mut self, dir: &Path, key: &str, from: u64, len: u64) -> Series {
        let c = self.conn(dir);
        let mut stmt = c
            .prepare_cached("SELECT step, value FROM points WHERE run = 0 AND key = ?1 AND step >= ?2 AND step < ?3 ORDER BY step")
            .unwrap();
        let mut out = (Vec::new(), Vec::new());
        let mut rows = stmt
            .query(rusqlite::params![key, from as i64, (from + len) as i64])
            .unwrap();
        while let Some(r) = rows.next().unwrap() {
            out.0.push(r.get::<_, i64>(0).unwrap() as u64);
            out.1.push(r.get(1).unwrap());
        }
        out
    }
    fn summary(&mut self, dir: &Path) -> SummaryMap {
        sqlite_summary(self.conn(dir), 0)
    }
    fn rewind_fork(&mut self, dir: &Path, step: u64) -> Option<(Duration, Duration)> {
        // The usual way: keep the old version by copying it, then delete what the new head
        // drops; a fork copies the rows up to the step.
        let c = self.conn(dir);
        let t = Instant::now();
        let tx = c.transaction().unwrap();
        tx.execute(
            "INSERT INTO points SELECT 1000, key, step, value FROM points WHERE run = 0",
            [],
        )
        .unwrap();
        tx.execute(
            "DELETE FROM points WHERE run = 0 AND step > ?1",
            [step as i64],
        )
        .unwrap();
        tx.commit().unwrap();
        let rewind = t.elapsed();
        let t = Instant::now();
        let tx = c.transaction().unwrap();
        tx.execute("INSERT INTO points SELECT 2000, key, step, value FROM points WHERE run = 0 AND step <= ?1", [step as i64])
            .unwrap();
        tx.commit().unwrap();
        let fork = t.elapsed();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM points WHERE run = 2000", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n as u64, step + 1, "sqlite fork rows");
        Some((rewind, fork))
    }
}

// ---------------------------------------------------------------- Parquet

#[derive(Default)]
pub struct Parquet;

fn parquet_props() -> WriterProperties {
    // zstd, as steplog uses; row groups at the writer's default size (1M rows), as advised.
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
        .build()
}

/// Writes rows as a wide table: `step` and one nullable f64 column per key.
fn write_wide(
    path: &Path,
    keys: &[String],
    rows: &mut dyn Iterator<Item = (u64, Vec<(&str, f64)>)>,
    extra_run: bool,
) {
    let mut fields = Vec::new();
    if extra_run {
        fields.push(Field::new("run", DataType::UInt64, false));
    }
    fields.push(Field::new("step", DataType::UInt64, false));
    fields.extend(keys.iter().map(|k| Field::new(k, DataType::Float64, true)));
    let schema = Arc::new(Schema::new(fields));
    let file = File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(parquet_props())).unwrap();
    let index: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    loop {
        let (mut runs, mut steps) = (Vec::new(), Vec::new());
        let mut cols: Vec<Vec<Option<f64>>> = vec![Vec::new(); keys.len()];
        for (step, fields) in (&mut *rows).take(65_536) {
            if extra_run {
                runs.push(step >> 32);
                steps.push(step & 0xffff_ffff);
            } else {
                steps.push(step);
            }
            for c in cols.iter_mut() {
                c.push(None);
            }
            for (k, v) in fields {
                let c = &mut cols[index[k]];
                *c.last_mut().unwrap() = Some(v);
            }
        }
        if steps.is_empty() {
            break;
        }
        let mut arrays: Vec<ArrayRef> = Vec::new();
        if extra_run {
            arrays.push(Arc::new(UInt64Array::from(runs)));
        }
        arrays.push(Arc::new(UInt64Array::from(steps)));
        arrays.extend(
            cols.into_iter()
                .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
        );
        w.write(&RecordBatch::try_new(schema.clone(), arrays).unwrap())
            .unwrap();
    }
    w.close().unwrap();
}

fn read_columns(path: &Path, names: &[&str], selection: Option<(u64, u64)>) -> Vec<RecordBatch> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let schema = builder.parquet_schema();
    let leaves: Vec<usize> = names
        .iter()
        .map(|n| {
            (0..schema.num_columns())
                .find(|&i| schema.column(i).name() == *n)
                .unwrap()
        })
        .collect();
    let mask = ProjectionMask::leaves(schema, leaves);
    let mut builder = builder.with_projection(mask).with_batch_size(65_536);
    if let Some((skip, take)) = selection {
        builder = builder.with_row_selection(RowSelection::from(vec![
            RowSelector::skip(skip as usize),
            RowSelector::select(take as usize),
        ]));
    }
    builder.build().unwrap().map(|b| b.unwrap()).collect()
}

fn series_of(batches: &[RecordBatch], key: &str) -> Series {
    let mut out = (Vec::new(), Vec::new());
    for b in batches {
        let steps = b
            .column_by_name("step")
            .unwrap()
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        let vals = b
            .column_by_name(key)
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            if vals.is_valid(i) {
                out.0.push(steps.value(i));
                out.1.push(vals.value(i));
            }
        }
    }
    out
}

fn f64_rows<'a>(
    rows: &'a [(u64, Vec<(&'static str, Value)>)],
) -> impl Iterator<Item = (u64, Vec<(&'a str, f64)>)> + 'a {
    rows.iter()
        .map(|(s, r)| (*s, r.iter().map(|(k, v)| (*k, num(v))).collect()))
}

impl System for Parquet {
    fn name(&self) -> &'static str {
        "parquet"
    }
    fn durability(&self) -> &'static str {
        "arrow-rs ArrowWriter, zstd(3), default row groups; readable only once closed, no fsync"
    }
    fn ingest(&mut self, dir: &Path, data: &Columns) {
        write_wide(
            &dir.join("run.parquet"),
            &data.keys,
            &mut f64_rows(&data.rows),
            false,
        );
    }
    fn ingest_sweep(&mut self, dir: &Path, runs: u64, steps: u64) {
        let keys: Vec<String> = ["acc", "iters", "loss", "time_ms"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut rows = sweep_data(runs, steps).map(|(r, s, row)| {
            (
                (r << 32) | s,
                row.iter().map(|(k, v)| (*k, num(v))).collect::<Vec<_>>(),
            )
        });
        write_wide(&dir.join("sweep.parquet"), &keys, &mut rows, true);
    }
    fn ingest_many(&mut self, dir: &Path, runs: u64, steps: u64) -> bool {
        let keys: Vec<String> = ["acc", "iters", "loss", "time_ms"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut rows = sweep_data(runs, steps).map(|(r, s, row)| {
            let row = row.iter().map(|(k, v)| (*k, num(v))).collect::<Vec<_>>();
            ((r << 32) | s, row)
        });
        write_wide(&dir.join("points.parquet"), &keys, &mut rows, true);
        // The runs table: id, name and config (JSON text), as a tracker's export holds it.
        let schema = Arc::new(Schema::new(vec![
            Field::new("run", DataType::UInt64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("config", DataType::Utf8, false),
        ]));
        let file = File::create(dir.join("runs.parquet")).unwrap();
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(parquet_props())).unwrap();
        for chunk in (0..runs).collect::<Vec<_>>().chunks(65_536) {
            let ids = UInt64Array::from(chunk.to_vec());
            let names = StringArray::from_iter_values(chunk.iter().map(|r| format!("run-{r}")));
            let configs = StringArray::from_iter_values(chunk.iter().map(|r| many_config(*r)));
            let arrays: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(names), Arc::new(configs)];
            w.write(&RecordBatch::try_new(schema.clone(), arrays).unwrap())
                .unwrap();
        }
        w.close().unwrap();
        true
    }
    fn list_many(&mut self, dir: &Path) -> Vec<String> {
        let batches = read_columns(&dir.join("runs.parquet"), &["name"], None);
        let mut out = Vec::new();
        for b in &batches {
            let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            out.extend(a.iter().map(|n| n.unwrap().to_owned()));
        }
        out
    }
    fn many_summary(&mut self, dir: &Path, run: u64) -> (String, SummaryMap) {
        // Row groups whose `run` statistics hold the run are read; the rows are filtered.
        let in_run = |path: &Path, f: &mut dyn FnMut(&RecordBatch, usize)| {
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
            let groups: Vec<usize> = (0..builder.metadata().num_row_groups())
                .filter(|&g| {
                    let stats = builder.metadata().row_group(g).column(0).statistics();
                    match stats {
                        Some(parquet::file::statistics::Statistics::Int64(s)) => {
                            let (lo, hi) =
                                (*s.min_opt().unwrap() as u64, *s.max_opt().unwrap() as u64);
                            (lo..=hi).contains(&run)
                        }
                        _ => true,
                    }
                })
                .collect();
            for b in builder.with_row_groups(groups).build().unwrap() {
                let b = b.unwrap();
                let ids = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
                for i in (0..b.num_rows()).filter(|&i| ids.value(i) == run) {
                    f(&b, i);
                }
            }
        };
        let mut config = String::new();
        in_run(&dir.join("runs.parquet"), &mut |b, i| {
            let c = b.column_by_name("config").unwrap();
            config = c
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(i)
                .to_owned();
        });
        let mut acc: SummaryMap = BTreeMap::new();
        in_run(&dir.join("points.parquet"), &mut |b, i| {
            for (field, col) in b.schema().fields().iter().zip(b.columns()).skip(2) {
                let a = col.as_any().downcast_ref::<Float64Array>().unwrap();
                if a.is_valid(i) {
                    let v = a.value(i);
                    let e = acc.entry(field.name().clone()).or_insert((
                        0,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        0.0,
                    ));
                    *e = (e.0 + 1, e.1.min(v), e.2.max(v), e.3 + v);
                }
            }
        });
        for e in acc.values_mut() {
            e.3 /= e.0 as f64;
        }
        (config, acc)
    }
    fn open_sweep(&mut self, dir: &Path) -> u64 {
        let batches = read_columns(&dir.join("sweep.parquet"), &["run"], None);
        let mut runs: Vec<u64> = Vec::new();
        for b in &batches {
            let a = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
            runs.extend(a.values().iter());
        }
        runs.dedup();
        runs.len() as u64
    }
    fn scan(&mut self, dir: &Path, key: &str) -> Series {
        series_of(
            &read_columns(&dir.join("run.parquet"), &["step", key], None),
            key,
        )
    }
    fn range(&mut self, dir: &Path, key: &str, from: u64, len: u64) -> Series {
        // Steps are dense in these workloads, so row i holds step i.
        series_of(
            &read_columns(&dir.join("run.parquet"), &["step", key], Some((from, len))),
            key,
        )
    }
    fn summary(&mut self, dir: &Path) -> SummaryMap {
        let path = dir.join("run.parquet");
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let names: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != "step")
            .collect();
        let mut acc: BTreeMap<String, (u64, f64, f64, f64)> = BTreeMap::new();
        for b in builder.build().unwrap() {
            let b = b.unwrap();
            for n in &names {
                let a = b
                    .column_by_name(n)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap();
                let e = acc
                    .entry(n.clone())
                    .or_insert((0, f64::INFINITY, f64::NEG_INFINITY, 0.0));
                for v in a.iter().flatten() {
                    e.0 += 1;
                    e.1 = e.1.min(v);
                    e.2 = e.2.max(v);
                    e.3 += v;
                }
            }
        }
        acc.into_iter()
            .map(|(k, (n, lo, hi, sum))| (k, (n, lo, hi, sum / n as f64)))
            .collect()
    }
}

// ---------------------------------------------------------------- raw

#[derive(Default)]
pub struct Raw;

fn raw_name(key: &str) -> String {
    key.replace('/', "_") + ".bin"
}

fn decode_pairs(bytes: &[u8]) -> Series {
    let mut out = (
        Vec::with_capacity(bytes.len() / 16),
        Vec::with_capacity(bytes.len() / 16),
    );
    for p in bytes.chunks_exact(16) {
        out.0.push(u64::from_le_bytes(p[..8].try_into().unwrap()));
        out.1.push(f64::from_le_bytes(p[8..].try_into().unwrap()));
    }
    out
}

impl System for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }
    fn durability(&self) -> &'static str {
        "buffered writes of little-endian (step, f64) pairs, one file per key, no fsync"
    }
    fn ingest(&mut self, dir: &Path, data: &Columns) {
        let mut files: HashMap<&str, BufWriter<File>> = HashMap::new();
        for (s, row) in &data.rows {
            for (k, v) in row {
                let f = files.entry(k).or_insert_with(|| {
                    BufWriter::new(File::create(dir.join(raw_name(k))).unwrap())
                });
                f.write_all(&s.to_le_bytes()).unwrap();
                f.write_all(&num(v).to_le_bytes()).unwrap();
            }
        }
        for (_, mut f) in files {
            f.flush().unwrap();
        }
    }
    fn ingest_sweep(&mut self, dir: &Path, runs: u64, steps: u64) {
        let mut current: Option<(u64, BufWriter<File>)> = None;
        for (r, s, row) in sweep_data(runs, steps) {
            if current.as_ref().is_none_or(|c| c.0 != r) {
                current = Some((
                    r,
                    BufWriter::new(File::create(dir.join(format!("run-{r}.bin"))).unwrap()),
                ));
            }
            let f = &mut current.as_mut().unwrap().1;
            for (_, v) in row {
                f.write_all(&s.to_le_bytes()).unwrap();
                f.write_all(&num(&v).to_le_bytes()).unwrap();
            }
        }
    }
    fn open_sweep(&mut self, dir: &Path) -> u64 {
        std::fs::read_dir(dir).unwrap().count() as u64
    }
    fn scan(&mut self, dir: &Path, key: &str) -> Series {
        decode_pairs(&std::fs::read(dir.join(raw_name(key))).unwrap())
    }
    fn range(&mut self, dir: &Path, key: &str, from: u64, len: u64) -> Series {
        // Dense steps: pair i holds step i.
        let f = File::open(dir.join(raw_name(key))).unwrap();
        let mut buf = vec![0u8; (len * 16) as usize];
        f.read_exact_at(&mut buf, from * 16).unwrap();
        decode_pairs(&buf)
    }
    fn summary(&mut self, dir: &Path) -> SummaryMap {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let (_, values) = decode_pairs(&std::fs::read(e.path()).unwrap());
            let name = e
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".bin")
                .to_string();
            let key = name.replacen(
                '_',
                "/",
                usize::from(name.contains("train_") || name.contains("eval_")),
            );
            let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            out.insert(key, (values.len() as u64, lo, hi, mean));
        }
        out
    }
}
