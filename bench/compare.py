"""`make bench`: Stormproof, microdot and a bare asyncio echo, side by side.

    .venv/bin/python -m bench.compare            # the full run (about 6 minutes)
    .venv/bin/python -m bench.compare --quick    # a one-minute smoke run

One MicroPython (the venv's unix port), one heap size at a time (110k, then
2M for reference), all three servers alive at once, measured one after the
other. What is measured is the server process: its CPU time from /proc per
reconnect cycle and per echoed message (16 B, 1 KB, 4 KB), its allocation per
cycle and per message from mem_total, and its heap before and after a storm
of reconnect cycles. Ratios are taken repetition by repetition within the
run. Writes bench/RESULTS.md, PNG charts and the raw numbers as JSON under
bench/results/compare/ (--quick: under build/bench/quick/ instead).

Needs build/unix (`make bench` builds it) and network access to PyPI for
microdot (pip, at bench time). Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import compare_report, peer, procs

ROOT = procs.ROOT
KEYS = ("stormproof", "microdot", "bare")
METRICS = ("cycle", "echo16", "echo1k", "echo4k")
SIZE = {"cycle": 16, "echo16": 16, "echo1k": 1024, "echo4k": 4096}
PAIRS = (("stormproof", "microdot"), ("stormproof", "bare"), ("microdot", "bare"))


@dataclass
class Plan:
    heaps: tuple[str, ...] = ("110k", "2M")
    reps: int = 5
    storm_cycles: int = 10_000
    storm_threads: int = 3
    storm_seconds: float = 150.0  # a storm stops here even if short of its cycles
    cpu_target_s: float = 1.5  # server CPU per sample: 150 ticks, so rounding stays ~1%
    rounds: int = 4  # a sample is taken in this many turns, interleaved with the others'
    min_msgs: int = 2000
    min_cycles: int = 1000
    max_msgs: int = 100_000
    max_cycles: int = 15_000
    sample_seconds: float = 45.0  # a sample stops here even if short of its count
    idle_seconds: float = 5.0
    budget_s: float = 900.0  # repetitions stop early if a heap's share of this is used up
    quick: bool = False


QUICK = Plan(
    reps=2,
    storm_cycles=1000,
    storm_seconds=20.0,
    cpu_target_s=0.15,
    min_msgs=300,
    min_cycles=150,
    max_msgs=6000,
    max_cycles=1500,
    sample_seconds=6.0,
    rounds=2,
    idle_seconds=1.0,
    budget_s=120.0,
    quick=True,
)


def say(msg: str) -> None:
    print(msg, flush=True)


class Dead(Exception):
    """The server process is gone."""


# ---- one sample ------------------------------------------------------------------


class Load:
    """One server under one kind of load (cycles, or echoes of one size on a
    connection kept open), measured in chunks: the server's CPU time is read
    just around each chunk and its mem_total just outside."""

    def __init__(self, server: procs.Server, metric: str):
        self.server = server
        self.echoer = None
        if metric == "cycle":
            self.step = server.cycle_fn(SIZE[metric])
            self.step()  # this client's first-use costs are not the cycle's
        else:
            self.echoer = server.echoer(SIZE[metric])
            self.echoer.run(10)
        self.total = {"n": 0, "cpu_ticks": 0, "stime_ticks": 0, "sched_ns": 0, "wall_s": 0.0}
        self.total["mem_delta"] = 0
        self.chunks = 0

    def _run(self, k: int) -> None:
        if self.echoer is not None:
            self.echoer.run(k)
        else:
            for _ in range(k):
                self.step()

    def chunk(self, n_min: int, n_max: int, cpu_s: float, seconds: float) -> bool:
        """At least n_min operations, then on until the server has used cpu_s
        of CPU (watched through schedstat, or the ticks where there is none),
        n_max operations or `seconds` have gone by, whichever comes first."""
        server, deadline = self.server, time.monotonic() + seconds
        step = 25 if self.echoer is None else 100
        m0 = server.mem_total()
        s0, (u0, k0), w0 = server.sched_ns(), server.cpu_times(), time.perf_counter()
        done = 0
        while done < n_max and time.monotonic() < deadline:
            k = min(step, n_max - done)
            self._run(k)
            done += k
            if done >= n_min:
                ns = server.sched_ns()
                used = (
                    (ns - s0) / 1e9
                    if ns is not None and s0 is not None
                    else (server.cpu_ticks() - u0 - k0) / procs.CLK_TCK
                )
                if used >= cpu_s:
                    break
        w1, (u1, k1), s1 = time.perf_counter(), server.cpu_times(), server.sched_ns()
        m1 = server.mem_total()
        tot = self.total
        tot["n"] += done
        tot["cpu_ticks"] += u1 + k1 - u0 - k0
        tot["stime_ticks"] += k1 - k0
        tot["sched_ns"] = None if s0 is None or s1 is None else tot["sched_ns"] + s1 - s0
        tot["wall_s"] += w1 - w0
        tot["mem_delta"] += m1 - m0
        self.chunks += 1
        return True

    def result(self) -> dict:
        t = self.total
        n = max(t["n"], 1)
        return {
            "n": t["n"],
            "chunks": self.chunks,
            "cpu_ticks": t["cpu_ticks"],
            "stime_ticks": t["stime_ticks"],
            "cpu_us": t["cpu_ticks"] * 1e6 / procs.CLK_TCK / n,
            "sched_us": None if t["sched_ns"] is None else t["sched_ns"] / 1e3 / n,
            "wall_us": t["wall_s"] * 1e6 / n,
            "mem_delta": t["mem_delta"],
        }

    def close(self) -> None:
        if self.echoer is not None:
            self.echoer.close()


def measure(server: procs.Server, metric: str, n: int, seconds: float) -> dict:
    """`n` cycles or echoes in one chunk."""
    load = Load(server, metric)
    try:
        load.chunk(n, n, 0.0, seconds)
    finally:
        load.close()
    return load.result()


def mem_overhead(server: procs.Server, reads: int = 13) -> dict:
    """What reading mem_total allocates by itself: differences of consecutive reads."""
    totals = [server.mem_total() for _ in range(reads)]
    deltas = [b - a for a, b in zip(totals, totals[1:], strict=False)]
    return {
        "median": statistics.median(deltas),
        "min": min(deltas),
        "max": max(deltas),
        "deltas": deltas,
    }


# ---- the storm ---------------------------------------------------------------------


def heap_readings(server: procs.Server, reads: int = 3) -> dict:
    """/stats read a few times: the largest-free-block figure moves from one
    reading to the next (each request leaves the heap a little different), so
    the median of each figure is reported and every reading kept."""
    readings = [server.stats() for _ in range(reads)]
    out: dict = {
        k: int(statistics.median(r[k] for r in readings)) for k in ("mem_free", "largest_free")
    }
    out["readings"] = [{k: r[k] for k in ("mem_free", "largest_free")} for r in readings]
    return out


def storm(server: procs.Server, plan: Plan) -> dict:
    """plan.storm_cycles reconnect cycles from plan.storm_threads clients, each
    running cycles back to back; bounded by plan.storm_seconds."""
    before = heap_readings(server)
    lock = threading.Lock()
    tally = {"ok": 0, "refused": 0, "errors": 0, "taken": 0}
    first_errors: list[str] = []
    deadline = time.monotonic() + plan.storm_seconds

    def worker() -> None:
        step = server.cycle_fn(16)
        while True:
            with lock:  # a ticket per cycle, so exactly storm_cycles complete
                if tally["taken"] >= plan.storm_cycles or tally["errors"] > 50:
                    return
                tally["taken"] += 1
            if time.monotonic() > deadline:
                return
            try:
                step()
                key = "ok"
            except peer.Refused:
                key = "refused"  # a 503 while every slot is busy: expected, not an error
            except (OSError, ValueError, EOFError) as e:
                key = "errors"
                if len(first_errors) < 5:
                    first_errors.append(f"{type(e).__name__}: {e}")
                if not server.alive():
                    with lock:
                        tally["errors"] += 1000  # stop every worker
                    return
            with lock:
                tally[key] += 1
                if key != "ok":
                    tally["taken"] -= 1  # that cycle did not happen: try again

    s0, t0, w0 = server.sched_ns(), server.cpu_ticks(), time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(plan.storm_threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    w1, t1, s1 = time.perf_counter(), server.cpu_ticks(), server.sched_ns()
    if not server.alive():
        raise Dead(f"died during the storm ({tally}, {first_errors})")
    time.sleep(0.3)  # the last closes finish before the heap is looked at
    after = heap_readings(server)
    ok = max(tally["ok"], 1)
    return {
        "cycles": tally["ok"],
        "refused": tally["refused"],
        "errors": min(tally["errors"], 1000),
        "first_errors": first_errors,
        "threads": plan.storm_threads,
        "seconds": round(w1 - w0, 2),
        "timed_out": tally["ok"] < plan.storm_cycles,
        "cpu_us_per_cycle": (t1 - t0) * 1e6 / procs.CLK_TCK / ok,
        "sched_us_per_cycle": None if s0 is None or s1 is None else (s1 - s0) / 1e3 / ok,
        "before": before,
        "after": after,
    }


# ---- one heap size -----------------------------------------------------------------


def run_heap(heap: str, plan: Plan, dirs: dict[str, Path]) -> dict:
    say(f"\n== heap {heap} ==")
    heap_deadline = time.monotonic() + plan.budget_s / len(plan.heaps)
    reps_done = 0
    servers: dict[str, procs.Server] = {}
    info: dict[str, dict] = {k: {"status": "ok"} for k in KEYS}
    samples: list[dict] = []

    def fail(key: str, why: str) -> None:
        s = servers.pop(key, None)
        tail = s.tail() if s is not None else ""
        info[key]["status"] = why
        info[key]["log_tail"] = tail
        say(f"   {key}: {why}" + (f"\n{tail}" if tail else ""))
        if s is not None:
            s.stop()

    def guarded(key: str, what: str, fn):
        """Run fn(server); a dead server is dropped from the rest of the run."""
        s = servers.get(key)
        if s is None:
            return None
        try:
            return fn(s)
        except Dead as e:
            fail(key, f"failed: {e}")
        except (OSError, ValueError, EOFError, RuntimeError) as e:
            if not s.alive():
                fail(key, f"died during {what}: {type(e).__name__}: {e}")
            else:
                info[key].setdefault("errors", []).append(f"{what}: {type(e).__name__}: {e}")
                say(f"   {key}: {what}: {type(e).__name__}: {e}")
        return None

    try:
        for key in KEYS:
            try:
                s = procs.start(key, heap, dirs)
                servers[key] = s
                s.wait_ready()
                say(f"   {s.label}: pid {s.pid}, port {s.port}")
            except (OSError, RuntimeError) as e:
                fail(key, f"could not start: {e}")

        def warm(s: procs.Server) -> dict:
            step = s.cycle_fn(16)
            for _ in range(20):
                step()
            for size in (16, 1024, 4096):
                e = s.echoer(size)
                e.run(20)
                e.close()
            return s.stats()

        for key in KEYS:
            info[key]["warm"] = guarded(key, "warm-up", warm)

        for key in KEYS:
            if key in servers:
                say(f"   storm: {plan.storm_cycles} cycles against {key} ...")
            r = guarded(key, "storm", lambda s: storm(s, plan))
            if r is not None:
                info[key]["storm"] = r
                b, a = r["before"], r["after"]
                say(
                    f"     {r['cycles']} cycles in {r['seconds']} s, refused {r['refused']},"
                    f" errors {r['errors']}; free {b['mem_free']} -> {a['mem_free']},"
                    f" largest {b['largest_free']} -> {a['largest_free']}"
                )

        for key in KEYS:
            info[key]["mem_overhead"] = guarded(key, "mem_total calibration", mem_overhead)

        # Idle cost, all at once (Stormproof's sweep task wakes every 250 ms).
        t0 = {k: (s.mem_total(), s.cpu_ticks(), s.sched_ns()) for k, s in servers.items()}
        time.sleep(plan.idle_seconds)
        for k, s in list(servers.items()):
            ticks, ns, m1 = s.cpu_ticks(), s.sched_ns(), s.mem_total()
            m0, ticks0, ns0 = t0[k]
            ov = info[k]["mem_overhead"] or {"median": 0, "min": 0, "max": 0}
            info[k]["idle"] = {
                "seconds": plan.idle_seconds,
                "cpu_us_per_s": (ticks - ticks0) * 1e6 / procs.CLK_TCK / plan.idle_seconds,
                "sched_us_per_s": None
                if ns is None or ns0 is None
                else (ns - ns0) / 1e3 / plan.idle_seconds,
                "alloc_B_per_s": (m1 - m0 - ov["median"]) / plan.idle_seconds,
                "alloc_pm_B_per_s": (ov["max"] - ov["min"]) / 2 / plan.idle_seconds,
            }

        for key in KEYS:  # every kind of load once before anything is counted
            for metric in METRICS:
                n = 30 if metric == "cycle" else 200
                guarded(key, f"warm-up {metric}", lambda s, m=metric, n=n: measure(s, m, n, 30))

        rep_seconds = 0.0
        for rep in range(plan.reps):
            if time.monotonic() + rep_seconds > heap_deadline:
                say(f"   time budget used: stopping after {rep} repetitions")
                break
            rep_started = time.monotonic()
            for metric in METRICS:
                # The three servers take turns in short rounds, so a change in the
                # machine's speed (a shared VM's is not steady) falls on all three.
                loads: dict[str, Load] = {}
                for key in KEYS:
                    load = guarded(key, f"rep {rep} {metric}", lambda s, m=metric: Load(s, m))
                    if load is not None:
                        loads[key] = load
                lo, hi = (
                    (plan.min_cycles, plan.max_cycles)
                    if metric == "cycle"
                    else (plan.min_msgs, plan.max_msgs)
                )
                for rnd in range(plan.rounds):
                    shift = (rep + rnd) % len(KEYS)  # no server always goes first
                    for key in KEYS[shift:] + KEYS[:shift]:
                        if key not in loads or key not in servers:
                            continue
                        chunk = functools.partial(
                            loads[key].chunk,
                            math.ceil(lo / plan.rounds),
                            math.ceil(hi / plan.rounds),
                            plan.cpu_target_s / plan.rounds,
                            plan.sample_seconds / plan.rounds,
                        )
                        ok = guarded(key, f"rep {rep} {metric}", lambda s, c=chunk: c())
                        if not ok:  # this repetition has no figure for it
                            with contextlib.suppress(OSError, ValueError, EOFError):
                                loads.pop(key).close()
                for key, load in loads.items():
                    guarded(key, f"rep {rep} {metric} close", lambda s, lo=load: lo.close())
                    r = load.result()
                    if r["n"]:
                        r.update({"rep": rep, "server": key, "metric": metric})
                        samples.append(r)
            line = "  ".join(
                k
                + " "
                + "/".join(
                    f"{s['cpu_us']:.0f}" for s in samples if s["rep"] == rep and s["server"] == k
                )
                for k in KEYS
            )
            say(f"   rep {rep + 1}/{plan.reps} µs per cycle/16B/1K/4K  {line}")
            rep_seconds = time.monotonic() - rep_started
            reps_done = rep + 1

        # The cost of a reading, once more now that the heap has been worked.
        for key in KEYS:
            again = guarded(key, "mem_total calibration", mem_overhead)
            first = info[key]["mem_overhead"]
            if first and again:
                deltas = first["deltas"] + again["deltas"]
                info[key]["mem_overhead"] = {
                    "median": statistics.median(deltas),
                    "min": min(deltas),
                    "max": max(deltas),
                    "deltas": deltas,
                }
        for r in samples:
            ov = info[r["server"]]["mem_overhead"] or {"median": 0, "min": 0, "max": 0}
            r["alloc_B"] = (r["mem_delta"] - r["chunks"] * ov["median"]) / r["n"]
            # Worst case: every reading off by half the spread its cost showed.
            r["alloc_pm_B"] = r["chunks"] * (ov["max"] - ov["min"]) / 2 / r["n"]

        for key in KEYS:
            info[key]["end"] = guarded(key, "final /stats", lambda s: s.stats())
            if key in servers and not servers[key].alive():
                fail(key, "died")
        for key, s in servers.items():
            said = [ln for ln in s.tail(200).splitlines() if "Traceback" in ln or "[E]" in ln]
            if said:
                info[key]["log_errors"] = said[-10:]
    finally:
        for s in servers.values():
            s.stop()

    return {
        "heap": heap,
        "reps_done": reps_done,
        "servers": info,
        "samples": samples,
        "socket_layer": procs.socket_layer(heap),
        **summarize(samples),
    }


# ---- numbers --------------------------------------------------------------------


def summarize(samples: list[dict]) -> dict:
    summary: dict[str, dict] = {}
    for key in KEYS:
        for metric in METRICS:
            rows = [s for s in samples if s["server"] == key and s["metric"] == metric]
            if not rows:
                continue
            cpu = [r["cpu_us"] for r in rows]
            alloc = [r["alloc_B"] for r in rows]
            sched = [r["sched_us"] for r in rows if r["sched_us"] is not None]
            summary.setdefault(key, {})[metric] = {
                "reps": len(rows),
                "n": statistics.median(r["n"] for r in rows),
                "cpu_us": statistics.median(cpu),
                "cpu_us_min": min(cpu),
                "cpu_us_max": max(cpu),
                "sched_us": statistics.median(sched) if sched else None,
                "kernel_share": sum(r["stime_ticks"] for r in rows)
                / max(1, sum(r["cpu_ticks"] for r in rows)),
                "wall_us": statistics.median(r["wall_us"] for r in rows),
                "alloc_B": statistics.median(alloc),
                "alloc_B_min": min(alloc),
                "alloc_B_max": max(alloc),
                "alloc_pm_B": statistics.median(r["alloc_pm_B"] for r in rows),
            }
    ratios: dict[str, dict] = {}
    for a, b in PAIRS:
        for metric in METRICS:
            per_rep = []
            for rep in sorted({s["rep"] for s in samples}):
                x = [s for s in samples if (s["rep"], s["metric"], s["server"]) == (rep, metric, a)]
                y = [s for s in samples if (s["rep"], s["metric"], s["server"]) == (rep, metric, b)]
                if x and y and y[0]["cpu_us"] > 0:
                    per_rep.append(x[0]["cpu_us"] / y[0]["cpu_us"])
            if per_rep:
                ratios.setdefault(f"{a}/{b}", {})[metric] = {
                    "median": statistics.median(per_rep),
                    "min": min(per_rep),
                    "max": max(per_rep),
                    "per_rep": per_rep,
                }
    return {"summary": summary, "ratios": ratios}


def tick_check(samples: list[dict]) -> dict:
    """How well utime+stime (ticks) and schedstat (ns) agree, sample by sample."""
    diffs = [
        abs(s["cpu_us"] / s["sched_us"] - 1)
        for s in samples
        if s.get("sched_us") and s["cpu_us"] > 0
    ]
    ticks = [s["cpu_ticks"] for s in samples]
    return {
        "samples": len(samples),
        "min_ticks_per_sample": min(ticks) if ticks else None,
        "median_ticks_per_sample": statistics.median(ticks) if ticks else None,
        "median_ticks_vs_schedstat": statistics.median(diffs) if diffs else None,
        "max_ticks_vs_schedstat": max(diffs) if diffs else None,
    }


# ---- main -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    ap.add_argument("--heaps", help="comma-separated -X heapsize values (default 110k,2M)")
    ap.add_argument("--reps", type=int, help="repetitions per measurement")
    ap.add_argument("--storm", type=int, help="reconnect cycles in the storm")
    ap.add_argument("--out-md", help="where RESULTS.md goes")
    ap.add_argument("--out-dir", help="where the JSON and PNGs go")
    args = ap.parse_args(argv)

    plan = QUICK if args.quick else Plan()
    if args.heaps:
        plan.heaps = tuple(h.strip() for h in args.heaps.split(",") if h.strip())
    if args.reps:
        plan.reps = args.reps
    if args.storm:
        plan.storm_cycles = args.storm
    if args.quick:
        base = procs.WORK / "quick"
        out_md = Path(args.out_md or base / "RESULTS.md")
        out_dir = Path(args.out_dir or base / "results")
    else:
        out_md = Path(args.out_md or ROOT / "bench" / "RESULTS.md")
        out_dir = Path(args.out_dir or ROOT / "bench" / "results" / "compare")

    if not (procs.STORMPROOF_DIR / "main.py").exists():
        say("build/unix is missing: run 'make bench' (it compiles lib/ first)")
        return 2
    started = time.time()
    say("preparing: microdot from PyPI, compiled with mpy-cross -march=x64 ...")
    microdot = procs.prepare_microdot()
    bare = procs.prepare_bare()
    say(f"   microdot {microdot['version']} in {microdot['dir']}")
    dirs = {
        "stormproof": procs.STORMPROOF_DIR,
        "microdot": Path(microdot["dir"]),
        "bare": Path(bare["dir"]),
    }
    env = compare_report.environment(microdot)
    runs = [run_heap(heap, plan, dirs) for heap in plan.heaps]
    elapsed = time.time() - started
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": compare_report.command_line(argv),
        "elapsed_s": round(elapsed, 1),
        "plan": asdict(plan),
        "environment": env,
        "tick_check": tick_check([s for r in runs for s in r["samples"]]),
        "runs": runs,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "compare.json"
    json_path.write_text(json.dumps(record, indent=1) + "\n")
    charts = compare_report.charts(record, out_dir)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(compare_report.markdown(record, out_md, json_path, charts))
    say(f"\n{compare_report.console_summary(record)}")
    say(f"wrote {out_md}, {json_path} and {len(charts)} charts ({elapsed:.0f} s in all)")
    failed = [
        f"{r['heap']}: {k}"
        for r in runs
        for k, v in r["servers"].items()
        if k == "stormproof" and v["status"] != "ok"
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
