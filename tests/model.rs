//! Model-based test: random sequences of log (several streams, same-step merges, NaN and
//! infinities, sparse keys), commit, rewind, fork (also from archived versions), purge and
//! reopen, checked after every operation against a plain in-memory model: the history of
//! every readable version, its summary, statuses and lineage.

mod common;
use std::collections::BTreeMap;

use proptest::prelude::*;
use steplog::{Options, Query, Status, Store, Stream, Value, VersionId};

#[derive(Debug, Clone)]
enum Op {
    /// Log `n` rows to run `run % runs`, starting `gap` after its last step, with a commit
    /// every `commit_every` rows; `merge` logs a second call at each step.
    Log {
        run: usize,
        n: u64,
        gap: u64,
        commit_every: u64,
        merge: bool,
        seed: u64,
    },
    Rewind {
        run: usize,
        frac: f64,
    },
    Fork {
        version: usize,
        frac: f64,
    },
    Purge {
        version: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..40u64, 1..3u64, 1..15u64, any::<bool>(), any::<u64>())
            .prop_map(|(run, n, gap, commit_every, merge, seed)| Op::Log { run, n, gap, commit_every, merge, seed }),
        2 => (0..3usize, 0.0..1.0f64).prop_map(|(run, frac)| Op::Rewind { run, frac }),
        1 => (0..20usize, 0.0..1.0f64).prop_map(|(version, frac)| Op::Fork { version, frac }),
        1 => (0..20usize).prop_map(|version| Op::Purge { version }),
        1 => Just(Op::Reopen),
    ]
}

type Rows = Vec<(u64, BTreeMap<String, Value>)>;

#[derive(Default)]
struct Model {
    /// Run name → head version.
    runs: BTreeMap<String, VersionId>,
    /// Every version's rows per stream, its run, and whether archived / purged.
    versions: BTreeMap<VersionId, ([Rows; 2], String, bool, bool)>,
}

fn value(seed: u64, i: u64) -> Value {
    match (seed.wrapping_add(i)) % 7 {
        0 => Value::F64(f64::NAN),
        1 => Value::F64(f64::INFINITY),
        2 => Value::I64(i as i64 - 5),
        3 => Value::Str(format!("s{}", seed % 100)),
        4 => Value::Bool(i.is_multiple_of(2)),
        _ => Value::F64((i as f64) * 0.5 - (seed % 13) as f64),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        _ => a == b,
    }
}

fn check(store: &Store, model: &Model) {
    let versions = store.versions().unwrap();
    assert_eq!(versions.len(), model.versions.len());
    for info in &versions {
        let (rows, run, archived, purged) = &model.versions[&info.id];
        assert_eq!(&info.run, run);
        let want_status = if *purged {
            Status::Purged
        } else if *archived {
            Status::Archived
        } else {
            Status::Finished
        };
        assert_eq!(info.status, want_status, "{}", info.id);
        if *purged {
            continue;
        }
        for (s, stream) in [Stream::History, Stream::Console].into_iter().enumerate() {
            let got: Vec<_> = store
                .history(&info.id.to_string(), &Query::new().stream(stream))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let want = &rows[s];
            assert_eq!(got.len(), want.len(), "{} {stream}", info.id);
            for (g, (step, fields)) in got.iter().zip(want) {
                assert_eq!(g.step, *step);
                assert_eq!(g.fields.len(), fields.len(), "{} step {step}", info.id);
                for (k, v) in fields {
                    assert!(
                        same(&g.fields[k], v),
                        "{} step {step} {k}: {:?} != {v:?}",
                        info.id,
                        g.fields[k]
                    );
                }
            }
        }
        let summary = store.summary(&info.id.to_string()).unwrap();
        let hist = &rows[0];
        assert_eq!(summary.rows, hist.len() as u64);
        assert_eq!(summary.last_step, hist.last().map(|r| r.0));
        for (k, ks) in &summary.keys {
            let values: Vec<(u64, &Value)> = hist
                .iter()
                .filter_map(|(s, f)| f.get(k).map(|v| (*s, v)))
                .collect();
            assert_eq!(ks.count, values.len() as u64, "{k}");
            let last = values.last().unwrap();
            let got_last = ks.last.as_ref().unwrap();
            assert!(got_last.0 == last.0 && same(&got_last.1, last.1));
            let nums: Vec<f64> = values
                .iter()
                .filter_map(|(_, v)| v.as_f64())
                .filter(|x| !x.is_nan())
                .collect();
            let min = nums.iter().cloned().fold(f64::INFINITY, f64::min);
            if let Some((_, m)) = &ks.min {
                assert_eq!(m.as_f64().unwrap(), min, "{k} min");
            } else {
                assert!(nums.is_empty());
            }
        }
    }
    for (name, head) in &model.runs {
        assert_eq!(store.version(name).unwrap().id, *head);
    }
}

