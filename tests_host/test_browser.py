"""A real browser as the peer: Debian's Chromium loads the page and its WebSocket echoes.

Every other test speaks WebSocket through a client written for testing; this one
lets Chromium do the handshake, masking and closing exactly as a visitor's
browser would, and checks the result both in the page (what the visitor sees)
and in the server's own books (/stats).

Chromium is driven over its DevTools protocol rather than `--dump-dom`: virtual
time does not wait for network traffic, so a dump can be taken before the echo
arrives; polling the live page for the echo with a deadline cannot race that way.
Install the browser with tools/ensure_chromium.sh; without it these tests skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import websockets
from wsutil import IO_TIMEOUT, Target, get_stats

ECHO = "echo: hello from the page"
TITLE = "Stormproof: hello from the page"
RELOADS = 8

# Keeps Chromium off every network but the loopback server it is pointed at.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # the OS picks a free port; Chromium writes it down
)

# Everything the test looks at in one round trip. `?? null` because fields that
# are undefined would be dropped from the returned object altogether.
PAGE_STATE = """({
  generation: window.__stormproofGeneration ?? null,
  readyState: document.readyState,
  title: document.title,
  state: document.getElementById('state')?.textContent ?? null,
  log: document.getElementById('log')?.textContent ?? null,
  stats: document.getElementById('stats')?.textContent ?? null,
  url: location.href,
  body: (document.body?.innerText ?? '').slice(0, 200),
})"""


def find_chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium_exe() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            "Chromium is not installed: run tools/ensure_chromium.sh (apt-get install chromium)"
        )
    return exe


class CdpError(Exception):
    pass


class Chromium:
    """One headless Chromium in a throwaway profile, reachable over DevTools."""

    def __init__(self, exe: str):
        self._tmp = tempfile.TemporaryDirectory(
            prefix="stormproof-chromium-", ignore_cleanup_errors=True
        )
        tmp = Path(self._tmp.name)
        self.profile = tmp / "profile"
        self.stderr_path = tmp / "stderr.log"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                # Its own process group, so cleanup can reach the zygotes,
                # renderers and network service too, not only the browser.
                start_new_session=True,
            )
        try:
            self.devtools_url = self._devtools_url()
        except BaseException:
            self.cleanup()
            raise

    def _devtools_url(self, timeout: float = 30.0) -> str:
        # Chromium writes the port it bound and the browser target's path here
        # once DevTools is listening, which saves parsing its noisy stderr.
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited(0):
                raise RuntimeError(f"chromium exited at start:\n{self.stderr()}")
            with contextlib.suppress(FileNotFoundError):
                lines = port_file.read_text().splitlines()
                if len(lines) >= 2 and lines[0].isdigit():
                    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.02)  # polling a condition with a deadline
        raise RuntimeError(f"chromium did not start DevTools in {timeout} s:\n{self.stderr()}")

    def stderr(self, lines: int = 30) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        # dbus complaints are expected in a container and bury the useful lines.
        kept = [line for line in text.splitlines() if "dbus" not in line]
        return "\n".join(kept[-lines:])

    def exited(self, timeout: float) -> bool:
        """Wait for the browser process to exit without reaping it: while it
        is an unreaped zombie its pid, which is also its process group's id,
        cannot be reused, so signalling that group never hits a stranger."""
        deadline = time.monotonic() + timeout
        while True:
            if os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)  # polling a condition with a deadline

    def close(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
        """Stop the browser: SIGTERM is a user quitting (pages unload), SIGKILL
        to the whole group is a crash or power cut (sockets just drop).
        Returns whether it exited."""
        if self.proc.returncode is not None:
            return True
        if not self.exited(0):
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)
        return self.exited(timeout)

    def cleanup(self):
        if self.proc.returncode is None:
            self.close()
            # Whatever outlived the browser process (or all of it, if it hung).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


class DevTools:
    """Just enough of the Chrome DevTools Protocol: commands and their replies."""

    def __init__(self, ws):
        self.ws = ws
        self.last_id = 0

    async def call(self, method: str, session: str | None = None, **params) -> dict:
        self.last_id += 1
        msg_id = self.last_id
        msg: dict = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), IO_TIMEOUT))
            if reply.get("id") == msg_id:  # anything else is an event: not needed
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply["result"]

    async def open_page(self, url: str) -> str:
        """A new tab on url; returns the session that commands to it go through."""
        target = await self.call("Target.createTarget", url=url)
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        return attached["sessionId"]

    async def page_state(self, session: str) -> dict:
        r = await self.call("Runtime.evaluate", session, expression=PAGE_STATE, returnByValue=True)
        if "exceptionDetails" in r:
            raise CdpError(str(r["exceptionDetails"]))
        return r["result"]["value"]

    async def wait_for_echo(self, session: str, timeout: float = IO_TIMEOUT * 2) -> dict:
        """Poll the page until a freshly loaded document shows the server's echo
        and its first /stats poll. A document the test has marked with a
        generation is an old one: right after a reload it may still answer."""
        deadline = time.monotonic() + timeout
        state: dict | str = "never evaluated"
        while time.monotonic() < deadline:
            try:
                state = await self.page_state(session)
            except CdpError as e:
                # The execution context is torn down and rebuilt during a load.
                state = f"evaluate failed: {e}"
            else:
                if (
                    state["generation"] is None
                    and state["readyState"] == "complete"
                    and ECHO in (state["log"] or "")
                    and '"ws_opened"' in (state["stats"] or "")
                ):
                    return state
            await asyncio.sleep(0.02)  # polling a condition with a deadline
        raise AssertionError(f"page did not show {ECHO!r} within {timeout} s; last state: {state}")

    async def mark(self, session: str, generation: int):
        await self.call(
            "Runtime.evaluate", session, expression=f"window.__stormproofGeneration = {generation}"
        )


async def with_devtools(browser: Chromium, work):
    # No Origin header is sent by this client, so Chromium's DevTools origin
    # check (--remote-allow-origins) does not apply.
    async with websockets.connect(
        browser.devtools_url, max_size=None, open_timeout=IO_TIMEOUT
    ) as ws:
        return await work(DevTools(ws))


def delta(after: dict, before: dict, key: str) -> int:
    return after[key] - before[key]


def code_delta(after: dict, before: dict, code: str) -> int:
    return after["close_codes"][code] - before["close_codes"][code]


def run_in(browser: Chromium, target: Target, before: dict, work):
    """Run work(cdp) against the browser; a failure says what the browser and
    the server saw, since a page that never echoes has many possible causes."""
    try:
        return asyncio.run(with_devtools(browser, work))
    except AssertionError as e:
        try:
            st = get_stats(target)
            moved = {
                k: delta(st, before, k)
                for k, v in st.items()
                if isinstance(v, int) and delta(st, before, k)
            }
        except OSError as oe:
            moved = f"/stats unreachable: {oe!r}"
        raise AssertionError(
            f"{e}\nserver counters moved: {moved}\nchromium stderr:\n{browser.stderr()}"
        ) from None


def wait_stats(target: Target, pred, timeout: float = IO_TIMEOUT * 3) -> dict:
    """Poll /stats until pred(stats) holds or the deadline passes; returns the last."""
    deadline = time.monotonic() + timeout
    while True:
        st = get_stats(target)
        if pred(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.05)  # polling a condition with a deadline


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("sig", "code"),
    [
        # Quitting unloads the page, and the browser says goodbye with 1001.
        pytest.param(signal.SIGTERM, "1001", id="quit"),
        # Nothing is left to send a close frame: the server must record 1006.
        pytest.param(signal.SIGKILL, "1006", id="crash"),
    ],
)
def test_page_echoes_through_chromium(quiet, chromium_exe, sig, code):
    """Chromium loads /, its script opens ws://host/ws and the echo comes back;
    when the browser goes away the server records why and frees the slot."""
    before = get_stats(quiet)
    with Chromium(chromium_exe) as browser:

        async def load(cdp: DevTools) -> dict:
            return await cdp.wait_for_echo(await cdp.open_page(quiet.http_url + "/"))

        state = run_in(browser, quiet, before, load)
        assert state["title"] == TITLE, state
        assert state["state"] == "open", state

        during = get_stats(quiet)
        # Exactly one: the page only reconnects after a close, so more would
        # mean the server dropped it.
        assert delta(during, before, "ws_opened") == 1, during
        assert delta(during, before, "ws_closed") == 0, during
        assert delta(during, before, "msgs_in") >= 1, during
        assert delta(during, before, "msgs_out") >= 1, during
        assert during["slots_in_use"] >= 1, during

        assert browser.close(sig), f"chromium did not exit on {signal.Signals(sig).name}"

    after = wait_stats(quiet, lambda st: delta(st, before, "ws_closed") == 1)
    assert delta(after, before, "ws_closed") == 1, after
    got = {
        c: code_delta(after, before, c)
        for c in after["close_codes"]
        if code_delta(after, before, c)
    }
    assert got == {code: 1}, f"expected close code {code}, server recorded {got}"
    assert delta(after, before, "memory_errors") == 0, after
    assert delta(after, before, "handler_errors") == 0, after


@pytest.mark.timeout(180)
def test_reload_storm_in_chromium(quiet, chromium_exe):
    """A visitor hammering reload: each load's WebSocket echoes, each unloaded
    page's WebSocket is closed with 1001, and no slot leaks."""
    loads = RELOADS + 1
    before = get_stats(quiet)
    with Chromium(chromium_exe) as browser:

        async def storm(cdp: DevTools) -> list[dict]:
            session = await cdp.open_page(quiet.http_url + "/")
            seen = []
            for generation in range(loads):
                seen.append(await cdp.wait_for_echo(session))
                if generation < RELOADS:
                    await cdp.mark(session, generation)
                    await cdp.call("Page.reload", session)
            return seen

        seen = run_in(browser, quiet, before, storm)
        assert len(seen) == loads
        assert all(s["title"] == TITLE and s["state"] == "open" for s in seen), seen

        # The unloaded pages' closes may still be in flight when the last echo lands.
        during = wait_stats(quiet, lambda st: delta(st, before, "ws_closed") == RELOADS)
        assert delta(during, before, "ws_opened") == loads, during
        assert delta(during, before, "ws_closed") == RELOADS, during
        assert code_delta(during, before, "1001") == RELOADS, during["close_codes"]
        assert delta(during, before, "refused_full") == 0, during
        assert browser.close(), "chromium did not exit on SIGTERM"

    after = wait_stats(quiet, lambda st: delta(st, before, "ws_closed") == loads)
    assert delta(after, before, "ws_opened") == loads, after
    assert delta(after, before, "ws_closed") == loads, after
    assert code_delta(after, before, "1001") == loads, after["close_codes"]
    assert delta(after, before, "memory_errors") == 0, after
    assert delta(after, before, "handler_errors") == 0, after
