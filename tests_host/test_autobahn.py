"""The Autobahn TestSuite fuzzingclient cases of sections 1-7, re-created with raw frames.

Every test id carries the Autobahn case number ("6.4.1"); the frames, payloads
and chopping are Autobahn's own. Where Autobahn accepts several outcomes
("OK" or "NON-STRICT"), the strict one is asserted: data echoed exactly,
pongs with the ping's payload, or the exact close code, then nothing more
and the server closing TCP first.

Differences from the suite, all deliberate:

- Message sizes: sizes up to the server's max_message (read from /stats) must
  echo; Autobahn's larger sizes must be refused with 1009. The framing cases
  also run against a server started with the 16 KiB maximum, and each large
  case has an "at-limit" twin that sends the biggest message the limit allows,
  chopped the same way.
- No waits: where Autobahn sleeps a second to see whether the server keeps
  quiet, a ping sent after the frames in question proves it instead (its pong
  comes back only once those frames were read and accepted). In 6.4.3/6.4.4
  the chops are inside one frame where no ping fits, so only their fail-fast
  half is checked there (the accepted half is 6.4.1/6.4.2 and 6.6.x).
- Fail-fast: invalid UTF-8 must fail the connection (1007) as soon as the
  invalid byte arrives. Every invalid 6.x payload is also sent as a frame
  whose header announces more payload than is sent (only the bytes up to the
  first invalid one go out), and as 1-byte fragments of which only those up
  to the invalid byte go out. The rest is sent only after the close frame.
- After receiving the server's close frame the client answers with its own,
  as a well-behaved client does, so the server never has to wait out its
  close timeout.
"""

from __future__ import annotations

import socket
import struct

import pytest
from conftest import ServerProcess, settle
from wsutil import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    RawWS,
    Target,
    close_payload,
    frame,
    get_stats,
)

BIG = 16384  # the largest max_message a server can be configured with
MAX_EVENTS = 64  # frames a case may see before the close it expects
MAX_FRAGMENTS = 1024  # fragments of one echoed message (16 KiB / tx buffer)

HELLO = b"Hello, world!"
KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"  # "κόσμε", with U+1F79 (3 bytes)

Event = tuple


# ---- servers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def big_server(device_url):
    """One server for the module with the largest message limit (16 KiB)."""
    if device_url:
        pytest.skip("needs its own server configuration; not possible against a device")
    # A 16 KiB message buffer per slot leaves room for one slot in an ESP32 heap.
    proc = ServerProcess({"STORMPROOF_MAX_MESSAGE": str(BIG), "STORMPROOF_MAX_CLIENTS": "1"})
    yield proc.target
    alive = proc.alive()
    proc.stop()
    assert alive, "server process died:\n" + proc.output()


@pytest.fixture
def big(big_server):
    """The 16 KiB server, checked like `quiet` after each test."""
    yield big_server
    settle(big_server)


@pytest.fixture(params=["default", "16k"])
def server(request):
    """Framing cases run against the session server and the 16 KiB one."""
    return request.getfixturevalue("quiet" if request.param == "default" else "big")


def limit(target: Target) -> int:
    return get_stats(target)["max_message"]


# ---- a client that sends what Autobahn sends --------------------------------


def open_ws(target: Target) -> RawWS:
    ws = RawWS(target)
    # Chops leave as separate segments, as Autobahn's sync/chopsize sends do.
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ws


def send_chopped(ws: RawWS, data: bytes, chop: int | None = None) -> None:
    if not chop:
        ws.send(data)
        return
    for i in range(0, len(data), chop):
        ws.send(data[i : i + chop])


def send_frames(ws: RawWS, frames: list[bytes], mode: str = "one") -> None:
    """mode: "one" (all frames in one write), "frame" (a write per frame,
    Autobahn's sync=True) or "octet" (a write per byte, chopsize=1)."""
    if mode == "one":
        ws.send(b"".join(frames))
    elif mode == "frame":
        for f in frames:
            ws.send(f)
    else:
        assert mode == "octet", mode
        for f in frames:
            send_chopped(ws, f, 1)


def header_len(whole: bytes, payload_len: int) -> int:
    return len(whole) - payload_len


