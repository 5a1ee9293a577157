"""The web view in a real headless browser (Debian's chromium and chromedriver, driven by
selenium): the runs table of a store written by the CLI, a run's page with its lineage and
archived version, a chart zoomed by dragging (the server re-fetches exact M4 for the range,
so a one-step spike stays visible), and a live run updating without a reload.

Run: STEPLOG_BIN=target/debug/steplog python -m pytest crates/steplog-serve/tests/browser
Screenshots go to $STEPLOG_SCREENSHOTS (default: target/screenshots).
"""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parents[4]
BIN = os.environ.get("STEPLOG_BIN", str(ROOT / "target" / "debug" / "steplog"))
SHOTS = pathlib.Path(os.environ.get("STEPLOG_SCREENSHOTS", ROOT / "target" / "screenshots"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

STEPS = 20_000
SPIKE = 12_345
REWIND = 15_000


def steplog(store, *args, stdin=None):
    out = subprocess.run([BIN, "--store", store, *args], input=stdin, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def rows(steps, loss, t0=1_700_000_000.0):
    return "".join(json.dumps({"_step": s, "loss": loss(s), "_timestamp": t0 + s * 0.5}) + "\n"
                   for s in steps)


@pytest.fixture(scope="module")
def store():
    d = tempfile.mkdtemp(prefix="steplog-browser-")
    s = os.path.join(d, "store")
    spike = lambda s: 50.0 if s == SPIKE else 2.0 / (1 + s / 1000)
    # A writer session starts after the run's last step in every stream: the history and
    # the console are logged in turns, an epoch of history and then its console line.
    for epoch in range(STEPS // 1000):
        last = epoch * 1000 + 999
        steplog(s, "log", "train", "--config", '{"lr": 0.001, "optimizer": "adamw"}',
                stdin=rows(range(epoch * 1000, last + 1), spike))
        steplog(s, "log", "train", "--stream", "console",
                stdin=json.dumps({"_step": last, "text": f"epoch {epoch} done"}) + "\n")
    steplog(s, "rewind", f"train?_step={REWIND}")
    steplog(s, "log", "train", stdin=rows(range(REWIND + 1, STEPS), lambda s: 0.1 + s / 1e6))
    steplog(s, "log", "train", "--stream", "console",
            stdin=json.dumps({"_step": STEPS - 1, "text": "resumed run done"}) + "\n")
    steplog(s, "fork", "train", "--step", "18000", "--name", "train-b", "--config", '{"lr": 0.01}')
    steplog(s, "log", "scratch", stdin=rows(range(100), lambda s: 1.0 / (1 + s)))
    yield s
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def live(store):
    """A run being written by `steplog log` while the page is open."""
    p = subprocess.Popen([BIN, "--store", store, "log", "live-run"], stdin=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    state = {"step": 0}

    def write(n):
        for _ in range(n):
            p.stdin.write(json.dumps({"_step": state["step"], "loss": 1.0 / (1 + state["step"])}) + "\n")
            state["step"] += 1
        p.stdin.flush()

    write(10)
    yield write
    p.stdin.close()
    p.wait(timeout=30)


@pytest.fixture(scope="module")
def server(store, live):
    p = subprocess.Popen([BIN, "--store", store, "serve", "--bind", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert " at http://127.0.0.1:" in line, line + p.stderr.read()
    url = line.split(" at ")[1].split(" ")[0]
    yield url
    p.terminate()
    assert p.wait(timeout=30) == 0, "serve stops cleanly on SIGTERM"


@pytest.fixture(scope="module")
def writable(store, live):
    """A second server on the same store, with --allow-write."""
    p = subprocess.Popen([BIN, "--store", store, "serve", "--bind", "127.0.0.1:0", "--allow-write"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert "rewind and fork allowed" in line, line + p.stderr.read()
    yield line.split(" at ")[1].split(" ")[0]
    p.terminate()
    assert p.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"]:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="steplog-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER),
                              options=opts)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(driver, cond, what, timeout=30):
    # The page re-renders as it navigates: an element found and then replaced before it is
    # read (StaleElementReferenceException, once in CI) is "not yet", polled again.
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException,
                                             StaleElementReferenceException)).until(
        lambda d: cond(d), what)


def panel(driver, key):
    return driver.find_element(By.CSS_SELECTOR, f'.panel[data-key="{key}"]')


def fetched(driver, key):
    """The panel's fetch count once it has drawn at least once."""
    p = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.panel[data-key="{key}"][data-points]'),
             f"panel {key} drawn")[0]
    return int(p.get_attribute("data-fetches"))


def test_the_runs_table_lists_every_run(server, browser):
    browser.get(server)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#runs-table tr[data-run="train"]'), "runs table")
    names = [r.get_attribute("data-run") for r in browser.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")]
    assert names == ["live-run", "scratch", "train", "train-b"]
    status = {r.get_attribute("data-run"): r.find_element(By.CSS_SELECTOR, "[data-status]").text
              for r in browser.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")}
    assert status == {"live-run": "running", "scratch": "finished", "train": "finished",
                      "train-b": "finished"}
    assert "1–4 of 4 runs" in browser.find_element(By.ID, "runs-status").text
    browser.save_screenshot(str(SHOTS / "runs.png"))


def test_a_run_page_shows_its_lineage_and_the_archived_version(server, browser):
    browser.get(server + "#/run/train")
    how = wait(browser, lambda d: d.find_elements(By.ID, "how"), "run page")[0]
    assert how.text == f"rewound from v1 at step {REWIND:,}"
    nodes = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#lineage .node"), "lineage")
    by_id = {n.get_attribute("data-version"): n.text for n in nodes}
    assert set(by_id) == {"v1", "v2", "v3"}
    assert "archived" in by_id["v1"] and "forked from v2 at step 18,000" in by_id["v3"]
    assert "lr" in browser.find_element(By.ID, "config").text
    assert browser.find_element(By.CSS_SELECTOR, '#summary tr[data-key="loss"]')
    console = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#console .cut"), "console cut")
    assert f"v2 continues v1 after step {REWIND:,}" in console[0].text
    fetched(browser, "loss")
    browser.save_screenshot(str(SHOTS / "run.png"))
    # The archived version opens from the "rewound from" link, under its own id.
    how.find_element(By.LINK_TEXT, "v1").click()
    wait(browser, lambda d: "v1" in d.find_element(By.ID, "title").text and
         d.find_elements(By.CSS_SELECTOR, '#title [data-status="archived"]'), "archived version page")
    fetched(browser, "loss")
    assert float(panel(browser, "loss").get_attribute("data-max")) == 50.0, "v1 still has its spike"
    browser.save_screenshot(str(SHOTS / "archived.png"))


def test_dragging_a_chart_refetches_exact_points_for_the_range(server, browser):
    browser.get(server + "#/run/v1")
    before = fetched(browser, "loss")
    assert panel(browser, "loss").get_attribute("data-from") == ""
    over = panel(browser, "loss").find_element(By.CSS_SELECTOR, ".u-over")
    w = over.size["width"]
    # Drag from 55% to 70% of the plot (offsets are from its centre): steps ~11,000 to
    # ~14,000, around the spike.
    ActionChains(browser).move_to_element_with_offset(over, int(w * 0.05), 0).click_and_hold() \
        .move_by_offset(int(w * 0.15), 0).release().perform()
    wait(browser, lambda d: int(panel(d, "loss").get_attribute("data-fetches")) > before, "re-fetch")
    p = panel(browser, "loss")
    lo, hi = int(p.get_attribute("data-from")), int(p.get_attribute("data-to"))
    assert 9_000 < lo < SPIKE < hi < 16_000, (lo, hi)
    assert float(p.get_attribute("data-max")) == 50.0, "the one-step spike survives the zoom"
    # Every panel follows the zoom.
    acc = browser.find_elements(By.CSS_SELECTOR, ".panel[data-key]")
    assert all(x.get_attribute("data-from") == str(lo) for x in acc)
    browser.save_screenshot(str(SHOTS / "zoomed.png"))
    browser.find_element(By.ID, "reset-zoom").click()
    wait(browser, lambda d: panel(d, "loss").get_attribute("data-from") == "", "zoom reset")


def test_a_live_run_updates_without_reload(server, browser, live):
    browser.get(server + "#/run/live-run")
    counts = wait(browser, lambda d: d.find_elements(By.ID, "counts"), "live run page")[0]
    first = counts.text
    marker = browser.execute_script("window.__same_page = 1; return 1")
    assert marker == 1
    live(5)
    wait(browser, lambda d: d.find_element(By.ID, "counts").text != first, "the page follows the run")
    assert "last step 14" in browser.find_element(By.ID, "counts").text
    assert browser.execute_script("return window.__same_page") == 1, "no reload happened"
    browser.save_screenshot(str(SHOTS / "live.png"))


def test_compare_pages_of_one_line_twice_or_an_archived_version_draw(server, browser):
    for q in ["r=v1", "r=train&r=train", "r=train&r=v2", "r=train&r=train-b"]:
        browser.get(server + "#/compare?" + q)
        fetched(browser, "loss")
        assert int(panel(browser, "loss").get_attribute("data-points")) > 0, q


def test_a_bad_address_shows_an_error_and_the_page_still_routes(server, browser):
    browser.get(server + "#/run/%E0")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#main .error"), "an error")
    browser.get(server + "#/run/train")
    wait(browser, lambda d: d.find_elements(By.ID, "how"), "routing goes on")


def test_rewind_from_the_page(writable, browser):
    browser.get(writable + "#/run/scratch")
    wait(browser, lambda d: d.find_elements(By.ID, "rewind"), "write forms")
    before = browser.find_element(By.ID, "title").text
    # An empty step is refused in the page; nothing is sent.
    browser.find_element(By.ID, "rewind").click()
    wait(browser, lambda d: "whole number" in d.find_element(By.ID, "write-result").text, "refusal")
    assert browser.find_element(By.ID, "title").text == before
    browser.find_element(By.ID, "rewind-step").send_keys("42")
    browser.find_element(By.ID, "rewind").click()
    how = wait(browser, lambda d: [e for e in d.find_elements(By.ID, "how") if "at step 42" in e.text],
               "the page shows the new head")[0]
    archived = before.split()[1]
    assert how.text == f"rewound from {archived} at step 42"
    assert browser.find_element(By.ID, "title").text.split()[1] != archived
    browser.save_screenshot(str(SHOTS / "rewound.png"))
