//! Writing a run: starting it (new, resume, rewind, restart, fork: `start.rs`), logging rows to its streams,
//! committing them at the store's durability, and finishing it.
//!
//! Architecture invariants:
//! - one `RunWriter` per run at a time, across processes (the run lock);
//! - rows reach segments in step order; a version's own rows are all after its parent cutoff;
//! - after an I/O error the writer is poisoned and refuses further writes.

mod bulk;
mod start;

pub use bulk::{Bulk, ShortRun};
pub use start::{Resume, StartRun, Started};

use start::Begun;

use crate::error::{Error, Result};
use crate::lock::RunLock;
use crate::manifest::{Edit, SealMeta};
use crate::options::Durability;
use crate::segment::builder::{BlockBuilder, BlockCut, Refused};
use crate::segment::encoder::{EncodedBlock, Encoder};
use crate::segment::writer::{Image, SealInfo, SegmentWriter};
use crate::store::Store;
use crate::types::{SegmentId, Stream, Value, VersionId};

/// The manifest's record of a segment just sealed.
fn seal_meta(i: SealInfo) -> SealMeta {
    SealMeta {
        rows: i.rows,
        first_step: i.first_step,
        last_step: i.last_step,
        bytes: i.bytes,
    }
}

/// The error for a value the block builder refused.
fn refused_error(run: &str, key: &str, step: u64, refused: Refused) -> Error {
    use crate::limits::{MAX_ROW_BYTES, MAX_VALUE_BYTES};
    match refused {
        Refused::Key(reason) => Error::InvalidName {
            name: key.to_owned(),
            reason,
        },
        Refused::Value(size) => Error::TooLarge {
            run: run.to_owned(),
            what: format!("the string logged for key '{key}' at step {step}"),
            size: size as u64,
            limit: MAX_VALUE_BYTES as u64,
        },
        Refused::Row(size) => Error::TooLarge {
            run: run.to_owned(),
            what: format!("the row at step {step} with key '{key}'"),
            size: size as u64,
            limit: MAX_ROW_BYTES as u64,
        },
    }
}

/// The writing state of one stream.
struct StreamState {
    /// The smallest step the next row may have.
    min_next: u64,
    /// The step a row logged without one takes: the step after this stream's last row in
    /// this writer, or, before its first, after the run's last step in any stream (the one
    /// rule of every stream; console rows may still share a step when given one).
    next_default: u64,
    /// Rows not yet written as a block; the last may be open to merges (merging streams).
    buf: BlockBuilder,
    head: Option<SegmentWriter>,
}

impl StreamState {
    fn new(_: Stream) -> Self {
        StreamState {
            min_next: 0,
            next_default: 0,
            buf: BlockBuilder::default(),
            head: None,
        }
    }

    fn close_open(&mut self) {
        if let Some(step) = self.buf.open_step() {
            self.min_next = step.saturating_add(1);
            self.buf.close_row();
        }
    }

    /// The step the next row without a step takes.
    fn next_step(&self) -> u64 {
        self.next_default.max(self.min_next)
    }

