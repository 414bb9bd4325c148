"""Echo benchmark: round trips per second, latency and heap allocated per message.

    .venv/bin/python -m bench.echo                 # starts its own server (unix port, 110k heap)
    .venv/bin/python -m bench.echo --url ws://192.168.4.1/ws   # a board

Prints a table and records it as JSON under bench/results/. Figures, not
assertions: the test suite checks behaviour, this measures it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests_host"))

from wsutil import RawWS, Target, close_payload, frame, get_stats  # noqa: E402

SIZES = (0, 16, 125, 1000, 4096)


def echo_round_trips(target: Target, size: int, count: int) -> list[float]:
    payload = bytes(i % 251 for i in range(size))
    out = []
    with RawWS(target) as ws:
        for _ in range(count):
            t0 = time.perf_counter()
            ws.send(frame(2, payload))
            op, data = ws.recv_message()
            out.append(time.perf_counter() - t0)
            assert (op, data) == (2, payload)
        ws.send(frame(8, close_payload(1000)))
        ws.expect_close()
    return out


def allocated_per_echo(target: Target, size: int, count: int) -> float | None:
    """Heap bytes the server allocates per echoed message (unix port only:
    /stats has mem_total where MicroPython keeps allocation statistics)."""
    if "mem_total" not in get_stats(target):
        return None
    payload = b"x" * size
    with RawWS(target) as ws:
        for _ in range(10):  # warm up: first-use allocations are not per message
            ws.send(frame(2, payload))
            ws.recv_message()
        a = get_stats(target)["mem_total"]
        b = get_stats(target)["mem_total"]
        per_stats = b - a  # what one /stats request itself allocates
        a = get_stats(target)["mem_total"]
        for _ in range(count):
            ws.send(frame(2, payload))
            ws.recv_message()
        b = get_stats(target)["mem_total"]
    return (b - a - per_stats) / count


def connects_per_second(target: Target, count: int) -> float:
    t0 = time.perf_counter()
    for _ in range(count):
        with RawWS(target) as ws:
            ws.send(frame(8, close_payload(1000)))
            ws.expect_close()
            ws.expect_eof()
    return count / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="ws:// URL of a running server; default: start one")
    ap.add_argument("--count", type=int, default=500, help="round trips per size")
    ap.add_argument("--heap", default="110k")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "echo.json"))
    args = ap.parse_args(argv)

    proc = None
    if args.url:
        u = urlparse(args.url)
        target = Target(u.hostname or "", u.port or 80, u.path or "/ws", local=False)
    else:
        from conftest import ServerProcess

        proc = ServerProcess(heap=args.heap)
        target = proc.target
    try:
        limit = get_stats(target)["max_message"]
        rows = []
        for size in SIZES:
            if size > limit:
                continue
            rtt = echo_round_trips(target, size, args.count)
            rows.append(
                {
                    "size": size,
                    "round_trips_per_s": round(len(rtt) / sum(rtt), 1),
                    "p50_ms": round(statistics.median(rtt) * 1000, 3),
                    "p99_ms": round(sorted(rtt)[int(len(rtt) * 0.99) - 1] * 1000, 3),
                    "alloc_per_echo_B": allocated_per_echo(target, size, min(args.count, 200)),
                }
            )
        cps = connects_per_second(target, min(args.count, 300))
        st = get_stats(target)
    finally:
        if proc is not None:
            proc.stop()

    print(f"target {target.ws_url}  heap {args.heap if proc else 'device'}")
    print(f"{'size':>6} {'trips/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'alloc B/echo':>13}")
    for r in rows:
        alloc = "-" if r["alloc_per_echo_B"] is None else f"{r['alloc_per_echo_B']:.0f}"
        print(
            f"{r['size']:>6} {r['round_trips_per_s']:>9} {r['p50_ms']:>8} {r['p99_ms']:>8} {alloc:>13}"
        )
    print(f"connect + handshake + close: {cps:.0f} per s")
    print(f"heap at rest: mem_free {st['mem_free']}  largest_free {st['largest_free']}")
    record = {
        "target": target.ws_url,
        "heap": args.heap if proc else None,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "echo": rows,
        "connects_per_s": round(cps, 1),
        "mem_free": st["mem_free"],
        "largest_free": st["largest_free"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"recorded in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
