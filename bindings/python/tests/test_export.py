"""`steplog export` read back by independent Parquet readers (pyarrow's C++ reader and
DuckDB's own), against the rows the store itself returns. The CLI binary is taken from
$STEPLOG_BIN (set by .ci/run), else from the workspace's target directory."""

import json
import math
import os
import pathlib
import subprocess

import pytest

import steplog

pa = pytest.importorskip("pyarrow.parquet", reason="pip install './bindings/python[export]'")
duckdb = pytest.importorskip("duckdb", reason="pip install './bindings/python[export]'")


def steplog_bin():
    env = os.environ.get("STEPLOG_BIN")
    if env:
        assert pathlib.Path(env).is_file(), f"STEPLOG_BIN={env} does not exist"
        return env
    root = pathlib.Path(__file__).resolve().parents[3]
    for kind in ("release", "debug"):
        p = root / "target" / kind / "steplog"
        if p.is_file():
            return str(p)
    pytest.skip("no steplog binary: cargo build --release --bin steplog, or set STEPLOG_BIN")


def cli(store_dir, *args):
    out = subprocess.run(
        [steplog_bin(), "--store", str(store_dir), *args],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture
def filled(tmp_path):
    """Two runs with mixed types, sparse keys, NaN, strings and more than one row group."""
    d = tmp_path / "store"
    store = steplog.Store(str(d))
    with store.init(name="train") as run:
        steps = list(range(70_000))
        run.log_columns(steps, {"loss": [1 / (s + 1) for s in steps], "epoch": [s // 1000 for s in steps]})
        run.log({"loss": float("nan"), "note": "spike", "ok": True}, step=70_000)
        run.log({"mixed": 1}, step=70_001)
        run.log({"mixed": "one"}, step=70_002)
    with store.init(name="eval/a") as run:
        for s in range(10):
            run.log({"acc": s / 10, "epoch": s})
    return d, store


def expected(store, ref):
    return {s: f for s, f in store.history(ref)}


def test_parquet_of_one_run_reads_back_in_pyarrow_and_duckdb(filled, tmp_path):
    d, store = filled
    out = tmp_path / "train.parquet"
    [report] = cli(d, "export", "train", "--format", "parquet", "-o", str(out))
    want = expected(store, "train")
    assert report["rows"] == len(want)

    table = pa.read_table(out)
    assert table.schema.field("_step").type == "int64"
    assert table.schema.field("epoch").type == "int64"
    assert table.schema.field("loss").type == "double"
    assert table.schema.field("ok").type == "bool"
    assert table.schema.field("mixed").type == "string"
    assert pa.ParquetFile(out).metadata.num_row_groups >= 2
    rows = table.to_pylist()
    assert len(rows) == len(want)
    for r in rows:
        fields = want[r["_step"]]
        for k, v in r.items():
            if k == "_step":
                continue
            if k not in fields:
                assert v is None, (r["_step"], k)
            elif k == "mixed":
                # A key of mixed kinds is a string column: strings as they are, other
                # values as their JSON text.
                f = fields[k]
                assert v == (f if isinstance(f, str) else json.dumps(f))
            elif isinstance(fields[k], float) and math.isnan(fields[k]):
                assert math.isnan(v)
            else:
                assert v == fields[k], (r["_step"], k)

    con = duckdb.connect()
    n, total, last = con.execute(
        f"select count(*), sum(epoch), max(_step) from read_parquet('{out}')"
    ).fetchone()
    assert n == len(want)
    assert total == sum(f["epoch"] for f in want.values() if "epoch" in f)
    assert last == max(want)
    assert con.execute(f"select note from read_parquet('{out}') where _step = 70000").fetchone() == ("spike",)


def test_whole_store_parquet_has_a_run_column_and_split_gives_a_file_per_run(filled, tmp_path):
    d, store = filled
    out = tmp_path / "all.parquet"
    cli(d, "export", "--all", "--format", "parquet", "-o", str(out))
    con = duckdb.connect()
    counts = dict(con.execute(f"select run, count(*) from read_parquet('{out}') group by run").fetchall())
    assert counts == {"train": len(expected(store, "train")), "eval/a": 10}
    acc = con.execute(f"select avg(acc) from read_parquet('{out}') where run = 'eval/a'").fetchone()[0]
    assert abs(acc - 0.45) < 1e-12

    split = tmp_path / "split"
    reports = cli(d, "export", "--all", "--split", "--format", "parquet", "-o", str(split))
    files = {r["run"]: r["file"] for r in reports}
    assert set(files) == {"train", "eval/a"}
    assert pa.read_table(files["eval/a"]).num_rows == 10
    assert pa.read_table(files["eval/a"]).column("acc").to_pylist() == [s / 10 for s in range(10)]


def test_range_and_keys(filled, tmp_path):
    d, _ = filled
    out = tmp_path / "part.parquet"
    cli(d, "export", "train", "--format", "parquet", "--keys", "loss", "--from", "100", "--to", "199", "-o", str(out))
    t = pa.read_table(out)
    assert t.column_names == ["_step", "loss"]
    assert t.column("_step").to_pylist() == list(range(100, 200))
    assert t.column("loss").to_pylist() == [1 / (s + 1) for s in range(100, 200)]
