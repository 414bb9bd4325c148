"""Command line and the run itself: baseline, storm with live progress, settle, verdict."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from . import report
from .core import Ctx, RateLimiter
from .probe import Probe
from .scenarios import SCENARIOS, ws_connect

RESULTS = Path(__file__).resolve().parents[1] / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.storm",
        description="Storm a Stormproof server with a mix of client behaviours; "
        "exit 1 if it crashed, leaked, kept slots or misbehaved.",
    )
    p.add_argument("--url", required=True, help="ws://host[:port]/ws of the echo endpoint")
    p.add_argument("--duration", type=float, help="seconds of storm (default 30, 600 with --soak)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent client workers (8)")
    p.add_argument(
        "--rate", type=float, default=50, help="new connections per second, at most (50)"
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated mix (all)")
    p.add_argument(
        "--out",
        type=Path,
        help="directory for storm.json and storm.png (bench/results/storm-<time>)",
    )
    p.add_argument(
        "--tolerance", type=int, default=2560, help="bytes of free heap it may lose (2560)"
    )
    p.add_argument("--settle", type=float, default=40, help="seconds for slots to return to 0 (40)")
    p.add_argument(
        "--io-timeout", type=float, default=10, help="seconds for any one network step (10)"
    )
    p.add_argument(
        "--hold", type=float, default=4, help="seconds a halfopen/slowread client stays (4)"
    )
    p.add_argument("--interval", type=float, default=0.5, help="seconds between /stats polls (0.5)")
    p.add_argument("--chat-path", default="/chat")
    p.add_argument("--stats-path", default="/stats")
    p.add_argument("--soak", action="store_true", help="a long run (default 600 s), same checks")
    p.add_argument("--seed", type=int, help="for a repeatable scenario mix")
    a = p.parse_args(argv)
    u = urlparse(a.url)
    if u.scheme != "ws" or not u.hostname:
        p.error("--url must be ws://host[:port]/path (the server has no TLS)")
    a.host, a.port, a.ws_path = u.hostname, u.port or 80, u.path or "/ws"
    a.names = [n.strip() for n in a.scenarios.split(",") if n.strip()]
    unknown = set(a.names) - set(SCENARIOS)
    if unknown or not a.names:
        p.error(f"unknown scenarios {sorted(unknown)}; choose from {','.join(SCENARIOS)}")
    a.duration = a.duration or (600.0 if a.soak else 30.0)
    if min(a.duration, a.concurrency, a.rate, a.interval) <= 0:
        p.error("--duration, --concurrency, --rate and --interval must be positive")
    a.out = a.out or RESULTS / time.strftime("storm-%Y%m%d-%H%M%S")
    return a


async def echo_once(ctx: Ctx, url: str) -> None:
    with contextlib.suppress(Exception):
        async with ws_connect(ctx, url) as ws:
            await ws.send("warm")
            await asyncio.wait_for(ws.recv(), ctx.io_timeout)


async def at_rest(ctx: Ctx, probe: Probe, reads: int = 3, back_to=None):
    """((best mem_free, best largest_free), last stats) over a few reads.

    MicroPython's collector is conservative: a stale word can keep one dead
    connection's objects alive until unrelated traffic reuses the stack, so
    each read follows an echo, and the best read is the figure for the heap.
    With back_to=(free, largest), up to 5 more reads half a second apart are
    taken while the heap is not back there: a leak stays, a stale word goes.
    """
    got = []
    for i in range(reads + (5 if back_to else 0)):
        if got and i >= reads:
            best = (max(g["mem_free"] for g in got), max(g["largest_free"] for g in got))
            if back_to is None or (best[0] >= back_to[0] and best[1] >= back_to[1]):
                break
            await asyncio.sleep(0.5)
        await echo_once(ctx, ctx.ws_url)
        st = await probe.fetch_retry(5, 1.0)
        if st is None:
            break  # five tries in vain: reading on would only delay the verdict
        got.append(st)
    if not got:
        return (None, None), None
    return (max(g["mem_free"] for g in got), max(g["largest_free"] for g in got)), got[-1]


# Scenarios that sit on a slot for seconds. Left unchecked, every worker
# would soon be parked in one and the rest of the mix would only ever see 503.
LONG_HOLD = ("halfopen", "slowread")


async def worker(ctx: Ctx, index: int, names: list[str], grace: float) -> None:
    cap = max(1, ctx.slots_total // 4)
    for k in range(index, index + 1_000_000):
        if ctx.remaining() <= 0:
            return
        name = names[k % len(names)]
        if name in LONG_HOLD and ctx.holding[name] >= cap:
            await asyncio.sleep(0.05)  # its turn passes; never spin without yielding
            continue
        ctx.holding[name] += 1
        try:
            await asyncio.wait_for(SCENARIOS[name](ctx), max(0.0, ctx.remaining()) + grace)
        except TimeoutError:
            ctx.record(name, "failed", why="scenario overran the run")
        except Exception as e:
            ctx.record(name, "failed", why=f"client error {type(e).__name__}: {e}"[:80])
        finally:
            ctx.holding[name] -= 1


async def progress(ctx: Ctx, probe: Probe, a: argparse.Namespace, started: float) -> None:
    tty = sys.stdout.isatty()
    every = 1.0 if tty else (30.0 if a.soak else 5.0)
    last_n, last_t = 0, started
    for _ in range(int((a.duration + a.settle) / every) + 100):
        await asyncio.sleep(every)
        now = time.monotonic()
        n, failed = ctx.totals()
        refused = sum(t.refused for t in ctx.tallies.values())
        st = probe.latest or {}
        line = (
            f"[{min(now - started, a.duration):6.1f}/{a.duration:.0f} s] "
            f"{(n - last_n) / max(now - last_t, 1e-3):5.1f} cycles/s  {n} cycles  "
            f"503 {refused}  failed {failed}  slots {st.get('slots_in_use', '?')}/"
            f"{st.get('slots_total', '?')}  mem_free {st.get('mem_free', '?')}  "
            f"poll failures {sum(probe.failures.values())}"
        )
        last_n, last_t = n, now
        if tty:
            sys.stdout.write("\r" + line.ljust(110))
            sys.stdout.flush()
        else:
            print(line, flush=True)


async def storm(a: argparse.Namespace) -> int:
    probe = Probe(a.host, a.port, a.stats_path, timeout=a.io_timeout)
    first = await probe.fetch_retry(3, 1.0)
    if first is None:
        print(f"cannot read http://{a.host}:{a.port}{a.stats_path}: {dict(probe.failures)}")
        return 2
    ctx = Ctx(
        a.host, a.port, a.ws_path, a.chat_path, time.monotonic() + a.duration,
        RateLimiter(a.rate), a.concurrency, a.io_timeout, a.hold,
        max_message=first.get("max_message", 4096), slots_total=first.get("slots_total", 4),
    )  # fmt: skip
    if a.seed is not None:
        ctx.rng.seed(a.seed)
    # First use of each endpoint allocates for good (route tables, interned
    # names); doing it before the baseline keeps that out of the leak check.
    for url in (ctx.ws_url, ctx.chat_url) * 3:
        await echo_once(ctx, url)
    heap_start, stats_start = await at_rest(ctx, probe)
    if stats_start is None:
        print("the server stopped answering /stats during warm-up")
        return 2
    print(
        f"storm: {a.url}  {a.duration:g} s  concurrency {a.concurrency}  rate {a.rate:g}/s  "
        f"scenarios {','.join(a.names)}  heap at rest {heap_start}",
        flush=True,
    )
    phases = await run_workers(ctx, probe, a)

    print(f"storm over; waiting up to {a.settle:g} s for every slot to come back", flush=True)
    probe.phase = "settle"
    settled, settle_s = await probe.settle(a.settle)
    probe.phase = "rest"
    heap_end, stats_end = await at_rest(ctx, probe, back_to=heap_start)
    phases["end"] = round(time.monotonic() - probe.t0, 3)

    keys = ("url", "duration", "concurrency", "rate", "tolerance", "settle", "io_timeout")
    config = {k: getattr(a, k) for k in keys + ("hold", "interval", "soak", "seed")}
    config["scenarios"] = a.names
    run = {
        "config": config,
        "phases": phases,
        "series": probe.series,
        "poll_failures": Counter(probe.failures),
        "broken_stats": probe.broken,
        "stats_start": stats_start,
        "stats_end": stats_end,
        "heap_start": heap_start,
        "heap_end": heap_end,
        "settled": settled,
        "settle_s": settle_s,
    }
    server = report.server_summary(run)
    verdict = report.checks(run, server, ctx.tallies, a.tolerance)
    passed = all(v[1] for v in verdict)
    print(report.render(run, server, ctx.tallies, verdict))
    a.out.mkdir(parents=True, exist_ok=True)
    report.write_json(a.out / "storm.json", run, server, ctx.tallies, verdict)
    report.write_plot(a.out / "storm.png", run, a.tolerance, passed)
    print(f"wrote {a.out / 'storm.json'} and {a.out / 'storm.png'}")
    return 0 if passed else 1


async def run_workers(ctx: Ctx, probe: Probe, a: argparse.Namespace) -> dict:
    """The storm proper, with /stats polled and progress shown; its phase times."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    ctx.deadline = started + a.duration

    def stop_early():
        # First Ctrl-C ends the storm and still reports; a second one aborts.
        ctx.deadline = time.monotonic()
        loop.remove_signal_handler(signal.SIGINT)
        print("\nstopping: finishing cycles in flight, then settling", flush=True)

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop_early)
    probe.phase = "storm"
    phases = {"storm_start": round(started - probe.t0, 3)}
    stop = asyncio.Event()
    poller = asyncio.create_task(probe.poll(stop, a.interval))
    shown = asyncio.create_task(progress(ctx, probe, a, started))
    grace = a.io_timeout * 3 + a.hold
    workers = [asyncio.create_task(worker(ctx, i, a.names, grace)) for i in range(a.concurrency)]
    _, late = await asyncio.wait(workers, timeout=a.duration + grace + 5)
    for t in late:
        t.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    phases["storm_end"] = round(time.monotonic() - probe.t0, 3)
    stop.set()
    shown.cancel()
    await asyncio.gather(poller, shown, return_exceptions=True)
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.remove_signal_handler(signal.SIGINT)
    if sys.stdout.isatty():
        print()
    if late:
        print(f"{len(late)} workers did not finish in time and were cancelled")
    return phases


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        return asyncio.run(storm(a))
    except KeyboardInterrupt:
        print("\naborted: no report written")
        return 130
