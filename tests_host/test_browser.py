"""A real browser as the peer: Debian's Chromium, driven by Playwright, opens the
dashboard at / and uses it as a visitor would; the server's own books (/stats)
say what it cost the device.

Playwright drives the system's Chromium through `executable_path`; its own browser
download is never used. tools/ensure_chromium.sh installs Chromium (make test runs
it). Without Chromium or Playwright these tests skip with the reason, except under
CI=true, where that is a failure.

Every wait is on a condition (page state, server counters) with a deadline; the
helper's timing is checked on a fake clock, never against the wall clock.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import ROOT, ServerProcess, free_port
from websockets.sync.client import connect as ws_connect
from wsutil import IO_TIMEOUT, Target, get_stats

WWW = ROOT / "www"
ARTIFACTS = ROOT / "build" / "artifacts"
HARNESS = Path(__file__).parent / "stormproof_harness.js"

# The helper's documented defaults (www/stormproof.js).
BASE, CAP, HEALTHY, OPEN_TIMEOUT, RETRY_JITTER = 500, 30000, 10000, 10000, 1000

TIMEOUT_MS = IO_TIMEOUT * 2 * 1000  # a page step: a connect, a backoff wait, a load
RELOADS = 30
STATS_EVERY = 250  # ms: the dashboard's stats interval in these tests (?every=)

# Keeps Chromium off every network but the loopback server it is pointed at.
CHROMIUM_FLAGS = (
    "--no-sandbox",  # we run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    # Background tabs keep their timers: the tabs-over-slots test has several.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
)


def missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


def find_chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        missing(
            "Chromium is not installed: run tools/ensure_chromium.sh (apt-get install chromium)"
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        missing("playwright is not installed: make venv (requirements-host.txt)")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=list(CHROMIUM_FLAGS))
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 900, "height": 640})
    yield ctx
    ctx.close()  # unloads every page: their sockets close before `quiet` settles


@pytest.fixture
def page(context):
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    assert not errors, f"script errors in the page: {errors}"


def expect(locator):
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def dashboard(target: Target) -> str:
    return f"{target.http_url}/?every={STATS_EVERY}"


def wait_stats(target: Target, pred, timeout: float = IO_TIMEOUT * 3) -> dict:
    """Poll /stats until pred(stats) holds or the deadline passes; returns the last."""
    deadline = time.monotonic() + timeout
    while True:
        st = get_stats(target)
        if pred(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.05)  # polling a condition with a deadline


def stats_seen(pg) -> int:
    return int(pg.evaluate("document.body.dataset.stats || 0"))


def wait_stats_seen(pg, n: int):
    """Until the page has rendered its n-th stats message."""
    pg.wait_for_function(f"+(document.body.dataset.stats || 0) >= {n}", timeout=TIMEOUT_MS)


def test_dashboard_is_live_without_http_polling(quiet, page):
    """The page loads, connects, and its numbers keep arriving over its own
    WebSocket: while it sits open the server serves no HTTP and accepts no
    connection but the test's own /stats requests."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    before = get_stats(quiet)
    page.goto(dashboard(quiet))
    expect(page.locator("#state")).to_have_class("open")
    wait_stats_seen(page, 2)
    loaded = list(requests)
    assert [u.split("/")[-1] for u in loaded] == [f"?every={STATS_EVERY}", "stormproof.js"], loaded

    first = get_stats(quiet)
    assert first["ws_opened"] - before["ws_opened"] == 1, first
    seen = stats_seen(page)
    wait_stats_seen(page, seen + 6)
    second = get_stats(quiet)

    assert requests == loaded, "the page made HTTP requests while open"
    # The second /stats request is the only new connection and the only HTTP answer.
    assert second["accepted"] - first["accepted"] == 1, second
    assert second["http_served"] - first["http_served"] == 1, second
    assert second["ws_opened"] == first["ws_opened"], second
    assert second["msgs_in"] - first["msgs_in"] >= 6, second

    # What the page shows is the server's: the next message carries the
    # counter the test's own request just moved.
    expect(page.locator("#n-http_served")).to_have_text(str(second["http_served"]))
    expect(page.locator("#slots")).to_have_text(
        f"{second['slots_in_use']} / {second['slots_total']}"
    )
    points = page.eval_on_selector("#cfree polyline", "e => e.points.numberOfItems")
    assert points >= 6, points

    # Other clients come and go: the page shows them, and the charts have
    # something to draw for the screenshot.
    for _ in range(4):
        with ws_connect(quiet.ws_url, open_timeout=IO_TIMEOUT) as ws:
            ws.send("x" * 1000)
            ws.recv(IO_TIMEOUT)
    busy = wait_stats(quiet, lambda st: st["ws_closed"] - first["ws_closed"] == 4)
    expect(page.locator("#n-ws_opened")).to_have_text(str(busy["ws_opened"]))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.fill("#msg", "hello from the dashboard")
    page.press("#msg", "Enter")
    expect(page.locator("#log")).to_contain_text("← hello from the dashboard")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_echo_console(quiet, context):
    """Dark mode on a phone-sized screen: a message typed into the console comes back."""
    pg = context.browser.new_page(color_scheme="dark", viewport={"width": 390, "height": 844})
    try:
        pg.goto(dashboard(quiet))
        expect(pg.locator("#state")).to_have_class("open")
        pg.fill("#msg", "ünïcode ✓ echo")
        pg.click("#echo button")
        expect(pg.locator("#log")).to_contain_text("→ ünïcode ✓ echo\n← ünïcode ✓ echo")
        wait_stats_seen(pg, 3)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "dashboard-phone-dark.png"), full_page=True)
    finally:
        pg.close()


