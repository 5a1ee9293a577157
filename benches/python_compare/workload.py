"""DESIGN.md's `train` workload, for the Python comparison (stdlib only, so every peer's
virtual environment can import it): 8 metrics every step, 7 more every 1,000th step, from a
fixed seed. Floats that a framework gets from `loss.item()` are float32 values."""

import math
import random
import struct


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def train(steps: int, seed: int = 7):
    rng = random.Random(seed)
    for s in range(steps):
        p = s / max(steps, 1)
        loss = _f32(2.5 * math.exp(-3.0 * p) + 0.3 + 0.05 * rng.gauss(0, 1))
        acc = round(min(max((0.95 - 0.85 * math.exp(-4.0 * p)) * 256 + 4 * rng.gauss(0, 1), 0), 256)) / 256
        row = {
            "train/loss": loss,
            "train/grad_norm": _f32(abs(1.0 + 0.3 * rng.gauss(0, 1))),
            "train/lr": 1e-4 + 0.5 * (3e-3 - 1e-4) * (1 + math.cos(math.pi * p)),
            "train/acc": acc,
            "epoch": s // 10_000,
            "sys/time": 1_764_000_000.0 + s * 0.25 + 0.01 * rng.random(),
            "train/tokens": s * 4096,
            "train/samples_per_sec": _f32(512 + 8 * rng.gauss(0, 1)),
        }
        if s % 1000 == 999:
            ev = loss * 1.05 + 0.02 * rng.gauss(0, 1)
            row.update(
                {
                    "eval/loss": ev,
                    "eval/acc": acc * 0.98,
                    "eval/perplexity": math.exp(ev),
                    "eval/f1": acc * 0.97,
                    "eval/precision": acc * 0.99,
                    "eval/recall": acc * 0.96,
                    "eval/samples": 10_000,
                }
            )
        yield s, row
