//! The rows a writer has logged but not yet written, kept column by column as they arrive,
//! so that logging a value is an append to a column (no per-row map, no per-value key
//! allocation) and sealing them into a block needs no transposition.
//!
//! Invariants: steps are non-decreasing; only the last row may be open (still taking
//! values); a column's row indexes are strictly increasing; `raw_estimate` tracks the size
//! the encoder will produce before compression, to within a few bytes per column.

use std::collections::HashMap;

use crate::codec::zigzag;
use crate::limits::{check_key, MAX_ROW_BYTES, MAX_VALUE_BYTES};
use crate::segment::block::{Block, Column, Values, MAX_BLOCK_ROWS};
use crate::types::Value;

/// Rows being logged, held as the columns of the block they will become.
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    block: Block,
    /// Column position of each key, once there are more than [`SCAN_COLUMNS`] (fewer are
    /// found by a scan: no hashing, and no key allocated twice, for a narrow run).
    by_key: HashMap<String, usize>,
    /// The column after the one last written to: rows usually repeat the previous row's keys
    /// in the same order, so this finds the column with one string compare.
    hint: usize,
    open: bool,
    /// The estimated bytes of the values and keys.
    raw_estimate: usize,
    /// The bytes of the steps as deltas, and whether they are evenly spaced so far (then
    /// they are stored in a few bytes instead).
    step_bytes: usize,
    stride: Option<u64>,
    uneven: bool,
    /// `raw_estimate` when the open row started: the open row's size is what was added since.
    row_start: usize,
    /// Columns of a block already encoded, whose buffers new columns take ([`recycle`]).
    ///
    /// [`recycle`]: BlockBuilder::recycle
    spare: Vec<Column>,
}

/// Columns kept for reuse at most ([`BlockBuilder::recycle`]).
const RECYCLED_COLUMNS: usize = 64;

/// Up to this many columns, a key's column is found by comparing the keys in turn.
const SCAN_COLUMNS: usize = 16;

/// Rows a block holds at least per column (unless it reaches `MAX_BLOCK_BYTES` first).
pub(crate) const ROWS_PER_COLUMN: usize = 4;

/// Where buffered rows are cut into blocks: [`Options::block_bytes`] and
/// [`Options::block_column_bytes`].
///
/// [`Options::block_bytes`]: crate::Options::block_bytes
/// [`Options::block_column_bytes`]: crate::Options::block_column_bytes
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockCut {
    /// Raw bytes (as the encoder will write them, estimated) at which a block is full.
    pub bytes: usize,
    /// Raw bytes per column at which a block of few columns is full.
    pub column_bytes: usize,
}

/// The smallest stored size per column worth cutting a block small for (at least two
/// columns' worth): a block costs about 40 bytes plus 50 to 100 per column of its own (frame
/// header, directory entry, index entry and aggregate in the footer), and the first summary
/// cut inside a segment decodes every block's aggregate; at 2 KiB per column that stays a
/// few percent.
pub(crate) const MIN_STORED_PER_COLUMN: usize = 2 << 10;

impl BlockCut {
    /// This cut as a stream applies it to its next block, given its last block: `raw` bytes
    /// of `columns` columns stored in `stored` bytes. The per-column budget holds only while
    /// a block of that budget, compressed as the last one was, would be stored in at least
    /// [`MIN_STORED_PER_COLUMN`] bytes per column; data that compresses better (counters, a
    /// schedule: a 1,024-row block of a few hundred bytes) is cut at `bytes` alone, as its
    /// blocks cost little to decode and much to keep small.
    pub fn after(self, raw: usize, stored: usize, columns: usize) -> BlockCut {
        let small = self
            .column_bytes
            .saturating_mul(columns.max(1))
            .min(self.bytes);
        let would_store = stored as u128 * small as u128 / raw.max(1) as u128;
        let worth = MIN_STORED_PER_COLUMN as u128 * columns.max(2) as u128;
        if would_store >= worth {
            self
        } else {
            BlockCut {
                column_bytes: usize::MAX,
                ..self
            }
        }
    }
}

/// Whether a block of `rows` rows and `columns` columns, `raw` bytes before compression, is
/// full: it has reached `cut.bytes`, or `cut.column_bytes` per column if that is less, and
/// holds at least [`ROWS_PER_COLUMN`] rows per column; or it has reached
/// [`crate::limits::MAX_BLOCK_BYTES`].
///
/// Cut by rows as well as bytes, a block of a wide run holds enough rows that a read of one
/// key decodes a few directories (each names every column) against a long section of that
/// key's values, instead of a directory of 500 keys for every few dozen rows. Cut by bytes
/// per column, a block of a narrow run holds about as much of each key as a block of eight
/// keys does (one float key: 8 KiB, 1,024 rows, not 8,192 at 64 KiB), so that a step range,
/// a summary cut at a step or a chart's bucket edge inside the block decodes about a
/// thousand values, while the block's aggregate serves every bucket the block lies inside.
pub(crate) fn block_is_full(raw: usize, rows: usize, columns: usize, cut: BlockCut) -> bool {
    let budget = cut
        .bytes
        .min(columns.max(1).saturating_mul(cut.column_bytes));
    raw >= crate::limits::MAX_BLOCK_BYTES
        || (raw >= budget && rows >= columns.saturating_mul(ROWS_PER_COLUMN))
}

