//! JSON Lines ingest: one JSON object per line becomes one row. Nested objects flatten with
//! `/` (`{"train": {"loss": 1}}` is `train/loss`), `_step` sets the step, integers become
//! `i64`, other numbers `f64`; `null` values are skipped. Python's bare `NaN`, `Infinity`
//! and `-Infinity` (what `json.dumps` writes for them) are accepted.

use crate::error::{Error, Result};
use steplog::Value;

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The `_step` field, if present.
    pub step: Option<u64>,
    /// The values, with flattened keys.
    pub fields: Vec<(String, Value)>,
}

/// JSON text parsed as Python's `json.dumps` writes it. Bare `NaN`, `Infinity` and
/// `-Infinity` (which JSON has no syntax for) are carried as strings starting with `marker`,
/// a prefix chosen so that no string of the line itself starts with it: user data can never
/// turn into a float this way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub value: serde_json::Value,
    pub marker: Option<String>,
}

/// Parses one line (`line_no` is 1-based, used in errors). Blank lines give `None`.
///
/// The rules, the same for the CLI, the importers and (through the library) Python: `_step`
/// is the step (an integer from 0 to [`MAX_STEP`](steplog::limits::MAX_STEP)); keys are joined
/// with `/` and must pass [`check_key`](steplog::limits::check_key); integers must fit an `i64`
/// (a larger integer is an error, never silently a float); other numbers are `f64`; `null`
/// is skipped; arrays are refused.
pub fn parse_line(text: &str, line_no: u64) -> Result<Option<Line>> {
    let bad = |reason: String| Error::BadLine {
        line: line_no,
        reason,
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let parsed = parse_json(text).map_err(|e| bad(json_error(&e)))?;
    let marker = parsed.marker.as_deref();
    let serde_json::Value::Object(map) = parsed.value else {
        return Err(bad("expected a JSON object".into()));
    };
    let mut line = Line {
        step: None,
        fields: Vec::new(),
    };
    for (k, v) in map {
        if k == steplog::limits::STEP_KEY {
            let step = v
                .as_u64()
                .filter(|&s| s <= steplog::limits::MAX_STEP)
                .ok_or_else(|| {
                    bad(format!(
                        "_step must be an integer from 0 to {}, not {}",
                        steplog::limits::MAX_STEP,
                        shown(&v, marker)
                    ))
                })?;
            line.step = Some(step);
            continue;
        }
        flatten(&k, v, marker, &mut line.fields).map_err(bad)?;
    }
    Ok(Some(line))
}

/// A JSON value as the user wrote it (a marked float as its bare word).
fn shown(v: &serde_json::Value, marker: Option<&str>) -> String {
    match (v, marker) {
        (serde_json::Value::String(s), Some(m)) if s.starts_with(m) => s[m.len()..].to_owned(),
        _ => v.to_string(),
    }
}

fn flatten(
    key: &str,
    v: serde_json::Value,
    marker: Option<&str>,
    out: &mut Vec<(String, Value)>,
) -> Result<(), String> {
    match v {
        serde_json::Value::Array(_) => Err(format!(
            "'{key}': arrays are not supported (log one key per value)"
        )),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{key}/{k}"), v, marker, out)?;
            }
            Ok(())
        }
        leaf => {
            steplog::limits::check_key(key).map_err(|reason| format!("key '{key}': {reason}"))?;
            if let Some(value) = scalar(key, leaf, marker)? {
                out.push((key.to_owned(), value));
            }
            Ok(())
        }
    }
}

/// The steplog value of a JSON scalar (`None` for `null`; arrays and objects are not
/// scalars and give `None` too). Integers become `i64`, other numbers `f64`, and strings
/// starting with the `marker` of [`parse_json`] the non-finite floats they stand for.
pub(crate) fn scalar(
    key: &str,
    v: serde_json::Value,
    marker: Option<&str>,
) -> Result<Option<Value>, String> {
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
        serde_json::Value::String(s) => match marker.and_then(|m| s.strip_prefix(m)) {
            Some("NaN") => Value::F64(f64::NAN),
            Some("Infinity") => Value::F64(f64::INFINITY),
            Some("-Infinity") => Value::F64(f64::NEG_INFINITY),
            _ => Value::Str(s),
        },
    }))
}

/// A value with its marked floats turned back into the words `NaN`, `Infinity`,
/// `-Infinity` (for JSON kept as JSON, such as configs, which cannot hold such floats).
pub(crate) fn unmarked(v: serde_json::Value, marker: Option<&str>) -> serde_json::Value {
    use serde_json::Value as J;
    match (v, marker) {
        (J::String(s), Some(m)) if s.starts_with(m) => J::String(s[m.len()..].to_owned()),
        (J::Object(map), m) => {
            J::Object(map.into_iter().map(|(k, v)| (k, unmarked(v, m))).collect())
        }
        (J::Array(a), m) => J::Array(a.into_iter().map(|v| unmarked(v, m)).collect()),
        (v, _) => v,
    }
}

/// serde_json's message for a line, with its position as a column only: the line number is
/// the input's, which the error names already (`line 2: not valid JSON at column 12: ...`,
/// not `line 2: ... at line 1 column 12`).
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(message) if e.line() > 0 => {
            format!("not valid JSON at column {}: {message}", e.column())
        }
        _ => format!("not valid JSON: {text}"),
    }
}

