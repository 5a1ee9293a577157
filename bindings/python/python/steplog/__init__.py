"""steplog: run history storage with O(1) rewind and fork, shaped after W&B.

    import steplog
    store = steplog.Store("./runs")
    with store.init(name="train", config={"lr": 3e-4}) as run:
        for step in range(300):
            run.log({"loss": 1 / (step + 1), "eval": {"acc": step / 300}})
    # W&B's rewind: continue "train" from step 200; steps 201..299 stay readable, archived.
    with store.init(name="train", resume_from="train?_step=200") as run:
        run.log({"loss": 0.001})

The engine is Rust (`steplog._native`); the GIL is released during I/O and compression.

Exit: a run left open when the interpreter exits is finished by an `atexit` hook (daemon
threads such as tqdm's monitor keep `__del__` from running), or left `crashed` when the exit
comes from an uncaught exception or `sys.exit` (or the builtin `exit`/`quit`) with a non-zero
code, as W&B marks such runs failed. A bare `raise SystemExit(2)`, a `sys.exit` bound before
`import steplog`, and an exception seen only by a `sys.excepthook` installed later that does
not call the previous one are not seen: such a run is finished. `os._exit` and a killed process run no hook: what was committed stays, the run is
`crashed`. A forked child (`os.fork()`, multiprocessing's fork start method) cannot write to a
run its parent opened: its calls raise `WriterClosedError` and its exit leaves the parent's
run alone.
"""

from __future__ import annotations

import atexit
import builtins
import json
import os
import re
import sys
import weakref
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._native import (
    ConflictError,
    CorruptionError,
    Error,
    InvalidInputError,
    LockedError,
    NotFoundError,
    ResumeRefusedError,
    RunExistsError,
    StepRegressionError,
    StoreIOError,
    WriterClosedError,
)
from ._native import Store as _NativeStore

__all__ = [
    "Store",
    "Run",
    "Bulk",
    "ShortRun",
    "Summary",
    "init",
    "Error",
    "StepRegressionError",
    "LockedError",
    "CorruptionError",
    "NotFoundError",
    "RunExistsError",
    "ResumeRefusedError",
    "InvalidInputError",
    "StoreIOError",
    "WriterClosedError",
    "ConflictError",
]

_STEP_REF = re.compile(r"^(?P<name>.+)\?_step=(?P<step>\d+)$")

# Runs not yet finished, finished (or left crashed) at exit by `_at_exit`.
_open_runs: "weakref.WeakSet[Run]" = weakref.WeakSet()
# Bumped in a forked child: a Run made under another generation belongs to the parent.
_fork_generation = [0]
# How the interpreter is exiting: an uncaught exception or sys.exit with a non-zero code.
_exit_failed = [False]
_hooks_installed = [False]


def _install_exit_hooks() -> None:
    """Once per process: the atexit hook, and the hooks that tell a failed exit."""
    if _hooks_installed[0]:
        return
    _hooks_installed[0] = True
    previous_hook = sys.excepthook

    def excepthook(kind, value, tb):
        _exit_failed[0] = True
        previous_hook(kind, value, tb)

    sys.excepthook = excepthook
    previous_exit = sys.exit

    def exit(code=None):
        if code not in (None, 0):
            _exit_failed[0] = True
        previous_exit(code)

    sys.exit = exit
    # The site module's `exit()` and `quit()` raise SystemExit without sys.exit.
    for name in ("exit", "quit"):
        if hasattr(builtins, name):
            setattr(builtins, name, _Quitter(getattr(builtins, name)))
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


class _Quitter:
    """The site module's `exit`/`quit`, noting a non-zero code first (same repr)."""

    def __init__(self, previous: Any) -> None:
        self._previous = previous

    def __repr__(self) -> str:
        return repr(self._previous)

    def __call__(self, code: Any = None) -> None:
        if code not in (None, 0):
            _exit_failed[0] = True
        self._previous(code)


def _at_exit() -> None:
    for run in list(_open_runs):
        try:
            if run._w.closed:
                continue
            if _exit_failed[0]:
                run._w.abort()
            else:
                run._w.finish()
        except Exception as e:  # the interpreter is exiting: say it, do not raise
            print(f"steplog: could not close run '{run.name}' at exit: {e}", file=sys.stderr)


def _after_fork_in_child() -> None:
    _fork_generation[0] += 1
    _open_runs.clear()
    _exit_failed[0] = False


