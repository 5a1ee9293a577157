//! Aggregates: the per-key summary of a set of rows (count, first, last, min, max, sum, mean,
//! NaN count), and how two summaries of consecutive step ranges combine. Segment footers store
//! them, so the summary of a version is a merge of footers, never a scan of its history.

use std::collections::BTreeMap;

use crate::segment::block::Values;
use crate::types::{Value, VersionId};

/// The summary of one key over a range of steps.
///
/// `first` and `last` consider every value, of any type. `min`, `max`, `sum` and `mean` consider
/// numeric values (`F64`, `I64`) that are not NaN; ties keep the earliest step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeySummary {
    /// Number of values logged for the key, of any type.
    pub count: u64,
    /// Number of numeric values, NaN included.
    pub numeric_count: u64,
    /// Number of NaN values.
    pub nan_count: u64,
    /// Sum of the numeric, non-NaN values.
    pub sum: f64,
    /// Smallest numeric non-NaN value and its step.
    pub min: Option<(u64, Value)>,
    /// Largest numeric non-NaN value and its step.
    pub max: Option<(u64, Value)>,
    /// First value and its step.
    pub first: Option<(u64, Value)>,
    /// Last value and its step.
    pub last: Option<(u64, Value)>,
    /// Inside aggregates only: bit 0 (`first`) and bit 1 (`last`) mark a string longer than
    /// `AGG_STRING_BYTES` that was not copied (its step is kept; the value is read from its
    /// block when a summary is made). Always 0 in a summary handed to the caller.
    pub(crate) elided: u8,
}

pub(crate) const ELIDED_FIRST: u8 = 1;
pub(crate) const ELIDED_LAST: u8 = 2;

/// `(step, value)` as an aggregate keeps it: a long string is replaced by an empty one and
/// flagged with `bit`, so aggregates stay small whatever was logged.
fn kept(step: u64, v: &Value, bit: u8, elided: &mut u8) -> (u64, Value) {
    match v {
        Value::Str(s) if s.len() > crate::limits::AGG_STRING_BYTES => {
            *elided |= bit;
            (step, Value::Str(String::new()))
        }
        _ => {
            *elided &= !bit;
            (step, v.clone())
        }
    }
}

impl KeySummary {
    /// Mean of the numeric, non-NaN values.
    pub fn mean(&self) -> Option<f64> {
        let n = self.numeric_count.saturating_sub(self.nan_count);
        (n > 0).then(|| self.sum / n as f64)
    }

    /// Whether the key holds numeric values (and so has min, max, mean).
    pub fn is_numeric(&self) -> bool {
        self.numeric_count > 0
    }

