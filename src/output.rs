//! Output formatting: JSON (with Python's bare `NaN`/`Infinity` for non-finite floats, so
//! that values round-trip through `steplog log`), CSV and aligned tables.

use std::collections::BTreeMap;
use std::io::Write;

use steplog::{KeySummary, Row, Summary, Value};

const NONFINITE: &str = "\u{0}steplog-nonfinite:";

/// `1 row`, `3 rows`: a count with its noun, in the user's words.
pub fn count(n: u64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// What `steplog verify` prints, and the demo's last step: notes, every problem, then one
/// line `ok: …` or `corrupt: …`, each line after `indent`.
pub fn write_verify(
    report: &steplog::VerifyReport,
    indent: &str,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for n in &report.notes {
        writeln!(out, "{indent}note: {n}")?;
    }
    for p in &report.problems {
        writeln!(out, "{indent}FAILED: {p}")?;
    }
    writeln!(
        out,
        "{indent}{}: {}, {}, {} checked, {}",
        if report.is_ok() { "ok" } else { "corrupt" },
        count(report.files as u64, "file", "files"),
        count(report.blocks, "block", "blocks"),
        count(report.edits, "manifest edit", "manifest edits"),
        count(report.problems.len() as u64, "problem", "problems"),
    )
}

/// Records printed one at a time as JSON Lines, or as one JSON array (`[` before the first,
/// `,` between, `]` after the last: streamed, never held whole).
pub struct Records {
    array: bool,
    written: u64,
}

impl Records {
    /// Records in `format` (a table prints none: its rows are the caller's).
    pub fn new(format: crate::args::TableFormat) -> Records {
        Records {
            array: format == crate::args::TableFormat::Json,
            written: 0,
        }
    }

    /// One record.
    pub fn write(&mut self, out: &mut impl Write, v: &serde_json::Value) -> std::io::Result<()> {
        let sep = match (self.array, self.written) {
            (false, _) => "",
            (true, 0) => "[",
            (true, _) => ",",
        };
        self.written += 1;
        writeln!(out, "{sep}{}", json_text(v))
    }

    /// After the last record: the array's end (`[]` for none).
    pub fn end(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        match (self.array, self.written) {
            (false, _) => Ok(()),
            (true, 0) => writeln!(out, "[]"),
            (true, _) => writeln!(out, "]"),
        }
    }
}

/// A value as JSON; non-finite floats become placeholders that [`json_text`] writes bare.
pub fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::F64(x) if !x.is_finite() => {
            let t = if x.is_nan() {
                "NaN"
            } else if *x > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            serde_json::Value::String(format!("{NONFINITE}{t}"))
        }
        other => other.to_json(),
    }
}

/// JSON text of `v`, writing non-finite float placeholders as bare `NaN`/`Infinity`.
pub fn json_text(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if !text.contains("\\u0000steplog-nonfinite:") {
        return text;
    }
    ["NaN", "-Infinity", "Infinity"]
        .iter()
        .fold(text, |t, tok| {
            t.replace(&format!("\"\\u0000steplog-nonfinite:{tok}\""), tok)
        })
}

pub fn row_json(row: &Row) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("_step".into(), row.step.into());
    for (k, v) in &row.fields {
        map.insert(k.clone(), value_json(v));
    }
    serde_json::Value::Object(map)
}