def next_event(ws: RawWS) -> Event:
    """The server's next frame as an Autobahn event: ("message", data, binary)
    with fragments reassembled, ("pong", data), ("ping", data) or
    ("close", code or None, reason)."""
    op, fin, data = ws.recv_frame()
    if op == CLOSE:
        assert len(data) != 1, "close frame with a 1-byte payload"
        code = struct.unpack("!H", data[:2])[0] if data else None
        return ("close", code, data[2:])
    if op == PING:
        return ("ping", data)
    if op == PONG:
        return ("pong", data)
    assert op in (TEXT, BINARY), f"server sent opcode {op}"
    for _ in range(MAX_FRAGMENTS):
        if fin:
            return ("message", data, op == BINARY)
        op2, fin, more = ws.recv_frame()
        assert op2 == CONT, f"expected a continuation frame, got opcode {op2}"
        data += more
    raise AssertionError("echoed message never ended")


def expect_tcp_close(ws: RawWS) -> None:
    """The server closes TCP after the closing handshake, sending nothing more."""
    extra = ws.buf
    for _ in range(MAX_EVENTS):
        try:
            chunk = ws.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        extra += chunk
    else:
        raise AssertionError("server kept sending after its close frame")
    assert extra == b"", f"server sent bytes after its close frame: {extra[:64]!r}"


def expect_ok(ws: RawWS, *expected: Event) -> None:
    """Autobahn's OK outcome: exactly these events, then a clean close with
    1000 that we start, and the server closing TCP."""
    got = [next_event(ws) for _ in expected]
    assert got == list(expected)
    ws.send(frame(CLOSE, close_payload(1000)))
    ev = next_event(ws)
    assert ev[:2] == ("close", 1000), ev
    expect_tcp_close(ws)


def expect_close(
    ws: RawWS, codes: set, *before: Event, rest: bytes = b"", reply: bool = True
) -> int | None:
    """Exactly the events `before`, then the server's close frame with a code
    from `codes`, then TCP closed by the server. With `reply` the client
    answers with its own close frame (after `rest`, the bytes it still owed)."""
    events = []
    for _ in range(MAX_EVENTS):
        ev = next_event(ws)
        if ev[0] == "close":
            break
        events.append(ev)
    else:
        raise AssertionError(f"no close frame after {MAX_EVENTS} frames")
    assert events == list(before)
    code = ev[1]
    assert code in codes, f"close code {code}, expected one of {sorted(codes, key=str)}"
    if reply:
        try:
            ws.send(rest + frame(CLOSE, close_payload(code) if code else b""))
        except OSError:
            pass  # the server may drop TCP right after failing the connection
    expect_tcp_close(ws)
    return code


def run_case(
    target: Target, frames: list[bytes], mode: str, expected: list, code: int | None
) -> None:
    with open_ws(target) as ws:
        send_frames(ws, frames, mode)
        if code is None:
            expect_ok(ws, *expected)
        else:
            expect_close(ws, {code}, *expected)


def msg(data: bytes | str, binary: bool = False) -> Event:
    return ("message", data.encode() if isinstance(data, str) else data, binary)


# ---- 1 Framing ---------------------------------------------------------------

FRAMING = [
    ("1.1.1", TEXT, 0, None),
    ("1.1.2", TEXT, 125, None),
    ("1.1.3", TEXT, 126, None),
    ("1.1.4", TEXT, 127, None),
    ("1.1.5", TEXT, 128, None),
    ("1.1.6", TEXT, 65535, None),
    ("1.1.7", TEXT, 65536, None),
    ("1.1.8", TEXT, 65536, 997),
    ("1.2.1", BINARY, 0, None),
    ("1.2.2", BINARY, 125, None),
    ("1.2.3", BINARY, 126, None),
    ("1.2.4", BINARY, 127, None),
    ("1.2.5", BINARY, 128, None),
    ("1.2.6", BINARY, 65535, None),
    ("1.2.7", BINARY, 65536, None),
    ("1.2.8", BINARY, 65536, 997),
]

# Autobahn's big cases, scaled to the limit: 65535 -> limit - 1, 65536 -> limit.
AT_LIMIT = [
    ("1.1.6", TEXT, -1, None),
    ("1.1.7", TEXT, 0, None),
    ("1.1.8", TEXT, 0, 997),
    ("1.2.6", BINARY, -1, None),
    ("1.2.7", BINARY, 0, None),
    ("1.2.8", BINARY, 0, 997),
]


