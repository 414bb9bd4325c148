"""Fixtures: a real Stormproof server under the MicroPython unix port, or a device.

By default each test session starts `main.py` from build/unix under
`micropython -X heapsize=$HEAP` on a free loopback port. With
`--device ws://192.168.4.1/ws` (or STORMPROOF_DEVICE) every test talks to
that already-running server instead and nothing is spawned; tests that need
their own server configuration are skipped there with the reason.

The robustness tests (timeouts, keepalive, refusal) run against `robust`: a
server with the test profile's short timeouts (tools/test_profile.json),
spawned here once per session, or the device itself when it was deployed
with `make deploy PROFILE=test`. They read its settings (`robust.config`,
from /config) instead of assuming them, so the same test runs both ways.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from wsutil import Target, get, get_stats  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "unix"
TEST_PROFILE: dict = json.loads((ROOT / "tools" / "test_profile.json").read_text())


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default=os.environ.get("STORMPROOF_DEVICE", ""),
        help="ws:// URL of a running Stormproof server (e.g. a flashed board); nothing is spawned",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "local_only(reason): needs a server this suite starts")


def micropython() -> str:
    exe = os.environ.get("MICROPYTHON") or str(ROOT / ".venv" / "bin" / "micropython")
    if not Path(exe).exists():
        pytest.exit(f"MicroPython executable not found at {exe}: run 'make test'", 2)
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """main.py (or another app script, run from build/unix) under the unix
    port with an ESP32-sized heap."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        heap: str | None = None,
        script: str = "main.py",
        cwd: Path = BUILD,
        port: int | None = None,
    ):
        if not (cwd / "main.py").exists():
            pytest.exit(f"{cwd} is missing: run 'make test' (it compiles lib/ first)", 2)
        self.port = port or free_port()
        self.heap = heap or os.environ.get("HEAP", "110k")
        full_env = dict(os.environ)
        full_env.update({"STORMPROOF_HOST": "127.0.0.1", "STORMPROOF_PORT": str(self.port)})
        full_env.update(env or {})
        self.lines: list[str] = []
        self._listening = threading.Event()
        self.started = False
        self.proc = subprocess.Popen(
            [micropython(), "-X", f"heapsize={self.heap}", script],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self._listening.wait(30)
        if not self.started:
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines))
        self.target = Target("127.0.0.1", self.port, "/ws", local=True, process=self)

    def _pump(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "listening on" in line:
                self.started = True
                self._listening.set()
        self._listening.set()  # output ended: the process is gone, and will not listen

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return "\n".join(self.lines[-80:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: the same as Ctrl-C in `make run`
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def device_url(request) -> str:
    return request.config.getoption("--device")


@pytest.fixture(scope="session")
def target(device_url):
    """The server under test, shared by the session."""
    if device_url:
        u = urlparse(device_url)
        t = Target(u.hostname or "", u.port or 80, u.path or "/ws", local=False)
        preflight(t)
        yield t
        return
    proc = ServerProcess()
    yield proc.target
    alive = proc.alive()
    proc.stop()
    if os.environ.get("STORMPROOF_SERVER_LOG"):
        Path(os.environ["STORMPROOF_SERVER_LOG"]).write_text("\n".join(proc.lines))
    assert alive, "server process died during the session:\n" + proc.output()


def preflight(t: Target) -> dict:
    """Before a --device run: the board answers, runs MicroPython 1.23 or
    later, and nobody else is connected (their connections would skew every
    count). Its active configuration (/config), or {} on an older build."""
    try:
        st = get_stats(t)
    except (OSError, AssertionError) as e:
        pytest.exit(f"device {t.host}:{t.port} unreachable: /stats: {e!r}", 2)
    status, _, body = get(t, "/config")
    cfg = json.loads(body) if status == 200 else {}
    version = tuple(int(x) for x in cfg.get("micropython", "0.0.0").split("."))
    if cfg and version < (1, 23, 0):
        pytest.exit(f"device runs MicroPython {cfg['micropython']}; 1.23 or later is needed", 2)
    if st["slots_in_use"] or st["sockets_open"] > 1:
        pytest.exit(
            f"other clients are connected to the device ({st['slots_in_use']} WebSockets, "
            f"{st['sockets_open'] - 1} other sockets): close them (browser tabs, storms) first",
            2,
        )
    print(
        f"device: MicroPython {cfg.get('micropython', '?')}, profile {cfg.get('profile') or 'default'!r}"
    )
    return cfg


@pytest.fixture(scope="session")
def device_config(device_url) -> dict:
    if not device_url:
        return {}
    u = urlparse(device_url)
    status, _, body = get(Target(u.hostname or "", u.port or 80, "/ws", local=False), "/config")
    return json.loads(body) if status == 200 else {}


def profile_problems(cfg: dict) -> list[str]:
    """Why a configuration cannot serve the robustness tests together: each
    reclaiming rule must be the one that fires in its own test."""
    problems = [
        f"{k}={cfg.get(k)!r}, the test profile has {v!r}"
        for k, v in TEST_PROFILE.items()
        if cfg.get(k) != v
    ]
    if not problems:
        sweep = cfg["sweep_interval"]
        # A silent peer is closed by keepalive (ping, then pong deadline)
        # before the idle timeout; a peer that answers pings sees two of them
        # before idle closes it (test_keepalive_keeps_a_responsive_peer).
        if cfg["idle_timeout"] <= 2 * (cfg["ping_interval"] + sweep) + cfg["pong_timeout"]:
            problems.append("idle_timeout must exceed two keepalive rounds and a pong deadline")
        if not cfg["probe_silence"] or not cfg["ping_interval"]:
            problems.append("probing and keepalive must be on")
    return problems


@pytest.fixture(scope="session")
def robust(device_url, device_config):
    """The target of the robustness tests: a server with the test profile,
    with its active settings in `.config`. Locally one is spawned for the
    session; a device serves when it runs the test profile, else each of
    these tests is skipped, saying how to deploy it."""
    if device_url:
        problems = profile_problems(device_config)
        if problems:
            pytest.skip(
                "the device does not run the test profile (make deploy PROFILE=test): "
                + "; ".join(problems)
            )
        u = urlparse(device_url)
        yield Target(u.hostname or "", u.port or 80, u.path or "/ws", False, config=device_config)
        return
    env = {"STORMPROOF_" + k.upper(): str(v) for k, v in TEST_PROFILE.items()}
    proc = ServerProcess({**env, "STORMPROOF_PROFILE": "test"})
    status, _, body = get(proc.target, "/config")
    assert status == 200, body
    proc.target.config = json.loads(body)
    assert not profile_problems(proc.target.config), profile_problems(proc.target.config)
    yield proc.target
    alive = proc.alive()
    proc.stop()
    if os.environ.get("STORMPROOF_SERVER_LOG"):
        Path(os.environ["STORMPROOF_SERVER_LOG"] + ".robust").write_text("\n".join(proc.lines))
    assert alive, "the test-profile server died during the session:\n" + proc.output()


@pytest.fixture
def spawn(device_url, device_config):
    """Start a dedicated server with config overrides (STORMPROOF_* env vars).
    Against a device: the device itself when its active configuration
    (/config) already has every override, else the test is skipped, saying
    which settings differ."""
    if device_url:
        u = urlparse(device_url)

        def on_device(**overrides) -> Target:
            differ = {
                k: (v, device_config.get(k))
                for k, v in overrides.items()
                if device_config.get(k) != v
            }
            if differ:
                pytest.skip(
                    f"needs server settings the device does not run (wanted, running): {differ}"
                )
            return Target(u.hostname or "", u.port or 80, u.path or "/ws", local=False)

        yield on_device
        return
    started: list[ServerProcess] = []

    def start(**overrides) -> Target:
        env = {"STORMPROOF_" + k.upper(): str(v) for k, v in overrides.items()}
        p = ServerProcess(env)
        started.append(p)
        return p.target

    yield start
    for p in started:
        alive = p.alive()
        p.stop()
        if os.environ.get("STORMPROOF_SERVER_LOG"):
            with open(os.environ["STORMPROOF_SERVER_LOG"] + ".spawned", "a") as f:
                f.write("\n".join(p.lines) + "\n")
        assert alive, "server process died:\n" + p.output()


@pytest.fixture
def quiet(target):
    """Yields the target; afterwards waits for the server to settle and checks
    the invariants every test must leave behind."""
    yield target
    settle(target)


def settle(target: Target, timeout: float = 15.0) -> dict:
    """Wait until no WebSocket slot is in use, then check the books balance."""
    deadline = time.monotonic() + timeout
    while True:
        st = get_stats(target)
        # (Sockets refused at accept are closed by the next sweep, hence sockets_open.)
        idle = (
            st["slots_in_use"] == 0
            and st["handshakes_in_use"] == 1
            and st["tasks"] == 1
            and st["sockets_open"] == 1
        )
        if idle or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling a condition with a deadline, not a timed guess
    assert st["slots_in_use"] == 0, st
    assert st["handshakes_in_use"] == 1, st  # the /stats request itself
    # Every accepted socket is closed exactly once: the /stats request is the one open.
    assert st["accepted"] == st["closed"] + st["sockets_open"], st
    assert st["sockets_open"] == 1, st
    assert st["ws_opened"] == st["ws_closed"], st
    assert st["tasks"] == 1, st  # every connection task has ended but this one
    return st


@contextlib.contextmanager
def mp_driver(driver: Path, heap: str | None = None):
    """A MicroPython process running `driver` on the device package (lib/),
    asked one JSON line at a time: yields ask(request) -> reply. `heap`: a
    heap size for drivers sent long batches (the port's default is small)."""
    proc = subprocess.Popen(
        [
            micropython(),
            *(["-X", f"heapsize={heap}"] if heap else []),
            str(driver),
            str(ROOT / "lib"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask(req: dict) -> dict:
        assert proc.stdin and proc.stdout
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, f"{driver.name} died"
        return json.loads(line)

    try:
        yield ask
    finally:
        assert proc.stdin
        proc.stdin.close()
        proc.wait(10)
