//! Reading segments: sealed segments are memory-mapped and located through their footer;
//! head segments (still being written, or left by a crashed writer) are scanned frame by
//! frame, and a torn tail is told apart from corruption.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::error::{Error, IoContext, Result};
use crate::io::{FileHandle, FileSystem, OpenMode};
use crate::segment::block::{self, Block, FrameError, FrameHeader, FRAME_HEADER_LEN};
use crate::segment::footer::{self, Footer, FOOTER_HEADER_LEN, TRAILER_LEN};
use crate::segment::{IndexEntry, SegmentHeader, HEADER_LEN};
use crate::summary::Agg;

/// Checks a frame's crcs and decodes it; errors name the file and the frame's offset.
pub(crate) fn decode_frame(
    path: &Path,
    offset: u64,
    frame: &[u8],
    keep: &dyn Fn(&str) -> bool,
) -> Result<Block> {
    decode_frame_once(path, offset, frame, keep, None)
}

/// [`decode_frame`], checking what the frame's kind needs: a frame of parts (`SLB3`) has its
/// directory's and each decoded section's crc checked, every time (a read of one column of a
/// wide block hashes that column alone); any other frame has its payload's crc checked
/// whole, only if `checked` (the frame's flag in an immutable file) is not yet set, and sets
/// it once it passes: the bytes of a sealed segment never change, so one check per process
/// is enough.
fn decode_frame_once(
    path: &Path,
    offset: u64,
    frame: &[u8],
    keep: &dyn Fn(&str) -> bool,
    checked: Option<&AtomicBool>,
) -> Result<Block> {
    checked_frame(path, offset, frame, checked, |f| {
        block::decode_keys(f, keep, true)
    })
}

/// Checks what `decode_frame_once` checks, then decodes the frame with `decode` (which checks
/// the parts it reads of a frame of parts).
fn checked_frame<T>(
    path: &Path,
    offset: u64,
    frame: &[u8],
    checked: Option<&AtomicBool>,
    decode: impl FnOnce(&[u8]) -> std::result::Result<T, FrameError>,
) -> Result<T> {
    let header = FrameHeader::parse(frame)
        .map_err(|e| Error::corrupt(path, offset + e.offset as u64, e.reason))?
        .ok_or_else(|| Error::corrupt(path, offset, "expected a block frame (bad magic)"))?;
    let whole = !header.parts && !checked.is_some_and(|c| c.load(Ordering::Relaxed));
    if !header.header_ok || whole {
        check_crcs(path, offset, frame, &header)?;
        if let Some(c) = checked {
            c.store(true, Ordering::Relaxed);
        }
    }
    decode(frame).map_err(|e| frame_error(path, offset, e))
}

/// How many steps of the block of `frame` (at `offset`) are at most `hi`, and the last of
/// them: its directory's steps alone read (see [`checked_frame`] for the checks).
pub(crate) fn frame_steps_at_most(
    path: &Path,
    offset: u64,
    frame: &[u8],
    hi: u64,
    checked: Option<&AtomicBool>,
) -> Result<(u64, Option<u64>)> {
    checked_frame(path, offset, frame, checked, |f| {
        block::steps_at_most(f, hi, true)
    })
}

/// Decodes a frame whose header (and, unless it is a frame of parts, payload) crc holds,
/// checking its parts' crcs; errors name the file and their offset.
fn decode_checked(
    path: &Path,
    offset: u64,
    frame: &[u8],
    keep: &dyn Fn(&str) -> bool,
) -> Result<Block> {
    block::decode_keys(frame, keep, true).map_err(|e| frame_error(path, offset, e))
}

/// A frame's decoding error as the store reports it: a part's checksum, or damage, at its
/// file offset.
fn frame_error(path: &Path, offset: u64, e: FrameError) -> Error {
    match e {
        FrameError::Decode(e) => Error::corrupt(path, offset + e.offset as u64, e.reason),
        FrameError::Checksum {
            offset: at,
            expected,
            got,
        } => Error::ChecksumMismatch {
            file: path.to_owned(),
            offset: offset + at as u64,
            expected,
            got,
        },
    }
}

