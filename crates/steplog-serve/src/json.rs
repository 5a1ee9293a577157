//! How the engine's values look in the API's JSON. JSON has no NaN or infinity: a value
//! (a summary's, a row's, a config's) that is one is written as the string `"NaN"`,
//! `"Infinity"` or `"-Infinity"`, which a reader tells from a logged string by the `kind`
//! the summary gives; a chart point that is one is `null` (a gap in the line).

use serde_json::{json, Map, Value as Json};
use steplog::{KeySummary, Row, Summary, Value, VersionInfo};

/// A logged value.
pub fn value(v: &Value) -> Json {
    match v {
        Value::F64(x) if x.is_nan() => "NaN".into(),
        Value::F64(x) if x.is_infinite() => if *x > 0.0 { "Infinity" } else { "-Infinity" }.into(),
        other => other.to_json(),
    }
}

/// A float for a chart: `null` when it is not finite.
pub fn point(x: f64) -> Json {
    serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::F64(_) => "float",
        Value::I64(_) => "int",
        Value::Bool(_) => "bool",
        Value::Str(_) => "string",
    }
}

fn at(m: &mut Map<String, Json>, name: &str, v: &Option<(u64, Value)>) {
    let (step, val) = v
        .as_ref()
        .map_or((Json::Null, Json::Null), |(s, v)| ((*s).into(), value(v)));
    m.insert(name.into(), val);
    m.insert(format!("{name}_step"), step);
}

/// One key's summary: every aggregate the engine keeps, with the step of each.
pub fn key_summary(s: &KeySummary) -> Json {
    let mut m = Map::new();
    m.insert(
        "kind".into(),
        s.last.as_ref().map_or(Json::Null, |(_, v)| kind(v).into()),
    );
    m.insert("count".into(), s.count.into());
    at(&mut m, "first", &s.first);
    at(&mut m, "last", &s.last);
    if s.is_numeric() {
        at(&mut m, "min", &s.min);
        at(&mut m, "max", &s.max);
        m.insert(
            "mean".into(),
            s.mean().map_or(Json::Null, |x| value(&Value::F64(x))),
        );
        m.insert("sum".into(), value(&Value::F64(s.sum)));
        m.insert("nan_count".into(), s.nan_count.into());
    }
    Json::Object(m)
}

/// A version's summary: its rows, last step and every key's aggregates.
pub fn summary(s: &Summary) -> Json {
    let keys: Map<String, Json> = s
        .keys
        .iter()
        .map(|(k, ks)| (k.clone(), key_summary(ks)))
        .collect();
    json!({
        "run": s.run,
        "version": s.version.to_string(),
        "last_step": s.last_step,
        "rows": s.rows,
        "keys": keys,
    })
}

/// A row of a stream: `{"step": S, "values": {key: value}}`.
pub fn row(r: &Row) -> Json {
    let values: Map<String, Json> = r
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect();
    json!({ "step": r.step, "values": values })
}

/// A version's record: id, run, status, origin, parent and branch step, config, creation.
pub fn version(v: &VersionInfo) -> Json {
    json!({
        "id": v.id.to_string(),
        "run": v.run,
        "status": v.status.name(),
        "origin": v.origin,
        "parent": v.parent.map(|p| p.version.to_string()),
        "parent_step": v.parent.map(|p| p.step),
        "restart_of": v.restart_of.map(|p| p.to_string()),
        "how": v.how_made(),
        "config": v.config,
        "created": v.created,
    })
}