def test_reload_storm(quiet, page):
    """Dozens of rapid reloads: each unloading page gives its slot back, so the
    server ends with one slot in use, the last page's, and that page is live."""
    page.goto(dashboard(quiet))
    expect(page.locator("#state")).to_have_class("open")
    before = get_stats(quiet)
    # "/" is revalidated (a 304 with no body) and the script comes from the cache.
    response = page.reload(wait_until="domcontentloaded")
    assert response and "if-none-match" in response.request.all_headers()
    for _ in range(RELOADS - 1):
        page.reload(wait_until="domcontentloaded")
    expect(page.locator("#state")).to_have_class("open")
    wait_stats_seen(page, 1)

    after = wait_stats(quiet, lambda st: st["slots_in_use"] == 1)
    assert after["slots_in_use"] == 1, after
    opened = after["ws_opened"] - before["ws_opened"]
    # At most one request per reload (the script comes from the cache), and
    # the test's own /stats.
    assert after["http_served"] - before["http_served"] <= RELOADS + 1, after
    assert opened <= RELOADS, f"{opened} sockets for {RELOADS} reloads: more than one per page"
    assert after["ws_opened"] - after["ws_closed"] == 1, after
    assert after["memory_errors"] == before["memory_errors"], after
    assert after["handler_errors"] == before["handler_errors"], after


def test_more_tabs_than_slots(spawn, context):
    """Three tabs, two slots: the third is told the device is full, shows the
    server's retry delay while it waits, and connects once a tab closes."""
    target = spawn(max_clients=2, retry_after=1)
    tabs = []
    for _ in range(2):
        tab = context.new_page()
        tab.goto(dashboard(target))
        expect(tab.locator("#state")).to_have_class("open")
        tabs.append(tab)
    extra = context.new_page()
    extra.goto(dashboard(target))
    state = extra.locator("#state")
    expect(state).to_have_class("full")
    expect(state).to_contain_text("waiting (device full)")
    reason = state.get_attribute("data-reason") or ""
    m = re.fullmatch(r"retry=(\d+)", reason)
    assert m, f"close reason {reason!r}"
    retry = int(m.group(1))
    delay = int(state.get_attribute("data-delay") or -1)
    assert retry <= delay <= retry + RETRY_JITTER, (retry, delay)

    st = get_stats(target)
    assert st["slots_in_use"] == 2, st
    assert st["refused_full"] >= 1, st

    tabs.pop(0).close()
    expect(state).to_have_class("open")
    wait_stats_seen(extra, 1)
    st = wait_stats(target, lambda s: s["ws_opened"] - s["ws_closed"] == 2)
    assert st["slots_in_use"] == 2, st
    assert st["ws_opened"] == 3, st


