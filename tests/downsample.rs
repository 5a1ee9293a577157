//! `Store::downsample` (M4 for charts) against M4 computed by brute force over
//! `Store::metric`, on runs with many segments and blocks, a rewind, a fork, NaN values and a
//! sparse key; and proof that aggregates, not decoding, do the work on long ranges.

use steplog::{Durability, Options, Store};

fn store(dir: &std::path::Path) -> Store {
    Options::new()
        .durability(Durability::Process)
        .block_bytes(2048)
        .segment_bytes(16 * 1024)
        .open(dir)
        .unwrap()
}

/// A deterministic wiggly value with NaN now and then.
fn value(step: u64, salt: u64) -> f64 {
    let mut x = step
        .wrapping_mul(6364136223846793005)
        .wrapping_add(salt * 1442695040888963407);
    x ^= x >> 33;
    if x.is_multiple_of(97) {
        return f64::NAN;
    }
    (x % 10_000) as f64 / 100.0 + (step as f64).sqrt()
}

/// Per bucket: count, first, last, min value, max value.
type Brute = (u64, (u64, f64), (u64, f64), Option<f64>, Option<f64>);

/// Brute-force M4.
fn brute(store: &Store, r: &str, key: &str, from: u64, to: u64, n: usize) -> Vec<Option<Brute>> {
    let s = store.metric(r, key, from..=to).unwrap();
    let mut out = vec![None; n];
    let span = u128::from(to - from) + 1;
    for (&st, &v) in s.steps.iter().zip(&s.values) {
        let i = ((u128::from(st - from) * n as u128) / span) as usize;
        let e = out[i].get_or_insert((0u64, (st, v), (st, v), None::<f64>, None::<f64>));
        e.0 += 1;
        e.2 = (st, v);
        if !v.is_nan() {
            e.3 = Some(e.3.map_or(v, |m: f64| m.min(v)));
            e.4 = Some(e.4.map_or(v, |m: f64| m.max(v)));
        }
    }
    out
}

fn same(a: (u64, f64), b: (u64, f64)) -> bool {
    a.0 == b.0 && (a.1 == b.1 || (a.1.is_nan() && b.1.is_nan()))
}

fn check(
    store: &Store,
    r: &str,
    key: &str,
    range: (u64, u64),
    n: usize,
) -> Option<steplog::Downsampled> {
    let Some(d) = store.downsample(r, key, range.0..=range.1, n).unwrap() else {
        let points = store.metric(r, key, range.0..=range.1).unwrap();
        assert!(
            points.steps.is_empty(),
            "{r} {key} {range:?}: None, but it has values"
        );
        return None;
    };
    let want = brute(store, r, key, d.from, d.to, n);
    assert_eq!(d.buckets.len(), n);
    for (i, (got, want)) in d.buckets.iter().zip(&want).enumerate() {
        match (got, want) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                assert_eq!(g.count, w.0, "{r} {key} bucket {i}");
                assert!(
                    same(g.first, w.1) && same(g.last, w.2),
                    "{r} {key} bucket {i}: {g:?} vs {w:?}"
                );
                assert_eq!(g.min.map(|m| m.1), w.3, "{r} {key} bucket {i} min");
                assert_eq!(g.max.map(|m| m.1), w.4, "{r} {key} bucket {i} max");
            }
            _ => panic!("{r} {key} bucket {i}: {got:?} vs {want:?}"),
        }
    }
    Some(d)
}

