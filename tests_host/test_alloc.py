"""Allocation as behaviour: bytes the server allocates, read from its own
counter (`mem_total` in /stats, the unix port's count of every byte ever
allocated). Counts, not timings. A board builds without the counter; there
these tests are skipped.
"""

from __future__ import annotations

import json
import time

import pytest
from wsutil import TEXT, RawWS, frame, get

SMALLEST_HEAP_FRAME = 136  # bytes: the least a call allocates when its frame goes on the heap


def report(target) -> dict:
    status, _, body = get(target, "/stats?probe=0")  # no heap probe: a report of near-constant cost
    assert status == 200, status
    rep = json.loads(body)
    if rep.get("mem_total", -1) < 0:
        pytest.skip("this server has no allocation counter (boards build without it)")
    return rep


def report_costs(target, n: int = 4) -> list[int]:
    """What back-to-back /stats?probe=0 requests allocate, each from its
    mem_total reading to the next one's. (It varies by a few dozen bytes
    with how the request's bytes arrive: one read or two, a wait or none.)"""
    totals = [report(target)["mem_total"] for _ in range(n + 1)]
    return [b - a for a, b in zip(totals, totals[1:], strict=False)]


@pytest.mark.parametrize("open_websockets", [0, 2])
def test_an_idle_server_allocates_nothing(quiet, open_websockets):
    """The sweep runs four times a second whether or not anything happens,
    over every open connection; it must allocate nothing (before, each pass
    put a 184-byte frame on the heap)."""
    held = [RawWS(quiet) for _ in range(open_websockets)]
    try:
        for ws in held:
            ws.send(frame(TEXT, b"hi"))
            assert ws.recv_message() == (TEXT, b"hi")
        costs = report_costs(quiet)
        first = report(quiet)
        time.sleep(1.5)  # the idle time being measured, not a synchronisation
        second = report(quiet)
        assert second["uptime_ms"] - first["uptime_ms"] >= 1000
        # Six sweeps at least, each allocating nothing: the difference is the
        # second report's own cost, within its jitter.
        assert second["mem_total"] - first["mem_total"] < max(costs) + SMALLEST_HEAP_FRAME, costs
    finally:
        for ws in held:
            ws.close()
