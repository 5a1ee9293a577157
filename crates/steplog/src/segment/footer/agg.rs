//! Aggregates as footers store them (docs/FORMAT.md, "aggregate"): both footer layouts
//! write and read them the same way.

use crate::codec::{put_bytes, put_varint, DecodeResult, Reader};
use crate::segment::block::{get_value, put_value};
use crate::summary::{Agg, KeySummary, ELIDED_FIRST, ELIDED_LAST};
use crate::types::Value;

/// The raw bytes a block's index entry and aggregate add to a footer, at most: what a writer
/// counts to seal a segment before its footer grows too large.
pub(crate) fn block_footer_bytes(agg: &Agg) -> usize {
    let mut raw = Vec::new();
    put_agg(&mut raw, agg);
    raw.len() + 5 * 10
}

/// Flag of an `opt` holding a string too long to keep in an aggregate: its step only
/// (segment format 3).
const OPT_ELIDED: u8 = 2;

fn put_opt(out: &mut Vec<u8>, v: &Option<(u64, Value)>, elided: bool) {
    match v {
        None => out.push(0),
        Some((step, _)) if elided => {
            out.push(OPT_ELIDED);
            put_varint(out, *step);
        }
        Some((step, v)) => {
            out.push(1);
            put_varint(out, *step);
            put_value(out, v);
        }
    }
}

/// An `opt`, and whether it is an elided string.
fn get_opt(r: &mut Reader<'_>) -> DecodeResult<(Option<(u64, Value)>, bool)> {
    match r.u8()? {
        0 => Ok((None, false)),
        1 => Ok((Some((r.varint()?, get_value(r)?)), false)),
        OPT_ELIDED => Ok((Some((r.varint()?, Value::Str(String::new()))), true)),
        b => r.err(format!("bad option flag {b}")),
    }
}

pub(super) fn put_agg(out: &mut Vec<u8>, agg: &Agg) {
    // About what a key of numbers takes (its name, counts, sum, shape and four steps and
    // values): one allocation where growing byte by byte took several.
    out.reserve(24 + agg.keys.keys().map(|k| k.len() + 64).sum::<usize>());
    put_varint(out, agg.rows);
    match (agg.first_step, agg.last_step) {
        (Some(a), Some(b)) => {
            out.push(1);
            put_varint(out, a);
            put_varint(out, b);
        }
        _ => out.push(0),
    }
    put_varint(out, agg.keys.len() as u64);
    for (k, s) in &agg.keys {
        put_bytes(out, k.as_bytes());
        put_varint(out, s.count);
        put_varint(out, s.numeric_count);
        put_varint(out, s.nan_count);
        out.extend_from_slice(&s.sum.to_le_bytes());
        // Monotone series (counters, steps, timestamps) have min = first and max = last:
        // say so in a shape byte instead of storing them twice.
        let shape = u8::from(same(&s.min, &s.first)) | (u8::from(same(&s.max, &s.last)) << 1);
        out.push(shape);
        put_opt(out, &s.first, s.elided & ELIDED_FIRST != 0);
        put_opt(out, &s.last, s.elided & ELIDED_LAST != 0);
        if shape & 1 == 0 {
            put_opt(out, &s.min, false);
        }
        if shape & 2 == 0 {
            put_opt(out, &s.max, false);
        }
    }
}

/// Whether two (step, value) are the same to the bit.
fn same(a: &Option<(u64, Value)>, b: &Option<(u64, Value)>) -> bool {
    match (a, b) {
        (Some((s1, x)), Some((s2, y))) => s1 == s2 && x.same_bits(y),
        _ => false,
    }
}

/// Decodes an aggregate; with `keep` false its keys are checked but not kept (the result has
/// rows and steps only): how a reader passes over aggregates it does not need.
pub(super) fn get_agg(r: &mut Reader<'_>, keep: bool) -> DecodeResult<Agg> {
    let mut agg = Agg {
        rows: r.varint()?,
        ..Agg::default()
    };
    match r.u8()? {
        0 => {}
        1 => {
            agg.first_step = Some(r.varint()?);
            agg.last_step = Some(r.varint()?);
        }
        b => return r.err(format!("bad step-range flag {b}")),
    }
    let nkeys = r.count(8)?;
    for _ in 0..nkeys {
        let key = r.str()?;
        let (count, numeric_count, nan_count, sum) =
            (r.varint()?, r.varint()?, r.varint()?, r.f64()?);
        let shape = r.u8()?;
        if shape > 3 {
            return r.err(format!("bad summary shape {shape}"));
        }
        let ((first, first_elided), (last, last_elided)) = (get_opt(r)?, get_opt(r)?);
        // min and max are numbers, never elided strings.
        let numeric = |(v, elided): (Option<(u64, Value)>, bool)| match (v, elided) {
            (Some(_), true) => Err(()),
            (v, _) => Ok(v),
        };
        let min = if shape & 1 == 1 {
            first.clone()
        } else {
            match numeric(get_opt(r)?) {
                Ok(v) => v,
                Err(()) => return r.err("an elided string as a minimum"),
            }
        };
        let max = if shape & 2 == 2 {
            last.clone()
        } else {
            match numeric(get_opt(r)?) {
                Ok(v) => v,
                Err(()) => return r.err("an elided string as a maximum"),
            }
        };
        let elided = u8::from(first_elided) * ELIDED_FIRST + u8::from(last_elided) * ELIDED_LAST;
        let s = KeySummary {
            count,
            numeric_count,
            nan_count,
            sum,
            min,
            max,
            first,
            last,
            elided,
        };
        if s.nan_count > s.numeric_count || s.numeric_count > s.count || s.count > agg.rows {
            return r.err(format!("inconsistent counts for key '{key}'"));
        }
        // What every aggregate of real rows satisfies: steps inside its range, numeric
        // extremes in order, values wherever there are counts.
        let range = agg.first_step.zip(agg.last_step);
        let inside = |v: &Option<(u64, Value)>| match (v, range) {
            (None, _) => true,
            (Some((st, _)), Some((a, b))) => (a..=b).contains(st),
            (Some(_), None) => false,
        };
        let num = |v: &Option<(u64, Value)>| v.as_ref().and_then(|(_, v)| v.as_f64());
        let extremes = match (num(&s.min), num(&s.max)) {
            (Some(lo), Some(hi)) => lo <= hi,
            (None, None) => s.min.is_none() && s.max.is_none(),
            _ => false,
        };
        let present = (s.count > 0) == (s.first.is_some() && s.last.is_some())
            && (s.numeric_count > s.nan_count) == s.min.is_some();
        if ![&s.first, &s.last, &s.min, &s.max].into_iter().all(inside) || !extremes || !present {
            return r.err(format!("an impossible summary for key '{key}'"));
        }
        if keep && agg.keys.insert(key.to_owned(), s).is_some() {
            return r.err(format!("key '{key}' repeated in the aggregate"));
        }
    }
    Ok(agg)
}
