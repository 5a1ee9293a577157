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
        .wrapping_add(salt.wrapping_mul(1442695040888963407));
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

/// An exact chart with a bucket edge in hundreds of blocks decodes them on several threads
/// (from 128 blocks on 2 cores) and folds them in step order: the same buckets as M4 over
/// every point, sealed segments and an open head alike.
#[test]
fn many_blocks_decoded_at_once_give_the_same_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut w = s.run("r").start().unwrap();
    for step in 0..60_000u64 {
        w.log_at(step, [("loss", value(step, 3))]).unwrap();
    }
    w.finish().unwrap();
    let mut w = s.run("r").resume_from(40_000).start().unwrap();
    for step in 40_001..70_000u64 {
        w.log_at(step, [("loss", value(step, 4))]).unwrap();
    }
    w.commit().unwrap();
    for (range, n) in [((0, u64::MAX), 20_000), ((12_345, 65_432), 7_000)] {
        let d = check(&s, "r", "loss", range, n).unwrap();
        assert!(d.decoded >= 128, "{range:?}: {} blocks decoded", d.decoded);
    }
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

/// By default (`Options::block_column_bytes`, 8 KiB since 2026-12-07), blocks of a narrow
/// run are cut at 8 KiB per key (one float key, 8 bytes a row: 1,024 rows, not the 8,192 of
/// 64 KiB), so an exact chart's bucket edge inside a block decodes about a thousand values;
/// a key that compresses to almost nothing (a schedule) keeps 64 KiB blocks; a wide run's
/// blocks still hold 4 rows per key (the rows-per-column rule wins); turned off
/// (`usize::MAX`), blocks are cut at `block_bytes` alone.
#[test]
fn blocks_of_few_keys_are_cut_by_bytes_per_key() {
    let blocks_of = |options: Options, keys: usize, n: u64, smooth: bool| -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let store = options.open(dir.path()).unwrap();
        let steps: Vec<u64> = (0..n).collect();
        let names: Vec<String> = (0..keys).map(|k| format!("k{k:03}")).collect();
        let vals: Vec<Vec<f64>> = (0..keys)
            .map(|k| {
                let v = |s: u64| {
                    if smooth {
                        s as f64 * 0.25
                    } else {
                        value(s, k as u64)
                    }
                };
                steps.iter().map(|&s| v(s)).collect()
            })
            .collect();
        let cols: Vec<(&str, steplog::Batch)> = names
            .iter()
            .zip(&vals)
            .map(|(k, v)| (k.as_str(), steplog::Batch::F64(v)))
            .collect();
        let mut w = store.run("r").start().unwrap();
        w.log_columns(&steps, &cols).unwrap();
        w.finish().unwrap();
        // Read back exactly (NaN included), and one exact M4 decodes at most a block per
        // bucket edge.
        let m = store.metric("r", "k000", ..).unwrap();
        assert_eq!(m.steps, steps);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&m.values), bits(&vals[0]));
        let d = store.downsample("r", "k000", .., 10).unwrap().unwrap();
        assert!(d.decoded <= 9, "{} blocks decoded for 9 edges", d.decoded);
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        report.blocks
    };
    let kib = 1 << 10;
    // Turned off: 64 KiB, about 8,190 rows.
    let whole = blocks_of(
        Options::new().block_column_bytes(usize::MAX),
        1,
        20_000,
        false,
    );
    assert_eq!(whole, 3, "{whole} blocks cut at 64 KiB");
    // One key at 8 KiB a key (the default, and said): 20,000 rows in blocks of about 1,024
    // rows.
    let one = blocks_of(Options::new(), 1, 20_000, false);
    assert!((20..=21).contains(&one), "{one} blocks of one key");
    let said = blocks_of(Options::new().block_column_bytes(8 * kib), 1, 20_000, false);
    assert_eq!(said, one, "8 KiB is the default");
    // 16 KiB a key: about 2,048 rows.
    let two = blocks_of(
        Options::new().block_column_bytes(16 * kib),
        1,
        20_000,
        false,
    );
    assert!((10..=11).contains(&two), "{two} blocks at 16 KiB a key");
    // 800 bytes a key: blocks that would be stored in under 2 KiB a key (4 KiB for one) are
    // not worth their overhead; cut at 64 KiB after the first.
    let tiny = blocks_of(Options::new().block_column_bytes(800), 1, 20_000, false);
    assert!((3..=4).contains(&tiny), "{tiny} blocks at 800 bytes a key");
    // 0 bytes a key is taken as 1: blocks of 4 rows, then 64 KiB ones; every row read back.
    let zero = blocks_of(Options::new().block_column_bytes(0), 1, 2_000, false);
    assert!((1..=3).contains(&zero), "{zero} blocks at 0 bytes a key");
    // A schedule (a quarter a step) compresses to a few bytes a block: after its first
    // block, cut at 64 KiB again.
    let smooth = blocks_of(Options::new().block_column_bytes(8 * kib), 1, 20_000, true);
    assert!((3..=4).contains(&smooth), "{smooth} blocks of a schedule");
    // 300 keys: 64 KiB is about 27 rows (300 × 8 KiB is more than 64 KiB); a block holds
    // 1,200 rows (4 per key).
    let wide = blocks_of(
        Options::new().block_column_bytes(8 * kib),
        300,
        6_000,
        false,
    );
    assert!((5..=6).contains(&wide), "{wide} blocks of 300 keys");
}

/// The console stream (text lines, never charted) is cut at `block_bytes` alone, even with
/// a per-key budget: its lines compress better in big blocks than in 8 KiB ones. The lines
/// carry random tokens, so that 8 KiB of them stay over 4 KiB compressed and the budget
/// would hold for them (a history key of the same text is cut at 8 KiB).
#[test]
fn console_blocks_are_cut_at_block_bytes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .block_column_bytes(8 << 10)
        .open(dir.path())
        .unwrap();
    // 3,000 lines of about 60 bytes, a random token of 40 base-64 characters each: 180 KB,
    // three blocks at 64 KiB (about 22 at 8 KiB).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut token = || {
        (0..40)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                        [(x % 64) as usize],
                )
            })
            .collect::<String>()
    };
    let lines: Vec<String> = (0..3_000u64)
        .map(|i| format!("batch {i:>6}: {}", token()))
        .collect();
    let mut w = store.run("r").start().unwrap();
    for (i, line) in lines.iter().enumerate() {
        w.log_row(
            steplog::Stream::Console,
            Some(i as u64),
            [("line", line.as_str())],
        )
        .unwrap();
    }
    w.finish().unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        (3..=4).contains(&report.blocks),
        "{} console blocks",
        report.blocks
    );
    // The same lines as a history key are cut at the budget: the text is one the budget
    // holds for.
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .block_column_bytes(8 << 10)
        .open(dir.path())
        .unwrap();
    let mut w = store.run("r").start().unwrap();
    for (i, line) in lines.iter().enumerate() {
        w.log_at(i as u64, [("line", line.as_str())]).unwrap();
    }
    w.finish().unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.blocks >= 15, "{} history blocks", report.blocks);
}
