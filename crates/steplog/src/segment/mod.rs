//! Segment files: append-only, step-ordered files of one stream of one version, made of
//! checksummed block frames, ended (when sealed) by a footer with the sparse step index and
//! the segment's aggregate.
//!
//! The bytes are docs/FORMAT.md's "Segment file" (header, block frames, footer), the one
//! place the grammar lives.
//!
//! `block` encodes frames, `footer` the index and aggregate, `writer` appends and seals,
//! `reader` opens sealed segments (memory-mapped) and scans head segments (recovery).

pub(crate) mod block;
pub(crate) mod builder;
pub(crate) mod encoder;
pub(crate) mod footer;
pub(crate) mod reader;
pub(crate) mod writer;

use crate::codec::Reader;
use crate::types::{SegmentId, Stream, VersionId};

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"STEPLSEG";
/// The format this code writes; it reads every format from `OLDEST_SEGMENT_FORMAT` on.
/// Format 4's footer is made of parts (`footer::parts`); formats 2 and 3 end with one frame.
pub(crate) const SEGMENT_FORMAT: u16 = 4;
/// Format 2 differs from 3 only in never eliding a string in an aggregate (docs/FORMAT.md).
pub(crate) const OLDEST_SEGMENT_FORMAT: u16 = 2;
pub(crate) const HEADER_LEN: usize = 32;

/// One entry of the sparse step index: where a block is and which steps it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub len: u64,
    pub nrows: u32,
    pub first_step: u64,
    pub last_step: u64,
}

/// What the 32-byte header of a segment says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The segment format: `SEGMENT_FORMAT` for a new segment; a recovered head keeps its own
    /// (its footer is written in the layout its format has).
    pub format: u16,
    pub stream: Stream,
    pub version: VersionId,
    pub segment: SegmentId,
}

impl SegmentHeader {
    /// The header of a new segment, in the format this code writes.
    pub fn new(stream: Stream, version: VersionId, segment: SegmentId) -> SegmentHeader {
        SegmentHeader {
            format: SEGMENT_FORMAT,
            stream,
            version,
            segment,
        }
    }

    /// Whether two headers name the same segment (of the same version and stream), whatever
    /// their formats.
    pub fn same_segment(&self, other: &SegmentHeader) -> bool {
        (self.stream, self.version, self.segment) == (other.stream, other.version, other.segment)
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..10].copy_from_slice(&self.format.to_le_bytes());
        out[10] = self.stream.code();
        out[12..20].copy_from_slice(&self.version.0.to_le_bytes());
        out[20..28].copy_from_slice(&self.segment.0.to_le_bytes());
        let crc = crc32fast::hash(&out[..28]);
        out[28..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a header; the error says what is wrong (offsets are within the header).
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, String> {
        let mut r = Reader::new(bytes);
        let bad = |e: crate::codec::DecodeError| e.reason;
        if r.take(8).map_err(bad)? != SEGMENT_MAGIC {
            return Err("not a steplog segment (bad magic)".into());
        }
        let format = r.u16().map_err(bad)?;
        if !(OLDEST_SEGMENT_FORMAT..=SEGMENT_FORMAT).contains(&format) {
            return Err(format!("unsupported segment format version {format}"));
        }
        let stream = r.u8().map_err(bad)?;
        r.u8().map_err(bad)?;
        let version = VersionId(r.u64().map_err(bad)?);
        let segment = SegmentId(r.u64().map_err(bad)?);
        let crc = r.u32().map_err(bad)?;
        let got = crc32fast::hash(&bytes[..28]);
        if crc != got {
            return Err(format!(
                "header checksum mismatch: stored {crc:#010x}, computed {got:#010x}"
            ));
        }
        let stream = Stream::from_code(stream).ok_or(format!("unknown stream code {stream}"))?;
        Ok(SegmentHeader {
            format,
            stream,
            version,
            segment,
        })
    }
}
