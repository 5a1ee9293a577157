"""Issue #16: the cost of Store.delete (and of a purge) in a store of N short runs and one
long run. `python3 delete_cost.py N [DIR]` (DIR must not exist; default /tmp/delbench).
Needs the package: `pip install ./bindings/python`. docs/BENCHMARKS.md has the figures."""

import sys
import time

import steplog


def ms(f):
    t = time.perf_counter()
    out = f()
    return round((time.perf_counter() - t) * 1e3, 1), out


def main() -> None:
    n = int(sys.argv[1])
    s = steplog.Store(sys.argv[2] if len(sys.argv) > 2 else "/tmp/delbench")
    t = time.time()
    for chunk in range(0, n, 5000):
        with s.bulk() as b:
            for i in range(chunk, min(n, chunk + 5000)):
                with b.run(f"trial-{i}", config={"seed": i}) as r:
                    for step in range(20):
                        r.log({"loss": 1 / (step + 1)})
    print("ingest", round(time.time() - t, 1), "s")
    with s.init(name="long") as r:
        for step in range(100_000):
            r.log({"loss": 1 / (step + 1)})
    for name in [f"trial-{7 % n}", f"trial-{n // 2 + 1}", f"trial-{n - 1}", "long"]:
        took, d = ms(lambda: s.delete(name))
        print(f"delete {name}: {took} ms, {d['files']} files")
    with s.init(name="p") as r:
        r.log({"x": 1})
    with s.init(name="p", resume_from="p?_step=0") as r:
        r.log({"x": 2})
    took, _ = ms(lambda: s.purge(s.lineage("p")[0]["id"]))
    print(f"purge: {took} ms")
    print(len(s.run_names()), "runs left")


if __name__ == "__main__":
    main()
