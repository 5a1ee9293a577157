//! The block frame: magic, lengths, step range and the two crc32s around a payload
//! (docs/FORMAT.md, "Block frame"). A frame of magic `SLB3` (segment format 4) also carries a
//! crc32 of its directory and of each column's section, so that a reader checks only what it
//! decodes.

use crate::codec::{DecodeResult, Reader};

pub(crate) const FRAME_MAGIC: [u8; 4] = *b"SLB2";
/// The magic of a frame whose directory and sections carry crcs of their own (segment format
/// 4): what writers write when the sections' stored bytes add up to [`PARTS_FROM`] or more.
pub(crate) const FRAME_MAGIC_PARTS: [u8; 4] = *b"SLB3";
/// Sections adding up to this size carry a crc per part: a read of one column of a 64 KiB block
/// (or of a wide block of megabytes) hashes that column and the directory, not the whole
/// block; a short run's block (a few hundred bytes, read whole) does without the 4 bytes a
/// part.
pub(crate) const PARTS_FROM: usize = 4 << 10;

/// Whether 4 bytes are a block frame's magic.
pub(crate) fn is_frame_magic(bytes: &[u8]) -> bool {
    bytes == FRAME_MAGIC || bytes == FRAME_MAGIC_PARTS
}
pub(crate) const FRAME_HEADER_LEN: usize = 40;
pub(crate) use crate::limits::MAX_RAW_LEN;
/// The most rows a block may have (writers start a new block before), so that evenly spaced
/// steps, stored in a few bytes, never make a decoder allocate more than 8 MiB for them.
pub(crate) const MAX_BLOCK_ROWS: usize = 1 << 20;

/// The fixed header of a block frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub payload_len: u32,
    pub raw_len: u32,
    pub nrows: u32,
    pub first_step: u64,
    pub last_step: u64,
    pub header_crc: u32,
    pub payload_crc: u32,
    /// Whether `header_crc` matches the header bytes.
    pub header_ok: bool,
    /// Whether the directory and each section carry a crc of their own (`SLB3`).
    pub parts: bool,
}

impl FrameHeader {
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Parses a frame header; `None` when the magic is not a block's. The header crc is
    /// checked into `header_ok`; callers must not trust the lengths unless it is true.
    pub fn parse(bytes: &[u8]) -> DecodeResult<Option<FrameHeader>> {
        let mut r = Reader::new(bytes);
        let magic = r.take(4)?;
        if !is_frame_magic(magic) {
            return Ok(None);
        }
        let parts = magic == FRAME_MAGIC_PARTS;
        let mut h = FrameHeader {
            payload_len: r.u32()?,
            raw_len: r.u32()?,
            nrows: r.u32()?,
            first_step: r.u64()?,
            last_step: r.u64()?,
            header_crc: r.u32()?,
            payload_crc: r.u32()?,
            header_ok: false,
            parts,
        };
        h.header_ok = crc32fast::hash(&bytes[..32]) == h.header_crc;
        Ok(Some(h))
    }
}

/// The crc32 of a frame's payload.
pub(crate) fn payload_crc(frame: &[u8]) -> u32 {
    crc32fast::hash(&frame[FRAME_HEADER_LEN..])
}
