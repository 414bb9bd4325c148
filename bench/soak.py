"""Soak: a fresh server on the unix port with an ESP32-sized heap, a long storm
against it, then stop it. Exit 1 if the storm failed or the server died.

    .venv/bin/python -m bench.soak --duration 600 [--heap 110k] [storm options...]

Needs build/unix (`make soak` builds it). Options it does not know go to
bench.storm (e.g. --scenarios, --tolerance). Ctrl-C reaches the server too
(same process group), so an interrupted soak reports the server as stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.storm import main as storm_main

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=600, help="seconds of storm")
    p.add_argument("--heap", default="110k", help="MicroPython -X heapsize")
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--rate", type=float, default=50)
    a, rest = p.parse_known_args(argv)

    # The test suite's launcher: same build, same environment, same readiness check.
    sys.path.insert(0, str(ROOT / "tests_host"))
    from conftest import ServerProcess

    try:
        server = ServerProcess(heap=a.heap)
    except BaseException as e:  # pytest.exit() raises its own exception type
        print(f"could not start the server: {e}")
        return 2
    print(f"soak: server pid {server.proc.pid} on port {server.port}, heap {a.heap}", flush=True)
    try:
        rc = storm_main(
            ["--url", server.target.ws_url, "--soak", "--duration", str(a.duration)]
            + ["--concurrency", str(a.concurrency), "--rate", str(a.rate)]
            + rest
        )
    finally:
        alive = server.alive()
        server.stop()
    if not alive:
        last = server.lines[-1] if server.lines else ""
        what = "was stopped (Ctrl-C)" if last == "stopped" else "DIED"
        print(f"soak: the server process {what}; its last output:\n{server.output()}")
        return 1
    # What the server itself said (warnings, errors) belongs in the report too.
    said = [ln for ln in server.lines if ln.startswith(("[W]", "[E]")) or "Traceback" in ln]
    if said:
        print("soak: server warnings and errors (last 20):")
        print("\n".join(said[-20:]))
    print(f"soak: server alive to the end; storm {'passed' if rc == 0 else 'FAILED'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
