"""The verdict: summary table on stdout, pass/fail checks, a PNG and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from .core import Tally

LATENCY_NOTE = (
    "latency: connect to echo (reload, backoff, slowread), to 101 (burst, halfopen, abrupt "
    "mid-frame), to TCP connect (abrupt mid-handshake), to the close frame (hostile)"
)


def delta(before: dict, after: dict, key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def dict_delta(before: dict, after: dict, key: str) -> dict:
    b, a = before.get(key, {}), after.get(key, {})
    return {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0)}


def server_summary(run: dict) -> dict:
    """Deltas of the server's counters between the start and the end at rest."""
    before, after = run["stats_start"], run["stats_end"] or {}
    frees = [s["mem_free"] for s in run["series"] if s.get("mem_free") is not None]
    largest = [s["largest_free"] for s in run["series"] if s.get("largest_free") is not None]
    out = {"reachable_at_end": bool(after)}
    if after:
        for k in ("accepted", "closed", "ws_opened", "ws_closed", "memory_errors", "send_drops"):
            out[k] = delta(before, after, k)
        for k in ("pings_sent", "pongs_missed", "msgs_in", "msgs_out", "handler_errors"):
            out[k] = delta(before, after, k)
        out["refused"] = {
            r: delta(before, after, "refused_" + r) for r in ("full", "busy", "bad", "timeout")
        }
        out["close_codes"] = dict_delta(before, after, "close_codes")
        out["close_reasons"] = dict_delta(before, after, "close_reasons")
        out["books_balance"] = after["accepted"] == after["closed"] + after["sockets_open"]
        out["slots_peak"] = after.get("slots_peak")
    out["mem_free"] = {"start": run["heap_start"][0], "end": run["heap_end"][0]}
    out["largest_free"] = {"start": run["heap_start"][1], "end": run["heap_end"][1]}
    out["mem_free"]["min"] = min(frees, default=None)
    out["largest_free"]["min"] = min(largest, default=None)
    out["slots_back_to_0"] = run["settled"]
    out["settle_s"] = round(run["settle_s"], 2)
    return out


def checks(run: dict, server: dict, tallies: dict[str, Tally], tolerance: int) -> list[tuple]:
    """(name, passed, detail) for every pass/fail condition of the run."""
    alive = server["reachable_at_end"]
    out = [("server alive at the end", alive, "/stats " + ("answered" if alive else "unreachable"))]
    if server["reachable_at_end"]:
        out.append(
            ("no memory errors", server["memory_errors"] == 0, f"+{server['memory_errors']}")
        )
        out.append(("slots back to 0", server["slots_back_to_0"], f"within {server['settle_s']} s"))
        start, end = server["mem_free"]["start"], server["mem_free"]["end"]
        ok = start is not None and end is not None and end >= start - tolerance
        out.append(("free heap kept", ok, f"{start} -> {end} (tolerance {tolerance})"))
    failed = {n: t.failed for n, t in tallies.items() if t.failed}
    out.append(("no unexpected failures", not failed, str(failed or "none")))
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def table(tallies: dict[str, Tally]) -> str:
    rows = [("scenario", "attempts", "ok", "503", "failed", "p50 ms", "p99 ms")]
    for name, t in tallies.items():
        p50, p99 = t.percentile(0.5), t.percentile(0.99)
        rows.append((name, t.attempts, t.ok, t.refused, t.failed, _ms(p50), _ms(p99)))
    tot = [sum(getattr(t, k) for t in tallies.values()) for k in ("attempts", "ok", "refused")]
    rows.append(("total", *tot, sum(t.failed for t in tallies.values()), "", ""))
    return "\n".join(f"  {r[0]:<10}" + "".join(f"{str(c):>9}" for c in r[1:]) for r in rows)


