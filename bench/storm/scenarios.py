"""The client behaviours a storm is made of; each coroutine is one cycle and
records its outcome in the context's tallies.

Well-behaved clients use `websockets`; the ones that break rules on purpose
(abrupt, halfopen, slowread's silent member, hostile) use raw streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .core import Ctx
from .wire import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    TEXT,
    close_payload,
    expect_close,
    frame,
    hang_up,
    open_stream,
    read_head,
    upgrade_request,
    wait_eof,
)


def describe(e: BaseException) -> str:
    if isinstance(e, InvalidStatus):
        return f"HTTP {e.response.status_code}"
    text = str(e).split(";")[0][:60]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def ws_connect(ctx: Ctx, url: str):
    # No proxy from the environment, no compression the server would refuse
    # anyway, no client pings: the server's keepalive is what is under test.
    return connect(
        url,
        open_timeout=ctx.io_timeout,
        close_timeout=ctx.io_timeout,
        ping_interval=None,
        compression=None,
        proxy=None,
        max_size=ctx.max_message,
    )


def refused_or_failed(ctx: Ctx, name: str, e: BaseException) -> None:
    if isinstance(e, InvalidStatus) and e.response.status_code == 503:
        ctx.record(name, "refused")
    else:
        ctx.record(name, "failed", why=describe(e))


def record_status(ctx: Ctx, name: str, status: int) -> None:
    """An upgrade answered with something else than 101: a 503 is admission
    control doing its job, anything else a failure."""
    ctx.record(name, "refused" if status == 503 else "failed", why=f"HTTP {status}")


async def raw_upgrade(ctx: Ctx, path: str, rcvbuf: int = 0):
    """(status, headers, reader, writer) of a raw handshake; the caller hangs up."""
    reader, writer = await open_stream(ctx.host, ctx.port, ctx.io_timeout, rcvbuf)
    try:
        writer.write(upgrade_request(ctx.host, ctx.port, path))
        await writer.drain()
        status, headers = await read_head(reader, ctx.io_timeout)
    except BaseException:
        hang_up(writer, reset=False)
        raise
    return status, headers, reader, writer


async def reload(ctx: Ctx) -> None:
    """A browser reload: connect, handshake, echo one message, close cleanly."""
    if not await ctx.limiter.take(ctx.deadline):
        return
    n = ctx.rng.randrange(1, 513)
    msg = "r" * n if ctx.rng.random() < 0.5 else os.urandom(n)
    t0 = time.monotonic()
    try:
        async with ws_connect(ctx, ctx.ws_url) as ws:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), ctx.io_timeout)
            if got == msg:
                ctx.record("reload", "ok", t0)
            else:
                ctx.record("reload", "failed", why="echo differs")
    except Exception as e:
        refused_or_failed(ctx, "reload", e)


async def burst(ctx: Ctx) -> None:
    """Three times the workers' count at once: some 101, the rest 503, then all close."""

    async def one():
        t0 = time.monotonic()
        try:
            ws = await ws_connect(ctx, ctx.ws_url)
        except Exception as e:
            refused_or_failed(ctx, "burst", e)
            return None
        ctx.record("burst", "ok", t0)
        return ws

    tasks = []
    try:
        for _ in range(ctx.concurrency * 3):
            if not await ctx.limiter.take(ctx.deadline):
                break
            tasks.append(asyncio.create_task(one()))
        opened = [ws for ws in await asyncio.gather(*tasks) if ws is not None]
        if len(opened) > ctx.slots_total:
            ctx.tally("burst").notes[f"{len(opened)} admitted at once > slots_total"] += 1
    finally:
        for t in tasks:
            t.cancel()
        done = [t.result() for t in tasks if t.done() and not t.cancelled() and t.result()]
        await asyncio.gather(*(ws.close() for ws in done), return_exceptions=True)


