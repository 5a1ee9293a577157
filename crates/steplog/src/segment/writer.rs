//! Appending to a head segment, sealing it, and recovering one a crashed writer left behind.
//!
//! Architecture invariant: a writer appends only to a segment it created or recovered while
//! holding the run's lock, and never writes a segment again once its footer is written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::io::{FileHandle, FileSystem, OpenMode};
use crate::segment::block;
use crate::segment::encoder::EncodedBlock;
use crate::segment::reader::{read_head_block, HeadScan, Tail};
use crate::segment::{footer, IndexEntry, SegmentHeader, HEADER_LEN};
use crate::summary::Agg;
use crate::types::{SegmentId, Stream, VersionId};

/// What the manifest records when a segment is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealInfo {
    pub rows: u64,
    pub first_step: Option<u64>,
    pub last_step: Option<u64>,
    pub bytes: u64,
}

/// An open head segment being appended to.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    pub id: SegmentId,
    /// The segment's format (a recovered head's own): its footer's layout.
    format: u16,
    pub path: PathBuf,
    file: Arc<dyn FileHandle>,
    pub len: u64,
    pub index: Vec<IndexEntry>,
    /// The aggregate of each block, in index order (written to the footer).
    pub block_aggs: Vec<Agg>,
    pub agg: Agg,
    /// The raw bytes the index entries and block aggregates add to the footer so far.
    footer_bytes: usize,
}

impl SegmentWriter {
    /// Creates a new segment file holding only its header. With `sync`, the file and its
    /// directory are fsynced so the file survives power loss.
    pub fn create(
        fs: &dyn FileSystem,
        path: &Path,
        header: SegmentHeader,
        sync: bool,
    ) -> Result<SegmentWriter> {
        // Never over an existing file: `AlreadyExists` tells the caller to pick another id.
        let file = fs.open(path, OpenMode::CreateNew).at(path)?;
        file.write_all_at(&header.encode(), 0).at(path)?;
        if sync {
            file.sync().at(path)?;
            if let Some(dir) = path.parent() {
                fs.sync_dir(dir).at(dir)?;
            }
        }
        Ok(SegmentWriter {
            id: header.segment,
            format: header.format,
            path: path.to_owned(),
            file,
            len: HEADER_LEN as u64,
            index: Vec::new(),
            block_aggs: Vec::new(),
            agg: Agg::default(),
            footer_bytes: 0,
        })
    }

    /// Recovers the head segment of a crashed writer: cuts a torn tail back to the last valid
    /// block and rebuilds the aggregate. Returns `None` when the file turns out to be sealed
    /// already (the crash came after its footer was written) or does not exist.
    pub fn recover(
        fs: &dyn FileSystem,
        path: &Path,
        header: SegmentHeader,
        sync: bool,
    ) -> Result<Option<SegmentWriter>> {
        // A recorded segment always has its file (it is created before it is recorded): a
        // missing one is damage, and recovering over it would hide the rows it held.
        let file = fs.open(path, OpenMode::ReadWrite).at(path)?;
        let mut scan = HeadScan::empty();
        scan.rescan(path, &*file)?;
        if scan.tail == Tail::Sealed {
            return Ok(None);
        }
        let mut format = header.format;
        match scan.header {
            Some(h) if !h.same_segment(&header) => {
                return Err(Error::corrupt(
                    path,
                    0,
                    format!("segment header says {h:?}, the manifest expects {header:?}"),
                ));
            }
            Some(h) => format = h.format,
            None => {
                // A header torn by a crash during creation: the file holds nothing committed.
                // It is this writer's own head, so it may be written again.
                file.set_len(0).at(path)?;
                file.write_all_at(&header.encode(), 0).at(path)?;
                if sync {
                    file.sync().at(path)?;
                }
                scan = HeadScan::empty();
                scan.rescan(path, &*file)?;
            }
        }
        if let Tail::Torn { offset } | Tail::TornComplete { offset } = scan.tail {
            file.set_len(offset).at(path)?;
        }
        let (mut agg, mut block_aggs) = (Agg::default(), Vec::with_capacity(scan.index.len()));
        for e in &scan.index {
            let mut b = Agg::default();
            b.add_block(
                &read_head_block(path, &*file, e, &block::all_keys)?,
                u64::MAX,
            );
            agg.merge_later(&b);
            block_aggs.push(b);
        }
        let footer_bytes = block_aggs.iter().map(footer::block_footer_bytes).sum();
        Ok(Some(SegmentWriter {
            id: header.segment,
            format,
            path: path.to_owned(),
            file,
            len: scan.valid_len,
            index: scan.index,
            block_aggs,
            agg,
            footer_bytes,
        }))
    }

    /// Whether `block` may still be appended: a segment takes at least one block, and no more
    /// once its footer (the index, each block's aggregate and the segment's, which is at most
    /// their sum) could pass `FOOTER_TARGET`, far below what a reader accepts.
    pub fn has_room_for(&self, block: &EncodedBlock) -> bool {
        let with = self.footer_bytes + block.footer_bytes();
        self.index.is_empty() || 2 * with <= crate::limits::FOOTER_TARGET
    }

    /// Appends an encoded block (steps after those already appended). A head of an older
    /// format (recovered, and only ever sealed) takes no frame of parts, which its format does
    /// not know.
    pub fn append(&mut self, block: EncodedBlock) -> Result<()> {
        if self.format < footer::PARTS_FORMAT && !block.frame.starts_with(&block::FRAME_MAGIC) {
            return Err(Error::corrupt(
                &self.path,
                self.len,
                format!(
                    "a frame of parts (segment format {}) appended to a segment of format {}",
                    footer::PARTS_FORMAT,
                    self.format
                ),
            ));
        }
        // Positional writes at the tracked length: correct whatever the file cursor says
        // (a recovered file is opened at offset 0).
        self.file
            .write_all_at(&block.frame, self.len)
            .at(&self.path)?;
        self.index.push(index_entry(self.len, &block));
        self.len += block.frame.len() as u64;
        self.footer_bytes += block.footer_bytes();
        self.agg.merge_later(&block.agg);
        self.block_aggs.push(block.agg);
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync().at(&self.path)
    }

