//! Encoding blocks off the writer's thread: column encoding, zstd and the block aggregate are
//! pure CPU work, so a writer hands each full block to one worker thread and goes on filling
//! the next while it is compressed. Frames come back in the order blocks went in.
//!
//! Invariants: results are returned strictly in submission order (one worker, FIFO queues);
//! at most `MAX_INFLIGHT` blocks are queued, and more than `MIN_INFLIGHT` only while their raw
//! bytes stay under `MAX_INFLIGHT_BYTES`, so memory stays bounded; the worker does no I/O
//! (the writer thread alone writes files, so the I/O seam and its fault injection see every
//! write); if the worker cannot be started or stops, blocks are encoded inline instead.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use crate::segment::block::{self, Block};
use crate::summary::Agg;

/// Blocks handed to the worker and not yet taken back: always up to `MIN_INFLIGHT` (of any
/// size), up to `MAX_INFLIGHT` while they hold at most
/// `MAX_INFLIGHT_BYTES` raw, so that the small blocks of a narrow run (8 KiB for one key)
/// keep the worker busy while the writer fills the next ones.
const MIN_INFLIGHT: usize = 2;
const MAX_INFLIGHT: usize = 8;
const MAX_INFLIGHT_BYTES: usize = 1 << 20;

/// A block ready to append: its frame, its aggregate and its index facts.
#[derive(Debug)]
pub(crate) struct EncodedBlock {
    pub frame: Vec<u8>,
    pub agg: Agg,
    /// The raw bytes its index entry and aggregate add to a footer, once asked for
    /// ([`footer_bytes`](Self::footer_bytes): a segment writer asks, a bulk's short run,
    /// whose one segment holds all its blocks, does not).
    footer_bytes: std::cell::OnceCell<usize>,
    /// The block's raw length (the frame header's): with the frame's, its compression.
    pub raw_len: usize,
    pub nrows: u32,
    pub first_step: u64,
    pub last_step: u64,
}

impl EncodedBlock {
    /// Encodes `block` (at least one row) at zstd `level`.
    pub fn encode(block: &Block, level: i32) -> std::io::Result<EncodedBlock> {
        let frame = block::encode(block, level)?;
        let mut agg = Agg::default();
        agg.add_block(block, u64::MAX);
        Ok(EncodedBlock {
            raw_len: frame_raw_len(&frame),
            frame,
            footer_bytes: std::cell::OnceCell::new(),
            agg,
            nrows: block.steps.len() as u32,
            first_step: block.steps[0],
            last_step: block.steps[block.steps.len() - 1],
        })
    }

    /// The raw bytes its index entry and aggregate add to a footer.
    pub fn footer_bytes(&self) -> usize {
        *self
            .footer_bytes
            .get_or_init(|| crate::segment::footer::block_footer_bytes(&self.agg))
    }
}

/// The raw length the header of a frame just encoded gives.
fn frame_raw_len(frame: &[u8]) -> usize {
    match block::FrameHeader::parse(frame) {
        Ok(Some(h)) => h.raw_len as usize,
        _ => 0,
    }
}

/// A block tagged with the stream (index) it belongs to.
type Job = (usize, Block, i32);
type Done = (usize, std::io::Result<EncodedBlock>);