    /// Adds one value: the plain reference the column path (`of_values`) is tested against.
    #[cfg(test)]
    pub(crate) fn add(&mut self, step: u64, value: &Value) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((step, value.clone()));
        }
        self.last = Some((step, value.clone()));
        if let Some(x) = value.as_f64() {
            self.numeric_count += 1;
            if x.is_nan() {
                self.nan_count += 1;
                return;
            }
            self.sum += x;
            if self.min.as_ref().is_none_or(|(_, m)| x < num(m)) {
                self.min = Some((step, value.clone()));
            }
            if self.max.as_ref().is_none_or(|(_, m)| x > num(m)) {
                self.max = Some((step, value.clone()));
            }
        }
    }

    /// The summary of `(step, value)` pairs in step order; the same as calling `add` for
    /// each, but cloning only the four values it keeps.
    pub(crate) fn of_values<'a>(items: impl Iterator<Item = (u64, &'a Value)>) -> KeySummary {
        let mut s = KeySummary::default();
        type At<'a> = Option<(u64, &'a Value)>;
        type Pick<'a> = Option<(u64, &'a Value, f64)>;
        let (mut first, mut last): (At<'_>, At<'_>) = (None, None);
        let (mut min, mut max): (Pick<'_>, Pick<'_>) = (None, None);
        for (step, v) in items {
            s.count += 1;
            if first.is_none() {
                first = Some((step, v));
            }
            last = Some((step, v));
            let Some(x) = v.as_f64() else { continue };
            s.numeric_count += 1;
            if x.is_nan() {
                s.nan_count += 1;
                continue;
            }
            s.sum += x;
            if min.is_none_or(|(_, _, m)| x < m) {
                min = Some((step, v, x));
            }
            if max.is_none_or(|(_, _, m)| x > m) {
                max = Some((step, v, x));
            }
        }
        let owned = |p: Option<(u64, &Value)>| p.map(|(step, v)| (step, v.clone()));
        let mut elided = 0;
        s.first = first.map(|(step, v)| kept(step, v, ELIDED_FIRST, &mut elided));
        s.last = last.map(|(step, v)| kept(step, v, ELIDED_LAST, &mut elided));
        s.elided = elided;
        s.min = owned(min.map(|(step, v, _)| (step, v)));
        s.max = owned(max.map(|(step, v, _)| (step, v)));
        s
    }

    /// The summary of a typed numeric column: value `j` is `xs[j]`, at step
    /// `steps[rows[j]]`. The same as `of_values`, without a `Value` per value.
    fn of_numbers<T: Copy>(
        steps: &[u64],
        rows: &[u32],
        xs: &[T],
        to_f64: impl Fn(T) -> f64,
        wrap: impl Fn(T) -> Value,
    ) -> KeySummary {
        let n = rows.len();
        let at = |j: usize| (steps[rows[j] as usize], wrap(xs[j]));
        let mut s = KeySummary {
            count: n as u64,
            numeric_count: n as u64,
            ..KeySummary::default()
        };
        if n == 0 {
            return s;
        }
        let (mut min, mut max) = (None::<(usize, f64)>, None::<(usize, f64)>);
        for (j, &x) in xs[..n].iter().enumerate() {
            let x = to_f64(x);
            if x.is_nan() {
                s.nan_count += 1;
                continue;
            }
            s.sum += x;
            if min.is_none_or(|(_, m)| x < m) {
                min = Some((j, x));
            }
            if max.is_none_or(|(_, m)| x > m) {
                max = Some((j, x));
            }
        }
        s.first = Some(at(0));
        s.last = Some(at(n - 1));
        s.min = min.map(|(j, _)| at(j));
        s.max = max.map(|(j, _)| at(j));
        s
    }

    /// Folds in the summary of rows that all come after the rows of `self`.
    pub(crate) fn merge_later(&mut self, later: &KeySummary) {
        self.count = self.count.saturating_add(later.count);
        self.numeric_count = self.numeric_count.saturating_add(later.numeric_count);
        self.nan_count = self.nan_count.saturating_add(later.nan_count);
        self.sum += later.sum;
        if self.first.is_none() {
            self.first = later.first.clone();
            self.elided = (self.elided & !ELIDED_FIRST) | (later.elided & ELIDED_FIRST);
        }
        if later.last.is_some() {
            self.last = later.last.clone();
            self.elided = (self.elided & !ELIDED_LAST) | (later.elided & ELIDED_LAST);
        }
        if let Some((_, v)) = &later.min {
            if self.min.as_ref().is_none_or(|(_, m)| num(v) < num(m)) {
                self.min = later.min.clone();
            }
        }
        if let Some((_, v)) = &later.max {
            if self.max.as_ref().is_none_or(|(_, m)| num(v) > num(m)) {
                self.max = later.max.clone();
            }
        }
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The aggregate of a set of consecutive rows: row count, step range, per-key summaries.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Agg {
    pub rows: u64,
    pub first_step: Option<u64>,
    pub last_step: Option<u64>,
    pub keys: BTreeMap<String, KeySummary>,
}

impl Agg {
    #[cfg(test)]
    pub fn add_row(&mut self, row: &crate::types::Row) {
        self.rows += 1;
        if self.first_step.is_none() {
            self.first_step = Some(row.step);
        }
        self.last_step = Some(row.step);
        for (k, v) in &row.fields {
            if let Some(s) = self.keys.get_mut(k) {
                s.add(row.step, v);
            } else {
                let mut s = KeySummary::default();
                s.add(row.step, v);
                self.keys.insert(k.clone(), s);
            }
        }
    }

    /// Adds the rows of a decoded block with step at most `limit`, column by column (no
    /// row is materialised). The block's rows must come after those already added.
    pub(crate) fn add_block(&mut self, block: &crate::segment::block::Block, limit: u64) {
        let kept = block.steps.partition_point(|&s| s <= limit);
        if kept == 0 {
            return;
        }
        self.rows += kept as u64;
        if self.first_step.is_none() {
            self.first_step = Some(block.steps[0]);
        }
        self.last_step = Some(block.steps[kept - 1]);
        // A fresh aggregate (every block's own) takes the columns' summaries as they are.
        let fresh = self.keys.is_empty();
        let mut later = BTreeMap::new();
        for col in &block.columns {
            let n = col.rows.partition_point(|&i| (i as usize) < kept);
            let rows = &col.rows[..n];
            let s = match &col.values {
                Values::F64(xs) => {
                    KeySummary::of_numbers(&block.steps, rows, xs, |x| x, Value::F64)
                }
                Values::I64(xs) => {
                    KeySummary::of_numbers(&block.steps, rows, xs, |x| x as f64, Value::I64)
                }
                Values::Any(vs) => KeySummary::of_values(
                    rows.iter()
                        .zip(vs)
                        .map(|(&i, v)| (block.steps[i as usize], v)),
                ),
            };
            if s.count > 0 {
                let into = if fresh { &mut self.keys } else { &mut later };
                into.insert(col.key.clone(), s);
            }
        }
        for (k, s) in later {
            match self.keys.get_mut(&k) {
                Some(mine) => mine.merge_later(&s),
                None => {
                    self.keys.insert(k, s);
                }
            }
        }
    }

    /// Folds in the aggregate of rows that all come after the rows of `self`.
    pub fn merge_later(&mut self, later: &Agg) {
        self.merge_later_of(later, None);
    }

    /// [`merge_later`](Self::merge_later), of every key or only of `only` (the rows and
    /// steps are always merged): one metric's summary costs one key's merge, not a run's
    /// every key.
    pub fn merge_later_of(&mut self, later: &Agg, only: Option<&str>) {
        self.rows = self.rows.saturating_add(later.rows);
        if self.first_step.is_none() {
            self.first_step = later.first_step;
        }
        if later.last_step.is_some() {
            self.last_step = later.last_step;
        }
        let mut merge = |k: &String, s: &KeySummary| match self.keys.get_mut(k) {
            Some(mine) => mine.merge_later(s),
            None => {
                self.keys.insert(k.clone(), s.clone());
            }
        };
        match only {
            None => later.keys.iter().for_each(|(k, s)| merge(k, s)),
            Some(key) => {
                if let Some((k, s)) = later.keys.get_key_value(key) {
                    merge(k, s);
                }
            }
        }
    }
}

/// The summary of one version of a run (its `history` stream).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The run the version belongs to.
    pub run: String,
    /// The version summarised.
    pub version: VersionId,
    /// The last step holding a row, if any.
    pub last_step: Option<u64>,
    /// Number of rows.
    pub rows: u64,
    /// Per-key summaries.
    pub keys: BTreeMap<String, KeySummary>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Row;

    fn row(step: u64, v: Value) -> Row {
        Row {
            step,
            fields: [("m".to_string(), v)].into_iter().collect(),
        }
    }

    /// The column-at-a-time path the writer and summaries use agrees with adding rows one by
    /// one, at every cutoff.
    fn block_path_agrees(rows: &[Row]) {
        let block = crate::segment::block::Block::from_rows(rows);
        for cut in 1..=rows.len() {
            let mut by_rows = Agg::default();
            rows[..cut].iter().for_each(|r| by_rows.add_row(r));
            let mut by_block = Agg::default();
            by_block.add_block(&block, rows[cut - 1].step);
            assert_eq!(format!("{by_block:?}"), format!("{by_rows:?}"), "cut {cut}");
        }
    }

    #[test]
    fn typed_columns_summarise_like_values_one_by_one() {
        let floats = [2.0, f64::NAN, -1.0, -1.0, f64::NEG_INFINITY, 7.5, f64::NAN];
        let ints = [4i64, -3, -3, i64::MAX, 0, i64::MIN];
        let rows: Vec<Row> = floats
            .iter()
            .enumerate()
            .map(|(i, &x)| row(i as u64 * 3, Value::F64(x)))
            .collect();
        block_path_agrees(&rows);
        let rows: Vec<Row> = ints
            .iter()
            .enumerate()
            .map(|(i, &x)| row(i as u64 + 5, Value::I64(x)))
            .collect();
        block_path_agrees(&rows);
    }

    #[test]
    fn merging_halves_equals_aggregating_the_whole() {
        let values = [
            Value::F64(3.0),
            Value::F64(f64::NAN),
            Value::I64(-2),
            Value::F64(-2.0),
            Value::Str("x".into()),
            Value::F64(9.5),
            Value::F64(f64::INFINITY),
        ];
        let rows: Vec<Row> = values
            .iter()
            .enumerate()
            .map(|(i, v)| row(i as u64 * 10, v.clone()))
            .collect();
        let mut whole = Agg::default();
        rows.iter().for_each(|r| whole.add_row(r));
        for cut in 0..=rows.len() {
            let (mut a, mut b) = (Agg::default(), Agg::default());
            rows[..cut].iter().for_each(|r| a.add_row(r));
            rows[cut..].iter().for_each(|r| b.add_row(r));
            a.merge_later(&b);
            assert_eq!(format!("{a:?}"), format!("{whole:?}"), "cut at {cut}");
        }
        // The column-at-a-time path the writer uses agrees, at every cutoff.
        let block = crate::segment::block::Block::from_rows(&rows);
        for cut in 0..=rows.len() {
            let mut by_rows = Agg::default();
            rows[..cut].iter().for_each(|r| by_rows.add_row(r));
            let mut by_block = Agg::default();
            let limit = if cut == 0 {
                None
            } else {
                Some(rows[cut - 1].step)
            };
            if let Some(l) = limit {
                by_block.add_block(&block, l);
            }
            assert_eq!(format!("{by_block:?}"), format!("{by_rows:?}"), "cut {cut}");
        }
        let m = &whole.keys["m"];
        assert_eq!((m.count, m.numeric_count, m.nan_count), (7, 6, 1));
        assert_eq!(
            m.min,
            Some((20, Value::I64(-2))),
            "ties keep the earliest step"
        );
        assert_eq!(m.max, Some((60, Value::F64(f64::INFINITY))));
        assert_eq!(m.last, Some((60, Value::F64(f64::INFINITY))));
    }
}