fn apply(store: &mut Store, model: &mut Model, op: &Op, dir: &std::path::Path) {
    let names = ["a", "b", "c"];
    match op {
        Op::Log {
            run,
            n,
            gap,
            commit_every,
            merge,
            seed,
        } => {
            let name = names[*run];
            let mut w = store.run(name).start().unwrap();
            let v = w.version();
            let entry = model
                .versions
                .entry(v)
                .or_insert_with(|| (Default::default(), name.to_string(), false, false));
            model.runs.insert(name.to_string(), v);
            let mut step = w.next_step(Stream::History) + gap - 1;
            for i in 0..*n {
                let mut fields: BTreeMap<String, Value> = BTreeMap::new();
                fields.insert("m".into(), value(*seed, i));
                if i % 3 == 0 {
                    fields.insert(format!("sparse/{}", seed % 4), value(seed / 7, i));
                }
                w.log_at(step, fields.clone()).unwrap();
                if *merge {
                    w.log_at(step, [("merged", i as i64)]).unwrap();
                    fields.insert("merged".into(), Value::I64(i as i64));
                }
                entry.0[0].push((step, fields));
                if i % 4 == 0 {
                    let line = format!("line {i}");
                    w.log_row(Stream::Console, Some(step), [("line", line.clone())])
                        .unwrap();
                    w.log_row(Stream::Console, Some(step), [("line", "again")])
                        .unwrap();
                    entry.0[1].push((
                        step,
                        [("line".to_string(), Value::Str(line))]
                            .into_iter()
                            .collect(),
                    ));
                    entry.0[1].push((
                        step,
                        [("line".to_string(), Value::Str("again".into()))]
                            .into_iter()
                            .collect(),
                    ));
                }
                if i % commit_every == commit_every - 1 {
                    w.commit().unwrap();
                }
                step += gap;
            }
            w.finish().unwrap();
        }
        Op::Rewind { run, frac } => {
            let name = names[*run];
            let Some(&head) = model.runs.get(name) else {
                return;
            };
            let rows = &model.versions[&head].0;
            let Some(last) = rows[0].iter().chain(rows[1].iter()).map(|r| r.0).max() else {
                return;
            };
            let step = (last as f64 * frac) as u64;
            let r = store.rewind(name, step, None).unwrap();
            assert_eq!(r.archived, head);
            let cut: [Rows; 2] = rows
                .clone()
                .map(|s| s.into_iter().filter(|r| r.0 <= step).collect());
            model.versions.get_mut(&head).unwrap().2 = true;
            model
                .versions
                .insert(r.head, (cut, name.to_string(), false, false));
            model.runs.insert(name.to_string(), r.head);
        }
        Op::Fork { version, frac } => {
            let live: Vec<VersionId> = model
                .versions
                .iter()
                .filter(|(_, v)| !v.3)
                .map(|(k, _)| *k)
                .collect();
            if live.is_empty() {
                return;
            }
            let src = live[version % live.len()];
            let rows = &model.versions[&src].0;
            let Some(last) = rows[0].iter().chain(rows[1].iter()).map(|r| r.0).max() else {
                return;
            };
            let step = (last as f64 * frac) as u64;
            let name = format!("fork{}", model.versions.len());
            let v = store.fork(&src.to_string(), step, &name, None).unwrap();
            let cut: [Rows; 2] = rows
                .clone()
                .map(|s| s.into_iter().filter(|r| r.0 <= step).collect());
            model.versions.insert(v, (cut, name.clone(), false, false));
            model.runs.insert(name, v);
        }
        Op::Purge { version } => {
            let archived: Vec<VersionId> = model
                .versions
                .iter()
                .filter(|(_, v)| v.2 && !v.3)
                .map(|(k, _)| *k)
                .collect();
            if archived.is_empty() {
                return;
            }
            let v = archived[version % archived.len()];
            store.purge(v).unwrap();
            model.versions.get_mut(&v).unwrap().3 = true;
        }
        Op::Reopen => {
            *store = Options::new()
                .segment_bytes(700)
                .block_bytes(120)
                .open(dir)
                .unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Options::new().segment_bytes(700).block_bytes(120).open(dir.path()).unwrap();
        let mut model = Model::default();
        for op in &ops {
            apply(&mut store, &mut model, op, dir.path());
            check(&store, &model);
        }
        let report = store.verify().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
        prop_assert!(report.notes.is_empty(), "{:?}", report.notes);
    }
}
