//! The protobuf wire format, read-only and schema-less: enough to walk the few messages the
//! TensorBoard and W&B importers need (field numbers are named where they are used). Every
//! failure is a reason string; the caller adds the file and the record's offset.

/// One field's payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Wire<'a> {
    /// A nested message or string's bytes; any other wire type is an error naming `what`.
    pub(crate) fn bytes(self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Wire::Bytes(b) => Ok(b),
            other => Err(format!("{what}: expected bytes, found {other:?}")),
        }
    }

    pub(crate) fn str(self, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| format!("{what}: not UTF-8"))
    }

    pub(crate) fn varint(self, what: &str) -> Result<u64, String> {
        match self {
            Wire::Varint(v) => Ok(v),
            other => Err(format!("{what}: expected a varint, found {other:?}")),
        }
    }

    pub(crate) fn f64(self, what: &str) -> Result<f64, String> {
        match self {
            Wire::Fixed64(v) => Ok(f64::from_bits(v)),
            other => Err(format!("{what}: expected a double, found {other:?}")),
        }
    }

    pub(crate) fn f32(self, what: &str) -> Result<f32, String> {
        match self {
            Wire::Fixed32(v) => Ok(f32::from_bits(v)),
            other => Err(format!("{what}: expected a float, found {other:?}")),
        }
    }
}

/// The fields of one message, in order: `(field number, payload)`.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Iterates the fields of `buf`.
pub(crate) fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, pos: 0 }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("message ends inside a varint at byte {}", self.pos));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "field of {n} bytes at byte {} runs past the message's {} bytes",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn next_field(&mut self) -> Result<(u32, Wire<'a>), String> {
        let key = self.varint()?;
        let number =
            u32::try_from(key >> 3).map_err(|_| format!("field number {key} too large"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?
                    .try_into()
                    .map_err(|_| "short fixed64".to_string())?,
            )),
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| format!("length {n} too large"))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?
                    .try_into()
                    .map_err(|_| "short fixed32".to_string())?,
            )),
            t => return Err(format!("unsupported wire type {t} for field {number}")),
        };
        Ok((number, wire))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let r = self.next_field();
        if r.is_err() {
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

/// The values of a repeated scalar field that may be packed (one `Bytes` payload) or not
/// (one payload per value): `width` 4 or 8 for fixed-size values, 0 for varints.
pub(crate) fn repeated(wire: Wire<'_>, width: usize, out: &mut Vec<u64>) -> Result<(), String> {
    match (wire, width) {
        (Wire::Varint(v), 0) => out.push(v),
        (Wire::Fixed32(v), 4) => out.push(u64::from(v)),
        (Wire::Fixed64(v), 8) => out.push(v),
        (Wire::Bytes(b), 0) => {
            let mut f = Fields { buf: b, pos: 0 };
            while f.pos < b.len() {
                out.push(f.varint()?);
            }
        }
        (Wire::Bytes(b), w @ (4 | 8)) => {
            if b.len() % w != 0 {
                return Err(format!(
                    "packed field of {} bytes is not a multiple of {w}",
                    b.len()
                ));
            }
            out.extend(b.chunks_exact(w).map(|c| {
                let mut v = [0u8; 8];
                v[..w].copy_from_slice(c);
                u64::from_le_bytes(v)
            }));
        }
        (other, _) => {
            return Err(format!(
                "unexpected wire type {other:?} for a repeated field"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_wire_type_and_rejects_truncation() {
        // field 1 varint 300, field 2 bytes "hi", field 3 fixed32 1.5f, field 4 fixed64 2.5
        let mut m = vec![0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x1d];
        m.extend(1.5f32.to_le_bytes());
        m.push(0x21);
        m.extend(2.5f64.to_le_bytes());
        let got: Vec<_> = fields(&m).collect::<Result<_, _>>().unwrap();
        assert_eq!(got[0], (1, Wire::Varint(300)));
        assert_eq!(got[1].1.str("s").unwrap(), "hi");
        assert_eq!(got[2].1.f32("f").unwrap(), 1.5);
        assert_eq!(got[3].1.f64("d").unwrap(), 2.5);
        for cut in 1..m.len() {
            let r: Result<Vec<_>, _> = fields(&m[..cut]).collect();
            let complete = [3, 7, 12].contains(&cut);
            assert_eq!(r.is_ok(), complete, "cut at {cut}");
        }
    }

    #[test]
    fn packed_and_unpacked_repeated_fields_agree() {
        let mut a = Vec::new();
        repeated(Wire::Bytes(&[1, 0x80, 0x01]), 0, &mut a).unwrap();
        repeated(Wire::Varint(5), 0, &mut a).unwrap();
        assert_eq!(a, [1, 128, 5]);
        let mut b = Vec::new();
        repeated(Wire::Bytes(&1.0f32.to_le_bytes()), 4, &mut b).unwrap();
        assert_eq!(f32::from_bits(b[0] as u32), 1.0);
        assert!(repeated(Wire::Bytes(&[0; 3]), 4, &mut b).is_err());
    }
}
