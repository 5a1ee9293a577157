//! Identifiers and values shared by every layer: version and segment ids, streams, values, rows.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The immutable id of one version of a run, shown as `v<N>` (for example `v12`).
///
/// Version ids are allocated from one counter per store and never reused, so a version id
/// names the same rows forever (until the version is purged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionId(pub(crate) u64);

impl VersionId {
    /// The number inside the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl FromStr for VersionId {
    type Err = crate::Error;
    /// Parses `v<N>` where N is a decimal number without sign.
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        let bad = |reason: &str| crate::Error::BadReference {
            reference: s.to_owned(),
            reason: reason.to_owned(),
        };
        let digits = s
            .strip_prefix('v')
            .ok_or_else(|| bad("a version id is 'v' and a number (v12)"))?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("a version id is 'v' and a number (v12)"));
        }
        digits
            .parse()
            .map(VersionId)
            .map_err(|_| bad("the version number does not fit in 64 bits"))
    }
}

/// The id of one segment file; its file name is the id zero-padded to 16 digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct SegmentId(pub(crate) u64);

impl SegmentId {
    pub(crate) fn file_name(self) -> String {
        format!("{:016}.seg", self.0)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016}", self.0)
    }
}

/// The streams of a run. Every row of every stream carries a step, so a rewind or a fork cuts
/// all streams at the same step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The metrics history (the default). Calls at one step merge into one row.
    History,
    /// System metrics (GPU, memory, ...). Calls at one step merge into one row.
    System,
    /// Console lines. Every call is its own row; several rows may share a step.
    Console,
}

impl Stream {
    /// All streams, in their on-disk order.
    pub const ALL: [Stream; 3] = [Stream::History, Stream::System, Stream::Console];

    /// The stream's name as used by the CLI (`history`, `system`, `console`).
    pub fn name(self) -> &'static str {
        match self {
            Stream::History => "history",
            Stream::System => "system",
            Stream::Console => "console",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Stream::History => 0,
            Stream::System => 1,
            Stream::Console => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Stream> {
        Stream::ALL.get(code as usize).copied()
    }

    pub(crate) fn index(self) -> usize {
        self.code() as usize
    }

    /// Whether several calls at one step merge into one row (`history`, `system`) or each
    /// call is a row of its own (`console`).
    pub fn merges_steps(self) -> bool {
        !matches!(self, Stream::Console)
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stream {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        match s {
            "history" => Ok(Stream::History),
            "system" => Ok(Stream::System),
            "console" => Ok(Stream::Console),
            other => Err(crate::Error::InvalidInput(format!(
                "unknown stream '{other}' (expected history, system or console)"
            ))),
        }
    }
}

/// One logged value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A float (NaN and infinities allowed).
    F64(f64),
    /// A signed integer.
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
}

impl Value {
    /// Whether two values are the same to the bit: a NaN is the same NaN as itself, and 0.0
    /// is not -0.0 (what a copy of stored rows must keep, unlike `==` on floats).
    pub(crate) fn same_bits(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
            _ => self == other,
        }
    }

    /// The value as a float, for numeric values (`F64` and `I64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F64(v) => Some(*v),
            Value::I64(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// Whether the value counts as numeric for summaries (`F64` and `I64`).
    pub fn is_numeric(&self) -> bool {
        matches!(self, Value::F64(_) | Value::I64(_))
    }

    /// The value as JSON. NaN and infinities, which JSON cannot hold, become `null`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::F64(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::I64(v) => serde_json::Value::from(*v),
            Value::Bool(v) => serde_json::Value::Bool(*v),
            Value::Str(v) => serde_json::Value::String(v.clone()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::F64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => f.write_str(v),
        }
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::F64(v as f64)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I64(v as i64)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::I64(v as i64)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

/// One row of a stream: a step and its named values, keys in sorted order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The step the row was logged at.
    pub step: u64,
    /// The values, by key.
    pub fields: BTreeMap<String, Value>,
}

impl Row {
    /// The row as a JSON object `{"_step": S, key: value, ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("_step".into(), serde_json::Value::from(self.step));
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.to_json());
        }
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_round_trip_and_reject_lookalikes() {
        assert_eq!("v12".parse::<VersionId>().unwrap(), VersionId(12));
        assert_eq!(VersionId(7).to_string(), "v7");
        for bad in [
            "v",
            "12",
            "v-1",
            "v1x",
            "V1",
            "v+1",
            "v99999999999999999999999",
        ] {
            assert!(bad.parse::<VersionId>().is_err(), "{bad} parsed");
        }
    }
}