/// The worker and its queues.
#[derive(Debug)]
pub(crate) struct Encoder {
    worker: Option<(Sender<Job>, Receiver<Done>, JoinHandle<()>)>,
    /// The raw bytes of each block handed over and not taken back, oldest first.
    inflight: std::collections::VecDeque<usize>,
    /// Their sum.
    inflight_bytes: usize,
    /// Blocks submitted so far.
    submitted: u64,
    /// The process that started the thread.
    pid: u32,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            worker: None,
            inflight: Default::default(),
            inflight_bytes: 0,
            submitted: 0,
            pid: std::process::id(),
        }
    }

    /// Hands a block of about `raw` bytes over. Returns the results that must be taken now
    /// to keep the queue bounded (oldest first).
    pub fn submit(&mut self, stream: usize, block: Block, raw: usize, level: i32) -> Vec<Done> {
        // A writer's first block is encoded inline: short runs (one block at commit) never
        // pay for starting a thread; the worker starts with the second block.
        self.submitted += 1;
        if self.worker.is_none() && self.submitted >= 2 {
            self.worker = spawn();
        }
        let job = (stream, block, level);
        let job = match &self.worker {
            Some((tx, _, _)) => match tx.send(job) {
                Ok(()) => {
                    self.inflight.push_back(raw);
                    self.inflight_bytes += raw;
                    None
                }
                Err(e) => Some(e.0),
            },
            None => Some(job),
        };
        let mut out = Vec::new();
        if let Some((stream, block, level)) = job {
            // No worker (or it stopped): take back what it had, then encode inline.
            out.extend(self.drain());
            self.worker = None;
            out.push((stream, EncodedBlock::encode(&block, level)));
        }
        while self.must_wait() {
            out.extend(self.take_one());
        }
        out
    }

    /// Whether the queue is past its bound (module docs), so a result must be taken back.
    fn must_wait(&self) -> bool {
        let n = self.inflight.len();
        n > MAX_INFLIGHT || (n > MIN_INFLIGHT && self.inflight_bytes > MAX_INFLIGHT_BYTES)
    }

    /// Every result not yet taken, oldest first.
    /// Whether no submitted block is waiting to come back.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_empty()
    }

    pub fn drain(&mut self) -> Vec<Done> {
        let mut out = Vec::new();
        while !self.inflight.is_empty() {
            out.extend(self.take_one());
        }
        out
    }

    fn take_one(&mut self) -> Option<Done> {
        let (_, rx, _) = self.worker.as_ref()?;
        self.inflight_bytes -= self.inflight.pop_front().unwrap_or(0);
        match rx.recv() {
            Ok(done) => Some(done),
            Err(_) => {
                // The worker is gone (it cannot panic on valid blocks, but never hang on it).
                self.inflight.clear();
                self.inflight_bytes = 0;
                self.worker = None;
                Some((
                    usize::MAX,
                    Err(std::io::Error::other("the block encoder thread stopped")),
                ))
            }
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child has no encoder thread (fork copies only the calling thread):
            // joining it would wait forever, and its channels may be mid-operation.
            std::mem::forget(self.worker.take());
            return;
        }
        if let Some((tx, rx, handle)) = self.worker.take() {
            drop(tx);
            drop(rx);
            let _ = handle.join();
        }
    }
}

fn spawn() -> Option<(Sender<Job>, Receiver<Done>, JoinHandle<()>)> {
    let (job_tx, job_rx) = channel::<Job>();
    let (done_tx, done_rx) = channel::<Done>();
    let handle = std::thread::Builder::new()
        .name("steplog-encode".into())
        .spawn(move || {
            for (stream, block, level) in job_rx {
                // Its footer bytes computed here, on this thread, rather than by the writer.
                let encoded = EncodedBlock::encode(&block, level).inspect(|b| {
                    b.footer_bytes();
                });
                if done_tx.send((stream, encoded)).is_err() {
                    break;
                }
            }
        })
        .ok()?;
    Some((job_tx, done_rx, handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Row, Value};

    fn block(first: u64) -> Block {
        let rows: Vec<Row> = (first..first + 10)
            .map(|step| Row {
                step,
                fields: [("x".to_string(), Value::F64(step as f64))]
                    .into_iter()
                    .collect(),
            })
            .collect();
        Block::from_rows(&rows)
    }

    #[test]
    fn blocks_come_back_in_submission_order_and_none_is_lost() {
        let mut e = Encoder::new();
        let mut got = Vec::new();
        for i in 0..50u64 {
            // Small blocks, then big ones: the queue is bounded by blocks, then by bytes.
            let raw = if i < 25 { 100 } else { 600 << 10 };
            got.extend(e.submit((i % 3) as usize, block(i * 10), raw, 1));
            let held = i + 1 - got.len() as u64;
            assert!(held <= MAX_INFLIGHT as u64, "{held} blocks held back");
            if i >= 30 {
                assert!(
                    held <= MIN_INFLIGHT as u64,
                    "{held} blocks of 600 KiB held back"
                );
            }
        }
        got.extend(e.drain());
        assert_eq!(got.len(), 50);
        for (i, (stream, done)) in got.into_iter().enumerate() {
            let done = done.unwrap();
            assert_eq!(stream, i % 3);
            assert_eq!(done.first_step, i as u64 * 10);
            let back = block::decode(&done.frame).unwrap();
            assert_eq!(back, block(i as u64 * 10));
        }
    }
}
