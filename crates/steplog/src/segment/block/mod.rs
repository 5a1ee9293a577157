//! A block: a batch of rows, column-encoded, each column compressed on its own, inside a
//! crc32-checked frame. The bytes are docs/FORMAT.md's, "Block frame" (the one place the
//! grammar lives); a reader of one metric decompresses the directory and that metric's
//! section only.
//!
//! - `frame.rs`: the frame header and its checksums;
//! - `section.rs`: a section stored raw or zstd, and the per-thread zstd contexts;
//! - `columns.rs`: steps, presence and values encoded by kind;
//! - `value.rs`: tagged values (mixed columns, footers' aggregates);
//! - `encode.rs` and `decode.rs`: a block to a frame and back;
//! - here: the in-memory block (`Block`, `Column`, typed `Values`).

mod columns;
mod decode;
mod encode;
mod frame;
mod section;
mod value;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use decode::decode;
pub(crate) use decode::{decode_keys, steps_at_most, FrameError};
pub(crate) use encode::encode;
pub(crate) use frame::{
    is_frame_magic, payload_crc, FrameHeader, FRAME_HEADER_LEN, FRAME_MAGIC, MAX_BLOCK_ROWS,
};
pub(crate) use section::{put_section, section as stored_section};
pub(crate) use value::{get_value, put_value};

use std::collections::BTreeMap;

use crate::types::{Row, Value};

/// A decoded block: its steps and its columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Block {
    pub steps: Vec<u64>,
    pub columns: Vec<Column>,
}

/// One key's values in a block: the rows it is present in, and the values there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub key: String,
    pub rows: Vec<u32>,
    pub values: Values,
}

/// A column's values, typed as stored: floats or integers when every value of the column
/// has that type (the usual case), otherwise any [`Value`]. Logging, encoding, summarising
/// and reading a metric never go through `Value` for the typed ones. Public as
/// [`ChunkValues`](crate::ChunkValues), what `Store::chunks` hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Floats.
    F64(Vec<f64>),
    /// Integers.
    I64(Vec<i64>),
    /// Mixed, booleans or strings.
    Any(Vec<Value>),
}

impl Default for Values {
    fn default() -> Self {
        Values::F64(Vec::new())
    }
}

impl Values {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::Any(v) => v.len(),
        }
    }

    /// Whether there is no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values at `range` (of the same type), the rest dropped.
    pub(crate) fn into_range(self, range: std::ops::Range<usize>) -> Values {
        match self {
            Values::F64(mut x) => Values::F64(x.drain(range).collect()),
            Values::I64(mut x) => Values::I64(x.drain(range).collect()),
            Values::Any(mut x) => Values::Any(x.drain(range).collect()),
        }
    }

    /// An empty column suited to values like `v`.
    pub(crate) fn for_value(v: &Value) -> Values {
        match v {
            Value::F64(_) => Values::F64(Vec::new()),
            Value::I64(_) => Values::I64(Vec::new()),
            _ => Values::Any(Vec::new()),
        }
    }

    /// Empties these values to hold values like `v`, keeping their buffer where it can.
    pub(crate) fn reuse_for(&mut self, v: &Value) {
        match (&mut *self, v) {
            (Values::F64(xs), Value::F64(_)) => xs.clear(),
            (Values::I64(xs), Value::I64(_)) => xs.clear(),
            (Values::Any(xs), Value::Bool(_) | Value::Str(_)) => xs.clear(),
            _ => *self = Values::for_value(v),
        }
    }

    /// The `i`-th value (`i` < `len`).
    pub(crate) fn get(&self, i: usize) -> Value {
        match self {
            Values::F64(v) => Value::F64(v[i]),
            Values::I64(v) => Value::I64(v[i]),
            Values::Any(v) => v[i].clone(),
        }
    }

    /// The `i`-th value as a float, if numeric.
    pub(crate) fn f64_at(&self, i: usize) -> Option<f64> {
        match self {
            Values::F64(v) => Some(v[i]),
            Values::I64(v) => Some(v[i] as f64),
            Values::Any(v) => v[i].as_f64(),
        }
    }

    /// The last value if it is an integer (for delta size estimates).
    pub(crate) fn last_i64(&self) -> Option<i64> {
        match self {
            Values::I64(v) => v.last().copied(),
            Values::Any(v) => match v.last() {
                Some(Value::I64(x)) => Some(*x),
                _ => None,
            },
            Values::F64(_) => None,
        }
    }

    fn into_any(self) -> Vec<Value> {
        match self {
            Values::F64(v) => v.into_iter().map(Value::F64).collect(),
            Values::I64(v) => v.into_iter().map(Value::I64).collect(),
            Values::Any(v) => v,
        }
    }

    /// Appends `value`; a value of another type turns the column into `Any`.
    pub(crate) fn push(&mut self, value: Value) {
        match (&mut *self, value) {
            (Values::F64(v), Value::F64(x)) => v.push(x),
            (Values::I64(v), Value::I64(x)) => v.push(x),
            (Values::Any(v), x) => v.push(x),
            (_, x) => {
                let mut any = std::mem::take(self).into_any();
                any.push(x);
                *self = Values::Any(any);
            }
        }
    }

    /// Removes and returns the last value.
    pub(crate) fn pop(&mut self) -> Option<Value> {
        match self {
            Values::F64(v) => v.pop().map(Value::F64),
            Values::I64(v) => v.pop().map(Value::I64),
            Values::Any(v) => v.pop(),
        }
    }

    /// Replaces the last value (there is one) with `value`.
    pub(crate) fn set_last(&mut self, value: Value) {
        self.pop();
        self.push(value);
    }
}