/// Why [`BlockBuilder::set`] refused a value; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The key breaks [`crate::limits::check_key`].
    Key(String),
    /// A string longer than [`MAX_VALUE_BYTES`].
    Value(usize),
    /// The row would pass [`MAX_ROW_BYTES`]; its size with the value.
    Row(usize),
}

impl BlockBuilder {
    /// The step of the open row, if there is one.
    pub fn open_step(&self) -> Option<u64> {
        if self.open {
            self.block.steps.last().copied()
        } else {
            None
        }
    }

    /// Whether a row other than the open one is buffered.
    pub fn has_closed(&self) -> bool {
        self.block.steps.len() > usize::from(self.open)
    }

    /// The encoded size of the buffered rows before compression, estimated.
    pub fn raw_estimate(&self) -> usize {
        self.raw_estimate + if self.uneven { self.step_bytes } else { 4 }
    }

    /// Whether the buffered rows should be written as a block ([`block_is_full`]), or one
    /// more row would pass the row limit of a block.
    pub fn is_full(&self, cut: BlockCut) -> bool {
        let (rows, columns) = (self.block.steps.len(), self.block.columns.len());
        block_is_full(self.raw_estimate(), rows, columns, cut) || rows >= MAX_BLOCK_ROWS
    }

    /// Starts a new open row at `step` (not before the last buffered step).
    pub fn start_row(&mut self, step: u64) {
        if let Some(&prev) = self.block.steps.last() {
            let delta = step - prev;
            self.uneven |= *self.stride.get_or_insert(delta) != delta;
        }
        let prev = self.block.steps.last().copied().unwrap_or(0);
        self.step_bytes += varint_len(step.wrapping_sub(prev));
        self.block.steps.push(step);
        self.open = true;
        self.hint = 0;
        self.row_start = self.raw_estimate;
    }

    /// Closes the open row: no more values go into it.
    pub fn close_row(&mut self) {
        self.open = false;
    }

    /// Sets `key` to `value` in the open row (replacing a value logged there before), or
    /// refuses it, changing nothing, when the key is invalid, the value too long or the row
    /// would grow too large.
    pub fn set(&mut self, key: &str, value: Value) -> Result<(), Refused> {
        debug_assert!(self.open, "set needs an open row");
        if let Value::Str(s) = &value {
            if s.len() > MAX_VALUE_BYTES {
                return Err(Refused::Value(s.len()));
            }
        }
        let row = (self.block.steps.len() - 1) as u32;
        let found = self.find(key);
        let prev = found.and_then(|i| self.block.columns[i].values.last_i64());
        // A value replacing one at the same step is counted in full: an estimate that only
        // grows keeps a block below its limit however often a row is merged into.
        let mut add = value_estimate(prev, &value);
        if found.is_none() {
            check_key(key).map_err(Refused::Key)?;
            add += key.len() + 8;
        }
        let row_bytes = self.raw_estimate - self.row_start + add;
        if row_bytes > MAX_ROW_BYTES {
            return Err(Refused::Row(row_bytes));
        }
        self.raw_estimate += add;
        let columns = &mut self.block.columns;
        let i = match found {
            Some(i) => i,
            None => {
                let column = match self.spare.pop() {
                    Some(mut c) => {
                        c.key.clear();
                        c.key.push_str(key);
                        c.rows.clear();
                        c.values.reuse_for(&value);
                        c
                    }
                    None => Column {
                        key: key.to_owned(),
                        rows: Vec::new(),
                        values: Values::for_value(&value),
                    },
                };
                columns.push(column);
                let i = columns.len() - 1;
                if i == SCAN_COLUMNS {
                    self.index_keys();
                } else if i > SCAN_COLUMNS {
                    self.by_key.insert(key.to_owned(), i);
                }
                i
            }
        };
        self.hint = i + 1;
        let col = &mut self.block.columns[i];
        if col.rows.last() == Some(&row) {
            col.values.set_last(value);
            return Ok(());
        }
        col.rows.push(row);
        col.values.push(value);
        Ok(())
    }

