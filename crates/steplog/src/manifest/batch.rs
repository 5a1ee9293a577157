//! The binary form of a `batch` edit (manifest format 8): what `Store::bulk` commits, a few
//! hundred bytes per run, written and read without JSON or base64 (a config is copied as
//! its JSON text, checked on read). Its grammar is
//! docs/FORMAT.md's "Batch frames".
//!
//! Invariants: a binary payload starts with [`TAG`], a byte no JSON edit starts with (JSON
//! edits start with `{`), so one frame grammar holds both; decoding checks every length
//! against what remains and refuses trailing bytes, so a frame that passed its crc but does
//! not parse is reported as damage at an offset, never read in part.

use bytes::Bytes;

use super::{BatchRun, ConfigJson, PackSegment, SealMeta};
use crate::codec::{put_bytes, put_varint, Reader};
use crate::types::{SegmentId, Stream, VersionId};

/// The first byte of a binary `batch` payload.
pub(crate) const TAG: u8 = 0x01;

/// Appends the payload of a `batch` edit of `runs` to `out`.
pub(crate) fn encode(runs: &[BatchRun], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.reserve(
        runs.iter()
            .map(|r| {
                64 + r.run.len() + r.segments.iter().map(|s| 24 + s.bytes.len()).sum::<usize>()
            })
            .sum(),
    );
    out.push(TAG);
    put_varint(out, runs.len() as u64);
    for r in runs {
        put_bytes(out, r.run.as_bytes());
        put_varint(out, r.version.0);
        put_varint(out, r.time);
        put_bytes(out, r.config.text().as_bytes());
        put_varint(out, r.segments.len() as u64);
        for s in &r.segments {
            out.push(s.stream.code());
            put_varint(out, s.segment.0);
            put_varint(out, s.seal.rows);
            put_step(out, s.seal.first_step);
            put_step(out, s.seal.last_step);
            if s.seal.bytes != s.bytes.len() as u64 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "segment {} carries {} bytes, its seal records {}",
                        s.segment,
                        s.bytes.len(),
                        s.seal.bytes
                    ),
                ));
            }
            put_bytes(out, &s.bytes);
        }
    }
    Ok(())
}

/// A step that may be absent: 0, or 1 then the step.
fn put_step(out: &mut Vec<u8>, step: Option<u64>) {
    match step {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_varint(out, s);
        }
    }
}

/// Decodes the runs of a binary `batch` payload (starting with [`TAG`]); an error names the
/// byte offset within the payload.
pub(crate) fn decode(payload: &[u8]) -> Result<Vec<BatchRun>, String> {
    let mut r = Reader::new(payload);
    let at =
        |e: crate::codec::DecodeError| format!("at byte {} of the edit: {}", e.offset, e.reason);
    if r.u8().map_err(at)? != TAG {
        return Err("not a binary batch edit (first byte)".into());
    }
    // A run takes at least 6 bytes: name, version, time, config and segment count.
    let count = r.count(6).map_err(at)?;
    let mut runs = Vec::with_capacity(count);
    for _ in 0..count {
        let run = r.str().map_err(at)?.to_owned();
        let version = VersionId(r.varint().map_err(at)?);
        let time = r.varint().map_err(at)?;
        let start = r.position();
        let text = r.str().map_err(at)?;
        let config = ConfigJson::parse(text.to_owned())
            .map_err(|e| format!("at byte {start} of the edit: config of run '{run}': {e}"))?;
        // A segment takes at least 6 bytes: stream, id, rows, two steps and its length.
        let n = r.count(6).map_err(at)?;
        let mut segments = Vec::with_capacity(n);
        for _ in 0..n {
            let code_at = r.position();
            let code = r.u8().map_err(at)?;
            let stream = Stream::from_code(code)
                .ok_or_else(|| format!("at byte {code_at} of the edit: unknown stream {code}"))?;
            let segment = SegmentId(r.varint().map_err(at)?);
            let rows = r.varint().map_err(at)?;
            let first_step = get_step(&mut r).map_err(at)?;
            let last_step = get_step(&mut r).map_err(at)?;
            let bytes = r.bytes().map_err(at)?;
            segments.push(PackSegment {
                stream,
                segment,
                seal: SealMeta {
                    rows,
                    first_step,
                    last_step,
                    bytes: bytes.len() as u64,
                },
                bytes: Bytes::copy_from_slice(bytes),
            });
        }
        runs.push(BatchRun {
            run,
            version,
            config,
            time,
            segments,
        });
    }
    if !r.is_empty() {
        return Err(format!(
            "at byte {} of the edit: {} bytes after its last run",
            r.position(),
            r.remaining()
        ));
    }
    Ok(runs)
}

fn get_step(r: &mut Reader<'_>) -> crate::codec::DecodeResult<Option<u64>> {
    let at = r.position();
    match r.u8()? {
        0 => Ok(None),
        1 => r.varint().map(Some),
        b => Err(crate::codec::DecodeError {
            offset: at,
            reason: format!("step presence byte {b} (0 or 1)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, v: u64, segs: &[(Stream, u64, &[u8])]) -> BatchRun {
        let mut config = super::super::Config::new();
        config.insert("lr".into(), serde_json::json!(0.001));
        config.insert("name".into(), serde_json::json!("Ünïcode \"quoted\""));
        BatchRun {
            run: name.into(),
            version: VersionId(v),
            config: ConfigJson::of(&config),
            time: 1_700_000_000,
            segments: segs
                .iter()
                .map(|&(stream, id, b)| PackSegment {
                    stream,
                    segment: SegmentId(id),
                    seal: SealMeta {
                        rows: 3,
                        first_step: (id % 2 == 0).then_some(id),
                        last_step: Some(u64::MAX),
                        bytes: b.len() as u64,
                    },
                    bytes: Bytes::copy_from_slice(b),
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_reads_back_as_written_and_any_cut_of_it_is_refused() {
        let runs = vec![
            run(
                "a",
                7,
                &[(Stream::History, 10, b"abc"), (Stream::Console, 11, b"")],
            ),
            run("b/ü", u64::MAX, &[]),
            run("c", 9, &[(Stream::System, 12, &[0u8; 300])]),
        ];
        let mut out = Vec::new();
        encode(&runs, &mut out).unwrap();
        assert_eq!(out[0], TAG);
        assert_eq!(decode(&out).unwrap(), runs);
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "a cut at {cut} decoded");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after its last run"));
    }

    #[test]
    fn a_seal_that_disagrees_with_its_bytes_is_not_encoded() {
        let mut runs = vec![run("a", 1, &[(Stream::History, 2, b"abc")])];
        runs[0].segments[0].seal.bytes = 4;
        assert!(encode(&runs, &mut Vec::new()).is_err());
    }
}
