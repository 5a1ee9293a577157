//! Writing many short runs at once ([`Bulk`]): each run's rows are buffered and encoded in
//! memory ([`ShortRun`]), and a commit creates every run of the bulk, finished, with its
//! streams as inline segments, in one manifest edit (`batch`, manifest format 6) under
//! `LOCK`: one append for the whole bulk instead of two per run, no file, no run lock.
//!
//! Invariants:
//! - a bulk holds only new runs, each once; a commit creates all of them or none (one edit,
//!   whole or torn away), and is refused whole (`RunExists`) if any name is taken by then;
//! - each run's streams are exactly the segments a [`RunWriter`](crate::RunWriter) finishing
//!   the same rows at once would carry inline: the same logging rules (one function,
//!   `StreamState::log_row`), the same blocks, footers and checks on read;
//! - a run is refused by [`Bulk::add`], not by the commit, when a stream would not fit an
//!   inline segment ([`Options::inline_segment_bytes`](crate::Options::inline_segment_bytes)):
//!   such a run is not short, and is written by a `RunWriter`.

use crate::error::{Error, Result};
use crate::limits::MAX_BULK_BYTES;
use crate::manifest::{BatchRun, ConfigJson, Edit, PackSegment};
use crate::reference::validate_run_name;
use crate::segment::builder::BlockCut;
use crate::segment::encoder::EncodedBlock;
use crate::segment::writer::{Image, Placed};
use crate::store::{config_json, now_secs, Store};
use crate::types::{SegmentId, Stream, Value, VersionId};

use super::{check_columns, seal_meta, Batch, StreamState};

/// Many short runs written at once: made by [`Store::bulk`], filled with [`add`](Self::add),
/// written with [`commit`](Self::commit). For what a benchmark harness or an importer writes:
/// thousands of finished runs of a few hundred points each, where a
/// [`RunWriter`](crate::RunWriter) per run would make two locked manifest appends per run.
///
/// A commit is one manifest append: every run of the bulk is created finished, with all its
/// rows, or (a crash before the append is whole) none is. Readers in every process see them
/// all at once. What a bulk holds before its commit is memory only: a crash or a drop loses
/// it, as rows a writer never committed.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = steplog::Store::open(dir.path())?;
/// let mut bulk = store.bulk();
/// for trial in 0..3 {
///     let mut run = bulk.run(&format!("trial-{trial}"));
///     run.set_config(serde_json::json!({"lr": 0.01 * trial as f64}));
///     for step in 0..20 {
///         run.log_at(step, [("loss", 1.0 / (step + 1) as f64)])?;
///     }
///     bulk.add(run)?;
/// }
/// let versions = bulk.commit()?;
/// assert_eq!(versions.len(), 3);
/// assert_eq!(store.summary("trial-2")?.keys["loss"].count, 20);
/// # Ok::<(), steplog::Error>(())
/// ```
pub struct Bulk {
    store: Store,
    runs: Vec<Encoded>,
    /// Every run's segments, one after the other (given their ids at commit, in place).
    arena: Vec<u8>,
    names: std::collections::HashSet<String>,
    bytes: usize,
    /// The last history block encoded, whose buffers the next short run logs into.
    spare: std::sync::Mutex<Option<crate::segment::block::Block>>,
}

/// A run added to a bulk: its config checked, its streams encoded into the bulk's arena.
struct Encoded {
    name: String,
    config: ConfigJson,
    segments: Vec<Placed>,
}

/// One short run's rows, buffered in memory until it is [added](Bulk::add) to its bulk. Logs
/// as a [`RunWriter`](crate::RunWriter) of a new run does: the same calls, the same rules
/// (steps, merges, keys, sizes), the same errors.
pub struct ShortRun {
    name: String,
    config: Option<serde_json::Value>,
    streams: [StreamState; 3],
    /// The blocks of each stream encoded so far (when its buffer filled a block).
    blocks: [Vec<EncodedBlock>; 3],
    /// Where each stream's blocks are cut.
    cuts: [BlockCut; 3],
    level: i32,
    /// The store's directory, named by an encoding failure.
    dir: std::path::PathBuf,
}

impl std::fmt::Debug for Bulk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulk")
            .field("runs", &self.runs.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl std::fmt::Debug for ShortRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShortRun")
            .field("name", &self.name)
            .finish()
    }
}

impl Store {
    /// Starts a bulk of new short runs, written together in one manifest edit by
    /// [`Bulk::commit`].
    pub fn bulk(&self) -> Bulk {
        Bulk {
            store: self.clone(),
            runs: Vec::new(),
            arena: Vec::new(),
            names: std::collections::HashSet::new(),
            bytes: 0,
            spare: std::sync::Mutex::new(None),
        }
    }
}