/// A CSV field. Floats are written in the shortest form that reads back to the same bits,
/// always as a float (`3.0`, `-0.0`, `5e-324`, `1.8e308`: never 327 digits, never an
/// integer-looking `3`); non-finite ones as `NaN`, `Infinity`, `-Infinity` (as the JSON
/// output writes them, and as pandas, DuckDB and Python's `float` read them).
pub fn csv_field(v: Option<&Value>) -> String {
    let text = match v {
        None => return String::new(),
        Some(Value::Str(s)) => s.clone(),
        Some(Value::F64(x)) if x.is_nan() => "NaN".into(),
        Some(Value::F64(x)) if x.is_infinite() => {
            if *x > 0.0 { "Infinity" } else { "-Infinity" }.into()
        }
        // Debug is the shortest round-trip form, with an exponent when that is shorter.
        Some(Value::F64(x)) => format!("{x:?}"),
        Some(v) => v.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn opt_value(v: &Option<(u64, Value)>) -> serde_json::Value {
    v.as_ref()
        .map_or(serde_json::Value::Null, |(_, v)| value_json(v))
}

fn opt_step(v: &Option<(u64, Value)>) -> serde_json::Value {
    v.as_ref()
        .map_or(serde_json::Value::Null, |(s, _)| (*s).into())
}

pub fn key_summary_json(s: &KeySummary) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("count".into(), s.count.into());
    if s.is_numeric() {
        m.insert("first".into(), opt_value(&s.first));
        m.insert("last".into(), opt_value(&s.last));
        m.insert("min".into(), opt_value(&s.min));
        m.insert("max".into(), opt_value(&s.max));
        m.insert(
            "mean".into(),
            s.mean()
                .map_or(serde_json::Value::Null, |x| value_json(&Value::F64(x))),
        );
        m.insert("sum".into(), value_json(&Value::F64(s.sum)));
        m.insert("nan_count".into(), s.nan_count.into());
        m.insert("first_step".into(), opt_step(&s.first));
        m.insert("last_step".into(), opt_step(&s.last));
        m.insert("min_step".into(), opt_step(&s.min));
        m.insert("max_step".into(), opt_step(&s.max));
    } else {
        m.insert("last".into(), opt_value(&s.last));
        m.insert("last_step".into(), opt_step(&s.last));
    }
    serde_json::Value::Object(m)
}

/// Writes a summary as one JSON object (and a newline), a key at a time: a run of 200,000
/// keys is never held as one JSON value. `imported` is what the source of an imported run
/// summarised.
pub fn write_summary_json(
    out: &mut impl Write,
    s: &Summary,
    imported: Option<&serde_json::Value>,
) -> std::io::Result<()> {
    let head = json_text(&serde_json::json!({
        "run": s.run,
        "version": s.version.to_string(),
        "last_step": s.last_step,
        "rows": s.rows,
    }));
    // `head` is an object: drop its closing brace and go on with the metrics.
    write!(out, "{},\"metrics\":{{", &head[..head.len() - 1])?;
    for (i, (k, v)) in s.keys.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let name = serde_json::Value::from(k.as_str());
        write!(out, "{sep}{name}:{}", json_text(&key_summary_json(v)))?;
    }
    out.write_all(b"}")?;
    if let Some(i) = imported {
        write!(out, ",\"imported\":{}", json_text(i))?;
    }
    out.write_all(b"}\n")
}

/// A number in at most ~7 significant characters, for tables and charts.
pub fn short(x: f64) -> String {
    if x.is_nan() || x.is_infinite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e7).contains(&a) {
        format!("{x:.3e}")
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.chars().take(if x < 0.0 { 9 } else { 8 }).collect()
    }
}

fn cell(v: &Option<(u64, Value)>) -> String {
    match v {
        None => String::new(),
        Some((_, Value::F64(x))) => short(*x),
        Some((_, v)) => v.to_string(),
    }
}

/// A sparkline of at most `width` characters (one per value when the key has fewer) of the
/// metric `key`: one character per M4 bucket (`Store::downsample_snapped`), scaled between the
/// lowest and highest of them; blank where a bucket has no point, empty when the key has no
/// numeric value. A bucket shows its extreme farthest from its last value, so a one-step
/// spike (up or down) stays visible in 24 characters.
pub fn sparkline(
    snap: &steplog::Snapshot,
    reference: impl steplog::IntoReference,
    key: &str,
    width: usize,
    values: u64,
) -> steplog::Result<String> {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let width = width.min(usize::try_from(values).unwrap_or(usize::MAX));
    let Some(d) = snap.downsample_snapped(reference, key, .., width)? else {
        return Ok(String::new());
    };
    let vals: Vec<Option<f64>> = d
        .buckets
        .iter()
        .map(|b| b.and_then(|b| bucket_value(&b)))
        .collect();
    let (lo, hi) = vals
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return Ok(String::new());
    }
    Ok(vals
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if hi == lo => BARS[3],
            Some(v) => BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize],
        })
        .collect())
}

