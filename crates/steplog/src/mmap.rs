//! The memory map of sealed segments: the only module with `unsafe` code.
#![allow(unsafe_code)]

use std::fs::File;

use bytes::Bytes;

/// Maps a whole sealed segment file read-only and hands it out as `Bytes`, which keeps the
/// map alive for as long as any slice of it is in use.
pub(crate) fn map_sealed(file: &File) -> std::io::Result<Bytes> {
    // SAFETY: memmap2 requires that the file is not modified or truncated while mapped, or
    // reads through the map become undefined (or SIGBUS). steplog maps only *sealed* segments:
    // once a segment's footer is written it is never written, truncated or overwritten again
    // by any steplog process (docs/ARCHITECTURE.md, invariant "sealed segments are
    // immutable"); head segments, which recovery may truncate, are read with pread instead.
    // Purge unlinks files, which leaves existing maps valid on Unix. A user editing the files
    // by hand is outside the contract, as for every storage engine.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}