/// Checks every crc of a frame (header, whole payload, and each part) and decodes it with
/// every column: what `verify` does with each block.
pub(crate) fn verify_frame(path: &Path, offset: u64, frame: &[u8]) -> Result<Block> {
    let header = FrameHeader::parse(frame)
        .map_err(|e| Error::corrupt(path, offset + e.offset as u64, e.reason))?
        .ok_or_else(|| Error::corrupt(path, offset, "expected a block frame (bad magic)"))?;
    check_crcs(path, offset, frame, &header)?;
    decode_checked(path, offset, frame, &block::all_keys)
}

fn check_crcs(path: &Path, offset: u64, frame: &[u8], h: &FrameHeader) -> Result<()> {
    let mismatch = |expected, got| Error::ChecksumMismatch {
        file: path.to_owned(),
        offset,
        expected,
        got,
    };
    if !h.header_ok {
        return Err(mismatch(h.header_crc, crc32fast::hash(&frame[..32])));
    }
    let got = block::payload_crc(frame);
    if got != h.payload_crc {
        return Err(mismatch(h.payload_crc, got));
    }
    Ok(())
}

/// A sealed segment shorter than a header, an empty footer and a trailer is damaged (checked
/// before mapping, so that no length below is ever negative).
fn check_min_len(path: &Path, len: u64) -> Result<()> {
    let min = (HEADER_LEN + FOOTER_HEADER_LEN + TRAILER_LEN) as u64;
    if len < min {
        return Err(Error::corrupt(
            path,
            len,
            format!("sealed segment is {len} bytes, shorter than the minimum {min}"),
        ));
    }
    Ok(())
}

/// A sealed segment, mapped into memory. Its footer's parts (the index, the aggregates) are
/// decoded when a read first asks for them (`footer::Footer`), so a summary decodes the
/// segment's aggregate alone and reading rows never holds the aggregates.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub path: PathBuf,
    pub header: SegmentHeader,
    bytes: Bytes,
    footer: Footer,
    /// Per block, in index order: whether its payload's crc was checked by this process.
    checked: Box<[AtomicBool]>,
}

impl Sealed {
    pub fn open(fs: &dyn FileSystem, path: &Path) -> Result<Sealed> {
        let file = fs.open(path, OpenMode::Read).at(path)?;
        let len = file.len().at(path)?;
        check_min_len(path, len)?;
        let bytes = file.map().at(path)?;
        if bytes.len() as u64 != len {
            return Err(Error::corrupt(
                path,
                len,
                "the file changed size while being opened",
            ));
        }
        Sealed::from_bytes(path, bytes)
    }

    /// A sealed segment from its bytes: a mapped file, or an inline segment's bytes from the
    /// manifest (`path` names where they are, for errors).
    pub fn from_bytes(path: &Path, bytes: Bytes) -> Result<Sealed> {
        check_min_len(path, bytes.len() as u64)?;
        let header =
            SegmentHeader::decode(&bytes[..HEADER_LEN]).map_err(|r| Error::corrupt(path, 0, r))?;
        let footer = Footer::read(path, &bytes, header.format)?;
        let checked = (0..footer.nblocks())
            .map(|_| AtomicBool::new(false))
            .collect();
        Ok(Sealed {
            path: path.to_owned(),
            header,
            bytes,
            footer,
            checked,
        })
    }

    /// Where the footer starts in the file.
    pub fn footer_offset(&self) -> u64 {
        self.footer.offset()
    }

    /// Rows, first and last step of the segment (from its footer).
    pub fn stats(&self) -> (u64, Option<u64>, Option<u64>) {
        self.footer.stats()
    }

    /// The sparse step index: one entry per block.
    pub fn index(&self) -> Result<&[IndexEntry]> {
        self.footer.index(&self.path, &self.bytes)
    }

    /// The aggregate of the whole segment.
    pub fn agg(&self) -> Result<&Agg> {
        self.footer.agg(&self.path, &self.bytes)
    }

    /// The aggregate of the `i`-th block.
    pub fn block_agg(&self, i: usize) -> Result<Option<&Agg>> {
        self.footer.block_agg(&self.path, &self.bytes, i)
    }

    /// When block `i` starts a group of blocks with an aggregate of its own: the end of the
    /// group's blocks and its aggregate (segment format 4).
    pub fn group_at(&self, i: usize) -> Result<Option<(usize, &Agg)>> {
        self.footer.group_at(&self.path, &self.bytes, i)
    }