def fill(op: int, n: int) -> bytes:
    return b"*" * n if op == TEXT else b"\xfe" * n


def framing_case(target: Target, op: int, size: int, chop: int | None) -> None:
    payload = fill(op, size)
    with open_ws(target) as ws:
        send_chopped(ws, frame(op, payload), chop)
        if size <= limit(target):
            expect_ok(ws, msg(payload, op == BINARY))
        else:
            # Too big for this server: refused, and the rest of the frame is
            # read past so that our close frame behind it is found.
            expect_close(ws, {1009})


@pytest.mark.parametrize(("op", "size", "chop"), [pytest.param(*c[1:], id=c[0]) for c in FRAMING])
def test_1_framing(server, op, size, chop):
    framing_case(server, op, size, chop)


@pytest.mark.parametrize(
    ("op", "offset", "chop"), [pytest.param(*c[1:], id=c[0] + "-at-limit") for c in AT_LIMIT]
)
def test_1_framing_at_the_limit(server, op, offset, chop):
    framing_case(server, op, limit(server) + offset, chop)


# ---- 2 Pings/Pongs -------------------------------------------------------------

PINGS = [
    ("2.1", b"", None),
    ("2.2", HELLO, None),
    ("2.3", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", None),
    ("2.4", b"\xfe" * 125, None),
    ("2.6", b"\xfe" * 125, 1),
]


@pytest.mark.parametrize(("payload", "chop"), [pytest.param(*c[1:], id=c[0]) for c in PINGS])
def test_2_ping_gets_pong_with_the_same_payload(quiet, payload, chop):
    with open_ws(quiet) as ws:
        send_chopped(ws, frame(PING, payload), chop)
        expect_ok(ws, ("pong", payload))


@pytest.mark.parametrize("case", ["2.5"])
def test_2_5_ping_over_125_bytes_fails(quiet, case):
    run_case(quiet, [frame(PING, b"\xfe" * 126)], "one", [], 1002)


@pytest.mark.parametrize(
    "payload", [pytest.param(b"", id="2.7"), pytest.param(b"unsolicited pong payload", id="2.8")]
)
def test_2_unsolicited_pong_is_ignored(quiet, payload):
    with open_ws(quiet) as ws:
        ws.send(frame(PONG, payload) + frame(CLOSE, close_payload(1000)))
        expect_close(ws, {1000}, reply=False)  # nothing before the close


@pytest.mark.parametrize("case", ["2.9"])
def test_2_9_unsolicited_pong_then_ping(quiet, case):
    with open_ws(quiet) as ws:
        ws.send(frame(PONG, b"unsolicited pong payload") + frame(PING, b"ping payload"))
        expect_ok(ws, ("pong", b"ping payload"))


@pytest.mark.parametrize("chop", [pytest.param(None, id="2.10"), pytest.param(1, id="2.11")])
def test_2_ten_pings_get_ten_pongs_in_order(quiet, chop):
    payloads = [b"payload-%d" % i for i in range(10)]
    with open_ws(quiet) as ws:
        for p in payloads:
            send_chopped(ws, frame(PING, p), chop)
        expect_ok(ws, *[("pong", p) for p in payloads])


# ---- 3 Reserved bits -------------------------------------------------------------

RSV = [
    ("3.1", [frame(TEXT, HELLO, rsv=1)], "one", []),
    ("3.2", [frame(TEXT, HELLO), frame(TEXT, HELLO, rsv=2), frame(PING)], "one", [msg(HELLO)]),
    ("3.3", [frame(TEXT, HELLO), frame(TEXT, HELLO, rsv=3), frame(PING)], "frame", [msg(HELLO)]),
    ("3.4", [frame(TEXT, HELLO), frame(TEXT, HELLO, rsv=4), frame(PING)], "octet", [msg(HELLO)]),
    ("3.5", [frame(BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5)], "one", []),
    # Autobahn's 3.6 is described as a ping (its code sends opcode 2, already 3.5's).
    ("3.6", [frame(PING, HELLO, rsv=6)], "one", []),
    ("3.7", [frame(CLOSE, rsv=7)], "one", []),
]


@pytest.mark.parametrize(("frames", "mode", "before"), [pytest.param(*c[1:], id=c[0]) for c in RSV])
def test_3_reserved_bits_fail_with_1002_and_no_pong(quiet, frames, mode, before):
    run_case(quiet, frames, mode, before, 1002)


# ---- 4 Opcodes -------------------------------------------------------------------

OPCODES = [
    ("4.1.1", [frame(3)], "one", []),
    ("4.1.2", [frame(4, b"reserved opcode payload")], "one", []),
    ("4.1.3", [frame(TEXT, HELLO), frame(5), frame(PING)], "one", [msg(HELLO)]),
    ("4.1.4", [frame(TEXT, HELLO), frame(6, HELLO), frame(PING)], "one", [msg(HELLO)]),
    ("4.1.5", [frame(TEXT, HELLO), frame(7, HELLO), frame(PING)], "octet", [msg(HELLO)]),
    ("4.2.1", [frame(11)], "one", []),
    ("4.2.2", [frame(12, b"reserved opcode payload")], "one", []),
    ("4.2.3", [frame(TEXT, HELLO), frame(13), frame(PING)], "one", [msg(HELLO)]),
    ("4.2.4", [frame(TEXT, HELLO), frame(14, HELLO), frame(PING)], "one", [msg(HELLO)]),
    ("4.2.5", [frame(TEXT, HELLO), frame(15, HELLO), frame(PING)], "octet", [msg(HELLO)]),
]


@pytest.mark.parametrize(
    ("frames", "mode", "before"), [pytest.param(*c[1:], id=c[0]) for c in OPCODES]
)
def test_4_reserved_opcodes_fail_with_1002_and_no_pong(quiet, frames, mode, before):
    run_case(quiet, frames, mode, before, 1002)


# ---- 5 Fragmentation ---------------------------------------------------------------

F1, F2, F3, F4 = b"fragment1", b"fragment2", b"fragment3", b"fragment4"
NONCONT = b"non-continuation payload"
PP = b"ping payload"

FRAGMENTATION = [
    ("5.1", [frame(PING, F1, fin=False), frame(CONT, F2)], "one", [], 1002),
    ("5.2", [frame(PONG, F1, fin=False), frame(CONT, F2)], "one", [], 1002),
    ("5.3", [frame(TEXT, F1, fin=False), frame(CONT, F2)], "one", [msg(F1 + F2)], None),
    ("5.4", [frame(TEXT, F1, fin=False), frame(CONT, F2)], "frame", [msg(F1 + F2)], None),
    ("5.5", [frame(TEXT, F1, fin=False), frame(CONT, F2)], "octet", [msg(F1 + F2)], None),
    *[
        (
            case,
            [frame(TEXT, F1, fin=False), frame(PING, PP), frame(CONT, F2)],
            mode,
            [("pong", PP), msg(F1 + F2)],
            None,
        )
        for case, mode in [("5.6", "one"), ("5.7", "frame"), ("5.8", "octet")]
    ],
    *[
        (case, [frame(CONT, NONCONT, fin=fin), frame(TEXT, HELLO)], mode, [], 1002)
        for case, fin, mode in [
            ("5.9", True, "one"),
            ("5.10", True, "frame"),
            ("5.11", True, "octet"),
            ("5.12", False, "one"),
            ("5.13", False, "frame"),
            ("5.14", False, "octet"),
        ]
    ],
    (
        "5.15",
        [
            frame(TEXT, F1, fin=False),
            frame(CONT, F2),
            frame(CONT, F3, fin=False),
            frame(TEXT, F4),
        ],
        "one",
        [msg(F1 + F2)],
        1002,
    ),
    *[
        (
            case,
            2 * [frame(CONT, F1, fin=fin), frame(TEXT, F2, fin=False), frame(CONT, F3)],
            "one",
            [],
            1002,
        )
        for case, fin in [("5.16", False), ("5.17", True)]
    ],
    ("5.18", [frame(TEXT, F1, fin=False), frame(TEXT, F2)], "one", [], 1002),
]


@pytest.mark.parametrize(
    ("frames", "mode", "expected", "code"), [pytest.param(*c[1:], id=c[0]) for c in FRAGMENTATION]
)
def test_5_fragmentation(quiet, frames, mode, expected, code):
    run_case(quiet, frames, mode, expected, code)


@pytest.mark.parametrize("mode", [pytest.param("one", id="5.19"), pytest.param("frame", id="5.20")])
def test_5_ping_between_fragments_is_answered_before_the_message_ends(quiet, mode):
    frags = [b"fragment%d" % i for i in range(1, 6)]
    with open_ws(quiet) as ws:
        send_frames(
            ws,
            [
                frame(TEXT, frags[0], fin=False),
                frame(CONT, frags[1], fin=False),
                frame(PING, b"pongme 1!"),
            ],
            mode,
        )
        # Autobahn waits a second here; the pong arriving while the message
        # is still open is what it checks for.
        assert next_event(ws) == ("pong", b"pongme 1!")
        send_frames(
            ws,
            [
                frame(CONT, frags[2], fin=False),
                frame(CONT, frags[3], fin=False),
                frame(PING, b"pongme 2!"),
                frame(CONT, frags[4]),
            ],
            mode,
        )
        expect_ok(ws, ("pong", b"pongme 2!"), msg(b"".join(frags)))


# ---- 6 UTF-8 handling ----------------------------------------------------------------

HELLO_UTF8 = "Hello-µ@ßöäüàá-UTF-8!!".encode()
BAD_6_3 = KOSME + b"\xed\xa0\x80" + b"edited"  # a surrogate (U+D800) in the middle


def first_invalid(data: bytes) -> int | None:
    """Index of the byte at which `data` stops being a prefix of valid UTF-8
    (the byte a fail-fast validator rejects), or None if no byte does (the
    data is valid, or merely ends inside a character)."""
    for i in range(len(data)):
        try:
            data[: i + 1].decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason != "unexpected end of data":
                return i
    return None


def utf8_ok(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def kuhn_groups() -> list[list[tuple[bool, bytes]]]:
    """Autobahn's createUtf8TestSequences(): Markus Kuhn's UTF-8 decoder stress
    test and friends, as (valid, payload), one list per case group 6.5-6.23."""
    incomplete = [
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ]
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in b"\xf0\xf1\xf2\xf3\xf4":
        for z2 in b"\x8f\x9f\xaf\xbf":
            if z1 == 0xF4 and z2 != 0x8F:
                continue  # above U+10FFFF
            for z3 in b"\xbe\xbf":
                zz = bytes([z1, z2, 0xBF, z3])
                if zz not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):  # overlong
                    nonchars.append(zz)
    surrogates = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf"]
    low = [b"\xed\xb0\x80", b"\xed\xbf\xbf"]
    t, f = True, False
    return [
        # 6.5 Some valid UTF-8 sequences
        [
            (t, b"hello\x24world"),
            (t, b"hello\xc2\xa2world"),
            (t, b"hello\xe2\x82\xacworld"),
            (t, b"hello\xf0\xa4\xad\xa2world"),
            (t, KOSME),
        ],
        # 6.6 All prefixes of a valid UTF-8 string that contains multi-byte code points
        [(utf8_ok(KOSME[:i]), KOSME[:i]) for i in range(1, len(KOSME) + 1)],
        # 6.7 First possible sequence of a certain length
        [(t, b"\x00"), (t, b"\xc2\x80"), (t, b"\xe0\xa0\x80"), (t, b"\xf0\x90\x80\x80")],
        # 6.8 First possible sequence length 5/6 (invalid code points)
        [(f, b"\xf8\x88\x80\x80\x80"), (f, b"\xfc\x84\x80\x80\x80\x80")],
        # 6.9 Last possible sequence of a certain length
        [(t, b"\x7f"), (t, b"\xdf\xbf"), (t, b"\xef\xbf\xbf"), (t, b"\xf4\x8f\xbf\xbf")],
        # 6.10 Last possible sequence length 4/5/6 (invalid code points)
        [(f, b"\xf7\xbf\xbf\xbf"), (f, b"\xfb\xbf\xbf\xbf\xbf"), (f, b"\xfd\xbf\xbf\xbf\xbf\xbf")],
        # 6.11 Other boundary conditions
        [
            (t, b"\xed\x9f\xbf"),
            (t, b"\xee\x80\x80"),
            (t, b"\xef\xbf\xbd"),
            (t, b"\xf4\x8f\xbf\xbf"),
            (f, b"\xf4\x90\x80\x80"),
        ],
        # 6.12 Unexpected continuation bytes
        [
            (f, b"\x80"),
            (f, b"\xbf"),
            (f, b"\x80\xbf"),
            (f, b"\x80\xbf\x80"),
            (f, b"\x80\xbf\x80\xbf"),
            (f, b"\x80\xbf\x80\xbf\x80"),
            (f, b"\x80\xbf\x80\xbf\x80\xbf"),
            (f, bytes(range(0x80, 0xBF))),
        ],
        # 6.13 Lonely start characters, each followed by a space
        [
            (f, b"".join(bytes([c, 0x20]) for c in range(lo, hi)))
            for lo, hi in [(0xC0, 0xDF), (0xE0, 0xEF), (0xF0, 0xF7), (0xF8, 0xFB), (0xFC, 0xFD)]
        ],
        # 6.14 Sequences with last continuation byte missing
        [(f, k) for k in incomplete],
        # 6.15 Concatenation of incomplete sequences
        [(f, b"".join(incomplete))],
        # 6.16 Impossible bytes
        [(f, b"\xfe"), (f, b"\xff"), (f, b"\xfe\xfe\xff\xff")],
        # 6.17 Examples of an overlong ASCII character
        [
            (f, b"\xc0\xaf"),
            (f, b"\xe0\x80\xaf"),
            (f, b"\xf0\x80\x80\xaf"),
            (f, b"\xf8\x80\x80\x80\xaf"),
            (f, b"\xfc\x80\x80\x80\x80\xaf"),
        ],
        # 6.18 Maximum overlong sequences
        [
            (f, b"\xc1\xbf"),
            (f, b"\xe0\x9f\xbf"),
            (f, b"\xf0\x8f\xbf\xbf"),
            (f, b"\xf8\x87\xbf\xbf\xbf"),
            (f, b"\xfc\x83\xbf\xbf\xbf\xbf"),
        ],
        # 6.19 Overlong representation of the NUL character
        [
            (f, b"\xc0\x80"),
            (f, b"\xe0\x80\x80"),
            (f, b"\xf0\x80\x80\x80"),
            (f, b"\xf8\x80\x80\x80\x80"),
            (f, b"\xfc\x80\x80\x80\x80\x80"),
        ],
        # 6.20 Single UTF-16 surrogates
        [(f, s) for s in [*surrogates, *low[:1], b"\xed\xbe\x80", *low[1:]]],
        # 6.21 Paired UTF-16 surrogates
        [(f, hi + lo) for hi in surrogates for lo in low],
        # 6.22 Non-character code points (valid UTF-8)
        [(t, s) for s in nonchars],
        # 6.23 Unicode specials (i.e. replacement char)
        [(t, b"\xef\xbf" + bytes([c])) for c in range(0xB9, 0xC0)],
    ]


KUHN = [
    (f"6.{g}.{j}", payload, valid)
    for g, group in enumerate(kuhn_groups(), start=5)
    for j, (valid, payload) in enumerate(group, start=1)
]
PAD = b" trailing bytes that are never sent"


def test_6_kuhn_table_agrees_with_cpython():
    # The table's own expectations, checked once against a strict decoder.
    assert len(KUHN) == 132
    for case, payload, valid in KUHN:
        assert utf8_ok(payload) == valid, case


@pytest.mark.parametrize(("payload", "valid"), [pytest.param(p, v, id=c) for c, p, v in KUHN])
def test_6_utf8_in_one_frame(quiet, payload, valid):
    with open_ws(quiet) as ws:
        ws.send(frame(TEXT, payload))
        if valid:
            expect_ok(ws, msg(payload))
        else:
            expect_close(ws, {1007})


@pytest.mark.parametrize(
    ("payload", "valid"), [pytest.param(p, v, id=c + "-1-byte-fragments") for c, p, v in KUHN]
)
def test_6_utf8_in_1_byte_fragments_fails_fast(quiet, payload, valid):
    """Split at every byte; an invalid payload fails at the fragment holding
    its first invalid byte, before any later fragment is sent."""
    n = len(payload)
    frags = [frame(TEXT if i == 0 else CONT, payload[i : i + 1], fin=i == n - 1) for i in range(n)]
    bad = first_invalid(payload)
    with open_ws(quiet) as ws:
        if valid:
            ws.send(b"".join(frags))
            expect_ok(ws, msg(payload))
        else:
            cut = n if bad is None else bad + 1  # only invalid at its end: send it all
            ws.send(b"".join(frags[:cut]))
            expect_close(ws, {1007}, rest=b"".join(frags[cut:]))


FAIL_FAST = [(c, p) for c, p, v in KUHN if not v and first_invalid(p) is not None]


@pytest.mark.parametrize("payload", [pytest.param(p, id=c + "-fail-fast") for c, p in FAIL_FAST])
def test_6_invalid_utf8_fails_before_the_frame_is_complete(quiet, payload):
    """The frame announces more payload than is sent: the bytes up to and
    including the first invalid one must be enough for 1007."""
    whole = frame(TEXT, payload + PAD)
    cut = header_len(whole, len(payload + PAD)) + first_invalid(payload) + 1
    with open_ws(quiet) as ws:
        ws.send(whole[:cut])
        expect_close(ws, {1007}, rest=whole[cut:])


VALID_6 = [
    ("6.1.1", [frame(TEXT)], b""),
    ("6.1.2", [frame(TEXT, fin=False), frame(CONT, fin=False), frame(CONT)], b""),
    (
        "6.1.3",
        [frame(TEXT, fin=False), frame(CONT, b"middle frame payload", fin=False), frame(CONT)],
        b"middle frame payload",
    ),
    ("6.2.1", [frame(TEXT, HELLO_UTF8)], HELLO_UTF8),
    (
        "6.2.2",
        [frame(TEXT, "Hello-µ@ßöä".encode(), fin=False), frame(CONT, "üàá-UTF-8!!".encode())],
        HELLO_UTF8,
    ),
    *[
        (
            case,
            [
                frame(TEXT if i == 0 else CONT, p[i : i + 1], fin=i == len(p) - 1)
                for i in range(len(p))
            ],
            p,
        )
        for case, p in [("6.2.3", HELLO_UTF8), ("6.2.4", KOSME)]
    ],
]


@pytest.mark.parametrize(("frames", "text"), [pytest.param(*c[1:], id=c[0]) for c in VALID_6])
def test_6_valid_text_is_echoed(quiet, frames, text):
    run_case(quiet, frames, "one", [msg(text)], None)


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([frame(TEXT, BAD_6_3)], id="6.3.1"),
        pytest.param(
            [
                frame(TEXT if i == 0 else CONT, BAD_6_3[i : i + 1], fin=i == len(BAD_6_3) - 1)
                for i in range(len(BAD_6_3))
            ],
            id="6.3.2",
        ),
    ],
)
def test_6_3_invalid_text_fails_with_1007(quiet, frames):
    run_case(quiet, frames, "one", [], 1007)


