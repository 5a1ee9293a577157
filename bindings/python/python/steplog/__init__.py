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
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._native import (
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
]

_STEP_REF = re.compile(r"^(?P<name>.+)\?_step=(?P<step>\d+)$")


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


def _columns(v: Any) -> list:
    """A column as a Python list (numpy arrays and other sequences accepted)."""
    if hasattr(v, "tolist"):
        return v.tolist()
    return list(v)


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
        flat = _flatten(data)
        if step is None and self._held is not None:
            step = self._held
        s = self._w.log(flat, step, False)
        self._held = None if commit else s
        return s

    def log_columns(self, steps: Any, columns: Mapping[str, Any]) -> None:
        """Bulk path: `steps` (increasing) and {key: sequence}, one value per step, each
        column all floats, all ints or all bools (lists or numpy arrays)."""
        self._w.log_columns(_columns(steps), {k: _columns(v) for k, v in columns.items()})

    def commit(self) -> None:
        """Writes what was logged; other processes see it once this returns. It closes the
        current step: the next `log` goes to a later one."""
        self._w.commit()
        self._held = None

    @property
    def summary(self) -> Summary:
        """The summary of what is logged so far (reading it commits, so it closes the step)."""
        self.commit()
        return self._store.summary(self.name)

    def finish(self) -> None:
        """Commits, seals and marks the run finished."""
        if not self._w.closed:
            self._w.finish()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._w.closed:
            return
        if exc_type is None:
            self._w.finish()
        else:
            self._w.abort()

    def __del__(self) -> None:
        try:
            if not self._w.closed:
                self._w.finish()
        except Exception:
            pass


class Store:
    """A steplog store (a directory). `durability`: "process" (default; survives a killed
    process) or "power" (each commit fsynced; survives power loss)."""

    def __init__(self, path: str = "./steplog-data", durability: str = "process"):
        self._s = _NativeStore(str(path), durability)
        self.path = str(path)

    def init(
        self,
        name: str,
        config: Optional[Mapping[str, Any]] = None,
        resume: str = "allow",
        resume_from: Optional[str] = None,
        fork_from: Optional[str] = None,
    ) -> Run:
        """Starts writing a run, as `wandb.init`: `resume` is "allow", "must" or "never";
        `resume_from="NAME?_step=N"` rewinds NAME to step N (the rewound steps stay readable
        under the archived version id); `fork_from="REF?_step=N"` starts a new run from any
        run or version at step N."""
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
                import numpy as np

                steps, values = np.asarray(steps, dtype=np.uint64), np.asarray(values)
            out[k] = (steps, values)
        return out

    def summary(self, ref: str) -> Summary:
        return Summary(self._s.summary(ref))

    def runs(self) -> List[dict]:
        """[{name, head, status, last_step, rows}]; status is live, finished or crashed."""
        return self._s.runs()

    def versions(self) -> List[dict]:
        """[{id, run, status, parent, config}]; archived versions included."""
        out = self._s.versions()
        for v in out:
            v["config"] = json.loads(v["config"])
        return out

    def lineage(self, ref: str) -> dict:
        """The lineage tree: {version: {...}, children: [...]} from the root of `ref`'s tree."""
        return self._s.lineage(ref)

    def rewind(self, run: str, step: int, config: Optional[Mapping[str, Any]] = None) -> Tuple[str, str]:
        """Rewinds `run` to `step` without a writer: returns (archived id, new head id)."""
        return self._s.rewind(run, step, json.dumps(dict(config)) if config else None)

    def fork(self, source: str, step: int, name: str, config: Optional[Mapping[str, Any]] = None) -> str:
        """Forks `name` from `source` at `step` without a writer: returns its head id."""
        return self._s.fork(source, step, name, json.dumps(dict(config)) if config else None)

    def purge(self, version: str) -> int:
        """Purges an archived version; returns the number of files deleted."""
        return self._s.purge(version)

    def verify(self) -> List[str]:
        """Checks every checksum; returns the problems (empty when all is well)."""
        return self._s.verify()


def init(name: str, dir: str = "./steplog-data", **kwargs: Any) -> Run:
    """`steplog.init(name, dir=..., config=..., resume=..., resume_from=..., fork_from=...)`:
    opens the store in `dir` and starts the run (see `Store.init`)."""
    return Store(dir).init(name, **kwargs)
