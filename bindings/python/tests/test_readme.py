"""The README's Python example runs as written, on a fresh store (issue #16): every
```python block of README.md, in order, in a scratch directory, with what its comments
promise checked afterwards."""

import pathlib
import re

import steplog

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def python_blocks():
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.S | re.M)


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert blocks, "README.md has no ```python block"
    monkeypatch.chdir(tmp_path)
    scope = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), scope)
    store = scope["store"]
    # What the example's comments say.
    assert store.history("v1")[-1][0] == 299
    assert store.summary("train")["loss"] == 0.001
    assert len(store.run_names()) == 1002 and "trial-999" in store.run_names()
    steps, values = store.columns("train", ["loss"], numpy=True)["loss"]
    assert steps.tolist() == list(range(202)) and values[-1] == 0.001
    assert (tmp_path / "my-runs.steplog" / "MANIFEST").exists()
