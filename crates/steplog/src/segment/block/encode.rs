//! Encoding a block into a frame: the directory and each column's section.

use super::columns::{encode_column, put_steps};
use super::frame::{FRAME_HEADER_LEN, FRAME_MAGIC, FRAME_MAGIC_PARTS, PARTS_FROM};
use super::section::put_section;
use super::{Block, Column};
use crate::codec::{put_bytes, put_varint};

/// Encodes a block (at least one row, steps non-decreasing) into a complete frame. Each
/// column is compressed on its own, so a reader decompresses only the columns it reads;
/// sections adding up to [`PARTS_FROM`] stored bytes or more make a frame of parts (`SLB3`),
/// with a crc of its directory and of each section, so a reader checks only the columns it
/// reads.
pub(crate) fn encode(block: &Block, level: i32) -> std::io::Result<Vec<u8>> {
    let mut dir = Vec::with_capacity(block.steps.len() + 64);
    put_steps(&mut dir, &block.steps);
    let mut order: Vec<&Column> = block
        .columns
        .iter()
        .filter(|c| !c.rows.is_empty())
        .collect();
    order.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    put_varint(&mut dir, order.len() as u64);
    let mut raw_len = 0u64;
    // Each column's stored section, back to back in `body`: (kind, codec, raw length, end).
    let mut sections = Vec::with_capacity(order.len());
    // About what the columns take raw (a value rarely takes more than 9 bytes, its row
    // index 1): one allocation each where growing took several.
    let guess = |c: &&Column| 16 + 10 * c.rows.len();
    let mut body = Vec::with_capacity(order.iter().map(guess).sum());
    let mut col_raw = Vec::with_capacity(order.iter().map(guess).max().unwrap_or(0));
    for col in &order {
        col_raw.clear();
        let kind = encode_column(&mut col_raw, col, block.steps.len());
        let codec = put_section(&col_raw, level, &mut body)?;
        raw_len += col_raw.len() as u64;
        sections.push((kind, codec, col_raw.len(), body.len()));
    }
    // Sections of PARTS_FROM stored bytes or more: a crc per section, and one of the directory.
    let parts = body.len() >= PARTS_FROM;
    let mut start = 0;
    for (col, &(kind, codec, raw, end)) in order.iter().zip(&sections) {
        put_bytes(&mut dir, col.key.as_bytes());
        dir.push(kind);
        dir.push(codec);
        put_varint(&mut dir, raw as u64);
        put_varint(&mut dir, (end - start) as u64);
        if parts {
            dir.extend_from_slice(&crc32fast::hash(&body[start..end]).to_le_bytes());
        }
        start = end;
    }
    raw_len += dir.len() as u64;
    let mut dir_stored = Vec::with_capacity(dir.len());
    let dir_codec = put_section(&dir, level, &mut dir_stored)?;
    // The frame: its header (filled in last), then the payload.
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + 24 + dir_stored.len() + body.len());
    frame.resize(FRAME_HEADER_LEN, 0);
    frame.push(dir_codec);
    put_varint(&mut frame, dir.len() as u64);
    put_varint(&mut frame, dir_stored.len() as u64);
    if parts {
        frame.extend_from_slice(&crc32fast::hash(&dir_stored).to_le_bytes());
    }
    frame.extend_from_slice(&dir_stored);
    frame.extend_from_slice(&body);
    let payload = &frame[FRAME_HEADER_LEN..];
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "block too large");
    let raw_len = u32::try_from(raw_len).map_err(|_| too_big())?;
    let payload_len = u32::try_from(payload.len()).map_err(|_| too_big())?;
    let payload_crc = crc32fast::hash(payload);
    let h = &mut frame[..FRAME_HEADER_LEN];
    h[..4].copy_from_slice(if parts {
        &FRAME_MAGIC_PARTS
    } else {
        &FRAME_MAGIC
    });
    h[4..8].copy_from_slice(&payload_len.to_le_bytes());
    h[8..12].copy_from_slice(&raw_len.to_le_bytes());
    h[12..16].copy_from_slice(&(block.steps.len() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&block.steps.first().map_or(0, |s| *s).to_le_bytes());
    h[24..32].copy_from_slice(&block.steps.last().map_or(0, |s| *s).to_le_bytes());
    let header_crc = crc32fast::hash(&h[..32]);
    h[32..36].copy_from_slice(&header_crc.to_le_bytes());
    h[36..40].copy_from_slice(&payload_crc.to_le_bytes());
    Ok(frame)
}