    /// Takes `block`, encoded and no longer needed, as buffers for the rows and columns to
    /// come (a bulk's next short run logs into its last one's, instead of allocating again).
    pub fn recycle(&mut self, block: Block) {
        let Block { mut steps, columns } = block;
        if self.block.steps.is_empty() && steps.capacity() > self.block.steps.capacity() {
            steps.clear();
            self.block.steps = steps;
        }
        // Kept in reverse, so that new columns take them in their old order (`pop`): rows
        // that repeat their keys find a column of each key's own type (one of another type
        // is allocated again).
        let room = RECYCLED_COLUMNS.saturating_sub(self.spare.len());
        self.spare.extend(columns.into_iter().take(room).rev());
    }

    /// The column of `key`, if it has one: the column after the last one written to (rows
    /// usually repeat their keys in order), or a scan of few columns, or the index of many.
    fn find(&self, key: &str) -> Option<usize> {
        let columns = &self.block.columns;
        match columns.get(self.hint) {
            Some(c) if c.key == key => Some(self.hint),
            _ if columns.len() <= SCAN_COLUMNS => columns.iter().position(|c| c.key == key),
            _ => self.by_key.get(key).copied(),
        }
    }

    /// Indexes every column by its key if there are more than [`SCAN_COLUMNS`] (else none).
    fn index_keys(&mut self) {
        self.by_key.clear();
        if self.block.columns.len() > SCAN_COLUMNS {
            let keys = self.block.columns.iter().enumerate();
            self.by_key = keys.map(|(i, c)| (c.key.clone(), i)).collect();
        }
    }

    /// Drops the open row and every value in it (a log call refused after it opened the row).
    pub fn discard_open(&mut self) {
        if !self.open {
            return;
        }
        let row = (self.block.steps.len() - 1) as u32;
        for col in &mut self.block.columns {
            if col.rows.last() == Some(&row) {
                col.rows.pop();
                col.values.pop();
            }
        }
        // Columns only the open row had go; the estimate, which only counts too much, stays.
        self.block.columns.retain(|c| !c.rows.is_empty());
        self.index_keys();
        self.hint = 0;
        self.block.steps.pop();
        self.open = false;
    }