def _flatten(d: Mapping[str, Any], prefix: str = "", out: Optional[dict] = None) -> dict:
    """Nested dicts become keys joined with '/', as W&B does; numpy scalars become Python's."""
    if out is None:
        out = {}
    for k, v in d.items():
        if not isinstance(k, str):
            raise InvalidInputError(f"keys must be str, not {type(k).__name__} ({k!r})")
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _flatten(v, key + "/", out)
            continue
        if not isinstance(v, (bool, int, float, str)) and hasattr(v, "item"):
            v = v.item()  # numpy (and torch) scalars
        out[key] = v
    return out


# Rows handed to the engine per call of the bulk path (bounds the bytes copied at a time).
_CHUNK_ROWS = 1 << 20


def _is_array(v: Any) -> bool:
    return hasattr(v, "dtype") and hasattr(v, "tobytes")


def _check_array(name: str, v: Any) -> None:
    """A column or the steps given as an array must be a plain one-dimensional array."""
    if not _is_array(v):
        return
    if hasattr(v, "mask") and hasattr(v, "filled"):
        raise InvalidInputError(
            f"{name}: a masked array (its masked items would be logged as their fill "
            "values): fill it (a.filled(np.nan)) or leave the masked steps out"
        )
    if getattr(v, "ndim", 1) != 1:
        raise InvalidInputError(
            f"{name}: expected a one-dimensional array, got {getattr(v, 'ndim', '?')} dimensions"
        )


def _log_columns(target: Any, steps: Any, columns: Mapping[str, Any]) -> None:
    """Hands whole columns to a native writer or short run, in chunks of `_CHUNK_ROWS`
    steps (numpy arrays as bytes): the one path of `Run.log_columns` and
    `ShortRun.log_columns`."""
    if not isinstance(columns, Mapping):
        raise InvalidInputError("columns: expected a mapping {key: sequence}")
    _check_array("steps", steps)
    for k, v in columns.items():
        _check_array(f"column '{k}'", v)
    steps = steps if _is_array(steps) or hasattr(steps, "__getitem__") else list(steps)
    columns = {
        k: v if _is_array(v) or hasattr(v, "__getitem__") else list(v)
        for k, v in columns.items()
    }
    n = len(steps)
    for k, v in columns.items():
        if len(v) != n:
            raise InvalidInputError(f"column '{k}': {len(v)} values for {n} steps")
    for lo in range(0, max(n, 1), _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        target.log_columns(
            _step_chunk(steps, lo, hi),
            {k: _column_chunk(k, v, lo, hi) for k, v in columns.items()},
        )


def _step_chunk(steps: Any, lo: int, hi: int) -> Any:
    """Steps lo..hi: bytes of little-endian u64 from an integer array, else a list."""
    if _is_array(steps):
        part = steps[lo:hi]
        if part.dtype.kind not in "iu":
            raise InvalidInputError(f"steps: expected integers, got an array of {part.dtype}")
        if part.dtype.kind == "i" and len(part) and part.min() < 0:
            raise InvalidInputError(f"steps: negative step {int(part.min())}")
        return part.astype("<u8", copy=False).tobytes()
    return list(steps[lo:hi])


def _column_chunk(key: str, v: Any, lo: int, hi: int) -> Any:
    """Values lo..hi of a column: (kind, bytes) from a numpy array, else a list."""
    if not _is_array(v):
        return list(v[lo:hi])
    part = v[lo:hi]
    kind = part.dtype.kind
    if kind == "f":
        return ("f8", part.astype("<f8", copy=False).tobytes())
    if kind == "b":
        return ("b1", part.astype("u1", copy=False).tobytes())
    if kind in "iu":
        if kind == "u" and part.dtype.itemsize == 8 and len(part) and part.max() > 2**63 - 1:
            raise InvalidInputError(
                f"column '{key}': {int(part.max())} is out of the 64-bit signed range"
            )
        return ("i8", part.astype("<i8", copy=False).tobytes())
    raise InvalidInputError(
        f"column '{key}': cannot log an array of {part.dtype} (floats, ints or bools)"
    )


class Summary(Mapping):
    """A run's summary: `summary["loss"]` is the last value logged for "loss"; `.stats(key)`
    gives count, min, max, mean, first and last with their steps."""

    def __init__(self, raw: dict):
        self._raw = raw

    def __getitem__(self, key: str) -> Any:
        s = self._raw["keys"][key]
        return s["last"][1] if s["last"] is not None else None

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw["keys"])

    def __len__(self) -> int:
        return len(self._raw["keys"])

    def stats(self, key: str) -> dict:
        """count, nan_count, sum, mean, and (step, value) of first, last, min and max."""
        return dict(self._raw["keys"][key])

    @property
    def rows(self) -> int:
        return self._raw["rows"]

    @property
    def last_step(self) -> Optional[int]:
        return self._raw["last_step"]

    def __repr__(self) -> str:
        return f"Summary({dict(self)!r})"


