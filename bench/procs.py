"""The three servers of `make bench`, built and run under one MicroPython.

- Stormproof: build/unix/main.py as `make run` starts it (its /ws echo, /stats).
- microdot: installed from PyPI into build/bench/ at bench time, its package
  compiled with mpy-cross -march=x64, run with bench/mp/microdot_echo.py.
- bare: bench/mp/bare_echo.py, an asyncio TCP echo (the runtime's ceiling).

Each runs as its own process, `micropython -X heapsize=...`, on a free
loopback port, with its output in build/bench/logs/. The process's CPU time
is read from /proc.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import peer

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
STORMPROOF_DIR = BUILD / "unix"
WORK = BUILD / "bench"
MP_SRC = ROOT / "bench" / "mp"
MICRODOT_VERSION = "2.7.0"
# The modules microdot's WebSocket echo imports (the rest of the package is
# optional extras: sessions, templates, ASGI/WSGI adapters ...).
MICRODOT_MODULES = ("__init__", "microdot", "websocket", "helpers")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def micropython_exe() -> str:
    exe = os.environ.get("MICROPYTHON") or str(ROOT / ".venv" / "bin" / "micropython")
    if not Path(exe).exists():
        raise SystemExit(f"MicroPython not found at {exe}: run 'make venv' (or set MICROPYTHON)")
    return exe


def mpy_cross_exe() -> str:
    exe = Path(sys.executable).parent / "mpy-cross"
    found = str(exe) if exe.exists() else shutil.which("mpy-cross")
    if not found:
        raise SystemExit("mpy-cross not found: run 'make venv'")
    return found


def _mpy_cross(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([mpy_cross_exe(), "-march=x64", "-o", str(dst), str(src)], check=True)


def prepare_microdot() -> dict:
    """pip-install microdot into build/bench/pypi, compile it into build/bench/microdot/lib."""
    site = WORK / "pypi"
    shutil.rmtree(site, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps"]
    cmd += ["--no-compile", "--target", str(site), f"microdot=={MICRODOT_VERSION}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"could not install microdot from PyPI:\n{done.stdout}\n{done.stderr}")
    init = (site / "microdot" / "__init__.py").read_text()
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", init)
    version = m.group(1) if m else "?"
    app = WORK / "microdot"
    shutil.rmtree(app, ignore_errors=True)
    for mod in MICRODOT_MODULES:
        _mpy_cross(site / "microdot" / f"{mod}.py", app / "lib" / "microdot" / f"{mod}.mpy")
    _mpy_cross(MP_SRC / "heapstats.py", app / "lib" / "heapstats.mpy")
    shutil.copy(MP_SRC / "microdot_echo.py", app / "main.py")
    shown = [*cmd[2:-2], str(site.relative_to(ROOT)), cmd[-1]]  # as typed, path relative
    return {"version": version, "installed": " ".join(shown), "dir": str(app)}


def prepare_bare() -> dict:
    app = WORK / "bare"
    shutil.rmtree(app, ignore_errors=True)
    _mpy_cross(MP_SRC / "heapstats.py", app / "heapstats.mpy")
    shutil.copy(MP_SRC / "bare_echo.py", app / "main.py")
    return {"dir": str(app)}


def socket_layer(heap: str, n: int = 200) -> dict:
    """Bytes the socket layer allocates per accepted connection at `heap`
    (bench/mp/accept_layer.py): the part of a reconnect cycle that is the
    socket object and accept's address, not the server's own."""
    port = free_port()
    env = dict(os.environ, BENCH_PORT=str(port), BENCH_N=str(n))
    proc = subprocess.Popen(
        [micropython_exe(), "-X", f"heapsize={heap}", str(MP_SRC / "accept_layer.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("accept_layer.py did not start")
        for _ in range(n + 5):
            socket.create_connection((peer.HOST, port), timeout=10).close()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    m = re.search(r"per_accept ([0-9.]+)", out)
    if not m:
        raise RuntimeError(f"accept_layer.py said: {out!r}")
    return {"per_accept_B": float(m.group(1)), "n": n}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((peer.HOST, 0))
        return s.getsockname()[1]


class Server:
    """One server process. `ws`: it speaks WebSocket at /ws (the bare echo does not)."""

    def __init__(self, key: str, label: str, ws: bool, cwd: Path, heap: str):
        self.key, self.label, self.ws, self.heap = key, label, ws, heap
        self.port = free_port()
        self.stats_port = self.port if ws else free_port()
        # Stormproof's /stats is its own; the other two serve /mem, a cheaper
        # exact reading of mem_total (see bench/mp/heapstats.py).
        self.mem_path = "/stats" if key == "stormproof" else "/mem"
        env = dict(os.environ)
        env.update(
            {
                "STORMPROOF_HOST": peer.HOST,
                "STORMPROOF_PORT": str(self.port),
                "BENCH_PORT": str(self.port),
                "BENCH_STATS_PORT": str(self.stats_port),
            }
        )
        logs = WORK / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{key}-{heap}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [micropython_exe(), "-X", f"heapsize={heap}", "main.py"],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.label} exited at start:\n{self.tail()}")
            try:
                self.stats()
                return
            except (OSError, ValueError, EOFError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.label} did not answer:\n{self.tail()}") from None
                time.sleep(0.1)  # polling for readiness, with a deadline

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- what is measured ----------------------------------------------------

    def cpu_times(self) -> tuple[int, int]:
        """(utime, stime) of the server process in clock ticks (/proc/<pid>/stat)."""
        with open(f"/proc/{self.pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2 :].split()
        return int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)

    def cpu_ticks(self) -> int:
        """utime + stime of the server process, in clock ticks."""
        return sum(self.cpu_times())

    def sched_ns(self) -> int | None:
        """On-CPU time in ns from /proc/<pid>/task/*/schedstat (a cross-check
        with no tick rounding); None where the kernel does not provide it."""
        total = 0
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return total

    def stats(self) -> dict:
        return peer.get_json(self.stats_port, "/stats")

    def mem_total(self) -> int:
        return int(peer.get_json(self.stats_port, self.mem_path)["mem_total"])

    # ---- load ------------------------------------------------------------------

    def cycle_fn(self, size: int = 16):
        data = peer.payload(size)
        frame = peer.masked_frame(peer.BINARY, data)
        if self.ws:
            return lambda: peer.ws_cycle(self.port, frame, data)
        return lambda: peer.tcp_cycle(self.port, frame)

    def echoer(self, size: int) -> peer.Echoer:
        return peer.Echoer(self.port, self.ws, size)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start(key: str, heap: str, dirs: dict[str, Path]) -> Server:
    label = {"stormproof": "Stormproof", "microdot": "microdot", "bare": "bare asyncio echo"}[key]
    return Server(key, label, key != "bare", dirs[key], heap)
