"""Time to first chart, steplog's web view against TensorBoard's, on the same data, in the
same headless browser (issue #15). Not part of CI: it writes a 1,000,000-step run and runs
TensorBoard.

    pip install selenium tensorboard
    cargo build --release --bin steplog
    python benches/web/first_chart.py [--steps 1000000] [--repeat 3]

1. A run of `--steps` steps of one tag, `loss`, with a one-step spike (50.0 where the curve
   is about 1), written as TensorBoard event files by TensorBoard's own writer
   (`tensorboard.summary.Writer`).
2. `steplog import tensorboard` of those files, then `steplog serve`; `tensorboard --logdir`.
3. Each page loaded `--repeat` times in a fresh headless Chromium (Debian's chromium and
   chromedriver, selenium), timed from the navigation to the loss chart drawn (steplog's
   panel marks itself drawn, `data-points`; TensorBoard's scalar card fills its data table),
   in the page (`performance.now()` on the first animation frame it is seen) and from
   outside.
4. Whether each chart's data holds the spike: steplog's panel reports the highest value it
   fetched (`data-max`); TensorBoard's, what its scalars route serves for the tag (it keeps
   a sample of 1,000 points per tag).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("STEPLOG_BIN", os.path.join(ROOT, "target", "release", "steplog"))
SPIKE_VALUE = 50.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_events(logdir, steps, spike_step):
    import tensorboard.summary as tbs
    w = tbs.Writer(tbs.DirectoryOutput(logdir))
    for s in range(steps):
        v = SPIKE_VALUE if s == spike_step else 2.0 / (1.0 + s / (steps / 10)) + (s * 7919 % 1000) * 1e-4
        w.add_scalar("loss", v, s)
    w.close()


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for f in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1400,1000", f"--user-data-dir={tempfile.mkdtemp()}"]:
        opts.add_argument(f)
    return webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"),
        options=opts)


def first_chart(url, drawn, timeout=300):
    """Seconds from the navigation to the chart drawn, in a fresh browser: measured in the
    page (a check on every animation frame, installed before the page's own scripts, reads
    `performance.now()`, whose zero is the navigation's start) and from outside (selenium's
    round trips included); and a screenshot."""
    d = browser()
    try:
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
            "(function(){ const check = () => { if (" + drawn + ") { window.__drawnAt = performance.now(); }"
            " else requestAnimationFrame(check); }; requestAnimationFrame(check); })();")})
        t0 = time.perf_counter()
        d.get(url)
        while time.perf_counter() - t0 < timeout:
            at = d.execute_script("return window.__drawnAt || null")
            if at is not None:
                return at / 1000, time.perf_counter() - t0, d.get_screenshot_as_png()
            time.sleep(0.01)
        raise TimeoutError(f"no chart at {url} after {timeout} s")
    finally:
        d.quit()


# When each page's loss chart is drawn, as a JavaScript condition. steplog's panel marks
# itself once uPlot has drawn its fetched points; TensorBoard's scalar card fills its data
# table when the series has arrived (its line is drawn on a canvas in the same update).
STEPLOG_DRAWN = "document.querySelector('.panel[data-key=\"loss\"][data-points]')"
TENSORBOARD_DRAWN = "document.querySelector('scalar-card tb-data-table-content-row')"


def steplog_drawn(d):
    return bool(d.execute_script("return " + STEPLOG_DRAWN))


def wait_http(url, timeout=120):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return time.perf_counter() - t0
        except Exception:
            time.sleep(0.05)
    raise TimeoutError(url)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "first_chart"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="steplog-first-chart-")
    logdir = os.path.join(work, "tb", "run")
    spike = int(a.steps * 0.654321)
    t = time.perf_counter()
    write_events(logdir, a.steps, spike)
    print(f"wrote {a.steps:,} steps as event files in {time.perf_counter() - t:.1f} s", flush=True)
    store = os.path.join(work, "store")
    t = time.perf_counter()
    subprocess.run([BIN, "--store", store, "import", "tensorboard", logdir, "--run", "run"], check=True,
                   capture_output=True)
    print(f"steplog import tensorboard: {time.perf_counter() - t:.1f} s", flush=True)

    sp, tp = free_port(), free_port()
    serve = subprocess.Popen([BIN, "--store", store, "serve", "--bind", f"127.0.0.1:{sp}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tb = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", os.path.dirname(logdir),
                           "--host", "127.0.0.1", "--port", str(tp)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        up = {"steplog": wait_http(f"http://127.0.0.1:{sp}/"), "tensorboard": wait_http(f"http://127.0.0.1:{tp}/")}
        pages = {"steplog": (f"http://127.0.0.1:{sp}/#/run/run", STEPLOG_DRAWN),
                 "tensorboard": (f"http://127.0.0.1:{tp}/#timeseries", TENSORBOARD_DRAWN)}
        for name, (url, drawn) in pages.items():
            inside, outside = [], []
            for i in range(a.repeat):
                page_s, wall_s, png = first_chart(url, drawn)
                inside.append(round(page_s, 3))
                outside.append(round(wall_s, 3))
                with open(os.path.join(a.out, f"{name}-{i}.png"), "wb") as f:
                    f.write(png)
            results[name] = {"server_up_s": round(up[name], 3), "first_chart_in_page_s": inside,
                             "first_chart_selenium_s": outside}
        # The spike: in steplog's chart data; in what TensorBoard serves for the tag.
        d = browser()
        try:
            d.get(pages["steplog"][0])
            while not steplog_drawn(d):
                time.sleep(0.01)
            results["steplog"]["spike_in_chart"] = float(
                d.find_element(By.CSS_SELECTOR, '.panel[data-key="loss"]').get_attribute("data-max")) == SPIKE_VALUE
            results["steplog"]["points"] = int(
                d.find_element(By.CSS_SELECTOR, '.panel[data-key="loss"]').get_attribute("data-points"))
        finally:
            d.quit()
        pts = json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{tp}/data/plugin/scalars/scalars?run=run&tag=loss", timeout=60))
        results["tensorboard"]["points"] = len(pts)
        results["tensorboard"]["spike_in_chart"] = any(p[2] == SPIKE_VALUE for p in pts)
    finally:
        serve.terminate()
        tb.terminate()
        serve.wait()
        tb.wait()
        shutil.rmtree(work, ignore_errors=True)
    for how in ["in_page", "selenium"]:
        s = sorted(results["steplog"][f"first_chart_{how}_s"])[a.repeat // 2]
        t = sorted(results["tensorboard"][f"first_chart_{how}_s"])[a.repeat // 2]
        results[f"median_ratio_tensorboard_over_steplog_{how}"] = round(t / s, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
