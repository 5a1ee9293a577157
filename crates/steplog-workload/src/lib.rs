//! Generated workloads shared by the demo, the tests and the benchmarks (DESIGN.md,
//! "Workloads"): deterministic from a seed, so every consumer sees the same data.

use steplog::Value;

/// A small, fast, deterministic random number generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A float uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A float roughly normal with mean 0 and deviation 1 (sum of uniforms).
    pub fn normal(&mut self) -> f64 {
        (0..4).map(|_| self.unit()).sum::<f64>() * 3f64.sqrt() - 2.0 * 3f64.sqrt()
    }
}

/// The `train` workload: one run, ~8 metrics every step and ~8 eval metrics every 1,000.
#[derive(Debug, Clone)]
pub struct Train {
    /// Number of steps.
    pub steps: u64,
    /// Steps in `[start, end)` get a loss spike (×`factor`), like a bad batch or an LR blowup.
    pub spike: Option<(u64, u64, f64)>,
    rng: Rng,
    step: u64,
}

/// Keys logged at every step of [`Train`].
pub const TRAIN_KEYS: [&str; 8] = [
    "train/loss",
    "train/grad_norm",
    "train/lr",
    "train/acc",
    "epoch",
    "_timestamp",
    "train/tokens",
    "train/samples_per_sec",
];

impl Train {
    /// A train workload of `steps` steps from `seed`.
    pub fn new(steps: u64, seed: u64) -> Self {
        Train {
            steps,
            spike: None,
            rng: Rng::new(seed),
            step: 0,
        }
    }

    /// Adds a loss spike over steps `[start, end)`.
    pub fn with_spike(mut self, start: u64, end: u64, factor: f64) -> Self {
        self.spike = Some((start, end, factor));
        self
    }
}

impl Iterator for Train {
    type Item = (u64, Vec<(&'static str, Value)>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.step >= self.steps {
            return None;
        }
        let (s, n) = (self.step, self.steps.max(1));
        self.step += 1;
        let r = &mut self.rng;
        let progress = s as f64 / n as f64;
        let mut loss = 2.5 * (-3.0 * progress).exp() + 0.3 + 0.05 * r.normal();
        if let Some((a, b, f)) = self.spike {
            if (a..b).contains(&s) {
                loss *= f;
            }
        }
        // What `loss.item()` gives: a float32 widened to f64.
        let loss = f64::from(loss as f32);
        let grad = f64::from((1.0 + 0.3 * r.normal()).abs() as f32);
        let lr = 1e-4 + 0.5 * (3e-3 - 1e-4) * (1.0 + (std::f64::consts::PI * progress).cos());
        let acc = (((0.95 - 0.85 * (-4.0 * progress).exp()) * 256.0 + 4.0 * r.normal())
            .clamp(0.0, 256.0)
            .round())
            / 256.0;
        let mut row = vec![
            ("train/loss", Value::F64(loss)),
            ("train/grad_norm", Value::F64(grad)),
            ("train/lr", Value::F64(lr)),
            ("train/acc", Value::F64(acc)),
            ("epoch", Value::I64((s / 10_000) as i64)),
            (
                "_timestamp",
                Value::F64(1_764_000_000.0 + s as f64 * 0.25 + 0.01 * r.unit()),
            ),
            ("train/tokens", Value::I64(s as i64 * 4096)),
            (
                "train/samples_per_sec",
                Value::F64(f64::from((512.0 + 8.0 * r.normal()) as f32)),
            ),
        ];
        if s % 1000 == 999 {
            let eval = loss * 1.05 + 0.02 * r.normal();
            row.extend([
                ("eval/loss", Value::F64(eval)),
                ("eval/acc", Value::F64(acc * 0.98)),
                ("eval/perplexity", Value::F64(eval.exp())),
                ("eval/f1", Value::F64(acc * 0.97)),
                ("eval/precision", Value::F64(acc * 0.99)),
                ("eval/recall", Value::F64(acc * 0.96)),
                ("eval/samples", Value::I64(10_000)),
                ("eval/best", Value::Bool(s % 3000 == 2999)),
            ]);
        }
        Some((s, row))
    }
}

