//! Summaries cut inside a segment of many blocks (segment format 4: the footer holds the
//! aggregates of groups of 64 blocks as well as each block's) against the summary computed
//! from the rows read back: at every kind of cut (on a group's edge, inside a group, inside a
//! block, at the first and last step), through `NAME?_step=S`, after a rewind and in a fork,
//! for floats with NaN, integers, a sparse key and strings.

mod common;

use steplog::{Options, Row, Store, Summary, Value};

/// Blocks of one row per column's minimum (4 rows for each of the run's 3 to 5 keys): a
/// 6,000-step run has hundreds of blocks in one segment, several groups of them.
fn store(dir: &std::path::Path) -> Store {
    Options::new().block_bytes(1).open(dir).unwrap()
}

fn row_values(step: u64) -> Vec<(&'static str, Value)> {
    let mut x = step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    let f = if x.is_multiple_of(89) {
        f64::NAN
    } else {
        (x % 100_000) as f64 / 7.0 - 5_000.0
    };
    let mut v = vec![
        ("f", Value::F64(f)),
        ("i", Value::I64((x % 1_000) as i64 - 500)),
    ];
    if step.is_multiple_of(37) {
        v.push(("sparse", Value::F64(step as f64)));
    }
    if step % 250 == 3 {
        v.push(("s", Value::Str(format!("at {step}"))));
    }
    v
}

/// The summary of `rows`, key by key, as the engine defines it (ties of min and max keep
/// the earliest step); sums compared with a tolerance by the caller, as merges add in
/// another order.
fn check(got: &Summary, rows: &[Row], what: &str) {
    assert_eq!(got.rows, rows.len() as u64, "{what}: rows");
    assert_eq!(got.last_step, rows.last().map(|r| r.step), "{what}");
    let mut keys: Vec<&String> = rows.iter().flat_map(|r| r.fields.keys()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(got.keys.len(), keys.len(), "{what}: keys");
    for key in keys {
        let ks = &got.keys[key];
        let vals: Vec<(u64, &Value)> = rows
            .iter()
            .filter_map(|r| r.fields.get(key).map(|v| (r.step, v)))
            .collect();
        assert_eq!(ks.count, vals.len() as u64, "{what} {key}: count");
        let bits = |v: &Value| match v {
            Value::F64(x) => format!("f{:x}", x.to_bits()),
            other => format!("{other:?}"),
        };
        let same = |a: &Option<(u64, Value)>, b: Option<(u64, &Value)>| {
            a.as_ref().map(|(s, v)| (*s, bits(v))) == b.map(|(s, v)| (s, bits(v)))
        };
        assert!(
            same(&ks.first, vals.first().copied()),
            "{what} {key}: first"
        );
        assert!(same(&ks.last, vals.last().copied()), "{what} {key}: last");
        let nums: Vec<(u64, &Value, f64)> = vals
            .iter()
            .filter_map(|&(s, v)| v.as_f64().map(|x| (s, v, x)))
            .collect();
        let nan = nums.iter().filter(|n| n.2.is_nan()).count() as u64;
        assert_eq!(ks.numeric_count, nums.len() as u64, "{what} {key}");
        assert_eq!(ks.nan_count, nan, "{what} {key}: NaN");
        let real: Vec<&(u64, &Value, f64)> = nums.iter().filter(|n| !n.2.is_nan()).collect();
        let pick = |better: fn(f64, f64) -> bool| {
            real.iter()
                .fold(None::<&&(u64, &Value, f64)>, |best, n| match best {
                    Some(b) if !better(n.2, b.2) => Some(b),
                    _ => Some(n),
                })
                .map(|n| (n.0, n.1))
        };
        assert!(same(&ks.min, pick(|a, b| a < b)), "{what} {key}: min");
        assert!(same(&ks.max, pick(|a, b| a > b)), "{what} {key}: max");
        let sum: f64 = real.iter().map(|n| n.2).sum();
        assert!(
            (ks.sum - sum).abs() <= 1e-9 * sum.abs().max(1.0),
            "{what} {key}: sum {} against {sum}",
            ks.sum
        );
    }
}

#[test]
fn summaries_cut_through_groups_of_blocks_equal_those_of_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut w = store.run("r").start().unwrap();
    for step in 0..6_000u64 {
        w.log_at(step, row_values(step)).unwrap();
    }
    w.finish().unwrap();
    let blocks = store.verify().unwrap().blocks;
    assert!(blocks > 4 * 64, "{blocks} blocks: several groups of 64");
    let all = common::rows(&store, "r");
    // Each block's last step (`chunks` yields the rows block by block): cuts on and around
    // the last step of every group of 64 blocks, and inside groups and blocks.
    let ends: Vec<u64> = store
        .chunks("r", &steplog::Query::default())
        .unwrap()
        .map(|c| *c.unwrap().steps.last().unwrap())
        .collect();
    assert_eq!(ends.len() as u64, blocks);
    let mut cuts: Vec<u64> = vec![0, 1, 2, 3, 4, 5, 5_998, 5_999];
    cuts.extend((0..6_000).step_by(97));
    for g in (63..ends.len()).step_by(64) {
        cuts.extend([ends[g] - 1, ends[g], ends[g] + 1]);
    }
    for &cut in &cuts {
        let upto: Vec<Row> = all.iter().filter(|r| r.step <= cut).cloned().collect();
        let got = store.summary(format!("r?_step={cut}").as_str()).unwrap();
        check(&got, &upto, &format!("r?_step={cut}"));
    }
    // After a rewind inside a group, the head's summary is cut the same way; a fork of the
    // archived version at another step too.
    let rewound = store.run("r").resume_from(3_333).apply().unwrap();
    let head: Vec<Row> = all.iter().filter(|r| r.step <= 3_333).cloned().collect();
    check(&store.summary("r").unwrap(), &head, "rewound head");
    store
        .run("f")
        .fork_from(rewound.archived.unwrap(), 4_100)
        .apply()
        .unwrap();
    let forked: Vec<Row> = all.iter().filter(|r| r.step <= 4_100).cloned().collect();
    check(&store.summary("f").unwrap(), &forked, "fork");
    // And in a fresh process's view of the store (the footer's parts read from disk).
    drop(store);
    let again = self::store(dir.path());
    check(
        &again.summary("r").unwrap(),
        &head,
        "rewound head, reopened",
    );
    assert!(again.verify().unwrap().is_ok());
}
