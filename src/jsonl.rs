//! JSON Lines ingest: one JSON object per line becomes one row. Nested objects flatten with
//! `/` (`{"train": {"loss": 1}}` is `train/loss`), `_step` sets the step, integers become
//! `i64`, other numbers `f64`; `null` values are skipped. Python's bare `NaN`, `Infinity`
//! and `-Infinity` (what `json.dumps` writes for them) are accepted.

use crate::error::{Error, Result};
use crate::types::Value;

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The `_step` field, if present.
    pub step: Option<u64>,
    /// The values, with flattened keys.
    pub fields: Vec<(String, Value)>,
}

const SENTINEL: &str = "\u{0}steplog-float:";

/// Parses one line (`line_no` is 1-based, used in errors). Blank lines give `None`.
pub fn parse_line(text: &str, line_no: u64) -> Result<Option<Line>> {
    let bad = |reason: String| Error::BadLine {
        line: line_no,
        reason,
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value = parse_json(text).map_err(|first| bad(format!("not valid JSON: {first}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad("expected a JSON object".into()));
    };
    let mut line = Line {
        step: None,
        fields: Vec::new(),
    };
    for (k, v) in map {
        if k == "_step" {
            let step = v
                .as_u64()
                .ok_or_else(|| bad(format!("_step must be a non-negative integer, not {v}")))?;
            line.step = Some(step);
            continue;
        }
        flatten(&k, v, &mut line.fields).map_err(bad)?;
    }
    Ok(Some(line))
}

fn flatten(key: &str, v: serde_json::Value, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    match v {
        serde_json::Value::Array(_) => Err(format!(
            "'{key}': arrays are not supported (log one key per value)"
        )),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{key}/{k}"), v, out)?;
            }
            Ok(())
        }
        leaf => {
            if let Some(value) = scalar(key, leaf)? {
                out.push((key.to_owned(), value));
            }
            Ok(())
        }
    }
}

/// The steplog value of a JSON scalar (`None` for `null`; arrays and objects are not
/// scalars and give `None` too). Integers become `i64`, other numbers `f64`, and the
/// sentinels [`parse_json`] puts for bare `NaN`/`Infinity` become those floats.
pub(crate) fn scalar(key: &str, v: serde_json::Value) -> Result<Option<Value>, String> {
    Ok(Some(match v {
        serde_json::Value::Null | serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            return Ok(None)
        }
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::I64(i),
            (None, Some(f)) if n.is_f64() => Value::F64(f),
            _ => {
                return Err(format!(
                    "'{key}': integer {n} does not fit in a signed 64-bit integer"
                ))
            }
        },
        serde_json::Value::String(s) => match s.strip_prefix(SENTINEL) {
            Some("NaN") => Value::F64(f64::NAN),
            Some("Infinity") => Value::F64(f64::INFINITY),
            Some("-Infinity") => Value::F64(f64::NEG_INFINITY),
            _ => Value::Str(s),
        },
    }))
}

/// Parses JSON text as Python's `json.dumps` writes it: bare `NaN`, `Infinity` and
/// `-Infinity` are accepted (as sentinel strings that [`scalar`] turns back into floats).
pub(crate) fn parse_json(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(text)
        .or_else(|first| serde_json::from_str(&replace_bare_floats(text)).map_err(|_| first))
}

/// Replaces bare `NaN`, `Infinity` and `-Infinity` outside strings by sentinel strings.
fn replace_bare_floats(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let (mut in_str, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push('"');
            out.push_str(&SENTINEL.replace('\u{0}', "\\u0000"));
            out.push_str(t);
            out.push('"');
            rest = &rest[t.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_exactly() {
        // serde_json's default float parser may be one ulp off; steplog needs the exact value.
        for x in [1.0 / 11.0, 0.1, 1e-300, 2.0f64.sqrt(), 0.07692307692307693] {
            let line = parse_line(&format!("{{\"x\": {x}}}"), 1).unwrap().unwrap();
            assert_eq!(line.fields, vec![("x".to_string(), Value::F64(x))], "{x}");
        }
    }

    #[test]
    fn flattens_and_types_values() {
        let l = parse_line(
            r#"{"_step": 5, "train": {"loss": 0.5, "n": 3}, "ok": true, "s": "x", "z": null}"#,
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(l.step, Some(5));
        assert_eq!(
            l.fields,
            vec![
                ("train/loss".to_string(), Value::F64(0.5)),
                ("train/n".to_string(), Value::I64(3)),
                ("ok".to_string(), Value::Bool(true)),
                ("s".to_string(), Value::Str("x".into())),
            ]
        );
    }

    #[test]
    fn accepts_python_nan_and_infinity_outside_strings() {
        let l = parse_line(r#"{"a": NaN, "b": -Infinity, "c": "NaN Infinity"}"#, 1)
            .unwrap()
            .unwrap();
        assert!(matches!(l.fields[0].1, Value::F64(x) if x.is_nan()));
        assert_eq!(l.fields[1].1, Value::F64(f64::NEG_INFINITY));
        assert_eq!(l.fields[2].1, Value::Str("NaN Infinity".into()));
    }

    #[test]
    fn bad_lines_name_their_number() {
        for bad in [
            "{",
            "[1]",
            r#"{"_step": -1}"#,
            r#"{"_step": 1.5}"#,
            r#"{"a": [1]}"#,
            r#"{"a": 18446744073709551615}"#,
        ] {
            match parse_line(bad, 7) {
                Err(Error::BadLine { line: 7, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(parse_line("   ", 1).unwrap(), None);
    }
}
