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
    let mut sections = Vec::with_capacity(order.len());
    let mut col_raw = Vec::new();
    for col in &order {
        col_raw.clear();
        let kind = encode_column(&mut col_raw, col, block.steps.len());
        let (codec, stored) = put_section(&col_raw, level)?;
        raw_len += col_raw.len() as u64;
        sections.push((kind, codec, col_raw.len(), stored));
    }
    // Sections of PARTS_FROM stored bytes or more: a crc per section, and one of the directory.
    let parts = sections.iter().map(|s| s.3.len()).sum::<usize>() >= PARTS_FROM;
    for (col, (kind, codec, raw, stored)) in order.iter().zip(&sections) {
        put_bytes(&mut dir, col.key.as_bytes());
        dir.push(*kind);
        dir.push(*codec);
        put_varint(&mut dir, *raw as u64);
        put_varint(&mut dir, stored.len() as u64);
        if parts {
            dir.extend_from_slice(&crc32fast::hash(stored).to_le_bytes());
        }
    }
    raw_len += dir.len() as u64;
    let (dir_codec, dir_stored) = put_section(&dir, level)?;
    let mut payload = Vec::with_capacity(
        20 + dir_stored.len() + sections.iter().map(|s| s.3.len()).sum::<usize>(),
    );
    payload.push(dir_codec);
    put_varint(&mut payload, dir.len() as u64);
    put_varint(&mut payload, dir_stored.len() as u64);
    if parts {
        payload.extend_from_slice(&crc32fast::hash(&dir_stored).to_le_bytes());
    }
    payload.extend_from_slice(&dir_stored);
    sections
        .iter()
        .for_each(|s| payload.extend_from_slice(&s.3));
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "block too large");
    let raw_len = u32::try_from(raw_len).map_err(|_| too_big())?;
    let payload_len = u32::try_from(payload.len()).map_err(|_| too_big())?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(if parts {
        &FRAME_MAGIC_PARTS
    } else {
        &FRAME_MAGIC
    });
    frame.extend_from_slice(&payload_len.to_le_bytes());
    frame.extend_from_slice(&raw_len.to_le_bytes());
    frame.extend_from_slice(&(block.steps.len() as u32).to_le_bytes());
    frame.extend_from_slice(&block.steps.first().map_or(0, |s| *s).to_le_bytes());
    frame.extend_from_slice(&block.steps.last().map_or(0, |s| *s).to_le_bytes());
    let header_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&header_crc.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}
