"""/live: the dashboard's one WebSocket. It echoes like /ws, and a text message
`stats` is answered with the live numbers (the /stats JSON), so an open page
needs no HTTP requests to stay current."""

from __future__ import annotations

import asyncio
import json

import websockets
from wsutil import get_stats


def live_url(t) -> str:
    return f"ws://{t.host}:{t.port}/live"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_stats_over_the_socket_are_the_stats_page(quiet):
    page = get_stats(quiet)

    async def go():
        async with websockets.connect(live_url(quiet)) as ws:
            await ws.send("stats")
            return await ws.recv()

    got = run(go())
    assert isinstance(got, str)  # a text message
    live = json.loads(got)
    assert live.keys() == page.keys()
    assert live["slots_in_use"] == 1  # the asking socket itself
    assert live["ws_opened"] == page["ws_opened"] + 1
    assert live["largest_free"] > 0  # the dashboard charts it: the probe runs


def test_a_page_asking_for_stats_makes_no_http_requests(quiet):
    async def go():
        async with websockets.connect(live_url(quiet)) as ws:
            reports = []
            for _ in range(5):
                await ws.send("stats")
                reports.append(json.loads(await ws.recv()))
            return reports

    reports = run(go())
    assert len({r["http_served"] for r in reports}) == 1, [r["http_served"] for r in reports]
    assert [r["msgs_in"] for r in reports] == list(
        range(reports[0]["msgs_in"], reports[0]["msgs_in"] + 5)
    )


def test_everything_else_is_echoed(quiet):
    messages = ["hello", "stats ", "Stats", "", b"stats", b"\x00\xff" * 100, "é" * 500]

    async def go():
        async with websockets.connect(live_url(quiet)) as ws:
            back = []
            for m in messages:
                await ws.send(m)
                back.append(await ws.recv())
            await ws.close()
            return back, ws.close_code

    back, code = run(go())
    assert back == messages
    assert code == 1000