impl Block {
    /// A block holding `rows` (in step order), column by column.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn from_rows(rows: &[Row]) -> Block {
        let mut columns: BTreeMap<&str, Column> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            for (k, v) in &row.fields {
                let col = columns.entry(k.as_str()).or_insert_with(|| Column {
                    key: k.clone(),
                    rows: Vec::new(),
                    values: Values::for_value(v),
                });
                col.rows.push(i as u32);
                col.values.push(v.clone());
            }
        }
        Block {
            steps: rows.iter().map(|r| r.step).collect(),
            columns: columns.into_values().collect(),
        }
    }

    /// The rows of the block, keeping only keys accepted by `keep`.
    pub fn into_rows(self, keep: impl Fn(&str) -> bool) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .steps
            .iter()
            .map(|&step| Row {
                step,
                fields: BTreeMap::new(),
            })
            .collect();
        for col in self.columns.into_iter().filter(|c| keep(&c.key)) {
            for (j, &i) in col.rows.iter().enumerate() {
                rows[i as usize]
                    .fields
                    .insert(col.key.clone(), col.values.get(j));
            }
        }
        rows
    }
}

/// A key filter that keeps every column.
pub(crate) fn all_keys(_: &str) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::columns::column_kind;
    use super::value::KIND_F32;
    use super::*;

    fn rows() -> Vec<Row> {
        let mut out = Vec::new();
        for step in [3u64, 4, 4, 9, 1000] {
            let mut fields = BTreeMap::new();
            fields.insert("loss".to_string(), Value::F64(step as f64 / 7.0));
            if step % 2 == 0 {
                fields.insert("epoch".to_string(), Value::I64(-(step as i64)));
            }
            if step == 9 {
                fields.insert("note".to_string(), Value::Str("ünïcode".into()));
                fields.insert("mixed".to_string(), Value::Bool(true));
            }
            if step == 1000 {
                fields.insert("mixed".to_string(), Value::F64(f64::NAN));
            }
            out.push(Row { step, fields });
        }
        out
    }

    #[test]
    fn rows_round_trip_through_a_frame() {
        let rows = rows();
        let frame = encode(&Block::from_rows(&rows), 3).unwrap();
        let h = FrameHeader::parse(&frame).unwrap().unwrap();
        assert!(h.header_ok);
        assert_eq!(h.payload_crc, payload_crc(&frame));
        assert_eq!((h.nrows, h.first_step, h.last_step), (5, 3, 1000));
        let back = decode(&frame).unwrap().into_rows(|_| true);
        // NaN != NaN, so compare the debug text.
        assert_eq!(format!("{back:?}"), format!("{rows:?}"));
        let only_loss = decode(&frame).unwrap().into_rows(|k| k == "loss");
        assert!(only_loss.iter().all(|r| r.fields.len() == 1));
    }

    #[test]
    fn floats_round_trip_bit_for_bit_in_both_float_encodings() {
        let as_f32 = [
            0.0f32,
            -0.0,
            1.5,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE / 4.0,
            f32::MAX,
        ];
        let wide = [
            0.1f64,
            -0.0,
            f64::from_bits(0x7ff8_0000_0000_0001),
            1e300,
            f64::MIN_POSITIVE / 8.0,
            3.0,
        ];
        for values in [
            as_f32.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            wide.to_vec(),
        ] {
            let rows: Vec<Row> = values
                .iter()
                .enumerate()
                .map(|(i, &x)| Row {
                    step: i as u64,
                    fields: [("x".to_string(), Value::F64(x))].into_iter().collect(),
                })
                .collect();
            let back = decode(&encode(&Block::from_rows(&rows), 3).unwrap()).unwrap();
            let kind_f32 = values
                .iter()
                .all(|&x| f64::from(x as f32).to_bits() == x.to_bits());
            assert_eq!(
                column_kind(
                    &rows
                        .iter()
                        .map(|r| r.fields["x"].clone())
                        .collect::<Vec<_>>()
                ) == KIND_F32,
                kind_f32
            );
            for (i, v) in values.iter().enumerate() {
                match back.columns[0].values.get(i) {
                    Value::F64(g) => assert_eq!(g.to_bits(), v.to_bits(), "{v}"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_of_the_payload_is_an_error_or_the_same_rows() {
        let rows = rows();
        let frame = encode(&Block::from_rows(&rows), 3).unwrap();
        for cut in 0..frame.len() {
            assert!(decode(&frame[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            // Without the crc check (done by callers), decoding must still never panic.
            let _ = decode(&bad);
            // And the crcs catch every flipped bit (or the magic no longer matches).
            let caught = match FrameHeader::parse(&bad).unwrap() {
                None => true,
                Some(h) => !h.header_ok || h.payload_crc != payload_crc(&bad),
            };
            assert!(caught, "flip at byte {i} undetected");
        }
    }

    /// A block of at least 4 KiB of sections is a frame of parts (`SLB3`): a read of some
    /// columns checks the directory's crc and theirs. Every flipped bit is caught by the
    /// part it lands in when that part is read (a read of another column goes on, with the
    /// right rows), by the header's crc, or by the whole payload's crc that `verify` and a
    /// head's scan check; never read as other rows.
    #[test]
    fn a_frame_of_parts_catches_every_flip_in_the_parts_a_read_uses() {
        let rows: Vec<Row> = (0..600u64)
            .map(|step| Row {
                step,
                fields: [
                    ("a".to_string(), Value::F64((step as f64 * 1.7).sin())),
                    ("b".to_string(), Value::I64((step * step % 1013) as i64)),
                    ("c".to_string(), Value::F64(step as f64 / 3.0)),
                ]
                .into_iter()
                .collect(),
            })
            .collect();
        let frame = encode(&Block::from_rows(&rows), 3).unwrap();
        assert_eq!(frame[..4], *b"SLB3", "a frame of parts");
        let small = encode(&Block::from_rows(&rows[..3]), 3).unwrap();
        assert_eq!(
            small[..4],
            *b"SLB2",
            "a short block carries no crc per part"
        );
        let only = |k: &'static str| move |key: &str| key == k;
        let want_a = decode_keys(&frame, &only("a"), true).unwrap();
        let whole = decode_keys(&frame, &all_keys, true).unwrap();
        assert_eq!(whole.clone().into_rows(|_| true).len(), 600);
        let (mut caught_by_part, mut other_column_read) = (0, 0);
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x04;
            let Some(h) = FrameHeader::parse(&bad).unwrap() else {
                continue; // the magic changed
            };
            if !h.header_ok {
                continue; // the header's crc catches it
            }
            assert_ne!(
                h.payload_crc,
                payload_crc(&bad),
                "byte {i}: the whole crc catches it"
            );
            match decode_keys(&bad, &all_keys, true) {
                Err(_) => caught_by_part += 1,
                // Only the whole payload's own crc (bytes 36 to 39) is no part.
                Ok(b) => {
                    assert!(
                        (36..40).contains(&i),
                        "byte {i}: read as {} rows",
                        b.steps.len()
                    );
                    assert_eq!(format!("{b:?}"), format!("{whole:?}"), "byte {i}");
                }
            }
            // A read of column `a` alone: an error, or exactly its rows.
            if let Ok(b) = decode_keys(&bad, &only("a"), true) {
                assert_eq!(format!("{b:?}"), format!("{want_a:?}"), "byte {i}");
                other_column_read += 1;
            }
        }
        assert!(caught_by_part > 0 && other_column_read > 0);
    }

    /// `steps_at_most` (what a cut inside a block reads: its directory's steps alone, evenly
    /// spaced ones counted without being listed) equals counting the decoded steps, for
    /// evenly spaced, repeated (console) and irregular steps, at every bound around them.
    #[test]
    fn steps_at_most_counts_what_the_decoded_steps_hold() {
        let shapes: [Vec<u64>; 5] = [
            (0..5_000).map(|i| 100 + i * 3).collect(),
            (0..10).collect(),
            vec![7; 40],
            (0..300).map(|i| i * i / 7).collect(),
            vec![u64::MAX - 1, u64::MAX],
        ];
        for steps in shapes {
            let rows: Vec<Row> = steps
                .iter()
                .map(|&step| Row {
                    step,
                    fields: [("x".to_string(), Value::F64(step as f64))]
                        .into_iter()
                        .collect(),
                })
                .collect();
            let frame = encode(&Block::from_rows(&rows), 3).unwrap();
            let mut bounds: Vec<u64> = vec![0, u64::MAX];
            for &s in steps.iter().step_by(37).chain(steps.last()) {
                bounds.extend([s.saturating_sub(1), s, s.saturating_add(1)]);
            }
            for hi in bounds {
                let n = steps.iter().filter(|&&s| s <= hi).count() as u64;
                let last = steps.iter().copied().filter(|&s| s <= hi).max();
                assert_eq!(
                    steps_at_most(&frame, hi, true).unwrap(),
                    (n, last),
                    "hi {hi}"
                );
            }
        }
    }
}
