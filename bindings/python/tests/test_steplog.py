"""The Python API, through `import steplog` only: W&B's rewind example, fork, resume modes,
a crash inside `with`, bad input, and reading while another process writes."""

import math
import subprocess
import sys
import textwrap

import pytest

import steplog


@pytest.fixture
def store(tmp_path):
    return steplog.Store(str(tmp_path / "store"))


def test_wandb_rewind_example(store):
    with store.init(name="train", config={"lr": 3e-4}) as run:
        for step in range(300):
            run.log({"loss": 1 / (step + 1), "eval": {"acc": step / 300}})
    assert run.id == "v1"
    with store.init(name="train", resume_from="train?_step=200") as run:
        assert run.archived == "v1"
        assert run.step == 201
        run.log({"loss": 0.001})
    rows = store.history("train")
    assert [s for s, _ in rows] == list(range(202))
    assert rows[200][1] == {"loss": 1 / 201, "eval/acc": 200 / 300}
    assert rows[201][1] == {"loss": 0.001}
    # The rewound steps stay readable under the archived version.
    archived = store.history("v1")
    assert len(archived) == 300 and archived[299][1]["loss"] == 1 / 300
    assert store.summary("train")["loss"] == 0.001
    assert store.summary("train").stats("loss")["count"] == 202
    assert store.summary("v1").stats("eval/acc")["max"] == (299, 299 / 300)
    [r] = store.runs()
    assert (r["name"], r["head"], r["status"], r["last_step"]) == ("train", "v2", "finished", 201)


def test_fork_and_lineage(store):
    with store.init(name="base") as run:
        for i in range(100):
            run.log({"x": i})
    with store.init(name="branch", fork_from="base?_step=49", config={"lr": 1}) as run:
        assert run.step == 50
        run.log({"x": -1})
    rows = store.history("branch")
    assert len(rows) == 51 and rows[49][1]["x"] == 49 and rows[50][1]["x"] == -1
    assert store.fork("base", 10, "twig") == "v3"
    tree = store.lineage("base")
    assert tree[0]["id"] == "v1" and tree[0]["parent"] is None
    runs = {v["id"]: v["run"] for v in tree}
    assert sorted(runs[c] for c in tree[0]["children"]) == ["branch", "twig"]
    assert all(v["children"] == [] for v in tree[1:])
    assert {v["run"]: v["config"] for v in store.versions()}["branch"] == {"lr": 1}


def test_resume_modes(store):
    with pytest.raises(steplog.ResumeRefusedError, match="does not exist"):
        store.init(name="r", resume="must")
    with store.init(name="r", resume="never") as run:
        run.log({"a": 1})
    with pytest.raises(steplog.ResumeRefusedError, match="exists"):
        store.init(name="r", resume="never")
    with store.init(name="r", resume="must") as run:
        assert run.step == 1
        run.log({"a": 2})
    assert [s for s, _ in store.history("r")] == [0, 1]
    with pytest.raises(steplog.InvalidInputError, match="unknown resume mode"):
        store.init(name="r", resume="sometimes")


def test_merging_steps_like_wandb(store):
    with store.init(name="m") as run:
        run.log({"a": 1}, commit=False)
        assert run.step == 0
        run.log({"b": 2})  # same step as the call before
        assert run.step == 1
        run.log({"c": 3}, step=5)
        run.log({"d": True}, step=5)  # merges into step 5
        run.log({"e": "text"})
    assert store.history("m") == [(0, {"a": 1, "b": 2}), (5, {"c": 3, "d": True}), (6, {"e": "text"})]


def test_crash_inside_with_leaves_the_run_crashed(store):
    with pytest.raises(RuntimeError):
        with store.init(name="c") as run:
            run.log({"x": 1.0})
            raise RuntimeError("boom")
    [r] = store.runs()
    assert r["status"] == "crashed" and r["rows"] == 1
    with store.init(name="c") as run:  # resumable, as W&B
        run.log({"x": 2.0})
    assert store.runs()[0]["status"] == "finished"