    /// Logs one row of `fields` at `step` (or the next step) of `stream` of `run`: the one
    /// rule of every logging call, a writer's and a short run's. Returns the step used.
    fn log_row<K, V>(
        &mut self,
        run: &str,
        stream: Stream,
        step: Option<u64>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64>
    where
        K: AsRef<str>,
        V: Into<Value>,
    {
        let step = step.unwrap_or_else(|| self.next_step());
        let merging = self.buf.open_step() == Some(step);
        self.enter_row(run, stream, step)?;
        for (k, v) in fields {
            let key = k.as_ref();
            if let Err(refused) = self.buf.set(key, v.into()) {
                // A row this call opened is dropped whole: nothing of the call is logged. In
                // a merge into an open row, the keys before this one stay.
                if !merging {
                    self.buf.discard_open();
                }
                return Err(refused_error(run, key, step, refused));
            }
        }
        self.leave_row(stream, step);
        Ok(step)
    }

    /// Logs row `i` of a column batch (checked by [`check_columns`]) at `step` of history.
    fn log_column_row(
        &mut self,
        run: &str,
        step: u64,
        columns: &[(&str, Batch<'_>)],
        i: usize,
    ) -> Result<()> {
        let stream = Stream::History;
        self.enter_row(run, stream, step)?;
        for (key, c) in columns {
            if let Err(refused) = self.buf.set(key, c.value(i)) {
                return Err(refused_error(run, key, step, refused));
            }
        }
        self.leave_row(stream, step);
        Ok(())
    }

    /// Opens the row at `step` (or continues the open one), refusing a step that goes back.
    fn enter_row(&mut self, run: &str, stream: Stream, step: u64) -> Result<()> {
        if step > crate::limits::MAX_STEP {
            return Err(step_too_large(run, step));
        }
        let regression = |last: u64| Error::StepRegression {
            run: run.to_owned(),
            stream: stream.name().into(),
            last,
            got: step,
        };
        if let Some(open) = self.buf.open_step() {
            if step < open {
                return Err(regression(open));
            }
            if step > open {
                self.close_open();
            }
        }
        if self.buf.open_step().is_none() {
            if step < self.min_next {
                return Err(regression(self.min_next.saturating_sub(1)));
            }
            self.buf.start_row(step);
        }
        Ok(())
    }

    /// After a row's values: console rows close at once, and the next may share the step
    /// when given it; a row without a step goes after this one, in every stream.
    fn leave_row(&mut self, stream: Stream, step: u64) {
        self.next_default = step.saturating_add(1);
        if !stream.merges_steps() {
            self.close_open();
            self.min_next = step;
        }
    }
}

fn step_too_large(run: &str, step: u64) -> Error {
    Error::StepTooLarge {
        run: run.to_owned(),
        step,
        max: crate::limits::MAX_STEP,
    }
}

/// Checks a column batch before any of it is logged: one value per step in every column,
/// steps strictly increasing and at most `MAX_STEP`, valid keys.
fn check_columns(run: &str, steps: &[u64], columns: &[(&str, Batch<'_>)]) -> Result<()> {
    if let Some((key, c)) = columns.iter().find(|(_, c)| c.len() != steps.len()) {
        return Err(Error::InvalidInput(format!(
            "column '{key}' has {} values for {} steps",
            c.len(),
            steps.len()
        )));
    }
    if let Some(w) = steps.windows(2).find(|w| w[1] <= w[0]) {
        return Err(Error::InvalidInput(format!(
            "steps of a batch must increase: step {} follows {}",
            w[1], w[0]
        )));
    }
    if let Some((key, reason)) = columns
        .iter()
        .find_map(|(k, _)| crate::limits::check_key(k).err().map(|r| (k, r)))
    {
        return Err(Error::InvalidName {
            name: (*key).to_owned(),
            reason,
        });
    }
    match steps.last() {
        Some(&last) if last > crate::limits::MAX_STEP => Err(step_too_large(run, last)),
        _ => Ok(()),
    }
}

/// One column of a [`RunWriter::log_columns`] batch: a value per step of the batch.
#[derive(Debug, Clone, Copy)]
pub enum Batch<'a> {
    /// Floats.
    F64(&'a [f64]),
    /// Integers.
    I64(&'a [i64]),
    /// Booleans.
    Bool(&'a [bool]),
}

impl Batch<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Batch::F64(v) => v.len(),
            Batch::I64(v) => v.len(),
            Batch::Bool(v) => v.len(),
        }
    }

    /// Whether the column holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn value(&self, i: usize) -> Value {
        match self {
            Batch::F64(v) => Value::F64(v[i]),
            Batch::I64(v) => Value::I64(v[i]),
            Batch::Bool(v) => Value::Bool(v[i]),
        }
    }
}

/// Writes one run. Made by [`StartRun::start`]; holds the run's lock until finished or dropped.
///
/// Rows are buffered and written as a block when the block fills; [`commit`](Self::commit)
/// writes what is buffered and makes it as durable as the store's [`Durability`] says.
///
/// End a writer with [`finish`](Self::finish) (or [`abort`](Self::abort)) and look at its
/// result: that is how to know every row is kept. Dropping a writer without either writes
/// nothing to the store, so no failure can be hidden in it (as a redb or fjall write
/// transaction dropped uncommitted is rolled back, not committed): it leaves what a crash of
/// the writer at that point would. Every committed row stays; rows logged after the last
/// commit may be lost (those still buffered are, and the drop says so on standard error); the
/// run reads `crashed`, and a later writer resumes it. The run lock is released and the
/// encoder thread stopped by the drop.
pub struct RunWriter {
    store: Store,
    run: String,
    version: VersionId,
    archived: Option<VersionId>,
    /// Always held by a writer (`begin(false)` takes it).
    _lock: Option<RunLock>,
    streams: [StreamState; 3],
    /// Where each stream's next block is cut: the store's cut, after the stream's last block
    /// (`BlockCut::after`).
    cuts: [BlockCut; 3],
    /// Compresses full blocks on another thread while logging goes on.
    encoder: Encoder,
    poisoned: bool,
    done: bool,
    /// The process that opened the writer: a forked child (another pid) never writes.
    pid: u32,
}

impl std::fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter")
            .field("run", &self.run)
            .field("version", &self.version)
            .finish()
    }
}

impl RunWriter {
    /// The writer of a run just started (its lock held, its head made).
    fn new(store: Store, run: String, lock: Option<RunLock>, begun: Begun) -> RunWriter {
        let mut streams: [StreamState; 3] = Stream::ALL.map(StreamState::new);
        // Every stream's first row without a step goes after the run's last step in any
        // stream (console rows may be given that last step, to annotate it).
        let first_default = begun.min_next.iter().copied().max().unwrap_or(0);
        for (s, next) in streams.iter_mut().zip(begun.min_next) {
            s.min_next = next;
            s.next_default = first_default;
        }
        RunWriter {
            cuts: Stream::ALL.map(|s| store.options().block_cut(s)),
            store,
            run,
            version: begun.version,
            archived: begun.archived,
            _lock: lock,
            streams,
            encoder: Encoder::new(),
            poisoned: false,
            done: false,
            pid: std::process::id(),
        }
    }

