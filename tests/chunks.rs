//! `Store::chunks` (the columnar read path) returns exactly the rows `Store::history` returns,
//! for every range and key filter, on a rewound run and a fork, across blocks and segments.

use std::collections::BTreeMap;

use steplog::{ChunkValues, Durability, Options, Query, Row, Value};

fn rows_of_chunks(chunks: steplog::Chunks) -> Vec<Row> {
    let mut out = Vec::new();
    for c in chunks {
        let c = c.unwrap();
        let mut rows: Vec<BTreeMap<String, Value>> = vec![BTreeMap::new(); c.steps.len()];
        for col in &c.columns {
            assert_eq!(col.rows.len(), col.values.len());
            assert!(col.rows.windows(2).all(|w| w[0] < w[1]));
            for (j, &r) in col.rows.iter().enumerate() {
                let v = match &col.values {
                    ChunkValues::F64(x) => Value::F64(x[j]),
                    ChunkValues::I64(x) => Value::I64(x[j]),
                    ChunkValues::Any(x) => x[j].clone(),
                };
                rows[r as usize].insert(col.key.clone(), v);
            }
        }
        out.extend(c.steps.iter().zip(rows).map(|(&step, fields)| Row {
            step,
            fields: fields.into_iter().collect(),
        }));
    }
    out
}

#[test]
fn chunks_hold_the_rows_history_returns() {
    let dir = tempfile::tempdir().unwrap();
    let s = Options::new()
        .durability(Durability::Process)
        .block_bytes(1024)
        .segment_bytes(8 * 1024)
        .open(dir.path())
        .unwrap();
    let mut w = s.run("r").start().unwrap();
    for step in 0..3000u64 {
        let mut row = vec![("loss", Value::F64(1.0 / (step + 1) as f64))];
        if step % 3 == 0 {
            row.push(("epoch", Value::I64((step / 100) as i64)));
        }
        if step % 250 == 0 {
            row.push(("note", Value::Str(format!("s{step}"))));
        }
        if step % 11 == 0 {
            row.push((
                "mixed",
                if step % 2 == 0 {
                    Value::Bool(true)
                } else {
                    Value::I64(7)
                },
            ));
        }
        w.log_at(step * 2, row).unwrap();
    }
    w.finish().unwrap();
    s.run("r").resume_from(4000).apply().unwrap();
    let mut w = s.run("r").start().unwrap();
    for step in 2001..2600u64 {
        w.log_at(step * 2, [("loss", 0.5)]).unwrap();
    }
    w.commit().unwrap();
    s.run("f").fork_from("r", 3000).apply().unwrap();
    for r in ["r", "v1", "f", "r?_step=4500"] {
        for (from, to) in [
            (0, u64::MAX),
            (1, 999),
            (3999, 4003),
            (5000, 5001),
            (7000, 9000),
        ] {
            for keys in [
                None,
                Some(vec!["epoch"]),
                Some(vec!["note", "mixed"]),
                Some(vec!["nope"]),
            ] {
                let mut q = Query::new().steps(from..=to);
                if let Some(k) = &keys {
                    q = q.keys(k.iter().copied());
                }
                let want: Vec<Row> = s.history(r, &q).unwrap().collect::<Result<_, _>>().unwrap();
                if (r, from, to, keys.is_none()) == ("r", 0, u64::MAX, true) {
                    // Steps 0..=4000 by 2 kept by the rewind, then 4002..=5198 by 2.
                    assert_eq!(want.len(), 2001 + 599, "the comparison is not of nothing");
                }
                let got = rows_of_chunks(s.chunks(r, &q).unwrap());
                assert_eq!(got, want, "{r} {from}..={to} {keys:?}");
            }
        }
    }
    drop(w);
}