def test_bad_input_is_a_clear_exception(store):
    with store.init(name="b") as run:
        run.log({"x": 1}, step=10)
        with pytest.raises(steplog.StepRegressionError, match="step 3"):
            run.log({"x": 2}, step=3)
        with pytest.raises(steplog.InvalidInputError, match="'bad': cannot log a value of type list"):
            run.log({"bad": [1, 2]})
        with pytest.raises(steplog.InvalidInputError, match="out of the 64-bit range"):
            run.log({"big": 2**70})
        with pytest.raises(steplog.InvalidInputError, match="keys must be str"):
            run.log({1: 2})
        # One rule for keys and steps, the library's (issue #11, items 12 and 13).
        with pytest.raises(steplog.InvalidInputError, match="reserved for the step"):
            run.log({"_step": 999, "loss": 1.0}, step=20)
        with pytest.raises(steplog.InvalidInputError, match="cannot be empty"):
            run.log({"": 1.0}, step=21)
        with pytest.raises(steplog.InvalidInputError, match="empty '/' section"):
            run.log({"a": {"": 1.0}}, step=22)
        with pytest.raises(steplog.InvalidInputError, match="largest step"):
            run.log({"x": 1.0}, step=2**63)
    with pytest.raises(steplog.InvalidInputError, match="cannot be given together"):
        store.init(name="b", resume_from="b?_step=5", fork_from="b?_step=5")
    with pytest.raises(steplog.NotFoundError):
        store.history("nobody")
    with pytest.raises(steplog.InvalidInputError):
        store.init(name="bad name with spaces?")
    with pytest.raises(steplog.Error):  # the base class catches everything
        store.rewind("b", 99)
    # NaN and infinities are values like any other.
    with store.init(name="n") as run:
        run.log({"x": float("nan"), "y": float("-inf")})
    [(_, row)] = store.history("n")
    assert math.isnan(row["x"]) and row["y"] == float("-inf")