    /// The run's name.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The version being written (the run's head).
    pub fn version(&self) -> VersionId {
        self.version
    }

    /// The version this writer's rewind archived, if it was started with a rewind.
    pub fn archived(&self) -> Option<VersionId> {
        self.archived
    }

    /// The step the next [`log`](Self::log) call without a step would use in `stream`.
    pub fn next_step(&self, stream: Stream) -> u64 {
        self.streams[stream.index()].next_step()
    }

    /// Logs values at the next step of `history` (see [`log_row`](Self::log_row)).
    pub fn log<K, V>(&mut self, fields: impl IntoIterator<Item = (K, V)>) -> Result<u64>
    where
        K: AsRef<str>,
        V: Into<Value>,
    {
        self.log_row(Stream::History, None, fields)
    }

    /// Logs values at `step` of `history`. Calls at the same step merge into one row; a step
    /// before the open one, or not after a committed one, is refused with `StepRegression`.
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

    /// Logs values to any stream, at `step` or the stream's next step. Returns the step used.
    ///
    /// The next step, the one rule of every stream: the step after the stream's last row in
    /// this writer; before a stream's first row, the step after the run's last step in any
    /// stream (0 for a new run; after a rewind or fork to step S, S + 1). `history` and
    /// `system` rows at one step merge; console rows are rows of their own and may share a
    /// step when given one (a line annotating the last step).
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
        self.check_usable()?;
        let s = &mut self.streams[stream.index()];
        let step = s.log_row(&self.run, stream, step, fields)?;
        self.leave_row(stream)?;
        Ok(step)
    }

