#!/usr/bin/env python3
"""A stand-in for a training script, for the README's CLI quick start: prints one JSON object
per step, as a script that logs with `print(json.dumps(...))` does, for `steplog log` to read.

    python3 examples/train.py | steplog log r1
    python3 examples/train.py --from 201 --lr 0.05 | steplog log r1   # after a rewind to 200

Keys: `loss` and `acc` every step, `eval/loss` every 100 steps (a nested object, flattened
by `steplog log` into `eval/loss`). Standard library only.
"""

import argparse
import json
import math
import random


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="start", type=int, default=0, help="first step (default 0)")
    p.add_argument("--to", type=int, default=999, help="last step (default 999)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate: how fast loss falls")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    for step in range(args.start, args.to + 1):
        loss = 2.0 * math.exp(-args.lr * step / 100) + 0.05 * rng.random()
        row = {"_step": step, "loss": round(loss, 6), "acc": round(1 - loss / 2.1, 6)}
        if step % 100 == 0:
            row["eval"] = {"loss": round(loss * 1.1, 6)}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