@pytest.mark.parametrize(
    ("payload", "valid"),
    [pytest.param(HELLO_UTF8, True, id="6.2-split"), pytest.param(BAD_6_3, False, id="6.3-split")],
)
def test_6_text_split_into_two_fragments_at_every_byte(quiet, payload, valid):
    """Each cut point in turn; an invalid byte in the first fragment fails the
    connection before the second fragment is sent."""
    bad = first_invalid(payload)
    for cut in range(len(payload) + 1):
        first = frame(TEXT, payload[:cut], fin=False)
        second = frame(CONT, payload[cut:])
        with open_ws(quiet) as ws:
            if valid:
                ws.send(first + second)
                expect_ok(ws, msg(payload))
            elif bad is not None and bad < cut:
                ws.send(first)
                expect_close(ws, {1007}, rest=second)
            else:
                ws.send(first + second)
                expect_close(ws, {1007})


# 6.4.x: the message fails on byte 12 (0x90 after 0xF4: above U+10FFFF).
P1, P2, P3 = KOSME, b"\xf4\x90\x80\x80", b"edited"
P = P1 + P2 + P3


@pytest.mark.parametrize(
    ("first", "second", "third"),
    [pytest.param(P1, P2, P3, id="6.4.1"), pytest.param(P[:12], P[12:13], P[13:], id="6.4.2")],
)
def test_6_4_fail_fast_in_fragments(quiet, first, second, third):
    with open_ws(quiet) as ws:
        # The valid first fragment is accepted: a ping behind it is answered.
        ws.send(frame(TEXT, first, fin=False) + frame(PING, b"A"))
        assert next_event(ws) == ("pong", b"A")
        # The fragment with the invalid byte fails the connection at once,
        # without the final fragment.
        ws.send(frame(CONT, second, fin=False))
        expect_close(ws, {1007}, rest=frame(CONT, third))


