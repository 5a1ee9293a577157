//! Sections: a block's directory and each column (and each part of a format 4 footer)
//! stored raw or zstd-compressed on its own, with one zstd context per thread
//! (`codec::zstd_compress`).

use crate::codec::{DecodeError, DecodeResult, Reader};

use crate::codec::{zstd_compress as compress, zstd_decompress as decompress};

/// Section codecs: how a directory or column section is stored in the payload.
pub(super) const CODEC_RAW: u8 = 0;
pub(super) const CODEC_ZSTD: u8 = 1;

/// Sections smaller than this are stored raw. zstd gains little on them (a frame costs a
/// dozen bytes of its own, and its tables are built for each frame: a short run's five
/// sections and its footer were a third of a bulk ingest), and a short run's sections are
/// compressed anyway, many runs together, in the manifest table that holds them: raw
/// sections made the many workload's store 5% smaller and its ingest 40% faster
/// (docs/BENCHMARKS.md).
const RAW_BELOW: usize = 512;

/// Appends a section to `out`: compressed with zstd, or raw when it is small or zstd would
/// not make it smaller. Returns its codec.
pub(crate) fn put_section(raw: &[u8], level: i32, out: &mut Vec<u8>) -> std::io::Result<u8> {
    if raw.len() >= RAW_BELOW {
        let z = compress(raw, level)?;
        if z.len() < raw.len() {
            out.extend_from_slice(&z);
            return Ok(CODEC_ZSTD);
        }
    }
    out.extend_from_slice(raw);
    Ok(CODEC_RAW)
}

/// A section's raw bytes: borrowed, or decompressed to exactly `raw_len` bytes (which the
/// caller has checked against the frame's raw length).
pub(crate) fn section(
    stored: &[u8],
    codec: u8,
    raw_len: u64,
) -> DecodeResult<std::borrow::Cow<'_, [u8]>> {
    let r = Reader::new(stored);
    match codec {
        CODEC_RAW if stored.len() as u64 == raw_len => Ok(std::borrow::Cow::Borrowed(stored)),
        CODEC_RAW => r.err("raw section length does not match its directory entry"),
        CODEC_ZSTD => {
            let raw = decompress(stored, raw_len as usize).map_err(|e| DecodeError {
                offset: 0,
                reason: format!("zstd: {e}"),
            })?;
            if raw.len() as u64 != raw_len {
                return r.err("decompressed length does not match its directory entry");
            }
            Ok(std::borrow::Cow::Owned(raw))
        }
        c => r.err(format!("unknown section codec {c}")),
    }
}
