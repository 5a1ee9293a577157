//! Tagged values: one `Value` as a kind byte and its bytes, in mixed columns and in the
//! footers' aggregates.

use crate::codec::{put_bytes, put_varint, unzigzag, zigzag, DecodeResult, Reader};
use crate::types::Value;

pub(super) const KIND_F64: u8 = 0;
pub(super) const KIND_I64: u8 = 1;
pub(super) const KIND_BOOL: u8 = 2;
pub(super) const KIND_STR: u8 = 3;
pub(super) const KIND_MIXED: u8 = 4;
/// f64 values that are all exactly f32 (what `loss.item()` gives), stored in 4 bytes.
pub(super) const KIND_F32: u8 = 5;

pub(super) fn put_value_untagged(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => put_varint(out, zigzag(*x)),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::Str(s) => put_bytes(out, s.as_bytes()),
    }
}

/// A value with a one-byte kind tag; used by mixed columns and by segment footers.
pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    out.push(match v {
        Value::F64(_) => KIND_F64,
        Value::I64(_) => KIND_I64,
        Value::Bool(_) => KIND_BOOL,
        Value::Str(_) => KIND_STR,
    });
    put_value_untagged(out, v);
}

pub(super) fn get_value_of_kind(r: &mut Reader<'_>, kind: u8) -> DecodeResult<Value> {
    Ok(match kind {
        KIND_F64 => Value::F64(r.f64()?),
        KIND_I64 => Value::I64(unzigzag(r.varint()?)),
        KIND_BOOL => match r.u8()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return r.err(format!("bad bool byte {b}")),
        },
        KIND_STR => Value::Str(r.str()?.to_owned()),
        k => return r.err(format!("unknown value kind {k}")),
    })
}

pub(crate) fn get_value(r: &mut Reader<'_>) -> DecodeResult<Value> {
    let kind = r.u8()?;
    get_value_of_kind(r, kind)
}
