"""RFC 6455 behaviour against strict third-party peers and raw hostile frames."""

from __future__ import annotations

import asyncio
import struct

import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request
from wsutil import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawWS, close_payload, frame, get_stats


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def limit(target) -> int:
    return get_stats(target)["max_message"]


def test_websockets_echo_text_and_binary_up_to_the_limit(quiet):
    top = limit(quiet)
    sizes = [0, 1, 125, 126, 127, 1000, 1024, top - 1, top]

    async def go():
        async with websockets.connect(quiet.ws_url, max_size=None, open_timeout=10) as ws:
            for n in sizes:
                text = ("é" * (n // 2) + "a" * (n % 2))[:n]
                assert len(text.encode()) <= top
                await ws.send(text)
                assert await ws.recv() == text
                data = bytes(i % 251 for i in range(n))
                await ws.send(data)
                assert await ws.recv() == data
            await ws.close()
            assert ws.close_code == 1000

    run(go())


def test_websockets_fragmented_send_and_ping(quiet):
    async def go():
        async with websockets.connect(quiet.ws_url, open_timeout=10) as ws:
            await ws.send(["frag", "ment", "ed ", "κόσμε"])
            assert await ws.recv() == "fragmented κόσμε"
            await ws.send([b"\x00" * 100, b"\x01" * 100])
            assert await ws.recv() == b"\x00" * 100 + b"\x01" * 100
            # websockets resolves this only on a pong carrying the same payload.
            pong = await ws.ping(b"payload")
            await asyncio.wait_for(pong, 10)

    run(go())


def test_message_over_the_limit_closes_1009(quiet):
    top = limit(quiet)

    async def go():
        async with websockets.connect(quiet.ws_url, max_size=None, open_timeout=10) as ws:
            await ws.send(b"x" * (top + 1))
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1009

    run(go())


def test_wsproto_echo_and_clean_close(quiet):
    ws = WSConnection(ConnectionType.CLIENT)
    with RawWS(quiet, handshake=False) as raw:
        raw.send(ws.send(Request(host=quiet.host, target=quiet.ws_path)))
        got = []

        def pump():
            data = raw.sock.recv(65536)
            assert data, "server closed unexpectedly"
            ws.receive_data(data)
            got.extend(ws.events())

        while not any(isinstance(e, AcceptConnection) for e in got):
            pump()
        raw.send(ws.send(Message(data="über")))
        while not any(isinstance(e, Message) for e in got):
            pump()
        assert [e.data for e in got if isinstance(e, Message)] == ["über"]
        raw.send(ws.send(CloseConnection(code=1000, reason="done")))
        while not any(isinstance(e, CloseConnection) for e in got):
            pump()
        close = next(e for e in got if isinstance(e, CloseConnection))
        assert close.code == 1000
        raw.expect_eof()


HOSTILE = {
    "unmasked": (frame(TEXT, b"hi", masked=False), 1002),
    "rsv1": (frame(TEXT, b"hi", rsv=1), 1002),
    "rsv3": (frame(BINARY, b"hi", rsv=4), 1002),
    "opcode3": (frame(3, b""), 1002),
    "opcode11": (frame(11, b""), 1002),
    "ping126": (frame(PING, b"x" * 126), 1002),
    "fragmented_ping": (frame(PING, b"x", fin=False), 1002),
    "orphan_continuation": (frame(CONT, b"x"), 1002),
    "nested_message": (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
    "bad_utf8": (
        frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
        1007,
    ),
    "bad_utf8_fragment": (frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xff"), 1007),
    "close_code_999": (frame(CLOSE, close_payload(999)), 1002),
    "close_code_1005": (frame(CLOSE, close_payload(1005)), 1002),
    "close_code_1016": (frame(CLOSE, close_payload(1016)), 1002),
    "close_one_byte": (frame(CLOSE, b"\x03"), 1002),
    "close_reason_latin1": (frame(CLOSE, close_payload(1000, b"\xe9t\xe9")), 1007),
    "huge_length": (bytes([0x82, 0xFF]) + (1 << 62).to_bytes(8, "big") + b"mask", 1009),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_frame_gets_exact_close_code_then_tcp_close(quiet, name):
    data, code = HOSTILE[name]
    with RawWS(quiet) as ws:
        ws.send(data)
        got, _ = ws.expect_close()
        assert got == code
        ws.send(frame(CLOSE, close_payload(got)))
        ws.expect_eof()


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 3000, 4999])
def test_close_code_is_echoed(quiet, code):
    with RawWS(quiet) as ws:
        ws.send(frame(CLOSE, close_payload(code, b"reason")))
        got, _ = ws.expect_close()
        assert got == code
        ws.expect_eof()


def test_empty_close_is_answered_with_empty_close(quiet):
    with RawWS(quiet) as ws:
        ws.send(frame(CLOSE))
        op, _, payload = ws.recv_frame()
        assert (op, payload) == (CLOSE, b"")
        ws.expect_eof()


def test_ping_pong_same_payload_also_between_fragments(quiet):
    with RawWS(quiet) as ws:
        ws.send(frame(PING, b"p1"))
        assert ws.recv_frame() == (PONG, True, b"p1")
        ws.send(frame(TEXT, b"abc", fin=False) + frame(PING, b"mid") + frame(CONT, b"def"))
        assert ws.recv_frame() == (PONG, True, b"mid")
        assert ws.recv_message() == (TEXT, b"abcdef")
        ws.send(frame(PING, b""))
        assert ws.recv_frame() == (PONG, True, b"")


def test_unsolicited_pong_is_ignored(quiet):
    with RawWS(quiet) as ws:
        ws.send(frame(PONG, b"whatever") + frame(BINARY, b"still here"))
        assert ws.recv_message() == (BINARY, b"still here")


def test_peer_that_never_answers_our_close_is_dropped(quiet):
    # After a protocol error the server sends its close and waits a bounded
    # time for ours; a client that stays silent is disconnected anyway.
    with RawWS(quiet) as ws:
        ws.send(frame(TEXT, b"x", masked=False))
        assert ws.expect_close()[0] == 1002
        ws.expect_eof(timeout=30)


def test_server_close_frame_framing(quiet):
    with RawWS(quiet) as ws:
        ws.send(frame(BINARY, b"x" * 200))
        op, fin, payload = ws.recv_frame()
        assert (op, fin, payload) == (BINARY, True, b"x" * 200)
        ws.send(frame(CLOSE, struct.pack("!H", 1000)))
        assert ws.expect_close()[0] == 1000