@pytest.mark.parametrize(
    "cuts", [pytest.param((11, 15), id="6.4.3"), pytest.param((12, 13), id="6.4.4")]
)
def test_6_4_fail_fast_in_chops_of_one_frame(quiet, cuts):
    whole = frame(TEXT, P)
    h = header_len(whole, len(P))
    a, b = h + cuts[0], h + cuts[1]
    with open_ws(quiet) as ws:
        ws.send(whole[:a])
        ws.send(whole[a:b])
        expect_close(ws, {1007}, rest=whole[b:])


# ---- 7 Close handling ------------------------------------------------------------------

C1000 = frame(CLOSE, close_payload(1000))
HW = b"Hello World!"

AFTER_CLOSE = [
    ("7.1.1", [frame(TEXT, HW), C1000], [msg(HW)]),
    ("7.1.2", [C1000, frame(CLOSE)], []),
    ("7.1.3", [C1000, frame(PING)], []),
    ("7.1.4", [C1000, frame(TEXT, HW)], []),
    ("7.1.5", [frame(TEXT, F1, fin=False), C1000, frame(CONT, F2)], []),
]


@pytest.mark.parametrize(("frames", "before"), [pytest.param(*c[1:], id=c[0]) for c in AFTER_CLOSE])
def test_7_1_nothing_is_answered_after_the_close(quiet, frames, before):
    """The close is echoed once; frames behind it get no echo, pong or second close."""
    with open_ws(quiet) as ws:
        ws.send(b"".join(frames))
        expect_close(ws, {1000}, *before, reply=False)