class Run:
    """A run being written. Use as a context manager: leaving the block finishes the run; an
    exception inside it commits what was logged and leaves the run `crashed` (as W&B does)."""

    def __init__(self, store: "Store", writer: Any):
        self._store = store
        self._w = writer
        self._held: Optional[int] = None
        self._name, self._id, self._archived = writer.name, writer.version, writer.archived
        self._generation = _fork_generation[0]
        self._pid = os.getpid()
        _install_exit_hooks()
        _open_runs.add(self)

    def _check_process(self) -> None:
        if self._generation != _fork_generation[0]:
            raise WriterClosedError(
                f"run '{self._name}' was opened by process {self._pid}, and this process "
                f"({os.getpid()}) is a fork of it: a forked child cannot write to its parent's "
                "run (start a run of its own in the child)"
            )

    @property
    def name(self) -> str:
        return self._name

    @property
    def id(self) -> str:
        """The version being written (an immutable id such as `v3`)."""
        return self._id

    @property
    def archived(self) -> Optional[str]:
        """The version archived by `resume_from`, if this start rewound the run."""
        return self._archived

    @property
    def step(self) -> int:
        """The step the next `log` without `step=` will use."""
        return self._held if self._held is not None else self._w.next_step

    def log(self, data: Mapping[str, Any], step: Optional[int] = None, commit: bool = True) -> int:
        """Logs `data` at `step` (default: the next step). As in W&B, a call with
        `commit=False` keeps the step open, so the next call without `step=` adds to it, and
        calls with the same `step=` merge; nested dicts are flattened with '/'. Values: int,
        float, bool, str (numpy scalars accepted). Returns the step.

        `commit` is W&B's step commit, not durability: rows reach disk when a block fills,
        at `commit()` and at `finish()`."""
        self._check_process()
        flat = _flatten(data)
        if step is None and self._held is not None:
            step = self._held
        s = self._w.log(flat, step, False)
        self._held = None if commit else s
        return s

    def log_columns(self, steps: Any, columns: Mapping[str, Any]) -> None:
        """Bulk path: `steps` (increasing) and {key: sequence}, one value per step, each
        column all floats, all ints or all bools (lists or numpy arrays). numpy arrays are
        handed over in chunks of their bytes, never as Python lists, so memory stays near the
        arrays' own size. Errors (`InvalidInputError`) name the column and the item."""
        self._check_process()
        _log_columns(self._w, steps, columns)

    def commit(self) -> None:
        """Writes what was logged; other processes see it once this returns. It closes the
        current step: the next `log` goes to a later one."""
        self._check_process()
        self._w.commit()
        self._held = None

    @property
    def summary(self) -> Summary:
        """The summary of what is logged so far (reading it commits, so it closes the step);
        after `finish()`, the run's final summary."""
        if self._w.closed:
            return self._store.summary(self._id)
        self.commit()
        return self._store.summary(self._id)

    def finish(self) -> None:
        """Commits, seals and marks the run finished."""
        self._check_process()
        if not self._w.closed:
            self._w.finish()
        _open_runs.discard(self)

    def abort(self) -> None:
        """Commits what was logged and leaves the run `crashed` (what an exception inside
        `with` does); a later start resumes it."""
        self._check_process()
        if not self._w.closed:
            self._w.abort()
        _open_runs.discard(self)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._generation != _fork_generation[0] or self._w.closed:
            return
        if exc_type is None:
            self._w.finish()
        else:
            self._w.abort()
        _open_runs.discard(self)

    def __del__(self) -> None:
        try:
            if self._generation == _fork_generation[0] and not self._w.closed:
                self._w.finish()
        except Exception:
            pass