async def backoff(ctx: Ctx) -> None:
    """A page that reconnects politely: honours Retry-After on 503 (plus jitter),
    backs off exponentially on errors, and gives up when the run ends."""
    delay = 0.25
    for _ in range(20):
        if not await ctx.limiter.take(ctx.deadline):
            return
        t0 = time.monotonic()
        try:
            async with ws_connect(ctx, ctx.ws_url) as ws:
                for i in range(3):
                    await ws.send(f"backoff {i}")
                    if await asyncio.wait_for(ws.recv(), ctx.io_timeout) != f"backoff {i}":
                        ctx.record("backoff", "failed", why="echo differs")
                        return
            ctx.record("backoff", "ok", t0)
            return
        except InvalidStatus as e:
            refused_or_failed(ctx, "backoff", e)
            if e.response.status_code != 503:
                return
            ra = e.response.headers.get("Retry-After", "")
            wait = (int(ra) if ra.isdigit() else 5) * ctx.rng.uniform(1.0, 1.25)
        except Exception as e:
            ctx.record("backoff", "failed", why=describe(e))
            wait = delay * ctx.rng.uniform(0.5, 1.0)
            delay = min(delay * 2, 8.0)
        if wait >= ctx.remaining():
            ctx.tally("backoff").notes["gave up: retry would fall after the run"] += 1
            return
        await asyncio.sleep(wait)


async def abrupt(ctx: Ctx) -> None:
    """Vanish mid-handshake or mid-frame, by RST or by FIN."""
    if not await ctx.limiter.take(ctx.deadline):
        return
    mid_frame = ctx.rng.random() < 0.5
    reset = ctx.rng.random() < 0.5
    t0 = time.monotonic()
    try:
        if mid_frame:
            status, _, _, writer = await raw_upgrade(ctx, ctx.ws_path)
            if status != 101:
                hang_up(writer, reset=False)
                return record_status(ctx, "abrupt", status)
            data = frame(BINARY, os.urandom(ctx.rng.randrange(2, 600)))
            cut = data[: ctx.rng.randrange(1, len(data))]
        else:
            _, writer = await open_stream(ctx.host, ctx.port, ctx.io_timeout)
            req = upgrade_request(ctx.host, ctx.port, ctx.ws_path)
            cut = req[: ctx.rng.randrange(len(req))]
    except Exception as e:
        return ctx.record("abrupt", "failed", why=describe(e))
    try:
        writer.write(cut)
        await writer.drain()
        await asyncio.sleep(ctx.rng.uniform(0, 0.1))  # let the server start on it
    except (ConnectionError, OSError):
        ctx.tally("abrupt").resets += 1  # the server gave up on us first: fine here
    finally:
        hang_up(writer, reset)
    ctx.record("abrupt", "ok", t0)


async def halfopen(ctx: Ctx) -> None:
    """Handshake, then silence: never read, never answer a ping; then vanish."""
    if not await ctx.limiter.take(ctx.deadline):
        return
    t0 = time.monotonic()
    try:
        status, _, _, writer = await raw_upgrade(ctx, ctx.ws_path)
    except Exception as e:
        return ctx.record("halfopen", "failed", why=describe(e))
    try:
        if status != 101:
            return record_status(ctx, "halfopen", status)
        writer.transport.pause_reading()  # really silent: let the kernel buffers fill
        ctx.record("halfopen", "ok", t0)
        await asyncio.sleep(max(0.0, min(ctx.rng.uniform(ctx.hold / 2, ctx.hold), ctx.remaining())))
    finally:
        hang_up(writer, reset=True)


async def slowread(ctx: Ctx) -> None:
    """One /chat member stops reading while another broadcasts to the room."""
    if not await ctx.limiter.take(ctx.deadline):
        return
    t0 = time.monotonic()
    try:
        status, _, _, slow = await raw_upgrade(ctx, ctx.chat_path, rcvbuf=4096)
    except Exception as e:
        return ctx.record("slowread", "failed", why=describe(e))
    try:
        if status != 101:
            return record_status(ctx, "slowread", status)
        slow.transport.pause_reading()
        if not await ctx.limiter.take(ctx.deadline):
            return
        await broadcast_while_one_stalls(ctx, t0)
    except Exception as e:
        refused_or_failed(ctx, "slowread", e)
    finally:
        hang_up(slow, reset=False)


