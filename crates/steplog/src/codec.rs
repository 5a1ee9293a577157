//! Little-endian and varint encoding helpers, and a bounds-checked reader that turns every
//! short or malformed input into an error instead of a panic. Every on-disk decoder uses it.
//! Also zstd with one context per thread, which blocks, sections and manifest tables share.

/// An error from [`Reader`]: what was wrong and at which offset within the decoded buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub offset: usize,
    pub reason: String,
}

pub(crate) type DecodeResult<T> = Result<T, DecodeError>;

thread_local! {
    // zstd contexts are large to set up (hundreds of KiB of tables); reuse one per thread
    // instead of paying that for every block (it dominated short runs).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

pub(crate) fn zstd_compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            None => *c = Some((level, zstd::bulk::Compressor::new(level)?)),
            // Another level: the same context, its parameter changed (a new context costs
            // its tables again; callers alternate levels, as blocks and tables do).
            Some((l, z)) if *l != level => {
                z.set_compression_level(level)?;
                *l = level;
            }
            Some(_) => {}
        }
        match c.as_mut() {
            Some((_, z)) => z.compress(raw),
            None => zstd::bulk::compress(raw, level),
        }
    })
}

pub(crate) fn zstd_decompress(payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
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

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// The offset basis of the 64-bit FNV-1a hash.
pub(crate) const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// The 64-bit FNV-1a hash of `bytes` from offset basis `basis` ([`FNV_BASIS`] for the
/// standard one): stable across platforms and releases (std's hasher is not), which names on
/// disk (run lock slots and files, table filters) need.
pub(crate) fn fnv1a64(bytes: &[u8], basis: u64) -> u64 {
    bytes.iter().fold(basis, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Reads from a byte slice; every read checks bounds.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn err<T>(&self, reason: impl Into<String>) -> DecodeResult<T> {
        Err(DecodeError {
            offset: self.pos,
            reason: reason.into(),
        })
    }

    pub fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if n > self.remaining() {
            return self.err(format!(
                "needs {n} bytes but only {} remain",
                self.remaining()
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> DecodeResult<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub fn varint(&mut self) -> DecodeResult<u64> {
        // Most varints are one byte (deltas, small counts).
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let start = self.pos;
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                self.pos = start;
                return self.err("varint overflows 64 bits");
            }
            out |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(out);
            }
        }
        self.pos = start;
        self.err("varint longer than 10 bytes")
    }

    /// A varint that is a count of items each taking at least `min_item_bytes` bytes: refuses
    /// counts the remaining input cannot hold, so no decoder allocates from a corrupt length.
    pub fn count(&mut self, min_item_bytes: usize) -> DecodeResult<usize> {
        let n = self.varint()?;
        let cap = (self.remaining() / min_item_bytes.max(1)) as u64;
        if n > cap && min_item_bytes > 0 {
            return self.err(format!(
                "count {n} exceeds what the remaining {} bytes can hold",
                self.remaining()
            ));
        }
        Ok(n as usize)
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }

    pub fn str(&mut self) -> DecodeResult<&'a str> {
        let start = self.pos;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError {
            offset: start,
            reason: "string is not valid UTF-8".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut r = Reader::new(&buf);
            assert_eq!(r.varint(), Ok(v));
            assert!(r.is_empty());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(Reader::new(&[0x80; 11]).varint().is_err());
        assert!(Reader::new(&[0xff; 9]).varint().is_err());
        assert!(Reader::new(&[0x05, b'a']).str().is_err());
        assert!(Reader::new(&[0x02, 0xff, 0xfe]).str().is_err());
        assert!(Reader::new(&[1, 2, 3]).u32().is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0x03, 0]);
        assert!(r.count(1).is_err());
    }
}