class ShortRun:
    """One short run of a bulk, in memory until it is added (`Bulk.run`). Logs as `Run`
    does (nested dicts flattened with '/', calls at the same `step=` merge, the same
    errors); used as a context manager, it is added to its bulk when the block ends without
    an exception, and dropped when one is raised."""

    def __init__(self, bulk: "Bulk", native: Any):
        self._bulk = bulk
        self._r = native

    @property
    def name(self) -> str:
        return self._r.name

    @property
    def step(self) -> int:
        """The step the next `log` without `step=` will use."""
        return self._r.next_step

    def log(self, data: Mapping[str, Any], step: Optional[int] = None) -> int:
        """Logs `data` at `step` (default: the next step); returns the step."""
        return self._r.log(_flatten(data), step)

    def log_columns(self, steps: Any, columns: Mapping[str, Any]) -> None:
        """Whole columns, one value per step (lists or numpy arrays), as `Run.log_columns`."""
        _log_columns(self._r, steps, columns)

    def __enter__(self) -> "ShortRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._r.added:
            self._bulk.add(self)


class Bulk:
    """Many new short runs written at once (`Store.bulk`): a benchmark harness's trials, a
    sweep, an import. `commit()` creates every run of the bulk, finished, in one manifest
    append (all or none: a name another process took since is `RunExistsError` for the
    whole commit, and the bulk keeps its runs). Until then the bulk is memory only (at most
    16 MiB; each stream of a run at most the store's inline segment size, else
    `Error` from `add`: write such a run with `Store.init`). Used as a context manager, it
    commits when the block ends without an exception::

        with store.bulk() as bulk:
            for trial in range(1000):
                with bulk.run(f"trial-{trial}", config={"seed": trial}) as run:
                    for step in range(20):
                        run.log({"loss": 1 / (step + 1)})
    """

    def __init__(self, native: Any):
        self._b = native

    def run(self, name: str, config: Optional[Mapping[str, Any]] = None) -> ShortRun:
        """A new short run named `name`: log into it, then `add` it (or leave its `with`).
        The config must be a mapping (checked by `add`)."""
        if isinstance(config, Mapping):
            config = dict(config)
        cfg = json.dumps(config) if config is not None else None
        return ShortRun(self, self._b.run(name, cfg))

    def add(self, run: ShortRun) -> None:
        """Adds `run` (checked and encoded now: a bad name or config, or a name the bulk
        holds, raises here). The run is used up, added or refused."""
        self._b.add(run._r)

    def commit(self) -> List[str]:
        """Creates every run of the bulk at once; returns their version ids, in order."""
        return self._b.commit()

    def __len__(self) -> int:
        return len(self._b)

    @property
    def bytes(self) -> int:
        """The bytes the bulk holds."""
        return self._b.bytes

    def __enter__(self) -> "Bulk":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()