fn bucket_value(b: &steplog::Bucket) -> Option<f64> {
    let last = Some(b.last.1).filter(|v| v.is_finite());
    let (lo, hi) = (b.min.map(|m| m.1), b.max.map(|m| m.1));
    match (last, lo, hi) {
        (Some(l), Some(lo), Some(hi)) => Some(if hi - l >= l - lo { hi } else { lo }),
        (l, lo, hi) => l.or(hi).or(lo),
    }
    .filter(|v| v.is_finite())
}

/// The summary as a table, with a sparkline per key (`sparks`, by key).
pub fn summary_table(s: &Summary, sparks: &BTreeMap<String, String>) -> String {
    let mut rows = Vec::new();
    for (k, v) in &s.keys {
        rows.push(vec![
            k.clone(),
            sparks.get(k).cloned().unwrap_or_default(),
            v.count.to_string(),
            cell(&v.first),
            cell(&v.last),
            cell(&v.min),
            cell(&v.max),
            v.mean().map_or(String::new(), short),
            v.nan_count.to_string(),
        ]);
    }
    let head = format!(
        "run {} · version {} · {} · last step {}\n",
        s.run,
        s.version,
        count(s.rows, "row", "rows"),
        s.last_step.map_or("-".to_string(), |x| x.to_string())
    );
    head + &table(
        &[
            "key", "trend", "count", "first", "last", "min", "max", "mean", "nan",
        ],
        &rows,
    )
}

/// A table written line by line, its columns as wide as given (the last column is not
/// padded): for listings too long to hold before their widths are known.
pub struct Columns {
    widths: Vec<usize>,
}

impl Columns {
    /// Columns of these widths (in characters); cells past them are written unpadded.
    pub fn new(widths: Vec<usize>) -> Columns {
        Columns { widths }
    }

    /// One line of cells: left-aligned, two spaces apart, no trailing spaces.
    fn format(&self, cells: impl Iterator<Item = String>) -> String {
        let mut line = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let w = self.widths.get(i).copied().unwrap_or(0);
            line.push_str(&format!("{c:<w$}"));
        }
        line.truncate(line.trim_end().len());
        line.push('\n');
        line
    }

    /// Writes one line of cells.
    pub fn line(
        &self,
        out: &mut impl Write,
        cells: impl Iterator<Item = String>,
    ) -> std::io::Result<()> {
        out.write_all(self.format(cells).as_bytes())
    }
}

/// A table held whole: left-aligned columns as wide as their widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let t = Columns::new(widths);
    let mut out = t.format(headers.iter().map(|h| h.to_string()));
    for r in rows {
        out += &t.format(r.iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_are_written_as_python_does() {
        let row = Row {
            step: 1,
            fields: [
                ("a".to_string(), Value::F64(f64::NAN)),
                ("b".to_string(), Value::F64(f64::NEG_INFINITY)),
                ("c".to_string(), Value::Str("NaN".into())),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            json_text(&row_json(&row)),
            r#"{"_step":1,"a":NaN,"b":-Infinity,"c":"NaN"}"#
        );
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(
            csv_field(Some(&Value::Str("a,\"b\"".into()))),
            "\"a,\"\"b\"\"\""
        );
        assert_eq!(csv_field(Some(&Value::I64(3))), "3");
        assert_eq!(csv_field(None), "");
    }

    #[test]
    fn csv_floats_are_short_round_trips_and_one_spelling_of_non_finite() {
        let cases = [
            (5e-324, "5e-324"),
            (1.7e308, "1.7e308"),
            (3.0, "3.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            let got = csv_field(Some(&Value::F64(x)));
            assert_eq!(got, want);
            let back: f64 = got.parse().unwrap();
            assert!(
                back.to_bits() == x.to_bits() || (x.is_nan() && back.is_nan()),
                "{got}"
            );
        }
    }
}