#[test]
fn m4_from_aggregates_equals_m4_over_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut w = s.run("r").start().unwrap();
    for step in 0..20_000u64 {
        let mut row = vec![("loss", steplog::Value::F64(value(step, 1)))];
        if step % 7 == 0 {
            row.push(("sparse", steplog::Value::I64((step % 1000) as i64)));
        }
        if step % 500 == 0 {
            row.push(("tag", steplog::Value::Str(format!("t{step}"))));
        }
        w.log_at(step, row).unwrap();
    }
    w.finish().unwrap();
    // Rewind to 15,000 and go on to 25,000 with other values; fork the archived version.
    let mut w = s.run("r").resume_from(15_000).start().unwrap();
    for step in 15_001..25_000u64 {
        w.log_at(step, [("loss", value(step, 2))]).unwrap();
    }
    w.commit().unwrap(); // the head segment stays open: its blocks have no footer yet
    let archived = w.archived().unwrap().to_string();
    s.run("f").fork_from(&archived, 9_000).apply().unwrap();

    for (r, key) in [
        ("r", "loss"),
        ("r", "sparse"),
        (archived.as_str(), "loss"),
        ("f", "loss"),
        ("f", "sparse"),
    ] {
        for n in [1, 3, 64, 800, 30_000] {
            assert!(check(&s, r, key, (0, u64::MAX), n).is_some());
        }
        check(&s, r, key, (1234, 14_321), 100);
        check(&s, r, key, (14_999, 15_002), 10);
    }
    // A long range in few buckets leans on aggregates.
    let d = check(&s, &archived, "loss", (0, u64::MAX), 4).unwrap();
    assert!(
        d.from_aggregates > d.decoded,
        "aggregates {} vs decoded {}",
        d.from_aggregates,
        d.decoded
    );
    // Snapped: nothing narrower than a bucket is decoded, no point moves more than one
    // bucket, and counts and extremes are kept.
    for (r, n) in [("r", 40), (archived.as_str(), 7), ("f", 300)] {
        let exact = s.downsample(r, "loss", .., n).unwrap().unwrap();
        let snapped = s.downsample_snapped(r, "loss", .., n).unwrap().unwrap();
        assert!(snapped.decoded <= exact.decoded, "{r}");
        let count =
            |d: &steplog::Downsampled| d.buckets.iter().flatten().map(|b| b.count).sum::<u64>();
        assert_eq!(count(&snapped), count(&exact), "{r}");
        let ext = |d: &steplog::Downsampled, pick: fn(&steplog::Bucket) -> Option<(u64, f64)>| {
            d.buckets
                .iter()
                .flatten()
                .filter_map(pick)
                .map(|p| p.1)
                .fold(f64::NAN, f64::max)
        };
        assert_eq!(ext(&snapped, |b| b.max), ext(&exact, |b| b.max), "{r}");
        assert_eq!(
            ext(&snapped, |b| b.min.map(|m| (m.0, -m.1))),
            ext(&exact, |b| b.min.map(|m| (m.0, -m.1))),
            "{r}"
        );
        for (i, b) in snapped.buckets.iter().enumerate() {
            let Some(b) = b else { continue };
            let near = &exact.buckets[i.saturating_sub(1)..(i + 2).min(n)];
            let hi = near
                .iter()
                .flatten()
                .filter_map(|x| x.max)
                .map(|m| m.1)
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(
                b.max.is_none_or(|m| m.1 <= hi),
                "{r} bucket {i}: a point moved more than one bucket"
            );
        }
    }
    let big = s
        .downsample_snapped(&archived, "loss", .., 4)
        .unwrap()
        .unwrap();
    assert_eq!(big.decoded, 0, "few wide buckets: aggregates alone");

    // No numeric values, or none in range.
    assert_eq!(
        s.downsample("r", "tag", .., 10)
            .unwrap()
            .map(|d| d.buckets.iter().flatten().count()),
        Some(0)
    );
    assert!(s.downsample("r", "nope", .., 10).unwrap().is_none());
    assert!(s.downsample("r", "loss", 30_000.., 10).unwrap().is_none());
    drop(w);
}

/// Issue #12, item 5: the buckets a caller can ask for are bounded (a chart's pixel columns):
/// `limits::MAX_BUCKETS` is answered, one more is a clear error, never an allocation of
/// whatever was asked.
#[test]
fn buckets_are_bounded_at_max_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut w = s.run("r").start().unwrap();
    for step in 0..10u64 {
        w.log_at(step, [("x", step as f64)]).unwrap();
    }
    w.finish().unwrap();
    let max = steplog::limits::MAX_BUCKETS;
    let d = s.downsample("r", "x", .., max).unwrap().unwrap();
    assert_eq!(d.buckets.len(), max);
    for n in [max + 1, usize::MAX] {
        match s.downsample("r", "x", .., n) {
            Err(steplog::Error::InvalidInput(m)) => assert!(m.contains("at most"), "{m}"),
            other => panic!("{n} buckets: {other:?}"),
        }
    }
}