class Store:
    """A steplog store (a directory). `durability`: "process" (default; survives a killed
    process) or "power" (each commit fsynced; survives power loss)."""

    def __init__(self, path: str = "./steplog-data", durability: str = "process"):
        self._s = _NativeStore(str(path), durability)
        self.path = str(path)

    def init(
        self,
        name: Optional[str] = None,
        config: Optional[Mapping[str, Any]] = None,
        resume: str = "allow",
        resume_from: Optional[str] = None,
        fork_from: Optional[str] = None,
        id: Optional[str] = None,
    ) -> Run:
        """Starts writing a run, as `wandb.init`: `resume` is "allow", "must" or "never";
        `resume_from="NAME?_step=N"` rewinds NAME to step N (the rewound steps stay readable
        under the archived version id); `fork_from="REF?_step=N"` starts a new run from any
        run or version at step N. A run has one name, which is also its id: `id=` (W&B's
        unique run id, which resuming keys by) is the same as `name=`."""
        name = _run_name(name, id)
        step = None
        if resume_from is not None and fork_from is not None:
            raise InvalidInputError(
                "resume_from and fork_from cannot be given together: a run either rewinds "
                "itself or forks from another"
            )
        if resume_from is not None:
            m = _STEP_REF.match(resume_from)
            if not m:
                raise InvalidInputError(
                    f"resume_from '{resume_from}': expected NAME?_step=STEP"
                )
            if m.group("name") != name:
                raise InvalidInputError(
                    f"resume_from names run '{m.group('name')}', not '{name}'"
                )
            step = int(m.group("step"))
        cfg = json.dumps(dict(config)) if config is not None else None
        w = self._s.start(name, cfg, resume, step, fork_from)
        return Run(self, w)

    def history(
        self,
        ref: str,
        keys: Optional[List[str]] = None,
        start: Optional[int] = None,
        end: Optional[int] = None,
    ) -> List[Tuple[int, Dict[str, Any]]]:
        """Rows of a run or version (`name`, `v3`, `name?_step=N`): [(step, {key: value})],
        steps in `[start, end]`, only `keys` if given."""
        return self._s.history(ref, keys, start, end)

    def columns(
        self,
        ref: str,
        keys: List[str],
        start: Optional[int] = None,
        end: Optional[int] = None,
        numpy: bool = False,
    ) -> Dict[str, Tuple[Any, Any]]:
        """{key: (steps, values)} of numeric metrics; numpy arrays with `numpy=True`."""
        out = {}
        for k in keys:
            steps, values = self._s.metric(ref, k, start, end)
            if numpy:
                try:
                    import numpy as np
                except ImportError:
                    raise ImportError(
                        "columns(..., numpy=True) needs numpy: pip install 'steplog[numpy]'"
                    ) from None

                steps, values = np.asarray(steps, dtype=np.uint64), np.asarray(values)
            out[k] = (steps, values)
        return out

    def summary(self, ref: str) -> Summary:
        return Summary(self._s.summary(ref))

    def runs(self) -> List[dict]:
        """[{name, head, status, last_step, rows}]; status is running, finished or crashed."""
        return self._s.runs()

    def versions(self) -> List[dict]:
        """[{id, run, status, parent, restart_of, config}]; archived versions included."""
        out = self._s.versions()
        for v in out:
            v["config"] = json.loads(v["config"])
        return out

    def lineage(self, ref: str) -> List[dict]:
        """The lineage tree of `ref`, flat (any depth): [{id, run, status, parent, restart_of,
        config, children}], the root first and every version after its parent (or the
        version it restarted); `children` are ids."""
        out = self._s.lineage(ref)
        for v in out:
            v["config"] = json.loads(v["config"])
        return out

    def rewind(self, run: str, step: int, config: Optional[Mapping[str, Any]] = None) -> Tuple[str, str]:
        """Rewinds `run` to `step` without a writer: returns (archived id, new head id)."""
        return self._s.rewind(run, step, json.dumps(dict(config)) if config else None)

    def fork(self, source: str, step: int, name: str, config: Optional[Mapping[str, Any]] = None) -> str:
        """Forks `name` from `source` at `step` without a writer: returns its head id."""
        return self._s.fork(source, step, name, json.dumps(dict(config)) if config else None)

    def purge(self, version: str) -> int:
        """Purges an archived version; returns the number of files deleted."""
        return self._s.purge(version)

    def delete(self, name: str) -> dict:
        """Deletes a run with all its versions (refused while a writer holds it): its name is
        free again; a run forked from it keeps what it reads. Returns {versions, files}: the
        versions purged and the segment files deleted."""
        versions, files = self._s.delete(name)
        return {"versions": versions, "files": files}

    def verify(self) -> List[str]:
        """Checks every checksum; returns the problems (empty when all is well)."""
        return self._s.verify()

    def run_names(self) -> List[str]:
        """Every run's name, in order: cheap at any size (no run's rows counted)."""
        return self._s.run_names()

    def bulk(self) -> Bulk:
        """A bulk of new short runs, written together in one commit (see `Bulk`)."""
        return Bulk(self._s.bulk())


def init(name: Optional[str] = None, dir: str = "./steplog-data", **kwargs: Any) -> Run:
    """`steplog.init(name, dir=..., config=..., resume=..., resume_from=..., fork_from=...,
    id=...)`: opens the store in `dir` and starts the run (see `Store.init`)."""
    return Store(dir).init(name, **kwargs)


def _run_name(name: Optional[str], id: Optional[str]) -> str:
    """The run's name from `name=` or W&B's `id=`: one of them, or both the same."""
    if name is None and id is None:
        raise InvalidInputError("init needs the run's name: name=NAME (or W&B's id=NAME)")
    if name is not None and id is not None and name != id:
        raise InvalidInputError(
            f"name '{name}' and id '{id}' differ: a steplog run has one name, which is "
            "also its id (W&B's id=, which resuming keys by); give one of them"
        )
    return name if name is not None else id
