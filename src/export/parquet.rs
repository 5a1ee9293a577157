//! Parquet (arrow-rs): one nullable typed column per key, zstd, row groups of at most
//! `ROW_GROUP` rows, built block by block from `Store::chunks`.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use steplog::{ChunkColumn, ChunkValues, Query, Store, Value};

use super::{columns, Kind, Source};
use crate::error::{CliError, CliResult};
use crate::outfile::Sink;
use crate::output::{self, json_text};

pub(super) const ROW_GROUP: usize = 65_536;

/// Builders for one row group.
pub(super) enum Builder {
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
pub(super) struct RowGroup {
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

pub(super) fn parquet_error(path: &str) -> impl Fn(parquet::errors::ParquetError) -> CliError + '_ {
    move |e| CliError::Usage(format!("writing Parquet {path}: {e}"))
}

pub(super) fn write_parquet(
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
            .map(|(k, kind)| Field::new(k, data_type(*kind), true)),
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

/// The Arrow type of a column of this kind.
fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Str => DataType::Utf8,
    }
}