@pytest.mark.local_only("restarts the server")
def test_server_restart(device_url, page):
    """The server goes away and comes back on the same port: the page backs off
    while it is gone and reconnects by itself, with one socket."""
    if device_url:
        pytest.skip("restarts its own server; not possible against a device")
    port = free_port()
    first = ServerProcess(port=port)
    try:
        page.goto(dashboard(first.target))
        expect(page.locator("#state")).to_have_class("open")
        page.evaluate("window.trail = []; sp.addEventListener('state', e => trail.push(e.detail))")
    finally:
        first.proc.send_signal(signal.SIGKILL)  # a power cut: no close frame
        first.proc.wait(10)
    # Two failed attempts, each after its backoff wait, before the server returns.
    page.wait_for_function("trail.filter(d => d.state === 'retry').length >= 3", timeout=TIMEOUT_MS)
    second = ServerProcess(port=port)
    try:
        expect(page.locator("#state")).to_have_class("open")
        wait_stats_seen(page, 1)
        trail = page.evaluate("trail")
        retries = [d for d in trail if d["state"] == "retry"]
        assert [d["attempt"] for d in retries] == list(range(1, len(retries) + 1)), trail
        for d in retries:
            assert 0 <= d["delay"] <= min(CAP, BASE * 2 ** (d["attempt"] - 1)), d
        st = get_stats(second.target)
        assert st["ws_opened"] == 1, st
        assert st["slots_in_use"] == 1, st
    finally:
        page.close()
        second.stop()


# ---- the helper on a fake clock ----------------------------------------------

RANDOMS = [0.5, 0.9, 0.1, 1.0, 0.3, 0.75, 0.6, 1.0, 0.2, 0.4, 0.8, 0.05]


def backoff(failures: int, r: float) -> int:
    """The documented schedule: full jitter under an exponential ceiling with a cap."""
    return round(r * min(CAP, BASE * 2 ** (failures - 1)))


class Harness:
    def __init__(self, pg):
        self.pg = pg

    def __getattr__(self, step):
        return lambda *args: self.pg.evaluate(f"a => harness.{step}(...a)", list(args))

    def last_state(self, info) -> dict:
        return [e for e in info["log"] if e["kind"] == "state"][-1]


@pytest.fixture
def harness(browser):
    pg = browser.new_page()
    pg.set_content("<!doctype html><title>fake clock</title>")
    pg.add_script_tag(content=(WWW / "stormproof.js").read_text())
    pg.add_script_tag(content=HARNESS.read_text())
    yield Harness(pg)
    pg.close()