/// The `fuzz` workload: six monotone integer counters per step.
pub fn fuzz_row(step: u64, rng: &mut Rng, state: &mut [i64; 6]) -> Vec<(&'static str, Value)> {
    let deltas = [
        1000 + (rng.next_u64() % 50) as i64,
        i64::from(rng.next_u64().is_multiple_of(500)),
        i64::from(rng.next_u64().is_multiple_of(200)),
        i64::from(rng.next_u64().is_multiple_of(100_000)),
        i64::from(rng.next_u64().is_multiple_of(50_000)),
        i64::from(step.is_multiple_of(60)),
    ];
    for (s, d) in state.iter_mut().zip(deltas) {
        *s += d;
    }
    vec![
        ("execs", Value::I64(state[0])),
        ("corpus", Value::I64(state[1])),
        ("edges", Value::I64(state[2])),
        ("crashes", Value::I64(state[3])),
        ("hangs", Value::I64(state[4])),
        ("cycles", Value::I64(state[5])),
    ]
}

/// One row of the `sweep` workload: four metrics of run `run` at `step`.
pub fn sweep_row(run: u64, step: u64, rng: &mut Rng) -> Vec<(&'static str, Value)> {
    let p = step as f64 / 100.0;
    let base = 1.0 + (run % 17) as f64 * 0.05;
    vec![
        (
            "loss",
            Value::F64(f64::from(
                (base * (-2.0 * p).exp() + 0.02 * rng.normal()) as f32,
            )),
        ),
        ("acc", Value::F64(((0.5 + 0.4 * p) * 128.0).round() / 128.0)),
        ("time_ms", Value::F64(f64::from((10.0 + rng.unit()) as f32))),
        ("iters", Value::I64(step as i64 * 32)),
    ]
}

/// The `wide` workload's shape (issue #14): a large model logging per-layer statistics
/// every step and many eval metrics now and then.
pub const WIDE_LAYER_KEYS: usize = 400;
/// Eval keys, logged every [`WIDE_EVAL_EVERY`] steps.
pub const WIDE_EVAL_KEYS: usize = 100;
/// How often the eval keys are logged.
pub const WIDE_EVAL_EVERY: u64 = 50;

/// The `wide` workload's keys: `layer000/grad_norm` .. `layer099/act_std` (four statistics of
/// each of 100 layers), then `eval/task000` .. `eval/task099`.
pub fn wide_keys() -> &'static [String] {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let stats = ["grad_norm", "weight_norm", "act_mean", "act_std"];
        let layers = (0..WIDE_LAYER_KEYS / stats.len())
            .flat_map(|l| stats.iter().map(move |s| format!("layer{l:03}/{s}")));
        let evals = (0..WIDE_EVAL_KEYS).map(|t| format!("eval/task{t:03}"));
        layers.chain(evals).collect()
    })
}

/// One row of the `wide` workload at `step`: every layer statistic (float32 values widened, as
/// a framework logs them), and at every [`WIDE_EVAL_EVERY`]th step the eval keys too.
pub fn wide_row(step: u64, rng: &mut Rng) -> Vec<(&'static str, Value)> {
    let keys = wide_keys();
    let p = step as f64 / 1000.0;
    let n = if step.is_multiple_of(WIDE_EVAL_EVERY) {
        keys.len()
    } else {
        WIDE_LAYER_KEYS
    };
    keys[..n]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let scale = 1.0 + (i % 97) as f64 * 0.01;
            let x = if i < WIDE_LAYER_KEYS {
                scale * (-p).exp() + 0.01 * rng.normal()
            } else {
                (0.5 + 0.4 * (1.0 - (-p).exp()) * scale / 2.0).min(1.0)
            };
            (k.as_str(), Value::F64(f64::from(x as f32)))
        })
        .collect()
}

