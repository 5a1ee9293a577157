//! CSV: a header `[run,version,]_step,KEY...`, then a line per row, read column by column.

use std::io::Write;

use steplog::{ChunkColumn, ChunkValues, Query, Store, Value};

use super::{columns, Source};
use crate::error::CliResult;
use crate::output;

/// CSV with a header: `[run,version,]_step,KEY...`; cells as `history --format csv`. Read
/// column by column (`Store::chunks`); `each` is told the rows written so far per block.
pub(super) fn write_csv(
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