async def broadcast_while_one_stalls(ctx: Ctx, t0: float) -> None:
    tag = f"s{os.urandom(4).hex()} "
    body = tag + "b" * 200  # well under broadcast_max (tx_size - 10)
    got = 0
    first = -1.0

    async def listen(ws):
        nonlocal got, first
        async for m in ws:
            if isinstance(m, str) and m.startswith(tag):
                got += 1
                first = first if first >= 0 else time.monotonic() - t0

    async with ws_connect(ctx, ctx.chat_url) as ws:
        listener = asyncio.create_task(listen(ws))
        sent = 0
        end = time.monotonic() + max(0.5, min(ctx.hold, ctx.remaining()))
        while time.monotonic() < end and sent < 200:
            await ws.send(body)
            sent += 1
            await asyncio.sleep(0.05)
        # Broadcast never waits for anyone, the sender included: give its own
        # copies a moment to arrive, bounded.
        for _ in range(40):
            if got >= sent or listener.done():
                break
            await asyncio.sleep(0.05)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
    if got == 0:
        ctx.record("slowread", "failed", why="sender got none of its own broadcasts")
        return
    if got < sent:
        ctx.tally("slowread").notes["sender missed some of its own broadcasts"] += 1
    ctx.record("slowread", "ok", latency=first)


def hostile_cases(max_message: int) -> list[tuple[str, bytes, int]]:
    over = bytes([0x82, 0xFE]) + (max_message + 1).to_bytes(2, "big") + b"mask"
    if max_message + 1 >= 65536:
        over = bytes([0x82, 0xFF]) + (max_message + 1).to_bytes(8, "big") + b"mask"
    return [
        ("unmasked", frame(TEXT, b"hi", masked=False), 1002),
        ("rsv1", frame(TEXT, b"hi", rsv=1), 1002),
        ("rsv3", frame(BINARY, b"hi", rsv=4), 1002),
        ("opcode3", frame(3), 1002),
        ("ping126", frame(PING, b"x" * 126), 1002),
        ("fragmented_ping", frame(PING, b"x", fin=False), 1002),
        ("orphan_continuation", frame(CONT, b"x"), 1002),
        ("bad_utf8", frame(TEXT, b"\xce\xba\xed\xa0\x80edited"), 1007),
        ("bad_utf8_fragment", frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xff"), 1007),
        ("close_code_999", frame(CLOSE, close_payload(999)), 1002),
        ("close_code_1005", frame(CLOSE, close_payload(1005)), 1002),
        ("close_one_byte", frame(CLOSE, b"\x03"), 1002),
        ("close_reason_latin1", frame(CLOSE, close_payload(1000, b"\xe9t\xe9")), 1007),
        ("over_max_message", over, 1009),
        ("huge_length", bytes([0x82, 0xFF]) + (1 << 62).to_bytes(8, "big") + b"mask", 1009),
    ]


async def hostile(ctx: Ctx) -> None:
    """A bad frame; the server must answer with the exact close code, then close TCP."""
    if not await ctx.limiter.take(ctx.deadline):
        return
    name, data, want = ctx.rng.choice(hostile_cases(ctx.max_message))
    t0 = time.monotonic()
    try:
        status, _, reader, writer = await raw_upgrade(ctx, ctx.ws_path)
    except Exception as e:
        return ctx.record("hostile", "failed", why=describe(e))
    try:
        if status != 101:
            return record_status(ctx, "hostile", status)
        writer.write(data)
        await writer.drain()
        code = await expect_close(reader, ctx.io_timeout)
        if code != want:
            return ctx.record("hostile", "failed", why=f"{name}: close {code}, want {want}")
        t_close = time.monotonic() - t0
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(frame(CLOSE, close_payload(want)))
            await writer.drain()
        if not await wait_eof(reader, ctx.io_timeout):
            return ctx.record("hostile", "failed", why=f"{name}: TCP left open after close")
        ctx.record("hostile", "ok", latency=t_close)
    except Exception as e:
        ctx.record("hostile", "failed", why=f"{name}: {describe(e)}")
    finally:
        hang_up(writer, reset=False)


SCENARIOS = {
    "reload": reload,
    "burst": burst,
    "backoff": backoff,
    "abrupt": abrupt,
    "halfopen": halfopen,
    "slowread": slowread,
    "hostile": hostile,
}
