"""The sweep's rules at a fixed clock, run by MicroPython itself.

stormproof.sweep.slot_due and request_expired are pure functions of
(state, config, now): here each deadline is checked on its boundary, in its
order of precedence, and across the wrap of MicroPython's millisecond ticks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import mp_driver

DRIVER = Path(__file__).parent / "mp" / "sweep_driver.py"


@pytest.fixture(scope="module")
def mp():
    with mp_driver(DRIVER) as ask:
        # time.ticks_ms() wraps at 2**30 on an ESP32, at 2**62 on the 64-bit unix port.
        ask.period = ask({"period": 1})["period"]  # type: ignore[attr-defined]
        yield ask


def due(mp, now: int, cfg: dict | None = None, **slot) -> str:
    slot.setdefault("last_rx", 1)
    slot.setdefault("last_message", 1)
    return mp({"slot": slot, "cfg": cfg or {}, "now": now})["due"]


def test_a_fresh_connection_owes_nothing(mp):
    assert due(mp, 1) == "nothing"


def test_keepalive_ping_after_ping_interval_of_silence(mp):
    cfg = {"ping_interval": 20000}
    assert due(mp, 20001, cfg) == "nothing"  # exactly ping_interval: not yet
    assert due(mp, 20002, cfg) == "ping"
    assert due(mp, 20002, {"ping_interval": 0}) == "nothing"  # keepalive off


def test_no_second_ping_while_one_is_out(mp):
    cfg = {"ping_interval": 20000}
    assert due(mp, 25000, cfg, ping_sent=20002, pong_wait=10000) == "nothing"


def test_pong_deadline(mp):
    slot = {"ping_sent": 20002, "pong_wait": 10000}
    assert due(mp, 30002, **slot) == "nothing"
    assert due(mp, 30003, **slot) == "keepalive"
    # A probe's shorter deadline is the slot's own pong_wait.
    assert due(mp, 22003, ping_sent=20002, pong_wait=2000) == "keepalive"


def test_send_timeout_comes_first(mp):
    slot = {"tx_since": 5, "ping_sent": 5, "pong_wait": 100}
    assert due(mp, 10005, {"send_timeout": 10000}, **slot) == "keepalive"
    assert due(mp, 10006, {"send_timeout": 10000}, **slot) == "send_timeout"


def test_idle_timeout(mp):
    cfg = {"idle_timeout": 60000, "ping_interval": 0}
    assert due(mp, 60001, cfg, last_rx=60000) == "nothing"
    assert due(mp, 60002, cfg, last_rx=60000) == "idle"  # pongs and pings are no messages
    assert due(mp, 600000, {"idle_timeout": 0, "ping_interval": 0}) == "nothing"


def test_closing_connection_is_kicked_once_after_close_timeout(mp):
    closing = {"aborted": True, "closing_since": 100}
    cfg = {"close_timeout": 3000}
    assert due(mp, 3100, cfg, **closing) == "nothing"
    assert due(mp, 3101, cfg, **closing) == "kick"
    assert due(mp, 3101, cfg, close_kicked=True, **closing) == "nothing"
    # Closed by the peer's side (not open, not aborted): the same deadline.
    assert due(mp, 3101, cfg, open=False, closing_since=100) == "kick"
    # A closing slot owes no pings or timeouts of an open one.
    assert due(mp, 90000, cfg, open=False, closing_since=89000, tx_since=1) == "nothing"


def test_deadlines_hold_across_the_tick_wrap(mp):
    before_wrap = mp.period - 19950
    assert due(mp, 49, last_rx=before_wrap, last_message=before_wrap) == "nothing"
    assert due(mp, 51, last_rx=before_wrap, last_message=before_wrap) == "ping"


@pytest.mark.parametrize(
    ("pend", "now", "expired"),
    [
        ({"started": 1}, 5001, False),
        ({"started": 1}, 5002, True),
        ({"started": 1, "expired": True}, 9000, False),  # cancelled once only
        ({"started": 1, "task": False}, 9000, False),  # nobody to cancel
        ({"started": -1000}, 4000, False),  # -1000: that long before the wrap
        ({"started": -1000}, 4001, True),
    ],
)
def test_request_deadline(mp, pend, now, expired):
    pend = dict(pend, started=pend["started"] % mp.period)
    req = {"pend": pend, "cfg": {"handshake_timeout": 5000}, "now": now}
    assert mp(req)["expired"] is expired
