"""The sweep: one task that checks every deadline of every connection.

It never closes anything itself: a connection past a deadline has its
worker cancelled (abort), and the worker's close path does the rest. The
rules (slot_due, request_expired) are pure functions of (slot or request,
config, now), tested on a fixed clock; the rest applies them to a server's
tables. Each function here is plain (no coroutine but run) and keeps its
frame off the heap: an idle server allocates nothing.
"""

import asyncio
import time

import micropython
from micropython import const

from . import aio, codec

# What the sweep does for a slot (slot_due): the deadline it has passed.
_NOTHING = const(0)
_SEND_TIMEOUT = const(1)  # a send has waited send_timeout: the client stopped reading (1008)
_KEEPALIVE = const(2)  # the ping's pong is overdue: dead or half-open peer (1011)
_IDLE = const(3)  # no message for idle_timeout (1001)
_PING = const(4)  # silent for ping_interval: send a keepalive ping
_KICK = const(5)  # the closing handshake overran close_timeout: close TCP now


@micropython.native
def slot_due(slot, cfg, now):
    """What the sweep must do now for a slot holding a WebSocket: one of the
    _NOTHING.._KICK constants, the most urgent first."""
    if not slot.ws.open or slot.aborted:
        if (
            slot.closing_since
            and not slot.close_kicked
            and time.ticks_diff(now, slot.closing_since) > cfg.close_timeout
        ):
            return _KICK
        return _NOTHING
    if slot.tx_since and time.ticks_diff(now, slot.tx_since) > cfg.send_timeout:
        return _SEND_TIMEOUT
    if slot.ping_sent and time.ticks_diff(now, slot.ping_sent) > slot.pong_wait:
        return _KEEPALIVE
    if cfg.idle_timeout and time.ticks_diff(now, slot.last_message) > cfg.idle_timeout:
        return _IDLE
    if (
        cfg.ping_interval
        and not slot.ping_sent
        and time.ticks_diff(now, slot.last_rx) > cfg.ping_interval
    ):
        return _PING
    return _NOTHING


@micropython.native
def request_expired(pend, cfg, now):
    """Has a connection still reading its HTTP request run out of time?"""
    return (
        pend.task is not None
        and not pend.expired
        and time.ticks_diff(now, pend.started) > cfg.handshake_timeout
    )


@micropython.native
async def run(server):
    """The sweep task: a pass every sweep_interval, for the server's life."""
    while True:
        await asyncio.sleep_ms(server.config.sweep_interval)
        try:
            once(server, aio.now())
        except Exception as e:  # the sweep must outlive any one bad slot
            server.log.error("sweep: %r", e)
            continue
        # Fed only while the event loop (this task runs) and the accept
        # loop (its listener is open) are alive: a real hang resets a board.
        if server.watchdog is not None and server.listener is not None:
            server.watchdog.feed()


@micropython.native
def once(server, now):
    server.close_refused()
    carriers = server.carriers
    i = 0
    while i < len(carriers):
        if request_expired(carriers[i], server.config, now):
            carriers[i].expired = True
            carriers[i].task.cancel()
        i += 1
    slots = server.slots
    i = 0
    while i < len(slots):
        if slots[i].ws is not None and slots[i].task is not None:
            _apply(server, slots[i], now)
        i += 1


@micropython.native
def _apply(server, slot, now):
    cfg = server.config
    act = slot_due(slot, cfg, now)
    if act == _PING:
        ping(server, slot, now, cfg.pong_timeout)
    elif act == _KICK:
        slot.close_kicked = True
        slot.task.cancel()
    elif act == _SEND_TIMEOUT:
        abort(slot, codec.CLOSE_POLICY, "send timeout", "send_timeout")
    elif act == _KEEPALIVE:
        server.stats.pongs_missed += 1
        abort(slot, codec.CLOSE_INTERNAL_ERROR, "keepalive timeout", "keepalive")
    elif act == _IDLE:
        abort(slot, codec.CLOSE_GOING_AWAY, "idle timeout", "idle")


@micropython.native
def abort(slot, code, reason, why):
    """Close a slot's connection with `code`: its worker is cancelled and
    its close path sends the close frame and counts `why`. Once only."""
    if slot.aborted or slot.task is None:
        return
    slot.aborted = True
    slot.abort_code = code
    slot.abort_reason = reason
    slot.abort_why = why
    slot.closing_since = aio.now()
    slot.task.cancel()


@micropython.native
def ping(server, slot, now, wait):
    """A keepalive or probe ping, if the slot can take one without waiting."""
    if slot.ws.send_nowait(codec.OP_PING, b"", 0):
        slot.ping_sent = now
        slot.pong_wait = wait
        server.stats.pings_sent += 1
        return True
    return False


@micropython.native
def probe_silent(server):
    """A client was refused for want of a slot: ping every slot silent for
    probe_silence, with a pong deadline of probe_timeout, so a dead or
    half-open peer gives its slot back in seconds instead of at the next
    keepalive. A live client answers and keeps its slot; nobody is evicted
    for being busy or quiet, only for not answering."""
    cfg = server.config
    if not cfg.probe_silence:
        return
    slots = server.slots
    i = 0
    while i < len(slots):
        ws = slots[i].ws
        if ws is None or slots[i].task is None or slots[i].aborted or not ws.open:
            return  # a slot is free or on its way out: no pressure
        i += 1
    now = aio.now()
    i = 0
    while i < len(slots):
        slot = slots[i]
        if slot.ping_sent:  # a keepalive ping is out already: hold it to the probe's deadline
            if slot.pong_wait > cfg.probe_timeout:
                slot.pong_wait = cfg.probe_timeout
        elif time.ticks_diff(now, slot.last_rx) > cfg.probe_silence and ping(
            server, slot, now, cfg.probe_timeout
        ):
            server.stats.probes += 1
        i += 1
