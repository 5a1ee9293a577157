"""One peer's measurement, run inside that peer's own virtual environment by run.py:

    python peers.py PEER DIR STEPS

prints one JSON object: points, ingest seconds, bytes on disk, seconds to read the history of
`train/loss` back, whether it matched the generated values, and rewind/fork seconds where
the peer has them. Each peer is used the way its docs advise for speed."""

import json
import os
import sys
import time

from workload import train

KEY = "train/loss"


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def steplog_rows(d, rows):
    import steplog

    store = steplog.Store(d)
    t = time.perf_counter()
    with store.init(name="train") as run:
        for s, row in rows:
            run.log(row, step=s)
    ingest = time.perf_counter() - t
    return store, ingest


def steplog_columns(d, rows):
    """The bulk path: the keys every step has as typed columns of 4,096 steps; the eval keys
    of every 1,000th step merged into their step with log(step=)."""
    import steplog

    store = steplog.Store(d)
    t = time.perf_counter()
    dense = list(rows[0][1].keys())
    with store.init(name="train") as run:
        for a in range(0, len(rows), 4096):
            chunk = rows[a : a + 4096]
            cut = [i for i, (_, r) in enumerate(chunk) if len(r) > len(dense)]
            start = 0
            for end in cut + [len(chunk) - 1]:
                part = chunk[start : end + 1]
                if part:
                    run.log_columns([s for s, _ in part], {k: [r[k] for _, r in part] for k in dense})
                    extra = {k: v for k, v in part[-1][1].items() if k not in dense}
                    if extra:
                        run.log(extra, step=part[-1][0])
                start = end + 1
    ingest = time.perf_counter() - t
    return store, ingest


def steplog_read_and_ops(store, steps):
    t = time.perf_counter()
    got_steps, got = store.columns("train", [KEY])[KEY]
    read = time.perf_counter() - t
    t = time.perf_counter()
    store.rewind("train", steps // 2)
    rewind = time.perf_counter() - t
    t = time.perf_counter()
    store.fork("train", steps // 4, "fork")
    fork = time.perf_counter() - t
    return list(got_steps), list(got), read, rewind, fork


def wandb_peer(d, rows):
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    import wandb

    t = time.perf_counter()
    run = wandb.init(project="steplog-compare", dir=d, mode="offline")
    for s, row in rows:
        run.log(row, step=s)
    run.finish()
    ingest = time.perf_counter() - t
    # Read back: an offline run is only on disk, as the .wandb record log (LevelDB log
    # framing of protobuf records; wandb 0.31 has no Python reader of its own any more).
    from wandb.proto import wandb_internal_pb2

    path = None
    for root, _, files in os.walk(d):
        for f in files:
            if f.endswith(".wandb"):
                path = os.path.join(root, f)
    t = time.perf_counter()
    steps, values = [], []
    for data in wandb_records(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(data)
        if rec.WhichOneof("record_type") != "history":
            continue
        items = {(i.key or "/".join(i.nested_key)): i.value_json for i in rec.history.item}
        if KEY in items:
            steps.append(json.loads(items["_step"]) if "_step" in items else rec.history.step.num)
            values.append(json.loads(items[KEY]))
    read = time.perf_counter() - t
    return ingest, steps, values, read


def wandb_records(path):
    """The records of a .wandb file: a 7-byte file header, then 32 KiB blocks of chunks, each
    with a 7-byte header (crc32c u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last)."""
    import struct

    data = open(path, "rb").read()
    block, pos, parts = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            parts = chunk
        elif kind == 3:
            parts += chunk
        elif kind == 4:
            yield parts + chunk


def mlflow_peer(d, rows, file_store):
    if file_store:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = f"file://{d}/mlruns" if file_store else f"sqlite:///{d}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.create_experiment("compare")
    t = time.perf_counter()
    run = client.create_run(exp)
    rid = run.info.run_id
    ts = int(time.time() * 1000)
    batch = []
    for s, row in rows:
        for k, v in row.items():
            batch.append(Metric(k, float(v), ts, s))
            if len(batch) == 1000:  # MLflow's log_batch limit
                client.log_batch(rid, metrics=batch)
                batch = []
    if batch:
        client.log_batch(rid, metrics=batch)
    client.set_terminated(rid)
    ingest = time.perf_counter() - t
    t = time.perf_counter()
    hist = sorted(client.get_metric_history(rid, KEY), key=lambda m: m.step)
    read = time.perf_counter() - t
    return ingest, [m.step for m in hist], [m.value for m in hist], read


def tensorboardx_peer(d, rows):
    from tensorboardX import SummaryWriter

    t = time.perf_counter()
    w = SummaryWriter(d)
    for s, row in rows:
        for k, v in row.items():
            w.add_scalar(k, v, s)
    w.close()
    ingest = time.perf_counter() - t
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    t = time.perf_counter()
    ea = EventAccumulator(d, size_guidance={"scalars": 0})
    ea.Reload()
    ev = ea.Scalars(KEY)
    read = time.perf_counter() - t
    return ingest, [e.step for e in ev], [e.value for e in ev], read


def aim_peer(d, rows):
    from aim import Repo, Run

    t = time.perf_counter()
    run = Run(repo=d, experiment="compare")
    for s, row in rows:
        run.track(row, step=s)
    run.close()
    ingest = time.perf_counter() - t
    t = time.perf_counter()
    repo = Repo(d)
    steps, values = [], []
    for r in repo.iter_runs():
        for m in r.metrics():
            if m.name == KEY:
                st, vs = m.values.sparse_list()
                steps, values = list(st), list(vs)
    read = time.perf_counter() - t
    return ingest, steps, values, read


def main():
    peer, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(d, exist_ok=True)
    rows = list(train(n))
    points = sum(len(r) for _, r in rows)
    want = [(s, r[KEY]) for s, r in rows]
    out = {"peer": peer, "steps": n, "points": points}
    if peer.startswith("steplog"):
        store, ingest = (steplog_columns if peer == "steplog-columns" else steplog_rows)(d, rows)
        out["bytes"] = du(d)
        steps, values, read, rewind, fork = steplog_read_and_ops(store, n)
        out.update(rewind_s=rewind, fork_s=fork)
    elif peer == "wandb":
        ingest, steps, values, read = wandb_peer(d, rows)
    elif peer in ("mlflow-sqlite", "mlflow-file"):
        ingest, steps, values, read = mlflow_peer(d, rows, peer == "mlflow-file")
    elif peer == "tensorboardx":
        ingest, steps, values, read = tensorboardx_peer(d, rows)
    elif peer == "aim":
        ingest, steps, values, read = aim_peer(d, rows)
    else:
        raise SystemExit(f"unknown peer {peer}")
    out.setdefault("bytes", du(d))
    got = list(zip(steps, values))
    out.update(ingest_s=ingest, read_s=read, read_ok=got == want, read_points=len(got))
    if peer == "aim" and not got:
        # aim 3.29 lists a run's metrics only once its indexer (`aim up`) has run; its
        # read-back is not measured rather than reported as wrong.
        out.update(read_ok=None, read_s=None)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
