"""Network fuzzing: mutated handshakes and frames sent to a running server.

Each connection sends one mutated request; the status must be the one the
reference (fuzz_ref.answer_counted) gives. An upgrade that succeeds then gets
a mutated frame stream, and the server must answer exactly what the
reference decoder says: the echo of every message, a pong for every ping,
then its close frame with the peer's code or the right error code (1002,
1007, 1009), and TCP closed. Afterwards the server's books must balance
(/stats: no slot or request buffer held, every socket closed once, no
MemoryError, no handler error, each refusal and close code counted where it
belongs) and a plain echo still works.
"""

from __future__ import annotations

import base64
import collections
import socket

import fuzz_ref
import pytest
from conftest import settle
from fuzzing import EXAMPLES, FUZZ, Keeper, corpus, frame_stream, good_request, request_head
from hypothesis import given, settings
from hypothesis import strategies as st
from wsutil import CLOSE, RawWS, Target, echo_ok, frame, parse_response

WS_ROUTES = {"/ws": ("echo",), "/chat": ()}  # main.py's
HTTP_ROUTES = {"/", "/stats"}
CAP = 1024  # request_max
MAX_MESSAGE = 4096
CODES = {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013}  # /stats close_codes
# Config overrides for the fuzzed server (STORMPROOF_* names): a policy that
# refuses repeated handshakes from one address would need turning off here.
FUZZ_SERVER: dict = {}


def expected_frames(events: list) -> tuple[list, int]:
    """What the echo server sends for the reference events, and the close
    code it counts."""
    out = []
    for ev in events:
        kind = ev[0]
        if kind in ("text", "binary"):
            out.append((1 if kind == "text" else 2, bytes.fromhex(ev[1])))
        elif kind == "ping":
            out.append((10, bytes.fromhex(ev[1])))
        elif kind in ("close", "error") and len(ev) > 1:
            code = ev[1]
            out.append((CLOSE, b"" if code == 1005 else code.to_bytes(2, "big")))
            return out, code
    return out, 1006  # the stream ended unfinished: the peer vanished


def frames_until_eof(ws: RawWS) -> tuple[list, bool]:
    """Every frame the server sends until it closes TCP; (frames, reset)."""
    got = []
    try:
        while True:
            op, fin, data = ws.recv_frame()
            assert fin
            # A close's reason is the server's own wording: its code is what counts.
            got.append((op, data[:2] if op == CLOSE else data))
    except EOFError:
        return got, False
    except ConnectionResetError:
        return got, True


def exchange(target: Target, request: bytes, stream: bytes, book: collections.Counter) -> None:
    """One connection: request (and frames, once upgraded) against the reference."""
    status, counter = fuzz_ref.answer_counted(request, CAP, WS_ROUTES, HTTP_ROUTES)
    kind, v = fuzz_ref.read_outcome(request, CAP)
    # Only the head is sent (what follows it would be read as frames, as much
    # as one read happened to take), or the bytes that fill the buffer.
    sent = request[: int(v)] if kind == "head" else request[:CAP]  # type: ignore[call-overload]
    ws = RawWS(target, handshake=False)
    with ws:
        ws.send(sent)
        if status is None:
            ws.sock.shutdown(socket.SHUT_WR)
            ws.expect_eof()
            assert ws.buf == b"", ws.buf  # a request cut short gets no answer
            return
        head = ws._read_head()
        got, headers, _ = parse_response(head)
        assert got == status, head
        book[counter] += 1
        if status != 101:
            ws.expect_eof()
            return
        req = fuzz_ref.Request(sent)
        assert headers["sec-websocket-accept"] == fuzz_ref.check_upgrade(req)
        chosen = fuzz_ref.choose_subprotocol(req, list(WS_ROUTES[req.path]))
        assert headers.get("sec-websocket-protocol") == chosen
        if req.path != "/ws":
            stream = frame(CLOSE, (1000).to_bytes(2, "big"))  # /chat broadcasts: no echo to predict
        ws.send(stream)
        ws.sock.shutdown(socket.SHUT_WR)
        events = fuzz_ref.frames(stream, MAX_MESSAGE, drain=True)
        want, code = expected_frames(events)
        frames, reset = frames_until_eof(ws)
        if reset:  # unread bytes when it hung up: only once it said all it had to
            assert frames == want[: len(frames)] and (frames == want or events[-1][0] == "stuck")
        else:
            assert frames == want, events
        book["close:" + (str(code) if code in CODES else "other")] += 1


def check_books(target: Target, book: collections.Counter) -> None:
    st_ = settle(target)
    assert st_["memory_errors"] == 0, st_
    assert st_["handler_errors"] == 0, st_
    assert st_["refused_timeout"] == 0 and st_["refused_full"] == 0, st_
    for name in ("refused_bad", "http_errors", "ws_opened"):
        assert st_[name] == book[name], (name, st_, book)
    for k, n in st_["close_codes"].items():
        assert n == book["close:" + k], (k, st_, book)


@st.composite
def connection(draw) -> tuple[bytes, bytes]:
    """Half of them a mutated request, half a good upgrade whose frames are fuzzed."""
    if draw(st.booleans()):
        return draw(request_head()), draw(frame_stream())
    lines = good_request(
        "/ws", base64.b64encode(draw(st.binary(min_size=16, max_size=16))).decode()
    )
    offer = draw(
        st.sampled_from(
            ["", "Sec-WebSocket-Protocol: echo\r\n", "Sec-WebSocket-Protocol: x, y\r\n"]
        )
    )
    head = (
        " ".join(lines[0])
        + "\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in lines[1:])
        + offer
        + "\r\n"
    )
    return head.encode(), draw(frame_stream())


def test_server_survives_fuzzed_connections(spawn):
    target = spawn(**FUZZ_SERVER)
    book: collections.Counter = collections.Counter()
    keeper = Keeper("network")

    @settings(FUZZ, max_examples=EXAMPLES * 2)
    @given(connection())
    def prop(conn):
        request, stream = conn
        try:
            exchange(target, request, stream, book)
        except BaseException:
            keeper.failed({"request": request.hex(), "frames": stream.hex()})
            raise

    try:
        prop()
    except BaseException:
        print("kept as", keeper.save())
        raise
    print("BOOK", dict(book))
    check_books(target, book)
    echo_ok(target)
    book["ws_opened"] += 1
    book["close:1000"] += 1
    check_books(target, book)


CASES = corpus("network")


@pytest.mark.skipif(not CASES, reason="no network case has failed yet")
def test_corpus_replays(spawn):
    target = spawn(**FUZZ_SERVER)
    book: collections.Counter = collections.Counter()
    for _, case in CASES:
        exchange(target, bytes.fromhex(case["request"]), bytes.fromhex(case["frames"]), book)
    check_books(target, book)
    echo_ok(target)
