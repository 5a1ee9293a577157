//! Model-based test: random sequences of log (two streams, same-step merges, NaN, infinities,
//! sparse keys, long strings, rows with many keys), commit, finish, rewind, fork (also from archived versions), purge,
//! reopen and crash (process crash, power loss, power loss with torn unsynced writes), on the
//! crash-simulating file system with `Durability::PowerLoss`. After every operation, the
//! history, summary and status of every version equal those of a plain in-memory model; after
//! a crash, each interrupted run holds every row it had committed and nothing it had not
//! logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use steplog::io::{CrashMode, SimFs};
use steplog::{
    Durability, Error, Options, Query, RunWriter, Status, Store, Stream, Value, VersionId,
};

#[derive(Debug, Clone)]
enum Op {
    /// Log `n` rows to run `run`, `gap` apart; `merge` logs a second call at each step.
    Log {
        run: usize,
        n: u64,
        gap: u64,
        merge: bool,
        seed: u64,
    },
    Commit {
        run: usize,
    },
    Finish {
        run: usize,
    },
    Rewind {
        run: usize,
        frac: f64,
    },
    /// Start the run again from nothing (its head archived whole).
    Restart {
        run: usize,
    },
    Fork {
        version: usize,
        frac: f64,
    },
    Purge {
        version: usize,
    },
    Reopen,
    Crash {
        mode: u8,
        seed: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..NAMES.len(), 1..30u64, 1..3u64, any::<bool>(), any::<u64>())
            .prop_map(|(run, n, gap, merge, seed)| Op::Log { run, n, gap, merge, seed }),
        2 => (0..NAMES.len()).prop_map(|run| Op::Commit { run }),
        2 => (0..NAMES.len()).prop_map(|run| Op::Finish { run }),
        2 => (0..NAMES.len(), 0.0..1.0f64).prop_map(|(run, frac)| Op::Rewind { run, frac }),
        1 => (0..NAMES.len()).prop_map(|run| Op::Restart { run }),
        1 => (0..20usize, 0.0..1.0f64).prop_map(|(version, frac)| Op::Fork { version, frac }),
        1 => (0..20usize).prop_map(|version| Op::Purge { version }),
        1 => Just(Op::Reopen),
        1 => (0..3u8, any::<u64>()).prop_map(|(mode, seed)| Op::Crash { mode, seed }),
    ]
}

type Rows = Vec<(u64, BTreeMap<String, Value>)>;

#[derive(Debug, Clone)]
struct ModelVersion {
    run: String,
    /// Rows per stream (history, console) as logged.
    rows: [Rows; 2],
    /// How many rows of each stream were committed.
    committed: [usize; 2],
    finished: bool,
    archived: bool,
    purged: bool,
}

#[derive(Default)]
struct Model {
    runs: BTreeMap<String, VersionId>,
    versions: BTreeMap<VersionId, ModelVersion>,
}

struct World {
    fs: SimFs,
    store: Store,
    writers: BTreeMap<String, RunWriter>,
    model: Model,
}

const NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

fn open(fs: &SimFs) -> Store {
    Options::new()
        .durability(Durability::PowerLoss)
        .segment_bytes(700)
        .block_bytes(120)
        // Small: sequences compact the manifest into tables (and merge them) often, so
        // crashes and reopenings land on every step of a compaction.
        .manifest_compaction_bytes(1_500)
        // Every other rewind or fork from an archived version packs its lineage.
        .pack_fanout(2)
        .file_system(Arc::new(fs.clone()))
        .open(Path::new("/store"))
        .expect("open")
}