    /// Decodes every part of the footer (each checked): what a seal is recorded on.
    pub fn check_footer(&self) -> Result<()> {
        self.agg()?;
        for i in 0..self.footer.nblocks() {
            self.block_agg(i)?;
            self.group_at(i)?;
        }
        Ok(())
    }

    /// The size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// How many steps of the block of an index entry are at most `hi`, and the last of
    /// them (its directory's steps alone read).
    pub fn steps_at_most(&self, e: &IndexEntry, hi: u64) -> Result<(u64, Option<u64>)> {
        let frame = &self.bytes[e.offset as usize..(e.offset + e.len) as usize];
        let checked = self.checked_flag(e);
        frame_steps_at_most(&self.path, e.offset, frame, hi, checked)
    }

    /// The checked flag of the block of an index entry.
    fn checked_flag(&self, e: &IndexEntry) -> Option<&AtomicBool> {
        let i = self
            .footer
            .decoded_index()
            .and_then(|index| index.binary_search_by_key(&e.offset, |x| x.offset).ok());
        i.and_then(|i| self.checked.get(i))
    }

    /// Reads the block of an index entry with every crc checked (the whole payload's too)
    /// and every column decoded: what `verify` reads.
    pub fn verify_block(&self, e: &IndexEntry) -> Result<Block> {
        let frame = &self.bytes[e.offset as usize..(e.offset + e.len) as usize];
        verify_frame(&self.path, e.offset, frame)
    }

    /// Reads (crc-checked) and decodes the block of an index entry, with the columns whose
    /// key `keep` accepts.
    pub fn block(&self, e: &IndexEntry, keep: &dyn Fn(&str) -> bool) -> Result<Block> {
        let frame = &self.bytes[e.offset as usize..(e.offset + e.len) as usize];
        decode_frame_once(&self.path, e.offset, frame, keep, self.checked_flag(e))
    }
}

/// How the bytes after the last valid frame of a head segment look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The valid frames end exactly at the end of the file.
    Clean,
    /// The file ends with an incomplete or partially written frame starting at `offset`:
    /// an interrupted append, which recovery cuts away.
    Torn { offset: u64 },
    /// The last frame has its whole length but fails its checksum and ends in zeros: taken
    /// as a page a power loss left unwritten. Recovery cuts it like `Torn`; `verify`
    /// reports it as a checksum failure.
    TornComplete { offset: u64 },
    /// The blocks are followed by a complete, valid footer: the segment is sealed.
    Sealed,
}

/// The result of scanning a head segment: the valid frames and what follows them.
#[derive(Debug, Clone)]
pub(crate) struct HeadScan {
    pub header: Option<SegmentHeader>,
    /// End of the last valid frame (or of the header).
    pub valid_len: u64,
    pub index: Vec<IndexEntry>,
    pub tail: Tail,
}

impl HeadScan {
    pub fn empty() -> HeadScan {
        HeadScan {
            header: None,
            valid_len: 0,
            index: Vec::new(),
            tail: Tail::Clean,
        }
    }

