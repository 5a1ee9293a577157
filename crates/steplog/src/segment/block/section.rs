//! Sections: a block's directory and each column stored raw or zstd-compressed on its own,
//! with one zstd context per thread (setting one up costs more than a short run's blocks).

use crate::codec::{DecodeError, DecodeResult, Reader};

thread_local! {
    // zstd contexts are large to set up (hundreds of KiB of tables); reuse one per thread
    // instead of paying that for every block (it dominated short runs).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

pub(super) fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match c.as_mut() {
            Some((_, z)) => z.compress(raw),
            None => zstd::bulk::compress(raw, level),
        }
    })
}

pub(super) fn decompress(payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(z) => z.decompress(payload, capacity),
            None => zstd::bulk::decompress(payload, capacity),
        }
    })
}

/// Section codecs: how a directory or column section is stored in the payload.
pub(super) const CODEC_RAW: u8 = 0;
pub(super) const CODEC_ZSTD: u8 = 1;

/// Compresses a section with zstd, or keeps it raw when zstd would not make it smaller
/// (tiny sections: a zstd frame costs a dozen bytes of its own).
pub(super) fn put_section(raw: &[u8], level: i32) -> std::io::Result<(u8, Vec<u8>)> {
    if raw.len() < 32 {
        return Ok((CODEC_RAW, raw.to_vec()));
    }
    let z = compress(raw, level)?;
    Ok(if z.len() < raw.len() {
        (CODEC_ZSTD, z)
    } else {
        (CODEC_RAW, raw.to_vec())
    })
}

/// A section's raw bytes: borrowed, or decompressed to exactly `raw_len` bytes (which the
/// caller has checked against the frame's raw length).
pub(super) fn section(
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