/// The `deep` workload, written into `store`: run `deep` whose attempt k (k = 0..depth) logs
/// steps 2k..=2k+2 (x = k) after a rewind to step 2k (so attempt k keeps 2k+1 rows of its
/// past and each archived version owns 2 rows of its own after the cutoff), then a shallow
/// run `flat` holding the head's rows in one version.
pub fn write_deep(store: &steplog::Store, depth: u64) -> steplog::Result<()> {
    for k in 0..depth {
        let start = if k == 0 {
            store.run("deep")
        } else {
            store.run("deep").resume_from(2 * k)
        };
        let mut w = start.start()?;
        for step in (2 * k + u64::from(k > 0))..=2 * k + 2 {
            w.log_at(step, [("x", k as f64)])?;
        }
        w.finish()?;
    }
    let head = store
        .history("deep", &steplog::Query::new())?
        .collect::<steplog::Result<Vec<_>>>()?;
    let mut w = store.run("flat").start()?;
    for r in &head {
        w.log_at(r.step, r.fields.clone())?;
    }
    w.finish()
}

/// The chart workload, written into `store`: run `name` with `steps` steps of one metric,
/// `loss`, a decaying curve with a small deterministic wiggle, logged in columns of 65,536
/// steps (the charts' benches: `downsample`, and the web view's M4 series).
pub fn write_long_metric(store: &steplog::Store, name: &str, steps: u64) -> steplog::Result<()> {
    let mut w = store.run(name).start()?;
    let chunk = 1u64 << 16;
    for start in (0..steps).step_by(chunk as usize) {
        let at: Vec<u64> = (start..(start + chunk).min(steps)).collect();
        let loss: Vec<f64> = at
            .iter()
            .map(|&s| 2.0 / (1.0 + s as f64 / 1e5) + ((s * 7919) % 1000) as f64 * 1e-4)
            .collect();
        w.log_columns(&at, &[("loss", steplog::Batch::F64(&loss))])?;
    }
    w.finish()
}

/// Writes the `wide` workload's run (`steps` rows of [`wide_row`], seed 11) as run `name`,
/// finished: what the read bench and the `wide_scan` example read.
pub fn write_wide(store: &steplog::Store, name: &str, steps: u64) -> steplog::Result<()> {
    let mut rng = Rng::new(11);
    let mut w = store.run(name).start()?;
    for step in 0..steps {
        w.log_at(step, wide_row(step, &mut rng))?;
    }
    w.finish()
}

/// The length of every file under `dir`, a store's size on disk as the harness counts it
/// (an entry that cannot be read counts 0).
pub fn tree_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => tree_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_is_shaped_as_designed() {
        let keys = wide_keys();
        assert_eq!(keys.len(), WIDE_LAYER_KEYS + WIDE_EVAL_KEYS);
        let unique: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "keys are distinct");
        let mut rng = Rng::new(1);
        assert_eq!(wide_row(0, &mut rng).len(), keys.len(), "eval at step 0");
        assert_eq!(wide_row(1, &mut rng).len(), WIDE_LAYER_KEYS);
        assert_eq!(wide_row(WIDE_EVAL_EVERY, &mut rng).len(), keys.len());
    }

    #[test]
    fn train_is_deterministic_and_shaped_as_designed() {
        let a: Vec<_> = Train::new(2000, 7).collect();
        let b: Vec<_> = Train::new(2000, 7).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2000);
        assert!(a.iter().all(|(_, r)| r.len() >= TRAIN_KEYS.len()));
        assert_eq!(
            a.iter().filter(|(_, r)| r.len() > 8).count(),
            2,
            "eval every 1,000 steps"
        );
        for (_, r) in &a {
            if let Value::F64(x) = r[0].1 {
                assert_eq!(x, f64::from(x as f32), "loss is a widened float32");
            }
        }
    }
}