    /// Writes the footer and trailer. The segment is immutable from here on.
    pub fn seal(self, sync: bool) -> Result<SealInfo> {
        let bytes = footer::encode(
            self.format,
            &self.index,
            &self.block_aggs,
            &self.agg,
            self.len,
        )
        .at(&self.path)?;
        self.file.write_all_at(&bytes, self.len).at(&self.path)?;
        if sync {
            self.sync()?;
        }
        Ok(seal_info(&self.agg, self.len + bytes.len() as u64))
    }
}

/// The index entry of `block` appended at `offset`.
fn index_entry(offset: u64, block: &EncodedBlock) -> IndexEntry {
    IndexEntry {
        offset,
        len: block.frame.len() as u64,
        nrows: block.nrows,
        first_step: block.first_step,
        last_step: block.last_step,
    }
}

fn seal_info(agg: &Agg, bytes: u64) -> SealInfo {
    SealInfo {
        rows: agg.rows,
        first_step: agg.first_step,
        last_step: agg.last_step,
        bytes,
    }
}

/// An [`Image`]'s bytes written into a buffer: where they are, and what their header says.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    header: SegmentHeader,
    pub info: SealInfo,
    /// Where the segment's bytes are in the buffer.
    pub range: std::ops::Range<usize>,
}

impl Placed {
    pub fn stream(&self) -> Stream {
        self.header.stream
    }

    /// Writes the header of segment `id` of `version` over the placed segment's, in `buf`
    /// (the buffer it was placed in).
    pub fn set_ids(&self, buf: &mut [u8], version: VersionId, id: SegmentId) {
        let header = SegmentHeader {
            version,
            segment: id,
            ..self.header
        };
        buf[self.range.start..self.range.start + HEADER_LEN].copy_from_slice(&header.encode());
    }
}

/// A sealed segment built in memory: exactly the bytes [`SegmentWriter`] writes to a file
/// for the same header and blocks (create, an `append` per block, `seal`). A small segment
/// is carried this way inside the manifest (an inline segment: a short run's stream, or a
/// pack). Built before its segment id is known (the id is taken under the manifest's lock),
/// so it is built with id 0 and given its id by [`Image::with_id`]: no other byte names it.
pub(crate) struct Image {
    header: SegmentHeader,
    blocks: Vec<EncodedBlock>,
    footer: Vec<u8>,
    pub info: SealInfo,
}

impl Image {
    /// The segment of `blocks` (at least one, in step order).
    pub fn new(
        stream: Stream,
        version: VersionId,
        mut blocks: Vec<EncodedBlock>,
    ) -> std::io::Result<Image> {
        let header = SegmentHeader::new(stream, version, SegmentId(0));
        // The index, block aggregates and segment aggregate as `append` builds them. The
        // blocks' aggregates are lent to the footer's encoder, not copied (a short run's one
        // block's is also the segment's).
        let (mut index, mut at) = (Vec::new(), HEADER_LEN as u64);
        for b in &blocks {
            index.push(index_entry(at, b));
            at += b.frame.len() as u64;
        }
        let aggs: Vec<Agg> = blocks
            .iter_mut()
            .map(|b| std::mem::take(&mut b.agg))
            .collect();
        let merged;
        let agg = match &aggs[..] {
            [one] => one,
            _ => {
                let mut all = Agg::default();
                aggs.iter().for_each(|a| all.merge_later(a));
                merged = all;
                &merged
            }
        };
        let encoded = footer::encode(header.format, &index, &aggs, agg, at);
        let info = seal_info(agg, at + encoded.as_ref().map_or(0, |f| f.len() as u64));
        for (b, a) in blocks.iter_mut().zip(aggs) {
            b.agg = a;
        }
        let footer = encoded?;
        Ok(Image {
            header,
            blocks,
            footer,
            info,
        })
    }

    pub fn stream(&self) -> Stream {
        self.header.stream
    }

    /// The segment's bytes as segment `id`.
    pub fn with_id(&self, id: SegmentId) -> bytes::Bytes {
        self.with_ids(self.header.version, id)
    }

    /// The segment's bytes as segment `id` of `version` (for rows encoded before their
    /// version had an id).
    pub fn with_ids(&self, version: VersionId, id: SegmentId) -> bytes::Bytes {
        let mut bytes = Vec::with_capacity(self.info.bytes as usize);
        self.place(&mut bytes).set_ids(&mut bytes, version, id);
        bytes::Bytes::from(bytes)
    }

    /// Appends the segment's bytes to `out`, where [`Placed::set_ids`] gives them their ids
    /// later (a bulk's runs are encoded into one buffer before their ids are taken).
    pub fn place(&self, out: &mut Vec<u8>) -> Placed {
        let start = out.len();
        out.reserve(self.info.bytes as usize);
        out.extend_from_slice(&self.header.encode());
        for b in &self.blocks {
            out.extend_from_slice(&b.frame);
        }
        out.extend_from_slice(&self.footer);
        Placed {
            header: self.header,
            info: self.info,
            range: start..out.len(),
        }
    }

    /// The blocks, to be written to a file after all.
    pub fn into_blocks(self) -> Vec<EncodedBlock> {
        self.blocks
    }
}