    /// Takes every closed row as a block, leaving only the open row (if any) buffered.
    pub fn take_closed(&mut self) -> Block {
        let mut block = std::mem::take(&mut self.block);
        self.by_key.clear();
        self.hint = 0;
        self.raw_estimate = 0;
        (self.step_bytes, self.stride, self.uneven) = (0, None, false);
        if self.open {
            let row = (block.steps.len() - 1) as u32;
            let step = block.steps.pop().unwrap_or(0);
            let mut open_values = Vec::new();
            for col in &mut block.columns {
                if col.rows.last() == Some(&row) {
                    col.rows.pop();
                    if let Some(v) = col.values.pop() {
                        open_values.push((col.key.clone(), v));
                    }
                }
            }
            block.columns.retain(|c| !c.rows.is_empty());
            self.start_row(step);
            for (k, v) in open_values {
                // Taken from a row this builder accepted: within every limit again.
                let kept = self.set(&k, v);
                debug_assert!(kept.is_ok(), "{kept:?}");
            }
        }
        block
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The bytes `value` will add to its column, given the value before it in the column.
fn value_estimate(prev: Option<i64>, value: &Value) -> usize {
    match value {
        Value::F64(x) if f64::from(*x as f32).to_bits() == x.to_bits() => 4,
        Value::F64(_) => 8,
        Value::I64(x) => varint_len(zigzag(x.wrapping_sub(prev.unwrap_or(0)))),
        Value::Bool(_) => 1,
        Value::Str(s) => s.len() + varint_len(s.len() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::block;

    #[test]
    fn merged_and_open_rows_come_out_as_the_block_of_the_closed_rows() {
        let mut b = BlockBuilder::default();
        b.start_row(1);
        b.set("a", Value::F64(1.0)).unwrap();
        b.set("a", Value::F64(2.0)).unwrap(); // a merge at one step keeps the last value
        b.set("b", Value::I64(5)).unwrap();
        b.close_row();
        b.start_row(3);
        b.set("b", Value::I64(7)).unwrap();
        b.set("c", Value::Bool(true)).unwrap();
        let closed = b.take_closed();
        assert_eq!(closed.steps, vec![1]);
        let rows = closed.into_rows(|_| true);
        assert_eq!(rows[0].fields["a"], Value::F64(2.0));
        assert_eq!(rows[0].fields["b"], Value::I64(5));
        assert!(!rows[0].fields.contains_key("c"));
        // The open row stayed, with both its values, and still takes merges.
        assert_eq!(b.open_step(), Some(3));
        b.set("b", Value::I64(8)).unwrap();
        b.close_row();
        let rest = b.take_closed().into_rows(|_| true);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].fields["b"], Value::I64(8));
        assert_eq!(rest[0].fields["c"], Value::Bool(true));
        assert!(!b.has_closed() && b.open_step().is_none());
    }

    #[test]
    fn the_estimate_tracks_the_encoded_size() {
        let mut b = BlockBuilder::default();
        for step in 0..10_000u64 {
            b.start_row(step);
            b.set("loss", Value::F64(1.0 / (step as f64 + 1.0)))
                .unwrap();
            b.set("acc", Value::F64(f64::from(step as f32 / 1e4)))
                .unwrap();
            b.set("epoch", Value::I64((step / 100) as i64)).unwrap();
            b.close_row();
        }
        let est = b.raw_estimate();
        let frame = block::encode(&b.take_closed(), 3).unwrap();
        let raw = block::FrameHeader::parse(&frame).unwrap().unwrap().raw_len as usize;
        assert!(
            est.abs_diff(raw) * 20 < raw,
            "estimate {est}, encoded {raw}"
        );
    }

    #[test]
    fn a_refused_value_changes_nothing_and_a_discarded_row_leaves_no_trace() {
        let mut b = BlockBuilder::default();
        b.start_row(1);
        b.set("a", Value::F64(1.0)).unwrap();
        b.close_row();
        b.start_row(2);
        b.set("new", Value::F64(2.0)).unwrap();
        b.set("a", Value::F64(3.0)).unwrap();
        assert_eq!(
            b.set("", Value::F64(1.0)),
            Err(Refused::Key("a key cannot be empty".into()))
        );
        b.discard_open();
        assert_eq!(b.open_step(), None);
        b.start_row(2);
        b.set("a", Value::F64(4.0)).unwrap();
        b.close_row();
        let rows = b.take_closed().into_rows(|_| true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].fields.len(), 1);
        assert_eq!(rows[1].fields["a"], Value::F64(4.0));
    }

    /// Narrow blocks are cut at `block_column_bytes` per column, blocks of eight columns or
    /// more at `block_bytes`; wide ones when they also hold 4 rows per column, or at the byte
    /// limit.
    #[test]
    fn wide_blocks_are_cut_by_rows_as_well_as_bytes() {
        let kib = 1 << 10;
        let cut = BlockCut {
            bytes: 64 * kib,
            column_bytes: 8 * kib,
        };
        // 16 columns of floats: 64 KiB is 512 rows, past 64 rows.
        assert!(block_is_full(64 * kib, 512, 16, cut));
        assert!(!block_is_full(64 * kib - 1, 512, 16, cut));
        // One column of floats: 8 KiB (1,024 rows); two: 16 KiB; eight or more: 64 KiB.
        assert!(block_is_full(8 * kib, 1024, 1, cut));
        assert!(!block_is_full(8 * kib - 1, 1023, 1, cut));
        assert!(!block_is_full(12 * kib, 768, 2, cut));
        assert!(block_is_full(16 * kib, 1024, 2, cut));
        assert!(!block_is_full(63 * kib, 1008, 8, cut));
        // A stream whose blocks would compress to under 2 KiB a column (4 KiB for one) at the
        // budget is cut by block_bytes alone; one that stays above keeps the budget.
        assert_eq!(cut.after(8 * kib, 6 * kib, 1), cut);
        assert_eq!(cut.after(8 * kib, kib, 1).column_bytes, usize::MAX);
        assert_eq!(cut.after(64 * kib, 40 * kib, 1), cut);
        assert_eq!(cut.after(64 * kib, 8 * kib, 1).column_bytes, usize::MAX);
        // Six columns of counters, 64 KiB stored in 8 KiB: at 48 KiB, 6 KiB, under 12 KiB.
        assert_eq!(cut.after(64 * kib, 8 * kib, 6).column_bytes, usize::MAX);
        assert_eq!(cut.after(64 * kib, 40 * kib, 6), cut);
        // No column yet (rows of no key): cut as one column.
        assert!(!block_is_full(kib, 100, 0, cut));
        assert!(block_is_full(8 * kib, 2000, 0, cut));
        // 500 columns: 64 KiB is 16 rows; the block goes on to 2,000 rows.
        assert!(!block_is_full(64 * kib, 16, 500, cut));
        assert!(!block_is_full(7 * 1024 * kib, 1_999, 500, cut));
        assert!(block_is_full(8 * 1024 * kib, 2_000, 500, cut));
        // 100,000 columns: the byte limit ends the block first.
        assert!(block_is_full(
            crate::limits::MAX_BLOCK_BYTES,
            40,
            100_000,
            cut
        ));
        let mut b = BlockBuilder::default();
        b.start_row(0);
        for k in 0..500 {
            b.set(&format!("k{k:03}"), Value::F64(k as f64)).unwrap();
        }
        b.close_row();
        assert!(!b.is_full(cut), "one row of 500 columns is not a block");
    }
}
