//! Keeps docs/FORMAT.md true: the sizes it states are checked against the constants and
//! against what the encoders actually produce.

const DOC: &str = include_str!("../../../docs/FORMAT.md");

fn documented(name: &str) -> usize {
    let prefix = format!("| {name} | ");
    let line = DOC
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("docs/FORMAT.md has no size row for '{name}'"));
    line[prefix.len()..]
        .trim_end_matches(" |")
        .parse()
        .expect("a number")
}

#[test]
fn documented_sizes_match_the_encoders() {
    use crate::segment::{block, footer, SegmentHeader, HEADER_LEN};
    use crate::types::{Row, SegmentId, Stream, VersionId};

    let header = SegmentHeader::new(Stream::History, VersionId(1), SegmentId(1));
    assert_eq!(header.encode().len(), HEADER_LEN);
    assert_eq!(documented("segment header"), HEADER_LEN);

    let row = Row {
        step: 7,
        fields: Default::default(),
    };
    let frame = block::encode(&block::Block::from_rows(&[row]), 3).unwrap();
    let h = block::FrameHeader::parse(&frame).unwrap().unwrap();
    assert_eq!(
        frame.len(),
        block::FRAME_HEADER_LEN + h.payload_len as usize
    );
    assert_eq!(documented("block frame header"), block::FRAME_HEADER_LEN);

    for format in [3, crate::segment::SEGMENT_FORMAT] {
        let bytes = footer::encode(format, &[], &[], &Default::default(), 32).unwrap();
        let payload_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(
            bytes.len(),
            footer::FOOTER_HEADER_LEN + payload_len + footer::TRAILER_LEN
        );
    }
    assert_eq!(documented("footer header"), footer::FOOTER_HEADER_LEN);
    assert_eq!(documented("trailer"), footer::TRAILER_LEN);

    let dir = tempfile::tempdir().unwrap();
    let log = crate::manifest::log::ManifestLog::open(
        std::sync::Arc::new(crate::io::OsFs),
        dir.path(),
        false,
        1 << 20,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let file = std::fs::read(log.path()).unwrap();
    let frame = crate::manifest::log::encode_frame(
        &crate::manifest::Edit::Finish {
            version: VersionId(1),
        },
        crate::manifest::log::FORMAT,
    )
    .unwrap();
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(frame.len(), crate::manifest::log::FRAME_HEADER_LEN + len);
    assert_eq!(
        documented("manifest header"),
        crate::manifest::log::HEADER_LEN
    );
    assert_eq!(
        documented("manifest frame header"),
        crate::manifest::log::FRAME_HEADER_LEN
    );
    // A new manifest is its header and one base frame.
    let snap = u32::from_le_bytes(file[24..28].try_into().unwrap()) as usize;
    assert_eq!(
        file.len(),
        crate::manifest::log::HEADER_LEN + crate::manifest::log::FRAME_HEADER_LEN + snap
    );
    assert_eq!(&file[..8], b"STEPLMAN");
    // The format the document's header line states is the one a new manifest has.
    let stated: u16 = DOC
        .split_once("format u16 = ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .expect("docs/FORMAT.md states the manifest header's format");
    assert_eq!(u16::from_le_bytes([file[8], file[9]]), stated);
    assert_eq!(stated, 8, "manifest format 8");
    // The first byte the document gives a binary batch is the one the encoder writes.
    let tag = DOC
        .split_once("payload  = tag u8 = 0x")
        .and_then(|(_, rest)| u8::from_str_radix(&rest[..2], 16).ok())
        .expect("docs/FORMAT.md gives the binary batch's tag");
    assert_eq!(tag, crate::manifest::batch::TAG);

    // A table of no record: header, an empty index frame, a filter frame, the footer.
    use crate::manifest::table::{self, TableWriter};
    let len = TableWriter::create(&crate::io::OsFs, dir.path(), 1)
        .unwrap()
        .finish()
        .unwrap();
    let bytes = std::fs::read(table::table_path(dir.path(), 1)).unwrap();
    assert_eq!(bytes.len() as u64, len);
    assert_eq!(&bytes[..8], b"STEPLTAB");
    assert_eq!(&bytes[bytes.len() - 4..], b"STND");
    let index_len = u64::from_le_bytes(bytes[bytes.len() - 40..][..8].try_into().unwrap());
    let filter_len = u64::from_le_bytes(bytes[bytes.len() - 24..][..8].try_into().unwrap());
    assert_eq!(
        bytes.len() as u64,
        (table::HEADER_LEN + table::FOOTER_LEN) as u64 + index_len + filter_len
    );
    let index_raw = u32::from_le_bytes(bytes[table::HEADER_LEN..][..4].try_into().unwrap());
    let index_stored = u32::from_le_bytes(bytes[table::HEADER_LEN + 4..][..4].try_into().unwrap());
    assert_eq!(index_raw, 1, "an index of no block is one varint");
    assert_eq!(
        index_len,
        (table::FRAME_HEADER_LEN as u32 + index_stored) as u64
    );
    assert_eq!(documented("manifest table header"), table::HEADER_LEN);
    assert_eq!(documented("manifest table footer"), table::FOOTER_LEN);
    assert_eq!(
        documented("manifest table frame header"),
        table::FRAME_HEADER_LEN
    );
}
