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
from wsutil import CLOSE, RawWS, Target, echo_ok, frame, get_stats, parse_response

WS_ROUTES = {"/ws": ("echo",), "/chat": ()}  # main.py's
HTTP_ROUTES = {"/", "/stats"}
CAP = 1024  # request_max
MAX_MESSAGE = 4096
RX_CHUNK = 256
CODES = {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013}  # /stats close_codes
# Config overrides for the fuzzed server (STORMPROOF_* names, lowercase): a
# policy that refuses repeated handshakes from one address is turned off here.
FUZZ_SERVER: dict = {}


def ADMIT(req) -> None:  # noqa: N802 (the hook's name)
    """The server's admission rules for a valid upgrade (fuzz_ref.answer_counted's
    `admit`), here the default Origin rule (allowed_origins="same"): no Origin
    (not a browser) is let in; one http or https Origin whose host[:port]
    is the Host header's value, ASCII case folded, is let in; else 403."""
    origins = req.values(b"origin")
    if not origins:
        return
    if len(origins) == 1:
        scheme, sep, named = origins[0].lower().partition(b"://")
        if sep and scheme in (b"http", b"https") and named == req.values(b"host")[0].lower():
            return
    raise fuzz_ref.Refused(403, "refused_origin")


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


def exchange(
    target: Target,
    request: bytes,
    stream: bytes,
    book: collections.Counter,
    together: bool = False,
    cuts: tuple[int, ...] = (),
) -> None:
    """One connection: request (and frames, once upgraded) against the reference.
    `together`: the frames go in the same write as the request when they fit
    in a slot's read buffer (the server keeps what came behind the head).
    `cuts`: where the request is split into separate writes (how the server's
    reads fall is up to TCP; the answer must not depend on it)."""
    status, counter = fuzz_ref.answer_counted(request, CAP, WS_ROUTES, HTTP_ROUTES, ADMIT)
    kind, v = fuzz_ref.read_outcome(request, CAP)
    # Only the head is sent (what follows it would be read as frames, as much
    # as one read happened to take), or the bytes that fill the buffer.
    sent = request[: int(v)] if kind == "head" else request[:CAP]  # type: ignore[call-overload]
    req = fuzz_ref.Request(sent) if status == 101 else None
    if req is not None and req.path != "/ws":
        stream = frame(CLOSE, (1000).to_bytes(2, "big"))  # /chat broadcasts: no echo to predict
    early = (
        together and kind == "head" and len(stream) <= RX_CHUNK and len(sent) + len(stream) <= CAP
    )
    ws = RawWS(target, handshake=False)
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ws:
        data = sent + stream if early else sent
        points = [0, *sorted(c for c in cuts if c < len(sent)), len(data)]
        for a, b in zip(points, points[1:], strict=False):
            ws.send(data[a:b])
        if status is None:
            ws.sock.shutdown(socket.SHUT_WR)
            ws.expect_eof()
            assert ws.buf == b"", ws.buf  # a request cut short gets no answer
            return
        head = ws._read_head()
        got, headers, _ = parse_response(head)
        assert got == status, head
        book[counter] += 1
        if req is None:
            ws.expect_eof()
            return
        assert headers["sec-websocket-accept"] == fuzz_ref.check_upgrade(req)
        chosen = fuzz_ref.choose_subprotocol(req, list(WS_ROUTES[req.path]))
        assert headers.get("sec-websocket-protocol") == chosen
        if not early:
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


def check_books(target: Target, book: collections.Counter, before: dict) -> None:
    """The server's counters grew by what the book says (a device's counters
    carry the earlier tests' traffic: counted from `before`)."""
    now = settle(target)
    st_ = {k: v - before[k] for k, v in now.items() if isinstance(v, int)}
    st_["close_codes"] = {k: n - before["close_codes"][k] for k, n in now["close_codes"].items()}
    assert st_["memory_errors"] == 0, now
    assert st_["handler_errors"] == 0, now
    assert st_["refused_timeout"] == 0 and st_["refused_full"] == 0, now
    for name in ("refused_bad", "refused_origin", "http_errors", "ws_opened"):
        assert st_[name] == book[name], (name, st_, book)
    for k, n in st_["close_codes"].items():
        assert n == book["close:" + k], (k, st_, book)


@st.composite
def connection(draw) -> tuple[bytes, bytes, bool, tuple[int, ...]]:
    """Half of them a mutated request, half a good upgrade whose frames are fuzzed."""
    together = draw(st.booleans())
    cuts = tuple(draw(st.lists(st.integers(1, 300), max_size=3)))
    if draw(st.booleans()):
        return draw(request_head()), draw(frame_stream()), together, cuts
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
    return head.encode(), draw(frame_stream()), together, cuts


def test_server_survives_fuzzed_connections(spawn):
    target = spawn(**FUZZ_SERVER)
    before = get_stats(target)
    book: collections.Counter = collections.Counter()
    keeper = Keeper("network")

    @settings(FUZZ, max_examples=EXAMPLES * 2)
    @given(connection())
    def prop(conn):
        request, stream, together, cuts = conn
        try:
            exchange(target, request, stream, book, together, cuts)
        except BaseException:
            keeper.failed(
                {
                    "request": request.hex(),
                    "frames": stream.hex(),
                    "together": together,
                    "cuts": cuts,
                }
            )
            raise

    try:
        prop()
    except BaseException:
        print("kept as", keeper.save())
        raise
    check_books(target, book, before)
    echo_ok(target)
    book["ws_opened"] += 1
    book["close:1000"] += 1
    check_books(target, book, before)


CASES = corpus("network")


@pytest.mark.skipif(not CASES, reason="no network case has failed yet")
def test_corpus_replays(spawn):
    target = spawn(**FUZZ_SERVER)
    before = get_stats(target)
    book: collections.Counter = collections.Counter()
    for _, case in CASES:
        request, stream = bytes.fromhex(case["request"]), bytes.fromhex(case["frames"])
        exchange(target, request, stream, book, case["together"], tuple(case["cuts"]))
    check_books(target, book, before)
    echo_ok(target)