    /// Scans `file` from where `self` stopped. A checksum failure that is not at the tail is
    /// an error naming the offset; an incomplete tail is reported as `Tail::Torn`.
    pub fn rescan(&mut self, path: &Path, file: &dyn FileHandle) -> Result<()> {
        let len = file.len().at(path)?;
        if len < self.valid_len {
            return Err(Error::corrupt(
                path,
                len,
                format!(
                    "head segment shrank to {len} bytes below its {} committed bytes",
                    self.valid_len
                ),
            ));
        }
        let start = self.valid_len;
        let mut buf = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut buf, start).at(path)?;
        // Whether bytes remain from `from` and all are zero (an unwritten, zero-filled tail).
        let all_zero = |from: usize| from < buf.len() && buf[from..].iter().all(|&b| b == 0);
        let mut pos = 0usize;
        if self.header.is_none() {
            if buf.len() < HEADER_LEN || all_zero(0) {
                self.tail = if buf.is_empty() {
                    Tail::Clean
                } else {
                    Tail::Torn { offset: 0 }
                };
                return Ok(());
            }
            let h = SegmentHeader::decode(&buf[..HEADER_LEN])
                .map_err(|r| Error::corrupt(path, 0, r))?;
            self.header = Some(h);
            pos = HEADER_LEN;
            self.valid_len = HEADER_LEN as u64;
        }
        self.tail = Tail::Clean;
        while pos < buf.len() {
            let at = start + pos as u64;
            let rest = &buf[pos..];
            if rest.len() < 4 || footer::is_magic(&rest[..4]) {
                self.tail = footer_tail(path, rest, at)?;
                return Ok(());
            }
            if !block::is_frame_magic(&rest[..4]) {
                if all_zero(pos) {
                    self.tail = Tail::Torn { offset: at };
                    return Ok(());
                }
                return Err(Error::corrupt(
                    path,
                    at,
                    "expected a block frame (bad magic)",
                ));
            }
            if rest.len() < FRAME_HEADER_LEN {
                self.tail = Tail::Torn { offset: at };
                return Ok(());
            }
            let h = FrameHeader::parse(rest)
                .map_err(|e| Error::corrupt(path, at, e.reason))?
                .ok_or_else(|| Error::corrupt(path, at, "bad block magic"))?;
            if !h.header_ok {
                // A damaged length cannot be trusted to tell where the frame ends: report it.
                check_crcs(path, at, rest, &h)?;
            }
            let flen = h.frame_len();
            if flen > rest.len() as u64 {
                self.tail = Tail::Torn { offset: at };
                return Ok(());
            }
            let frame = &rest[..flen as usize];
            if block::payload_crc(frame) != h.payload_crc {
                // A whole last frame failing its crc is torn only if it ends in a zero byte,
                // the mark of a page a power loss left unwritten (a process crash can only
                // leave a frame short of its length, handled above). Anything else is damage.
                let at_end = pos + flen as usize == buf.len();
                if (at_end && frame.last() == Some(&0)) || all_zero(pos + flen as usize) {
                    self.tail = Tail::TornComplete { offset: at };
                    return Ok(());
                }
                check_crcs(path, at, frame, &h)?;
            }
            let prev_last = self.index.last().map(|e| e.last_step);
            if h.nrows == 0
                || h.first_step > h.last_step
                || prev_last.is_some_and(|p| p > h.first_step)
            {
                return Err(Error::corrupt(path, at, "block steps out of order"));
            }
            self.index.push(IndexEntry {
                offset: at,
                len: flen,
                nrows: h.nrows,
                first_step: h.first_step,
                last_step: h.last_step,
            });
            pos += flen as usize;
            self.valid_len = start + pos as u64;
        }
        Ok(())
    }
}

/// What a footer magic at the end of a head segment means: a complete footer (the segment
/// is sealed), an interrupted seal (torn: the footer extends past the end of the file, or
/// its end reads as zeros), or damage (a "footer" that ends before the file does, or fails
/// its checks at full length), which is an error.
fn footer_tail(path: &Path, rest: &[u8], at: u64) -> Result<Tail> {
    if rest.len() < FOOTER_HEADER_LEN {
        return Ok(Tail::Torn { offset: at });
    }
    if footer::is_whole(rest, at) {
        return Ok(Tail::Sealed);
    }
    let plen = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
    let total = FOOTER_HEADER_LEN + plen + TRAILER_LEN;
    if total > rest.len() {
        return Ok(Tail::Torn { offset: at });
    }
    if total == rest.len() && rest.last() == Some(&0) {
        return Ok(Tail::TornComplete { offset: at });
    }
    Err(Error::corrupt(
        path,
        at,
        "a footer that does not end the file or fails its checksum",
    ))
}

/// [`frame_steps_at_most`] of one block of a head segment, read with pread.
pub(crate) fn head_steps_at_most(
    path: &Path,
    file: &dyn FileHandle,
    e: &IndexEntry,
    hi: u64,
) -> Result<(u64, Option<u64>)> {
    let mut frame = vec![0u8; e.len as usize];
    file.read_exact_at(&mut frame, e.offset).at(path)?;
    frame_steps_at_most(path, e.offset, &frame, hi, None)
}

/// Reads one block of a head segment with pread (head segments are never mapped).
pub(crate) fn read_head_block(
    path: &Path,
    file: &dyn FileHandle,
    e: &IndexEntry,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Block> {
    let mut frame = vec![0u8; e.len as usize];
    file.read_exact_at(&mut frame, e.offset).at(path)?;
    decode_frame(path, e.offset, &frame, keep)
}