impl Bulk {
    /// A new short run named `name`, to fill and then [`add`](Self::add). Its name is checked
    /// when it is added.
    pub fn run(&self, name: &str) -> ShortRun {
        let o = self.store.options();
        let mut streams = Stream::ALL.map(StreamState::new);
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(block) = spare {
            streams[Stream::History.index()].buf.recycle(block);
        }
        ShortRun {
            name: name.to_owned(),
            config: None,
            streams,
            blocks: Default::default(),
            cuts: Stream::ALL.map(|s| o.block_cut(s)),
            level: o.compression_level,
            dir: self.store.dir().to_owned(),
        }
    }

    /// Adds `run` to the bulk: its name and config are checked, and its streams encoded.
    /// Refused, with the bulk unchanged: an invalid name or config, a name the bulk already
    /// holds (`RunExists`), a stream whose segment would be larger than
    /// [`Options::inline_segment_bytes`](crate::Options::inline_segment_bytes) or a bulk
    /// past [`MAX_BULK_BYTES`] (`TooLarge`: write that run with a writer, or commit first).
    pub fn add(&mut self, run: ShortRun) -> Result<()> {
        validate_run_name(&run.name)?;
        if self.names.contains(&run.name) {
            return Err(Error::RunExists { run: run.name });
        }
        let ShortRun {
            name,
            config,
            mut streams,
            mut blocks,
            level,
            ..
        } = run;
        let config = config.map(config_json).transpose()?.unwrap_or_default();
        let limit = self.store.options().inline_segment_bytes;
        let io = |e| Error::io(self.store.dir(), e);
        let mut images = Vec::new();
        let mut bytes = name.len() + config.text().len();
        for stream in Stream::ALL {
            let i = stream.index();
            streams[i].close_open();
            if streams[i].buf.has_closed() {
                let block = streams[i].buf.take_closed();
                blocks[i].push(EncodedBlock::encode(&block, level).map_err(io)?);
                if stream == Stream::History {
                    *self.spare.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(block);
                }
            }
            let blocks = std::mem::take(&mut blocks[i]);
            if blocks.is_empty() {
                continue;
            }
            let image = Image::new(stream, VersionId(0), blocks).map_err(io)?;
            if image.info.bytes as usize > limit {
                return Err(Error::TooLarge {
                    run: name,
                    what: format!(
                        "the {} of a run in a bulk (an inline segment: \
                         Options::inline_segment_bytes; write a run this long with a RunWriter)",
                        stream.name()
                    ),
                    size: image.info.bytes,
                    limit: limit as u64,
                });
            }
            bytes += image.info.bytes as usize;
            images.push(image);
        }
        if self.bytes + bytes > MAX_BULK_BYTES {
            return Err(Error::TooLarge {
                run: name,
                what: "a bulk with this run added (commit the bulk, then add the run to the next)"
                    .into(),
                size: (self.bytes + bytes) as u64,
                limit: MAX_BULK_BYTES as u64,
            });
        }
        self.bytes += bytes;
        self.names.insert(name.clone());
        let segments = images.iter().map(|i| i.place(&mut self.arena)).collect();
        self.runs.push(Encoded {
            name,
            config,
            segments,
        });
        Ok(())
    }

