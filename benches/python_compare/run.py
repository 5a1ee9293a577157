"""steplog's Python API against the trackers people log training runs with (docs/BENCHMARKS.md).

    python3 benches/python_compare/run.py [--steps 125000] [--full-steps 1000000] [--work DIR]

Each peer gets its own virtual environment (created and installed here, reused on later
runs), then logs the same generated `train` workload (workload.py: about 1,000,000 points at
125,000 steps) the way its docs advise for speed, and reads one metric back, checked against
the generated values. steplog also runs once at full size. Not run by CI (minutes, and the
peers' installs are large)."""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# peer -> (virtual environment, what to install in it)
PEERS = {
    "steplog": ("steplog", [os.path.join(ROOT, "bindings", "python")]),
    "steplog-columns": ("steplog", [os.path.join(ROOT, "bindings", "python")]),
    "wandb": ("wandb", ["wandb"]),
    "mlflow-sqlite": ("mlflow", ["mlflow"]),
    "mlflow-file": ("mlflow", ["mlflow"]),
    "tensorboardx": ("tensorboardx", ["tensorboardX", "tensorboard"]),
    "aim": ("aim", ["aim"]),
}

HOW = {
    "steplog": "Store.init + run.log(row, step=s) per step (W&B's shape), Durability process",
    "steplog-columns": "run.log_columns of 4,096 steps (the bulk path) + log(step=) for eval keys",
    "wandb": "WANDB_MODE=offline, run.log(row, step=s) per step, finish() waits for the writer",
    "mlflow-sqlite": "MlflowClient.log_batch of 1,000 metrics (its limit), sqlite:/// store",
    "mlflow-file": "MlflowClient.log_batch of 1,000 metrics, file store (MLFLOW_ALLOW_FILE_STORE)",
    "tensorboardx": "SummaryWriter.add_scalar per value; read back with TensorBoard's EventAccumulator",
    "aim": "Run.track(row, step=s) per step (dict of metrics)",
}


def venv(work, name, packages):
    path = os.path.join(work, "venvs", name)
    py = os.path.join(path, "bin", "python")
    marker = os.path.join(path, ".installed")
    if not os.path.exists(marker):
        print(f"installing {name}: {' '.join(packages)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", *packages], check=True)
        open(marker, "w").close()
    return py


def measure(work, peer, steps):
    env_name, packages = PEERS[peer]
    py = venv(work, env_name, packages)
    d = os.path.join(work, "data", f"{peer}-{steps}")
    subprocess.run(["rm", "-rf", d], check=True)
    r = subprocess.run(
        [py, os.path.join(HERE, "peers.py"), peer, d, str(steps)],
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        print(f"{peer}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=125_000)
    ap.add_argument("--full-steps", type=int, default=1_000_000)
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "python-compare"))
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--json")
    a = ap.parse_args()
    results = []
    for peer in a.peers.split(","):
        print(f"measuring {peer}...", file=sys.stderr)
        r = measure(a.work, peer, a.steps)
        if r:
            results.append(r)
    for peer in ("steplog", "steplog-columns"):
        if a.full_steps and peer in a.peers.split(","):
            print(f"measuring {peer} at full size...", file=sys.stderr)
            r = measure(a.work, peer, a.full_steps)
            if r:
                results.append(r)

    print(f"\nPython trackers, train workload; {os.cpu_count()} cores")
    head = f"{'system':<18}{'steps':>9}{'points':>10}{'k pts/s':>11}{'B/pt':>9}{'read ms':>10}{'ok':>5}{'rewind ms':>11}{'fork ms':>9}"
    print(head)
    for r in results:
        pps = r["points"] / r["ingest_s"] / 1e3
        bpp = r["bytes"] / r["points"]
        rw = f"{r['rewind_s'] * 1e3:.3f}" if "rewind_s" in r else "-"
        fk = f"{r['fork_s'] * 1e3:.3f}" if "fork_s" in r else "-"
        ok = {True: "yes", False: "NO", None: "n/a"}[r["read_ok"]]
        rd = f"{r['read_s'] * 1e3:.1f}" if r["read_s"] is not None else "-"
        print(f"{r['peer']:<18}{r['steps']:>9}{r['points']:>10}{pps:>11.1f}{bpp:>9.2f}{rd:>10}{ok:>5}{rw:>11}{fk:>9}")
    same = [r for r in results if r["steps"] == a.steps]
    peers = [r for r in same if not r["peer"].startswith("steplog")]
    for mine in [r for r in same if r["peer"].startswith("steplog")]:
        if not peers:
            break
        fastest = max(peers, key=lambda r: r["points"] / r["ingest_s"])
        smallest = min(peers, key=lambda r: r["bytes"] / r["points"])
        speed = (mine["points"] / mine["ingest_s"]) / (fastest["points"] / fastest["ingest_s"])
        size = (smallest["bytes"] / smallest["points"]) / (mine["bytes"] / mine["points"])
        print(
            f"{mine['peer']}: {speed:.1f}x the ingest of the fastest peer ({fastest['peer']}), "
            f"{size:.1f}x fewer bytes per point than the smallest ({smallest['peer']})"
        )
    for peer, how in HOW.items():
        print(f"  {peer}: {how}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