    /// Logs whole columns at once: row `i` is step `steps[i]` with the `i`-th value of every
    /// column, exactly as if [`log_at`](Self::log_at) were called for each step in order (so
    /// the last step stays open to merges, and a first step equal to the open one merges
    /// into it). Steps must increase strictly and every column must hold one value per step;
    /// otherwise nothing is logged. The bulk path: no `Value` is built per point.
    pub fn log_columns(&mut self, steps: &[u64], columns: &[(&str, Batch<'_>)]) -> Result<()> {
        self.check_usable()?;
        check_columns(&self.run, steps, columns)?;
        let stream = Stream::History;
        for (i, &step) in steps.iter().enumerate() {
            self.streams[stream.index()].log_column_row(&self.run, step, columns, i)?;
            self.leave_row(stream)?;
        }
        Ok(())
    }

    /// After a row's values: writes a block when full.
    fn leave_row(&mut self, stream: Stream) -> Result<()> {
        let s = &self.streams[stream.index()];
        if s.buf.is_full(self.cuts[stream.index()]) && s.buf.has_closed() {
            let r = self.flush(stream);
            self.guard(r)?;
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned {
                run: self.run.clone(),
            });
        }
        if self.done {
            return Err(Error::Finished {
                run: self.run.clone(),
            });
        }
        Ok(())
    }

    /// Refuses to touch the store from a forked child of the process that opened the writer
    /// (checked where the writer writes, not on each logged value: a forked child's buffered
    /// rows are its own memory).
    fn check_process(&self) -> Result<()> {
        let pid = std::process::id();
        if pid != self.pid {
            return Err(Error::Forked {
                run: self.run.clone(),
                owner: self.pid,
                pid,
            });
        }
        Ok(())
    }

    /// Poisons the writer on any failure below the API (I/O, corruption).
    fn guard<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if matches!(e, Error::Io { .. }) || e.is_corruption() {
                self.poisoned = true;
            }
        }
        r
    }

    /// Hands the closed rows of `stream` to the encoder as one block, and writes the blocks
    /// it has finished that must be taken now (see [`Encoder`]).
    fn flush(&mut self, stream: Stream) -> Result<()> {
        let i = stream.index();
        if !self.streams[i].buf.has_closed() {
            return Ok(());
        }
        self.check_process()?;
        let raw = self.streams[i].buf.raw_estimate();
        let block = self.streams[i].buf.take_closed();
        let level = self.store.options().compression_level;
        for done in self.encoder.submit(i, block, raw, level) {
            self.write_encoded(done)?;
        }
        Ok(())
    }

    /// Waits for every block handed to the encoder and writes it.
    fn drain_encoder(&mut self) -> Result<()> {
        self.check_process()?;
        for done in self.encoder.drain() {
            self.write_encoded(done)?;
        }
        Ok(())
    }

    /// Appends an encoded block to its stream's head segment (opening one if needed), and
    /// seals the head once it reaches the segment size target.
    fn write_encoded(
        &mut self,
        (i, encoded): (usize, std::io::Result<EncodedBlock>),
    ) -> Result<()> {
        let Some(&stream) = Stream::ALL.get(i) else {
            // The encoder thread stopped: an I/O-class failure, so the writer is poisoned.
            let e = encoded
                .err()
                .unwrap_or_else(|| std::io::Error::other("encoder stopped"));
            return Err(Error::io(self.store.dir(), e));
        };
        let encoded = match encoded {
            Ok(e) => e,
            Err(e) => return Err(Error::io(self.store.dir(), e)),
        };
        let full_footer = self.streams[i]
            .head
            .as_ref()
            .is_some_and(|h| !h.has_room_for(&encoded));
        if full_footer {
            self.seal_head(stream)?;
        }
        if self.streams[i].head.is_none() {
            let w = self.store.create_segment(self.version, stream)?;
            self.streams[i].head = Some(w);
        }
        self.cuts[i] = self.store.options().block_cut(stream).after(
            encoded.raw_len,
            encoded.frame.len(),
            encoded.agg.keys.len(),
        );
        let s = &mut self.streams[i];
        if let Some(head) = s.head.as_mut() {
            head.append(encoded)?;
        }
        let full = s
            .head
            .as_ref()
            .is_some_and(|h| h.len >= self.store.options().segment_bytes);
        if full {
            self.seal_head(stream)?;
        }
        Ok(())
    }

    fn seal_head(&mut self, stream: Stream) -> Result<()> {
        let Some(head) = self.streams[stream.index()].head.take() else {
            return Ok(());
        };
        let id = head.id;
        let info = head.seal(self.store.options().durability == Durability::PowerLoss)?;
        let version = self.version;
        self.store.transact(|_| {
            let edit = Edit::Seal {
                version,
                segment: id,
                seal: seal_meta(info),
            };
            Ok((vec![edit], ()))
        })
    }

    /// Commits every row logged so far, in every stream: the open step is closed (a later
    /// call at that step is a `StepRegression`), buffered rows are written, and with
    /// [`Durability::PowerLoss`] the head segments are fsynced. Readers in every process see
    /// the rows once this returns.
    pub fn commit(&mut self) -> Result<()> {
        self.check_usable()?;
        let r = self.commit_inner();
        self.guard(r)
    }

    fn commit_inner(&mut self) -> Result<()> {
        self.check_process()?;
        for stream in Stream::ALL {
            self.streams[stream.index()].close_open();
            self.flush(stream)?;
        }
        self.drain_encoder()?;
        if self.store.options().durability == Durability::PowerLoss {
            for s in &self.streams {
                if let Some(h) = &s.head {
                    h.sync()?;
                }
            }
        }
        Ok(())
    }

    /// Commits what was logged and lets the run go without finishing it: the run is left
    /// `crashed`, as when a writer's process dies (what W&B does when the code inside a
    /// `with` block raises). A later writer resumes it.
    pub fn abort(mut self) -> Result<()> {
        self.check_usable()?;
        let r = self.commit_inner();
        let r = self.guard(r);
        self.done = true;
        r
    }

    /// Commits, seals the head segments and marks the run finished.
    pub fn finish(mut self) -> Result<()> {
        self.check_usable()?;
        let r = self.finish_inner();
        self.guard(r)
    }

    /// Commits, seals and finishes in one manifest transaction. A stream that never reached a
    /// file (its rows are still one buffered block) and whose sealed segment is small
    /// (`Options::inline_segment_bytes`) is carried inside that transaction as an inline
    /// segment: a short run is two manifest edits (start, finish) and no file.
    fn finish_inner(&mut self) -> Result<()> {
        self.check_process()?;
        for s in &mut self.streams {
            s.close_open();
        }
        // Blocks already with the encoder reach their files first: a stream with no head
        // after this wrote nothing yet.
        self.drain_encoder()?;
        let mut images = self.inline_images()?;
        for stream in Stream::ALL {
            self.flush(stream)?;
        }
        self.drain_encoder()?;
        let sync = self.store.options().durability == Durability::PowerLoss;
        let mut edits = Vec::new();
        for s in &mut self.streams {
            if let Some(head) = s.head.take() {
                let segment = head.id;
                let seal = seal_meta(head.seal(sync)?);
                edits.push(Edit::Seal {
                    version: self.version,
                    segment,
                    seal,
                });
            }
        }
        let version = self.version;
        let store = self.store.clone();
        let finished = store.transact(|state| {
            if !images.is_empty() && !state.takes_inline() {
                return Ok((Vec::new(), false));
            }
            let mut edits = std::mem::take(&mut edits);
            // Ids from the counter: an inline segment is never a file, so a file of the same
            // id (created, never recorded) is not it (verify and gc treat it as unreferenced).
            for (id, image) in (state.next_segment..).zip(&images) {
                edits.push(Edit::Inline {
                    version,
                    stream: image.stream(),
                    segment: SegmentId(id),
                    seal: seal_meta(image.info),
                    bytes: image.with_id(SegmentId(id)),
                });
            }
            edits.push(Edit::Finish { version });
            Ok((edits, true))
        })?;
        if !finished {
            // The manifest is of format 3 (written by an older steplog, not yet compacted):
            // it takes no inline segment, so these streams go to files as before.
            for image in std::mem::take(&mut images) {
                let i = image.stream().index();
                for block in image.into_blocks() {
                    self.write_encoded((i, Ok(block)))?;
                }
            }
            for stream in Stream::ALL {
                self.seal_head(stream)?;
            }
            edits.push(Edit::Finish { version });
            store.transact(|_| Ok((edits, ())))?;
        }
        self.done = true;
        Ok(())
    }

    /// The streams carried inline by `finish`: each with no head segment and closed rows
    /// whose sealed segment is at most `Options::inline_segment_bytes`.
    fn inline_images(&mut self) -> Result<Vec<Image>> {
        let limit = self.store.options().inline_segment_bytes;
        let level = self.store.options().compression_level;
        let mut images = Vec::new();
        for stream in Stream::ALL {
            let s = &mut self.streams[stream.index()];
            if limit == 0 || s.head.is_some() || !s.buf.has_closed() {
                continue;
            }
            let block = s.buf.take_closed();
            let encoded =
                EncodedBlock::encode(&block, level).map_err(|e| Error::io(self.store.dir(), e))?;
            let image = Image::new(stream, self.version, vec![encoded])
                .map_err(|e| Error::io(self.store.dir(), e))?;
            if image.info.bytes as usize <= limit {
                images.push(image);
            } else {
                for block in image.into_blocks() {
                    self.write_encoded((stream.index(), Ok(block)))?;
                }
            }
        }
        Ok(images)
    }
}

/// Nothing written to the store: see [`RunWriter`]. Rows that were logged but never written are not lost
/// silently: the drop names the run on standard error (once per writer; nothing is said for
/// a writer that committed everything, was poisoned, or is a forked child's copy).
impl Drop for RunWriter {
    fn drop(&mut self) {
        if self.done || self.poisoned || std::process::id() != self.pid {
            return;
        }
        let buffered = self
            .streams
            .iter()
            .any(|s| s.buf.has_closed() || s.buf.open_step().is_some());
        if buffered || !self.encoder.is_idle() {
            eprintln!(
                "steplog: the writer of run '{}' was dropped without finish() or abort(): the \
                 rows logged since its last commit are not written, and the run is left crashed",
                self.run
            );
        }
    }
}