fn value(seed: u64, i: u64) -> Value {
    match seed.wrapping_add(i) % 7 {
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

fn read(store: &Store, v: VersionId, stream: Stream) -> Vec<steplog::Row> {
    store
        .history(v, &Query::new().stream(stream))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn assert_rows(got: &[steplog::Row], want: &[(u64, BTreeMap<String, Value>)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, (step, fields)) in got.iter().zip(want) {
        assert_eq!(g.step, *step, "{what}");
        assert_eq!(g.fields.len(), fields.len(), "{what} step {step}");
        for (k, v) in fields {
            assert!(
                same(&g.fields[k], v),
                "{what} step {step} {k}: {:?} != {v:?}",
                g.fields[k]
            );
        }
    }
}

fn last_step(v: &ModelVersion) -> Option<u64> {
    v.rows[0].iter().chain(v.rows[1].iter()).map(|r| r.0).max()
}

impl World {
    fn writer(&mut self, run: &str) -> &mut RunWriter {
        if !self.writers.contains_key(run) {
            let w = self.store.run(run).start().unwrap();
            let v = w.version();
            let entry = self
                .model
                .versions
                .entry(v)
                .or_insert_with(|| ModelVersion {
                    run: run.to_string(),
                    rows: Default::default(),
                    committed: [0; 2],
                    finished: false,
                    archived: false,
                    purged: false,
                });
            entry.finished = false;
            self.model.runs.insert(run.to_string(), v);
            self.writers.insert(run.to_string(), w);
        }
        self.writers.get_mut(run).unwrap()
    }

    fn settle(&mut self, run: &str, finish: bool) {
        if let Some(w) = self.writers.remove(run) {
            let v = w.version();
            if finish {
                w.finish().unwrap();
            } else {
                let mut w = w;
                w.commit().unwrap();
                self.writers.insert(run.to_string(), w);
            }
            let m = self.model.versions.get_mut(&v).unwrap();
            m.committed = [m.rows[0].len(), m.rows[1].len()];
            m.finished |= finish;
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Log {
                run,
                n,
                gap,
                merge,
                seed,
            } => {
                let name = NAMES[*run];
                let w = self.writer(name);
                let v = w.version();
                let mut step = w.next_step(Stream::History) + gap - 1;
                let mut logged: [Rows; 2] = Default::default();
                for i in 0..*n {
                    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
                    fields.insert("m".into(), value(*seed, i));
                    if i % 3 == 0 {
                        fields.insert(format!("sparse/{}", seed % 4), value(seed / 7, i));
                    }
                    if seed % 5 == 0 && i % 4 == 1 {
                        // Long strings and rows with many keys.
                        let len = (*seed as usize / 5) % 5000;
                        fields.insert("long".into(), Value::Str("ü".repeat(len)));
                        for k in 0..(seed % 60) {
                            fields.insert(format!("many/{k:02}"), Value::I64((k * i) as i64));
                        }
                    }
                    w.log_at(step, fields.clone()).unwrap();
                    if *merge {
                        w.log_at(step, [("merged", i as i64)]).unwrap();
                        fields.insert("merged".into(), Value::I64(i as i64));
                    }
                    logged[0].push((step, fields));
                    if i % 4 == 0 {
                        for line in [format!("line {i}"), "again".to_string()] {
                            w.log_row(Stream::Console, Some(step), [("line", line.clone())])
                                .unwrap();
                            logged[1].push((
                                step,
                                [("line".to_string(), Value::Str(line))]
                                    .into_iter()
                                    .collect(),
                            ));
                        }
                    }
                    step += gap;
                }
                let m = self.model.versions.get_mut(&v).unwrap();
                m.rows[0].append(&mut logged[0]);
                m.rows[1].append(&mut logged[1]);
            }
            Op::Commit { run } => self.settle(NAMES[*run], false),
            Op::Finish { run } => self.settle(NAMES[*run], true),
            Op::Rewind { run, frac } => {
                let name = NAMES[*run];
                let Some(&head) = self.model.runs.get(name) else {
                    return;
                };
                if self.writers.contains_key(name) {
                    assert!(matches!(
                        self.store.run(name).resume_from(0).apply(),
                        Err(Error::Locked { .. })
                    ));
                    self.settle(name, true);
                }
                let Some(last) = last_step(&self.model.versions[&head]) else {
                    return;
                };
                let step = (last as f64 * frac) as u64;
                let r = self.store.run(name).resume_from(step).apply().unwrap();
                assert_eq!(r.archived, Some(head));
                let old = self.model.versions.get_mut(&head).unwrap();
                old.archived = true;
                let mut new = old.clone();
                new.rows = new
                    .rows
                    .map(|s| s.into_iter().filter(|r| r.0 <= step).collect());
                new.committed = [new.rows[0].len(), new.rows[1].len()];
                (new.archived, new.finished) = (false, true);
                self.model.versions.insert(r.head, new);
                self.model.runs.insert(name.to_string(), r.head);
            }
            Op::Restart { run } => {
                let name = NAMES[*run];
                let Some(&head) = self.model.runs.get(name) else {
                    return;
                };
                if self.writers.contains_key(name) {
                    self.settle(name, true);
                }
                let w = self.store.run(name).restart().start().unwrap();
                assert_eq!(w.archived(), Some(head));
                let id = w.version();
                w.finish().unwrap();
                let old = self.model.versions.get_mut(&head).unwrap();
                old.archived = true;
                let mut new = old.clone();
                new.rows = [Vec::new(), Vec::new()];
                new.committed = [0, 0];
                (new.archived, new.finished) = (false, true);
                self.model.versions.insert(id, new);
                self.model.runs.insert(name.to_string(), id);
            }
            Op::Fork { version, frac } => {
                let candidates: Vec<VersionId> = self
                    .model
                    .versions
                    .iter()
                    .filter(|(_, v)| !v.purged)
                    .map(|(k, _)| *k)
                    .collect();
                let Some(&src) = candidates.get(version % candidates.len().max(1)) else {
                    return;
                };
                let m = &self.model.versions[&src];
                // A live source exposes only committed rows to a fork.
                let visible = m.rows.clone().map(|r| r);
                let visible = [
                    visible[0][..m.committed[0]].to_vec(),
                    visible[1][..m.committed[1]].to_vec(),
                ];
                let Some(last) = visible[0]
                    .iter()
                    .chain(visible[1].iter())
                    .map(|r| r.0)
                    .max()
                else {
                    return;
                };
                let step = (last as f64 * frac) as u64;
                let name = format!("fork{}", self.model.versions.len());
                let v = self
                    .store
                    .run(&name)
                    .fork_from(src, step)
                    .apply()
                    .unwrap()
                    .head;
                let rows = visible.map(|s| s.into_iter().filter(|r| r.0 <= step).collect::<Rows>());
                let committed = [rows[0].len(), rows[1].len()];
                self.model.versions.insert(
                    v,
                    ModelVersion {
                        run: name.clone(),
                        rows,
                        committed,
                        finished: true,
                        archived: false,
                        purged: false,
                    },
                );
                self.model.runs.insert(name, v);
            }
            Op::Purge { version } => {
                let archived: Vec<VersionId> = self
                    .model
                    .versions
                    .iter()
                    .filter(|(_, v)| v.archived && !v.purged)
                    .map(|(k, _)| *k)
                    .collect();
                let Some(&v) = archived.get(version % archived.len().max(1)) else {
                    return;
                };
                self.store.purge(v).unwrap();
                self.model.versions.get_mut(&v).unwrap().purged = true;
            }
            Op::Reopen => {
                let names: Vec<String> = self.writers.keys().cloned().collect();
                for n in names {
                    self.settle(&n, true);
                }
                self.store = open(&self.fs);
            }
            Op::Crash { mode, seed } => {
                let mode = match mode {
                    0 => CrashMode::Process,
                    1 => CrashMode::PowerLoss,
                    _ => CrashMode::PowerLossTorn { seed: *seed },
                };
                let image = self.fs.crash(mode);
                let interrupted: Vec<VersionId> =
                    self.writers.values().map(|w| w.version()).collect();
                // The crashed process's writers are gone; nothing they do now reaches the image.
                std::mem::take(&mut self.writers);
                self.fs = image;
                self.store = open(&self.fs);
                for v in interrupted {
                    let m = self.model.versions.get_mut(&v).unwrap();
                    for (s, stream) in [Stream::History, Stream::Console].into_iter().enumerate() {
                        let got = read(&self.store, v, stream);
                        assert!(
                            got.len() >= m.committed[s],
                            "{v} {stream}: {} rows after {mode:?}, {} committed",
                            got.len(),
                            m.committed[s]
                        );
                        assert!(got.len() <= m.rows[s].len(), "{v} {stream}: rows invented");
                        assert_rows(
                            &got,
                            &m.rows[s][..got.len()],
                            &format!("{v} {stream} after {mode:?}"),
                        );
                        m.rows[s].truncate(got.len());
                        m.committed[s] = got.len();
                    }
                }
            }
        }
    }

    fn check(&self) {
        let infos = self.store.versions().unwrap();
        assert_eq!(infos.len(), self.model.versions.len());
        let live: Vec<VersionId> = self.writers.values().map(|w| w.version()).collect();
        for info in &infos {
            let m = &self.model.versions[&info.id];
            assert_eq!(info.run, m.run);
            let want = if m.purged {
                Status::Purged
            } else if m.archived {
                Status::Archived
            } else if live.contains(&info.id) {
                Status::Running
            } else if m.finished {
                Status::Finished
            } else {
                Status::Crashed
            };
            assert_eq!(info.status, want, "{}", info.id);
            if m.purged {
                continue;
            }
            // Readers see the committed rows (and possibly rows of blocks that filled up).
            for (s, stream) in [Stream::History, Stream::Console].into_iter().enumerate() {
                let got = read(&self.store, info.id, stream);
                let at_least = if live.contains(&info.id) {
                    m.committed[s]
                } else {
                    m.rows[s].len()
                };
                assert!(
                    got.len() >= at_least && got.len() <= m.rows[s].len(),
                    "{} {stream}: {} rows",
                    info.id,
                    got.len()
                );
                assert_rows(
                    &got,
                    &m.rows[s][..got.len()],
                    &format!("{} {stream}", info.id),
                );
            }
            if live.contains(&info.id) {
                continue;
            }
            let summary = self.store.summary(info.id).unwrap();
            let hist = &m.rows[0];
            assert_eq!(summary.rows, hist.len() as u64);
            assert_eq!(summary.last_step, hist.last().map(|r| r.0));
            // Counts agree with the rows, whole and capped by a step (`v?_step=S`) at each
            // step the version holds and just before it, across its rewinds and forks.
            let counted = self.store.rows(info.id).unwrap();
            assert_eq!(counted.rows, hist.len() as u64, "{}", info.id);
            assert_eq!(counted.last_step, hist.last().map(|r| r.0), "{}", info.id);
            for cap in hist.iter().flat_map(|r| [r.0.saturating_sub(1), r.0]) {
                let upto: Vec<u64> = hist.iter().map(|r| r.0).filter(|&s| s <= cap).collect();
                let capped = self.store.rows(info.id.at(cap)).unwrap();
                assert_eq!(capped.rows, upto.len() as u64, "{}?_step={cap}", info.id);
                assert_eq!(
                    capped.last_step,
                    upto.last().copied(),
                    "{}?_step={cap}",
                    info.id
                );
                let s = self.store.summary(info.id.at(cap)).unwrap();
                assert_eq!(s.rows, upto.len() as u64, "summary {}?_step={cap}", info.id);
            }
            for (k, ks) in &summary.keys {
                let values: Vec<(u64, &Value)> = hist
                    .iter()
                    .filter_map(|(s, f)| f.get(k).map(|v| (*s, v)))
                    .collect();
                assert_eq!(ks.count, values.len() as u64, "{k}");
                let (last_step, last) = values.last().unwrap();
                let got = ks.last.as_ref().unwrap();
                assert!(got.0 == *last_step && same(&got.1, last));
                let nums: Vec<f64> = values
                    .iter()
                    .filter_map(|(_, v)| v.as_f64())
                    .filter(|x| !x.is_nan())
                    .collect();
                match &ks.min {
                    Some((_, min)) => assert_eq!(
                        min.as_f64().unwrap(),
                        nums.iter().cloned().fold(f64::INFINITY, f64::min)
                    ),
                    None => assert!(nums.is_empty()),
                }
            }
        }
        for (name, head) in &self.model.runs {
            assert_eq!(self.store.version(name).unwrap().id, *head);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..30)) {
        let fs = SimFs::new();
        let store = open(&fs);
        let mut world = World { fs, store, writers: BTreeMap::new(), model: Model::default() };
        for op in &ops {
            world.apply(op);
            world.check();
        }
        let names: Vec<String> = world.writers.keys().cloned().collect();
        for n in names {
            world.settle(&n, true);
        }
        world.check();
        let report = world.store.verify().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
    }
}