def repeat_to(pattern: bytes, n: int) -> bytes:
    return (pattern * (n // len(pattern) + 1))[:n]


@pytest.mark.parametrize(
    "at_limit", [pytest.param(False, id="7.1.6"), pytest.param(True, id="7.1.6-at-limit")]
)
def test_7_1_6_big_message_then_close_then_ping(server, at_limit):
    """Autobahn sends 256 KiB; above the limit that is 1009. At the limit both
    messages come back before the close (Autobahn's OK; it also accepts the
    close overtaking them), and the ping behind the close is never answered."""
    top = limit(server)
    big = repeat_to(b"BAsd7&jh23", top if at_limit else 256 * 1024)
    frames = [frame(TEXT, big), frame(TEXT, HW), C1000, frame(PING)]
    with open_ws(server) as ws:
        ws.send(b"".join(frames))
        if at_limit:
            expect_close(ws, {1000}, msg(big), msg(HW), reply=False)
        else:
            expect_close(ws, {1009}, reply=False)


CLOSE_FRAMES = [
    # Autobahn accepts several answers for some cases; this server's is
    # deterministic, so each expects exactly the one it gives: the peer's code
    # echoed (an empty close for an empty one), 1007 for a reason that is not
    # UTF-8, 1002 for a code the RFC does not allow.
    ("7.3.1", frame(CLOSE), {None}),
    ("7.3.2", frame(CLOSE, b"a"), {1002}),
    ("7.3.3", C1000, {1000}),
    ("7.3.4", frame(CLOSE, close_payload(1000, HW)), {1000}),
    ("7.3.5", frame(CLOSE, close_payload(1000, b"*" * 123)), {1000}),
    ("7.3.6", frame(CLOSE, close_payload(1000, b"*" * 124)), {1002}),
    ("7.5.1", frame(CLOSE, close_payload(1000, BAD_6_3)), {1007}),
    *[
        (f"7.7.{i}", frame(CLOSE, close_payload(code)), {code})
        for i, code in enumerate(
            [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999], start=1
        )
    ],
    *[
        (f"7.9.{i}", frame(CLOSE, close_payload(code)), {1002})
        for i, code in enumerate([0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999], start=1)
    ],
    ("7.13.1", frame(CLOSE, close_payload(5000)), {1002}),
    ("7.13.2", frame(CLOSE, close_payload(65535)), {1002}),
]


@pytest.mark.parametrize(("data", "codes"), [pytest.param(*c[1:], id=c[0]) for c in CLOSE_FRAMES])
def test_7_close_frame_payloads_and_codes(quiet, data, codes):
    with open_ws(quiet) as ws:
        ws.send(data)
        # A refused close frame is not a close: the client still owes one.
        expect_close(ws, codes, reply=1002 in codes or 1007 in codes)
