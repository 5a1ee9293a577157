//! Block encode and decode, per value kind.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use steplog::{fuzzing, Row, Value};

fn rows(kind: &str, n: u64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let v = match kind {
                "f64" => Value::F64(f64::from((1.0 / (i + 1) as f64) as f32)),
                "i64" => Value::I64(i as i64 * 4096),
                "bool" => Value::Bool(i % 3 == 0),
                _ => Value::Str(format!("step {i}: checkpoint")),
            };
            Row {
                step: i,
                fields: [("k".to_string(), v)].into_iter().collect(),
            }
        })
        .collect()
}

fn block(c: &mut Criterion) {
    let mut g = c.benchmark_group("block");
    for kind in ["f64", "i64", "bool", "str"] {
        let rows = rows(kind, 4096);
        g.throughput(Throughput::Elements(rows.len() as u64));
        g.bench_function(format!("encode/kind={kind}/rows=4096"), |b| {
            b.iter(|| fuzzing::encode_block(&rows, 3))
        });
        let frame = fuzzing::encode_block(&rows, 3);
        g.bench_function(format!("decode/kind={kind}/rows=4096"), |b| {
            b.iter(|| fuzzing::decode_block(&frame))
        });
    }
    g.finish();
}

criterion_group!(benches, block);
criterion_main!(benches);
