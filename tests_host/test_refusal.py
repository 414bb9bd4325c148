"""What a client is told when every WebSocket slot is busy.

A script or device gets a 503 with Retry-After (test_storm.py checks it). A browser cannot read the
status of a refused handshake (the page sees close code 1006, the same as a
network failure), so a request with an Origin header is answered 101 and
closed at once with 1013 and the delay in the close reason: the page can
wait exactly that long. Neither takes a slot.
"""

from __future__ import annotations

import asyncio
import re
import struct

import pytest
import websockets
from conftest import settle
from wsutil import (
    CLOSE,
    Holder,
    RawWS,
    accept_for,
    close_payload,
    connect,
    frame,
    get_stats,
    http,
    new_key,
    parse_response,
    read_head,
    recv_until_closed,
    upgrade_request,
)


def origin_of(t) -> str:
    return f"Origin: http://{t.host}:{t.port}\r\n"


def read_exactly(s, n: int, buf: bytes) -> bytes:
    while len(buf) < n:
        chunk = s.recv(4096)
        assert chunk, f"closed early after {buf!r}"
        buf += chunk
    return buf


def browser_refusal(t) -> tuple[int, str, bytes]:
    """Knock as a browser would; (close code, close reason, what followed
    our own close frame: b"" when the server closed TCP)."""
    key = new_key()
    s = connect(t)
    try:
        s.sendall(upgrade_request(t, key, extra=origin_of(t)))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, f"closed during the handshake: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers, _ = parse_response(head + b"\r\n\r\n")
        assert status == 101, head
        assert headers["sec-websocket-accept"] == accept_for(key)
        rest = read_exactly(s, 2, rest)
        assert rest[0] == 0x80 | CLOSE, rest
        n = rest[1]
        assert n < 126 and not rest[1] & 0x80  # unmasked, a control frame's size
        rest = read_exactly(s, 2 + n, rest)
        code = struct.unpack("!H", rest[2:4])[0]
        reason = rest[4 : 2 + n].decode()
        s.sendall(frame(CLOSE, close_payload(code)))
        tail = rest[2 + n :]
        while True:  # the server closes TCP once our close frame is in
            chunk = s.recv(4096)
            if not chunk:
                return code, reason, tail
            tail += chunk
    finally:
        s.close()


def test_a_browser_is_told_1013_and_how_long_to_wait(robust):
    t = robust
    retry_after = t.config["retry_after"]
    held = [Holder(t) for _ in range(t.config["max_clients"])]
    try:
        before = get_stats(t)
        delays = set()
        for _ in range(3):
            code, reason, tail = browser_refusal(t)
            assert code == 1013
            m = re.fullmatch(r"retry=(\d+)", reason)
            assert m, reason
            delays.add(int(m.group(1)))
            assert tail == b""
        # retry_after plus 0-2 s of jitter, in milliseconds, taking turns.
        assert delays <= {(retry_after + j) * 1000 for j in range(3)} and len(delays) > 1, delays
        after = get_stats(t)
        assert after["refused_full"] == before["refused_full"] + 3
        assert after["slots_in_use"] == len(held) and after["ws_opened"] == before["ws_opened"]
        assert (
            after["close_codes"]["1013"] == before["close_codes"]["1013"]
        )  # no connection was open
    finally:
        for ws in held:
            ws.close()
    settle(t)


def test_a_strict_client_accepts_the_handshake_and_reads_1013(robust):
    t = robust
    held = [Holder(t) for _ in range(t.config["max_clients"])]

    async def knock():
        async with websockets.connect(t.ws_url, origin=f"http://{t.host}:{t.port}") as ws:
            with pytest.raises(websockets.ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, ws.close_reason

    try:
        code, reason = asyncio.run(knock())
        assert code == 1013 and reason.startswith("retry=")
    finally:
        for ws in held:
            ws.close()
    settle(t)


def test_browser_refusal_off_gives_browsers_a_503_too(spawn):
    t = spawn(max_clients=1, browser_refusal=0)
    held = RawWS(t)
    try:
        status, headers, _ = http(t, upgrade_request(t, extra=origin_of(t)))
        assert status == 503 and int(headers["retry-after"]) >= 1
    finally:
        held.close()
    settle(t)


def test_retry_after_delays_take_turns_in_well_formed_503s(spawn):
    # The delay is written into one prebuilt 503 at each refusal. From 9 the
    # turns reach 10 and 11: more digits than the configured value, which
    # must still give a valid header and an unchanged Content-Length.
    t = spawn(max_clients=1, retry_after=9)
    held = RawWS(t)
    try:
        delays = []
        for _ in range(3):
            with connect(t) as s:
                s.sendall(upgrade_request(t))
                data = read_head(s) + recv_until_closed(s)
            status, headers, body = parse_response(data)
            assert status == 503 and int(headers["content-length"]) == len(body), data
            m = re.search(rb"\r\nRetry-After:[ \t]*([0-9]+)\r\n", data)
            assert m, data
            delays.append(int(m.group(1)))
        assert sorted(delays) == [9, 10, 11], delays
    finally:
        held.close()
    settle(t)


def test_a_browser_gets_in_when_a_slot_is_free(quiet):
    # The Origin header changes nothing while a slot is free.
    key = new_key()
    s = connect(quiet)
    try:
        s.sendall(upgrade_request(quiet, key, extra=origin_of(quiet)))
        status, headers, _ = parse_response(s.recv(4096))
        assert status == 101 and headers["sec-websocket-accept"] == accept_for(key)
        s.sendall(frame(CLOSE, close_payload(1000)))
    finally:
        s.close()
    settle(quiet)