def test_backoff_schedule_on_a_fake_clock(harness):
    """Every wait the helper takes, on a fake clock with scripted random():
    exponential ceilings, full jitter, the cap, the reset only after a healthy
    connection, the server's retry delay on 1013, the open timeout, one socket
    at a time, and the clean close on pagehide."""
    h = harness
    r = iter(RANDOMS * 10)
    info = h.start({"randoms": RANDOMS, "options": {}})
    assert info["sockets"] == 1 and info["url"] == "ws://device.local/live", info
    assert info["state"] == "connecting"

    def failed_wait(failures, code=1006, reason=""):
        """The newest socket ends; the next one must come exactly after the
        documented delay, not a millisecond sooner."""
        info = h.end(code, reason)
        d = h.last_state(info)
        want = backoff(failures, next(r))
        assert (d["state"], d["delay"], d["attempt"]) == ("retry", want, failures), d
        n = info["sockets"]
        if want:
            assert h.advance(want - 1)["sockets"] == n, f"reconnected before {want} ms"
        assert h.advance(1 if want else 0)["sockets"] == n + 1, f"no reconnect after {want} ms"
        return want

    # Nine failures in a row: ceilings 0.5, 1, 2 ... s, capped at 30 s.
    waits = [failed_wait(f) for f in range(1, 10)]
    assert waits == [backoff(f, x) for f, x in zip(range(1, 10), RANDOMS[:9], strict=True)]
    assert max(waits) > 16000 and all(w <= CAP for w in waits), waits

    # Open, but dropped before it counted as healthy: the count goes on.
    h.open()
    assert h.send("x") is True
    h.advance(HEALTHY - 1)
    failed_wait(10)

    # Healthy for long enough: the next failure starts from the bottom again.
    h.open()
    h.message("hi")
    h.advance(HEALTHY)
    failed_wait(1, 1001)

    # The device is full: its own delay plus jitter, and no failure counted.
    h.open()
    info = h.end(1013, "retry=5000")
    d = h.last_state(info)
    want = 5000 + round(next(r) * RETRY_JITTER)
    assert (d["state"], d["delay"], d["code"]) == ("full", want, 1013), d
    n = info["sockets"]
    assert h.advance(want - 1)["sockets"] == n
    assert h.advance(1)["sockets"] == n + 1
    failed_wait(2)  # a full device neither counts as a failure nor resets the count

    # A socket that never opens is given up after openTimeout and counts as a failure.
    info = h.advance(OPEN_TIMEOUT - 1)
    assert info["closedWith"] is None, info
    info = h.advance(1)
    assert info["closedWith"] == [None, None], info
    failed_wait(3)

    # pagehide: a clean close now (the slot is free before the next page
    # loads), then nothing until the page is shown again from the bfcache.
    h.open()
    info = h.pagehide()
    assert info["closedWith"] == [1000, "page hidden"], info
    assert info["state"] == "paused" and info["timers"] == 0, info
    n = info["sockets"]
    info = h.finish(n - 1)  # the old socket's close event changes nothing
    assert info["state"] == "paused" and h.advance(10 * CAP)["sockets"] == n, info
    assert h.send("x") is False
    info = h.pageshow()
    assert info["sockets"] == n + 1 and info["state"] == "connecting", info

    messages = [e["data"] for e in info["log"] if e["kind"] == "message"]
    assert messages == ["hi"], messages
    assert info["overlaps"] == 0, "a socket was opened while another was live"

    info = h.close()
    assert info["state"] == "closed" and info["closedWith"] == [1000, "closed by page"], info
    assert h.advance(10 * CAP)["sockets"] == n + 1


def test_pause_while_hidden_on_a_fake_clock(harness):
    """pauseWhenHidden: a tab hidden longer than the grace closes its socket
    cleanly and reconnects at once when shown; a short glance away costs nothing."""
    h = harness
    h.start({"randoms": [0.5], "options": {"pauseWhenHidden": 5000}})
    h.open()
    h.visibility("hidden")
    h.advance(4999)
    info = h.visibility("visible")
    assert info["state"] == "open" and info["closedWith"] is None, info
    h.visibility("hidden")
    assert h.advance(4999)["closedWith"] is None
    info = h.advance(1)
    assert info["closedWith"] == [1000, "tab hidden"] and info["state"] == "paused", info
    n = info["sockets"]
    assert h.advance(10 * CAP)["sockets"] == n
    info = h.visibility("visible")
    assert info["sockets"] == n + 1 and info["state"] == "connecting", info
    assert info["overlaps"] == 0
