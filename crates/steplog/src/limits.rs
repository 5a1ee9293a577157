//! The sizes steplog stores, in one place for writers and readers alike: a writer refuses at
//! log time, with an error naming the run, the key and the size, anything a reader would
//! refuse, so an acknowledged row is always readable.
//!
//! How they fit together: a block holds closed rows until their estimated size reaches
//! [`MAX_BLOCK_BYTES`] at most, plus the one row that crossed it, so its raw length stays
//! below `MAX_BLOCK_BYTES + MAX_ROW_BYTES` (48 MiB), far under the readers' 256 MiB. A segment
//! is sealed before its footer (index and per-block aggregates) could pass
//! `FOOTER_TARGET` (64 MiB), and aggregates keep strings of at most [`AGG_STRING_BYTES`],
//! so a footer stays far below the same 256 MiB.

/// The largest step a row can have: 2^63 − 1, so that every step is also an `i64` (Parquet's
/// INT64 `_step`, pandas, SQL engines) and the step after the last one never wraps.
pub const MAX_STEP: u64 = i64::MAX as u64;

/// The longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// The longest string value, in bytes of UTF-8.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// The largest row: its keys and values as the encoder writes them, before compression.
pub const MAX_ROW_BYTES: usize = 32 << 20;

/// The largest [`Options::block_bytes`](crate::Options::block_bytes).
pub const MAX_BLOCK_BYTES: usize = 16 << 20;

/// The largest config of a version, as JSON text.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The largest [`Options::inline_segment_bytes`](crate::Options::inline_segment_bytes): an
/// inline segment is one manifest edit and one table record, both read whole.
pub const MAX_INLINE_SEGMENT_BYTES: usize = 64 << 10;

/// The largest [`Bulk`](crate::Bulk): its runs' inline segments, names and configs, in
/// bytes. A bulk is one manifest edit, read whole by every process until a compaction.
pub const MAX_BULK_BYTES: usize = 16 << 20;

/// The largest raw (uncompressed) length a reader accepts for a block or a footer.
pub(crate) const MAX_RAW_LEN: u32 = 256 << 20;

/// A head segment is sealed before its footer could grow past this many raw bytes.
pub(crate) const FOOTER_TARGET: usize = 64 << 20;

/// A string longer than this is not copied into aggregates (first, last): the aggregate keeps
/// its step only, and a summary reads the value from its block.
pub(crate) const AGG_STRING_BYTES: usize = 256;

/// The key reserved for the step in every row-shaped format (JSON Lines, CSV, Parquet).
pub const STEP_KEY: &str = "_step";

/// The most buckets a downsample returns (`Store::downsample`): a chart's pixel columns, with
/// room to spare; more would only allocate.
pub const MAX_BUCKETS: usize = 1 << 20;

/// Checks a key: 1 to [`MAX_KEY_BYTES`] bytes, no control characters, no empty `/` section
/// (`a/`, `/a`, `a//b`), and not [`STEP_KEY`]. The one rule for keys, applied by the library
/// (and so by the CLI, the importers and Python).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a key cannot be empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a key is at most {MAX_KEY_BYTES} bytes, this one is {}",
            key.len()
        ));
    }
    if key == STEP_KEY {
        return Err(format!(
            "'{STEP_KEY}' is reserved for the step (pass the step as the step, not as a value)"
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("a key cannot hold control characters".into());
    }
    if key.split('/').any(str::is_empty) {
        return Err("a key cannot have an empty '/' section (as in 'a/', '/a' or 'a//b')".into());
    }
    Ok(())
}