/// Parses JSON text as Python's `json.dumps` writes it: bare `NaN`, `Infinity` and
/// `-Infinity` are accepted (as marked strings that [`scalar`] turns back into floats). An
/// integer too large for an `i64` or `u64`, which serde_json would quietly read as a float,
/// is an error.
pub(crate) fn parse_json(text: &str) -> Result<Parsed, serde_json::Error> {
    use serde::de::Error as _;
    let parsed = match serde_json::from_str(text) {
        Ok(value) => Parsed {
            value,
            marker: None,
        },
        Err(first) => (0..16)
            .find_map(|nonce| {
                let marker = format!("\u{0}steplog-float-{nonce}:");
                let (replaced, n) = replace_bare_floats(text, &marker);
                let value: serde_json::Value = serde_json::from_str(&replaced).ok()?;
                // Every marked string is one this function put there: none is the user's.
                (n > 0 && count_marked(&value, &marker) == n).then(|| Parsed {
                    value,
                    marker: Some(marker),
                })
            })
            .ok_or(first)?,
    };
    if has_big_float(&parsed.value) {
        if let Some(token) = overflowing_integer(text) {
            return Err(serde_json::Error::custom(format!(
                "integer {token} does not fit in a 64-bit integer"
            )));
        }
    }
    Ok(parsed)
}

fn count_marked(v: &serde_json::Value, marker: &str) -> usize {
    match v {
        serde_json::Value::String(s) => usize::from(s.starts_with(marker)),
        serde_json::Value::Array(a) => a.iter().map(|v| count_marked(v, marker)).sum(),
        serde_json::Value::Object(m) => m.values().map(|v| count_marked(v, marker)).sum(),
        _ => 0,
    }
}

/// Whether a float at least 2^63 in size was parsed: the only way an integer literal that
/// overflowed can show up (then the text is scanned to tell which it was).
fn has_big_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64() && n.as_f64().is_some_and(|f| f.abs() >= 9.2e18),
        serde_json::Value::Array(a) => a.iter().any(has_big_float),
        serde_json::Value::Object(m) => m.values().any(has_big_float),
        _ => false,
    }
}

/// The first integer literal outside strings (digits with no fraction or exponent) that fits
/// neither an `i64` nor a `u64`.
fn overflowing_integer(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let (mut i, mut in_str, mut escaped) = (0, false, false);
    while i < b.len() {
        let c = b[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
            i += 1;
            continue;
        }
        if c == b'-' || c.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let is_float = i < b.len() && matches!(b[i], b'.' | b'e' | b'E');
            let token = &text[start..i];
            if !is_float && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                return Some(token.to_owned());
            }
            while i < b.len()
                && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E' | b'+' | b'-'))
            {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    None
}

/// Replaces bare `NaN`, `Infinity` and `-Infinity` outside strings by strings starting with
/// `marker`; returns the text and how many were replaced.
fn replace_bare_floats(text: &str, marker: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len() + 32);
    let escaped_marker = marker.replace('\u{0}', "\\u0000");
    let (mut in_str, mut escaped, mut count) = (false, false, 0);
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
            out.push_str(&escaped_marker);
            out.push_str(t);
            out.push('"');
            rest = &rest[t.len()..];
            count += 1;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    (out, count)
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
            r#"{"a": 123456789012345678901234567890}"#,
            r#"{"a": -99999999999999999999}"#,
            r#"{"_step": 9223372036854775808}"#,
            r#"{"_step": NaN}"#,
            r#"{"a": {"": 1}}"#,
            r#"{"": 1}"#,
            r#"{"a/": 1}"#,
            r#"{"a": {"_step": 1}, "_step": 1, "b": {"c": {"": 2}}}"#,
        ] {
            match parse_line(bad, 7) {
                Err(Error::BadLine { line: 7, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(parse_line("   ", 1).unwrap(), None);
        let Err(Error::BadLine { reason, .. }) = parse_line(r#"{"_step": NaN}"#, 1) else {
            panic!("NaN step accepted");
        };
        assert!(
            reason.contains("not NaN"),
            "the error shows what was written: {reason}"
        );
    }

    #[test]
    fn user_strings_never_become_floats() {
        // The markers steplog uses for bare NaN are never taken from the user's strings, with
        // or without a bare NaN on the same line.
        for text in [
            r#"{"s": "\u0000steplog-float:NaN"}"#,
            r#"{"s": "\u0000steplog-float-0:NaN", "x": NaN}"#,
            r#"{"s": "\u0000steplog-float-0:Infinity", "t": "\u0000steplog-float-1:NaN", "x": NaN}"#,
        ] {
            let l = parse_line(text, 1).unwrap().unwrap();
            assert!(
                matches!(&l.fields[0].1, Value::Str(s) if s.contains("steplog-float")),
                "{text}"
            );
            if let Some((_, x)) = l.fields.iter().find(|(k, _)| k == "x") {
                assert!(matches!(x, Value::F64(f) if f.is_nan()));
            }
        }
        // Big floats are floats; big integers are errors.
        let l = parse_line(r#"{"a": 1e30, "b": 12345678901234567890.5}"#, 1)
            .unwrap()
            .unwrap();
        assert_eq!(l.fields[0].1, Value::F64(1e30));
        let l = parse_line(
            r#"{"a": 9223372036854775807, "s": "123456789012345678901234567890"}"#,
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(l.fields[0].1, Value::I64(i64::MAX));
    }
}
