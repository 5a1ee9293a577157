"""How a Python process ends, and what that does to the runs it left open: a normal exit
with daemon threads alive, an uncaught exception, sys.exit with a code, os._exit, and
os.fork() with an open writer. Each case runs in a child interpreter, then the store is read
back. Also the bulk path's inputs (numpy arrays handed over without lists, bad columns)."""

import os
import subprocess
import sys
import textwrap

import pytest

import steplog


def run_script(tmp_path, body, timeout=60):
    """Runs `body` in a fresh interpreter with `store` opened on tmp_path/store."""
    script = textwrap.dedent(
        f"""
        import os, sys, threading, time
        import steplog
        store = steplog.Store({str(tmp_path / 'store')!r})
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )


def status(tmp_path, name):
    store = steplog.Store(str(tmp_path / "store"))
    [r] = [r for r in store.runs() if r["name"] == name]
    return r["status"], r["rows"], store


def test_normal_exit_with_a_daemon_thread_finishes_the_run(tmp_path):
    # tqdm's monitor thread is a daemon: with one alive, __del__ never runs at exit.
    p = run_script(
        tmp_path,
        """
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        run = store.init(name="r")
        for i in range(100):
            run.log({"loss": 1.0 / (i + 1)})
        keep = [run]  # referenced to the end, as a script's global is
        """,
    )
    assert p.returncode == 0, p.stderr
    st, rows, store = status(tmp_path, "r")
    assert (st, rows) == ("finished", 100)
    assert store.history("r")[99][1]["loss"] == 1.0 / 100


def test_a_million_rows_left_open_all_arrive(tmp_path):
    p = run_script(
        tmp_path,
        """
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        run = store.init(name="r")
        run.log_columns(range(1_000_000), {"x": [float(i) for i in range(1_000_000)]})
        """,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert status(tmp_path, "r")[:2] == ("finished", 1_000_000)


def test_uncaught_exception_leaves_the_run_crashed_with_its_rows(tmp_path):
    p = run_script(
        tmp_path,
        """
        run = store.init(name="r")
        for i in range(10):
            run.log({"x": i})
        raise RuntimeError("boom")
        """,
    )
    assert p.returncode == 1 and "boom" in p.stderr
    st, rows, _ = status(tmp_path, "r")
    assert (st, rows) == ("crashed", 10)


# `exit` and `quit` are the site module's builtins (found by attacking issue #12: they left
# the run finished after a non-zero exit).
@pytest.mark.parametrize("fn", ["sys.exit", "exit", "quit"])
@pytest.mark.parametrize("code, want", [(0, "finished"), (3, "crashed"), ("bad", "crashed")])
def test_sys_exit_code_decides_finished_or_crashed(tmp_path, fn, code, want):
    p = run_script(
        tmp_path,
        f"""
        run = store.init(name="r")
        run.log({{"x": 1}})
        {fn}({code!r})
        """,
    )
    assert p.returncode == (0 if code == 0 else (3 if code == 3 else 1)), p.stderr
    assert status(tmp_path, "r")[:2] == (want, 1)


def test_os_exit_keeps_what_was_committed_and_leaves_the_run_crashed(tmp_path):
    p = run_script(
        tmp_path,
        """
        run = store.init(name="r")
        for i in range(5):
            run.log({"x": i})
        run.commit()
        run.log({"x": 99})  # not committed: lost, as with a killed process
        os._exit(0)
        """,
    )
    assert p.returncode == 0, p.stderr
    st, rows, store = status(tmp_path, "r")
    assert (st, rows) == ("crashed", 5)
    # It resumes like any crashed run.
    with store.init(name="r", resume="must") as run:
        assert run.step == 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_fork_with_an_open_writer_never_writes_from_the_child(tmp_path):
    p = run_script(
        tmp_path,
        """
        run = store.init(name="r")
        for i in range(50):
            run.log({"x": i})
        pid = os.fork()
        if pid == 0:
            # The child: every write is refused, and its exit leaves the parent's run alone.
            try:
                run.log({"x": -1})
                print("child logged", flush=True)
            except steplog.WriterClosedError as e:
                print("refused:", e, flush=True)
            try:
                run.finish()
            except steplog.WriterClosedError:
                print("finish refused", flush=True)
            sys.exit(0)
        _, code = os.waitpid(pid, 0)
        assert code == 0, code
        # A child that only exits (the inherited objects are finalised in it).
        pid = os.fork()
        if pid == 0:
            sys.exit(0)
        _, code = os.waitpid(pid, 0)
        assert code == 0, code
        for i in range(50, 100):
            run.log({"x": i})
        run.finish()
        print("parent done", flush=True)
        """,
    )
    assert p.returncode == 0, p.stderr
    assert "refused:" in p.stdout and "is a fork of it" in p.stdout, p.stdout
    assert "finish refused" in p.stdout and "child logged" not in p.stdout
    assert "parent done" in p.stdout
    st, rows, store = status(tmp_path, "r")
    assert (st, rows) == ("finished", 100)
    assert [row["x"] for _, row in store.history("r")] == list(range(100))
    assert store.verify() == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_fork_with_a_manifest_compaction_in_flight(tmp_path):
    # Each bulk's edit passes the manifest's compaction threshold (1 MiB), so the parent
    # forks with a compaction building its tables on a thread: the child (which has no such
    # thread) commits a bulk of its own and exits, and the parent's compaction goes on.
    p = run_script(
        tmp_path,
        """
        for rnd in range(5):
            with store.bulk() as bulk:
                for r in range(2000):
                    with bulk.run(f"p{rnd}-{r}", config={"seed": r}) as run:
                        for step in range(20):
                            run.log({"loss": r + step / 100, "acc": step / 20})
            pid = os.fork()
            if pid == 0:
                with store.bulk() as bulk:
                    for r in range(10):
                        with bulk.run(f"c{rnd}-{r}") as run:
                            run.log({"loss": float(r)})
                sys.exit(0)
            _, code = os.waitpid(pid, 0)
            assert code == 0, code
        print("parent done", flush=True)
        """,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "parent done" in p.stdout
    store = steplog.Store(str(tmp_path / "store"))
    names = {r["name"] for r in store.runs()}
    assert len(names) == 5 * 2000 + 5 * 10
    for rnd in range(5):
        assert store.history(f"p{rnd}-1999")[19] == (19, {"loss": 1999.19, "acc": 0.95})
        assert store.history(f"c{rnd}-9") == [(0, {"loss": 9.0})]
    assert store.verify() == []


def test_summary_after_finish_is_the_final_summary(tmp_path):
    store = steplog.Store(str(tmp_path / "store"))
    run = store.init(name="r")
    run.log({"x": 1.5})
    run.finish()
    assert run.summary["x"] == 1.5


def test_log_columns_inputs(tmp_path):
    store = steplog.Store(str(tmp_path / "store"))
    with store.init(name="r") as run:
        # A bool among ints is not an int (Python's bool is one).
        with pytest.raises(steplog.InvalidInputError, match="column 'c', item 1"):
            run.log_columns([0, 1, 2, 3, 4], {"c": [1, True, 0, 2, False]})
        with pytest.raises(steplog.InvalidInputError, match="column 'big', item 0"):
            run.log_columns([0], {"big": [2**70]})
        with pytest.raises(steplog.InvalidInputError, match="column 's'"):
            run.log_columns([0], {"s": ["text"]})
        with pytest.raises(steplog.InvalidInputError, match="column 'n': 2 values for 3"):
            run.log_columns([0, 1, 2], {"n": [1.0, 2.0]})
        with pytest.raises(steplog.InvalidInputError, match="steps"):
            run.log_columns([-1], {"x": [1.0]})
        # Ints among floats are floats; generators are read.
        run.log_columns(range(3), {"f": [1.0, 2, 3.5], "g": (i for i in range(3))})
    rows = store.history("r")
    assert [r["f"] for _, r in rows] == [1.0, 2.0, 3.5]
    assert [r["g"] for _, r in rows] == [0, 1, 2]


def test_log_columns_numpy_arrays_without_lists(tmp_path):
    np = pytest.importorskip("numpy")
    store = steplog.Store(str(tmp_path / "store"))
    n = 2_500_000  # more than one chunk
    steps = np.arange(n, dtype=np.int64)
    f = np.linspace(0.0, 1.0, n)
    with store.init(name="r") as run:
        run.log_columns(
            steps,
            {
                "f": f,
                "i": np.arange(n, dtype=np.int32) * 2,
                "b": np.arange(n) % 2 == 0,
            },
        )
        with pytest.raises(steplog.InvalidInputError, match="column 'u'"):
            run.log_columns(np.array([n], dtype=np.uint64), {"u": np.array([2**64 - 1], dtype=np.uint64)})
        with pytest.raises(steplog.InvalidInputError, match="column 'c'"):
            run.log_columns(np.array([n]), {"c": np.array([1 + 2j])})
        # Found by attacking issue #12: a masked array logged its masked items as 1e+20, a
        # 0-d array raised a bare TypeError.
        masked = np.ma.masked_array([1.0, 2.0], mask=[False, True])
        with pytest.raises(steplog.InvalidInputError, match="column 'm': a masked array"):
            run.log_columns(np.array([n, n + 1]), {"m": masked})
        with pytest.raises(steplog.InvalidInputError, match="column 'z': expected a one-dim"):
            run.log_columns(np.array([n]), {"z": np.array(1.0)})
        with pytest.raises(steplog.InvalidInputError, match="steps: expected a one-dim"):
            run.log_columns(np.array([[n]]), {"x": [1.0]})
    s = store.summary("r")
    assert s.rows == n
    assert s.stats("i")["max"] == (n - 1, 2 * (n - 1))
    assert s.stats("f")["last"] == (n - 1, 1.0)
    got = store.history("r", start=n - 2)
    assert got == [(n - 2, {"f": float(f[n - 2]), "i": 2 * (n - 2), "b": True}),
                   (n - 1, {"f": 1.0, "i": 2 * (n - 1), "b": False})]