def render(run: dict, server: dict, tallies: dict[str, Tally], verdict: list[tuple]) -> str:
    cfg = run["config"]
    lines = ["", f"Storm against {cfg['url']}: {cfg['duration']:g} s, "
             f"concurrency {cfg['concurrency']}, rate {cfg['rate']:g}/s",
             "", table(tallies), "  " + LATENCY_NOTE]  # fmt: skip
    for name, t in tallies.items():
        for why, n in t.reasons.most_common(5):
            lines.append(f"  ! {name}: {n} x {why}")
        for why, n in t.notes.most_common(3):
            lines.append(f"  . {name}: {n} x {why}")
    lines += ["", "Server (/stats, start -> end at rest):"]
    if server["reachable_at_end"]:
        lines.append(
            f"  accepted +{server['accepted']}  closed +{server['closed']}  "
            f"ws_opened +{server['ws_opened']}  ws_closed +{server['ws_closed']}  "
            f"books balance: {'yes' if server['books_balance'] else 'NO'}"
        )
        lines.append("  refused   " + "  ".join(f"{k} +{v}" for k, v in server["refused"].items()))
        lines.append("  close codes    " + _kv(server["close_codes"]))
        lines.append("  close reasons  " + _kv(server["close_reasons"]))
        lines.append(
            f"  memory_errors +{server['memory_errors']}  send_drops +{server['send_drops']}  "
            f"pings_sent +{server['pings_sent']}  pongs_missed +{server['pongs_missed']}  "
            f"handler_errors +{server['handler_errors']}  slots_peak {server['slots_peak']}"
        )
    for k in ("mem_free", "largest_free"):
        m = server[k]
        lines.append(f"  {k:<13} start {m['start']}  end {m['end']}  min {m['min']}")
    lines.append(
        f"  slots back to 0: {'yes' if server['slots_back_to_0'] else 'NO'}"
        f" (after {server['settle_s']} s)"
    )
    pf = run["poll_failures"]
    lines.append(f"  /stats polls: {len(run['series'])} ok, {sum(pf.values())} failed {_kv(pf)}")
    for b in run["broken_stats"][:3]:
        lines.append(
            f"  ! /stats at {b['t']} s ended after {b['bytes']} bytes: ...{b['tail'][-60:]!r}"
        )
    lines += ["", "Checks:"]
    lines += [f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}" for name, ok, detail in verdict]
    lines.append("RESULT: " + ("PASS" if all(v[1] for v in verdict) else "FAIL"))
    return "\n".join(lines)


def _kv(d: dict) -> str:
    return "  ".join(f"{k}: {v}" for k, v in d.items()) or "-"


def write_json(path: Path, run: dict, server: dict, tallies: dict, verdict: list) -> None:
    doc = {
        "config": run["config"],
        "phases": run["phases"],
        "scenarios": {n: t.as_dict() for n, t in tallies.items()},
        "server": server,
        "checks": [{"name": n, "passed": ok, "detail": d} for n, ok, d in verdict],
        "passed": all(v[1] for v in verdict),
        "poll_failures": dict(run["poll_failures"]),
        "broken_stats": run["broken_stats"],
        "stats_start": run["stats_start"],
        "stats_end": run["stats_end"],
        "series": run["series"],
    }
    path.write_text(json.dumps(doc, indent=1))


def write_plot(path: Path, run: dict, tolerance: int, passed: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a CI box or over SSH
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    s = [p for p in run["series"] if p.get("mem_free") is not None]
    t = [p["t"] for p in s]
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 6.5), gridspec_kw={"height_ratios": [2, 1]}
    )
    top.plot(t, [p["mem_free"] for p in s], label="mem_free", color="tab:blue")
    top.plot(t, [p["largest_free"] for p in s], label="largest_free", color="tab:orange")
    start = run["heap_start"][0]
    if start is not None:
        top.axhline(
            start - tolerance, ls="--", lw=1, color="grey", label="start mem_free - tolerance"
        )
    # Where the server hit MemoryError, and where /stats itself broke off.
    errs = [
        b["t"] for a, b in zip(s, s[1:], strict=False) if b["memory_errors"] > a["memory_errors"]
    ]
    for i, x in enumerate(errs):
        top.axvline(x, color="red", lw=1, label="memory_errors rose" if i == 0 else None)
    broken = [b["t"] for b in run["broken_stats"]]
    if broken:
        top.plot(broken, [0] * len(broken), "rx", ms=9, clip_on=False, label="/stats broke off")
    top.set_ylabel("bytes")
    top.set_ylim(bottom=0)
    bottom.step(t, [p["slots_in_use"] for p in s], where="post", label="slots_in_use")
    bottom.step(t, [p["sockets_open"] for p in s], where="post", lw=0.8, label="sockets_open")
    total = run["stats_start"].get("slots_total")
    if total:
        bottom.axhline(total, ls=":", color="grey", label="slots_total")
    bottom.set_ylabel("count")
    bottom.set_xlabel("seconds")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, bottom):
        ax.axvspan(run["phases"]["storm_start"], run["phases"]["storm_end"], color="tab:red",
                   alpha=0.06, label="storm" if ax is top else None)  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    cfg = run["config"]
    fig.suptitle(
        f"Stormproof storm {cfg['url']}  {cfg['duration']:g} s, concurrency {cfg['concurrency']}, "
        f"rate {cfg['rate']:g}/s: {'PASS' if passed else 'FAIL'}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