    /// How many runs the bulk holds, not yet committed.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether the bulk holds no run.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The bytes the bulk holds: its runs' encoded segments, names and configs (at most
    /// [`MAX_BULK_BYTES`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Creates every run of the bulk, finished, in one manifest append, and empties the bulk.
    /// Returns the runs' versions in the order they were added. Refused whole, with nothing
    /// written and the bulk unchanged, if a run of that name exists by then (`RunExists`,
    /// naming it). On a manifest of an older format (written by an older steplog), the
    /// manifest is first rewritten in the current format (a compaction), which takes
    /// batches.
    pub fn commit(&mut self) -> Result<Vec<VersionId>> {
        if self.runs.is_empty() {
            return Ok(Vec::new());
        }
        if !self.store.current_state().takes_batch() {
            self.store.upgrade_manifest()?;
        }
        let (runs, arena) = (&self.runs, &mut self.arena);
        // The arena, frozen to be shared by the edit's segments; given back if the commit
        // fails, so that the bulk is unchanged.
        let mut frozen = None;
        let committed = self.store.transact(|state| {
            if !state.takes_batch() {
                return Err(Error::InvalidInput(
                    "the store's manifest was rewritten in an older format while a bulk \
                     committed (an older steplog compacted it): commit again"
                        .into(),
                ));
            }
            // A name taken by then refuses the edit whole (`RunExists`, `State::taken_name`),
            // checked by the transaction on the lookups it makes to apply the edit.
            let mut segment = state.next_segment;
            for (r, v) in runs.iter().zip(state.next_version..) {
                for placed in &r.segments {
                    placed.set_ids(arena, VersionId(v), SegmentId(segment));
                    segment += 1;
                }
            }
            // The next bulk's arena takes as much room as this one's at once (it grew by
            // doubling, copying all it held each time).
            let next = Vec::with_capacity(arena.len());
            let bytes = bytes::Bytes::from(std::mem::replace(arena, next));
            frozen = Some(bytes.clone());
            let time = now_secs();
            let mut segment = state.next_segment;
            let mut batch = Vec::with_capacity(runs.len());
            for (r, v) in runs.iter().zip(state.next_version..) {
                let segments = r
                    .segments
                    .iter()
                    .map(|placed| {
                        let id = SegmentId(segment);
                        segment += 1;
                        PackSegment {
                            stream: placed.stream(),
                            segment: id,
                            seal: seal_meta(placed.info),
                            bytes: bytes.slice(placed.range.clone()),
                        }
                    })
                    .collect();
                batch.push(BatchRun {
                    run: r.name.clone(),
                    version: VersionId(v),
                    config: r.config.clone(),
                    time,
                    segments,
                });
            }
            let versions = batch.iter().map(|r| r.version).collect();
            Ok((vec![Edit::Batch { runs: batch }], versions))
        });
        let versions = match committed {
            Ok(versions) => versions,
            Err(e) => {
                if let Some(bytes) = frozen {
                    self.arena = Vec::from(bytes);
                }
                return Err(e);
            }
        };
        self.runs.clear();
        self.names.clear();
        self.bytes = 0;
        Ok(versions)
    }
}

impl ShortRun {
    /// The run's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the run's config (a JSON object, checked when the run is added).
    pub fn set_config(&mut self, config: serde_json::Value) {
        self.config = Some(config);
    }

    /// The step the next [`log`](Self::log) call without a step would use in `stream`.
    pub fn next_step(&self, stream: Stream) -> u64 {
        self.streams[stream.index()].next_step()
    }

    /// Logs values at the next step of `history`, as [`RunWriter::log`](crate::RunWriter::log).
    pub fn log<K, V>(&mut self, fields: impl IntoIterator<Item = (K, V)>) -> Result<u64>
    where
        K: AsRef<str>,
        V: Into<Value>,
    {
        self.log_row(Stream::History, None, fields)
    }

    /// Logs values at `step` of `history`, as [`RunWriter::log_at`](crate::RunWriter::log_at).
    pub fn log_at<K, V>(
        &mut self,
        step: u64,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64>
    where
        K: AsRef<str>,
        V: Into<Value>,
    {
        self.log_row(Stream::History, Some(step), fields)
    }

    /// Logs values to any stream, as [`RunWriter::log_row`](crate::RunWriter::log_row).
    pub fn log_row<K, V>(
        &mut self,
        stream: Stream,
        step: Option<u64>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64>
    where
        K: AsRef<str>,
        V: Into<Value>,
    {
        let s = &mut self.streams[stream.index()];
        let step = s.log_row(&self.name, stream, step, fields)?;
        self.leave_row(stream)?;
        Ok(step)
    }

    /// Logs whole columns of `history`, as
    /// [`RunWriter::log_columns`](crate::RunWriter::log_columns).
    pub fn log_columns(&mut self, steps: &[u64], columns: &[(&str, Batch<'_>)]) -> Result<()> {
        check_columns(&self.name, steps, columns)?;
        for (i, &step) in steps.iter().enumerate() {
            self.streams[Stream::History.index()].log_column_row(&self.name, step, columns, i)?;
            self.leave_row(Stream::History)?;
        }
        Ok(())
    }

    /// Encodes the closed rows of `stream` as a block once they fill one, as a writer does.
    fn leave_row(&mut self, stream: Stream) -> Result<()> {
        let i = stream.index();
        let s = &mut self.streams[i];
        if s.buf.is_full(self.cuts[i]) && s.buf.has_closed() {
            let block = s.buf.take_closed();
            let encoded =
                EncodedBlock::encode(&block, self.level).map_err(|e| Error::io(&self.dir, e))?;
            self.blocks[i].push(encoded);
        }
        Ok(())
    }
}