def test_columns_bulk_path_and_numpy(store):
    np = pytest.importorskip("numpy")
    steps = np.arange(1000, dtype=np.uint64)
    with store.init(name="bulk") as run:
        run.log_columns(steps, {"loss": np.linspace(1, 0, 1000), "epoch": (steps // 100).astype(np.int64)})
        run.log({"loss": np.float32(0.5)}, step=1000)
    cols = store.columns("bulk", ["loss", "epoch"], numpy=True)
    s, v = cols["loss"]
    assert len(s) == 1001 and v[0] == 1.0 and v[-1] == 0.5
    assert store.history("bulk", keys=["epoch"], start=999, end=999) == [(999, {"epoch": 9})]
    with pytest.raises(steplog.InvalidInputError, match="must increase"):
        with store.init(name="bulk2") as run:
            run.log_columns([2, 1], {"x": [1.0, 2.0]})


def test_purge_and_verify(store):
    with store.init(name="p") as run:
        for i in range(50):
            run.log({"x": i})
    archived, head = store.rewind("p", 20)
    store.purge(archived)
    with pytest.raises(steplog.NotFoundError, match="purged"):
        store.history(archived)
    assert len(store.history("p")) == 21
    assert store.verify() == []


def test_a_reader_sees_commits_of_a_writer_in_another_process(store, tmp_path):
    child = textwrap.dedent(
        f"""
        import sys, steplog
        run = steplog.Store({store.path!r}).init(name="live")
        for i in range(100):
            run.log({{"x": i}})
        run.commit()
        print("committed", flush=True)
        sys.stdin.readline()
        run.finish()
        """
    )
    p = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "committed"
        assert len(store.history("live")) == 100
        assert store.runs()[0]["status"] == "running"
        with pytest.raises(steplog.LockedError):
            store.init(name="live")
    finally:
        p.communicate("\n", timeout=60)
    assert p.returncode == 0
    assert store.runs()[0]["status"] == "finished"


def test_the_gil_is_released_while_steplog_works(store):
    """Another Python thread runs while a big batch is stored. The switch interval is made
    huge, so that without the GIL being released by steplog the other thread could not run
    at all before the call returns (its count would be 0, deterministically)."""
    import threading

    n = 2_000_000
    steps = list(range(n))
    cols = {"a": [0.5] * n, "b": list(range(n))}
    go, count = threading.Event(), [0]

    def other():
        go.wait()
        for _ in range(10_000):
            count[0] += 1

    old = sys.getswitchinterval()
    t = threading.Thread(target=other)
    t.start()
    try:
        sys.setswitchinterval(100.0)
        with store.init(name="gil") as run:
            go.set()
            run.log_columns(steps, cols)
            seen = count[0]
    finally:
        sys.setswitchinterval(old)
        t.join()
    assert seen == 10_000


def test_threads_sharing_a_writer_do_not_deadlock(store):
    """One thread stores a big batch (GIL released, writer locked) while another keeps asking
    the writer for its step: the second must wait for the writer without holding the GIL.
    Run in a child process, so that a deadlock fails the test instead of hanging it."""
    child = textwrap.dedent(
        f"""
        import threading, steplog
        run = steplog.Store({store.path!r}).init(name="shared")
        n = 1_000_000
        t = threading.Thread(target=run.log_columns, args=(range(n), {{"a": [1.0] * n}}))
        t.start()
        steps = {{run.step for _ in range(2000)}}
        t.join()
        run.finish()
        print(max(steps) <= n, flush=True)
        """
    )
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    assert len(store.columns("shared", ["a"])["a"][0]) == 1_000_000


def _fill(run, r):
    for step in range(12):
        run.log({"loss": 1 / (step + r + 1), "eval": {"acc": step / 12}, "tag": f"r{r}"}, step=step)
        if step % 4 == 0:
            run.log({"best": step % 8 == 0}, step=step)
    run.log_columns([20, 21, 22], {"x": [1.5, 2.5, 3.5], "n": [1, 2, 3]})


def test_bulk_runs_read_back_as_runs_written_one_by_one(tmp_path):
    one = steplog.Store(str(tmp_path / "one"))
    for r in range(5):
        with one.init(name=f"t{r}", config={"seed": r}) as run:
            _fill(run, r)
    many = steplog.Store(str(tmp_path / "many"))
    with many.bulk() as bulk:
        for r in range(5):
            with bulk.run(f"t{r}", config={"seed": r}) as run:
                _fill(run, r)
                assert run.step == 23
        assert len(bulk) == 5 and bulk.bytes > 0
    assert len(bulk) == 0, "leaving the with committed the bulk"
    assert many.run_names() == [f"t{r}" for r in range(5)]
    for r in range(5):
        assert many.history(f"t{r}") == one.history(f"t{r}")
        assert dict(many.summary(f"t{r}")) == dict(one.summary(f"t{r}"))
    strip = lambda vs: [{k: v[k] for k in ("id", "run", "status", "config")} for v in vs]
    assert strip(many.versions()) == strip(one.versions())
    assert {r["status"] for r in many.runs()} == {"finished"}
    assert many.verify() == []
    # Explicit calls: add and commit return the versions in order.
    bulk = many.bulk()
    run = bulk.run("explicit")
    run.log({"x": 1.0})
    bulk.add(run)
    assert bulk.commit() == [many.versions()[-1]["id"]]


def test_a_bulk_is_all_or_none(store):
    bulk = store.bulk()
    for name in ["a", "b"]:
        run = bulk.run(name)
        run.log({"x": 1.0})
        bulk.add(run)
    with store.init(name="b") as w:
        w.log({"x": 2.0})
    with pytest.raises(steplog.RunExistsError, match="'b'"):
        bulk.commit()
    assert len(bulk) == 2, "a refused commit keeps the bulk"
    assert store.run_names() == ["b"]
    # An exception inside the with: nothing committed, the runs dropped.
    with pytest.raises(KeyError):
        with store.bulk() as bulk:
            with bulk.run("c") as run:
                run.log({"x": 1.0})
            raise KeyError("stop")
    assert store.run_names() == ["b"]


def test_a_bulk_refuses_bad_runs_clearly(store):
    bulk = store.bulk()
    run = bulk.run("r")
    run.log({"x": 1.0}, step=5)
    with pytest.raises(steplog.StepRegressionError):
        run.log({"x": 1.0}, step=3)
    bulk.add(run)
    with pytest.raises(steplog.WriterClosedError, match="added"):
        run.log({"x": 2.0})
    with pytest.raises(steplog.WriterClosedError, match="already added"):
        bulk.add(run)
    with pytest.raises(steplog.RunExistsError):
        bulk.add(bulk.run("r"))
    with pytest.raises(steplog.InvalidInputError):
        bulk.add(bulk.run("bad\nname"))
    with pytest.raises(steplog.InvalidInputError, match="config must be a JSON object"):
        bulk.add(bulk.run("c", config=[1, 2]))
    assert len(bulk) == 1
    assert bulk.commit() and store.history("r") == [(5, {"x": 1.0})]


def test_a_newcomers_mistakes_are_errors_not_empty_answers(store):
    """Issue #16: a mistyped key, a step past the last one, W&B's id=."""
    with store.init(name="r1") as run:
        for step in range(401):
            run.log({"loss": 1 / (step + 1), "acc": step / 400})
    with pytest.raises(steplog.NotFoundError, match=r"has no key 'los' \(did you mean 'loss'\?\)"):
        store.columns("r1", ["los"])
    with pytest.raises(steplog.NotFoundError, match="no key 'acx'"):
        store.history("r1", keys=["loss", "acx"])
    # A key that exists but has no value in the range: empty, no error.
    assert store.columns("r1", ["acc"], start=500) == {"acc": ([], [])}
    # One meaning of NAME?_step=S everywhere: past the last step, refused.
    with pytest.raises(steplog.InvalidInputError, match="has no step 500: its last step is 400"):
        store.history("r1?_step=500")
    with pytest.raises(steplog.InvalidInputError, match="has no step 500"):
        store.init(name="r2", fork_from="r1?_step=500")
    assert len(store.history("r1?_step=400")) == 401
    # W&B's id= is the run's name.
    with store.init(id="r1", resume="must") as run:
        run.log({"loss": 0.0})
    assert store.summary("r1")["loss"] == 0.0
    with store.init(name="same", id="same") as run:
        run.log({"x": 1})
    with pytest.raises(steplog.InvalidInputError, match="name 'a' and id 'b' differ"):
        store.init(name="a", id="b")
    with pytest.raises(steplog.InvalidInputError, match="needs the run's name"):
        store.init()


def test_delete_a_run(store):
    with store.init(name="gone") as run:
        run.log({"x": 1})
    with store.init(name="gone", resume_from="gone?_step=0") as run:
        run.log({"x": 2})
    with store.init(name="kid", fork_from="gone?_step=1") as run:
        run.log({"x": 3})
    w = store.init(name="busy")
    with pytest.raises(steplog.LockedError):
        store.delete("busy")
    w.finish()
    d = store.delete("gone")
    assert d["versions"] == ["v2", "v1"]
    assert "gone" not in store.run_names()
    assert [s for s, _ in store.history("kid")] == [0, 1, 2]
    with pytest.raises(steplog.NotFoundError):
        store.delete("gone")
    with store.init(name="gone", resume="never") as run:   # the name is free again
        run.log({"x": 9})
    assert store.history("gone") == [(0, {"x": 9})]
    assert store.verify() == []
