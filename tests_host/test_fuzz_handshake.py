"""Property-based fuzzing of the request parser and the opening handshake,
run by MicroPython itself.

Arbitrary bytes and mutated requests, cut at arbitrary points, are read the
way the server reads them and parsed by lib/stormproof/handshake.py. For
every input each answer (the status that refuses it, or the request line,
header values, token matches, Sec-WebSocket-Accept and subprotocol) must be
the one the CPython reference in fuzz_ref.py gives; no exception but a
HandshakeError may escape, and the request buffer must not be written to.
Who may connect is judged on the same inputs: the Origin allow-list under
several settings, where the token was presented, and the constant-time
token match, against the README's Security rules.
"""

from __future__ import annotations

from pathlib import Path

import fuzz_ref
import pytest
from conftest import mp_driver
from fuzzing import (
    SECRETS,
    access_head,
    batch,
    chunks_of,
    corpus,
    fuzz_and_keep,
    replay_patterns,
    request_head,
    split,
)
from hypothesis import strategies as st

DRIVER = Path(__file__).parent / "mp" / "fuzz_http_driver.py"
NAMES = ["host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
         "sec-websocket-protocol", "origin", "x-other"]  # fmt: skip
PROTOCOLS = ["chat", "echo"]
CAPS = [1024] * 6 + [24, 160, 1100]
# (allowed_origins, require_origin) as a settings file would give them.
ORIGINS = [["same", 0], ["*", 0], ["*", 1], ["", 1], ["same, HTTP://App.Example:8000/", 1],
           ["http://app.example:8000,https://h:8443 , http://ÄÖ.example//", 0]]  # fmt: skip


@pytest.fixture(scope="module")
def mp():
    with mp_driver(DRIVER, heap="32M") as ask:
        yield ask


def _status(fn, *args):
    try:
        return fn(*args)
    except fuzz_ref.Refused as e:
        return {"status": e.status}


def _refusal(fn, *args):
    try:
        return fn(*args)
    except fuzz_ref.Refused as e:
        return {"status": e.status, "counter": e.counter}


def _hex(v):
    return v.hex() if isinstance(v, bytes) else v


def expected(data: bytes, cap: int) -> dict:
    kind, v = fuzz_ref.read_outcome(data, cap)
    if kind == "status":
        return {"status": v}
    if kind == "incomplete":
        return {"incomplete": v}
    end = int(v)  # type: ignore[call-overload]
    try:
        req = fuzz_ref.Request(data[:end])
    except fuzz_ref.Refused as e:
        return {"status": e.status, "kept": True}
    return {
        "method": req.method, "path": req.path, "query": req.query, "http10": req.http10,
        "extra": min(len(data), cap) - end,
        "headers": [_hex(_status(req.header, k)) for k in NAMES],
        "counts": [len(req.values(k.encode())) for k in NAMES],
        "tokens": [_status(req.has_token, k.encode(), b"upgrade") for k in NAMES],
        "exact": [_status(req.has_token, k.encode(), b"echo", False) for k in NAMES],
        "is_upgrade": _status(req.has_token, b"upgrade", b"websocket"),
        "accept": _status(fuzz_ref.check_upgrade, req),
        "protocol": _status(fuzz_ref.choose_subprotocol, req, PROTOCOLS),
        "kept": True,
        "origins": [_refusal(fuzz_ref.check_origin, req, a, bool(r)) for a, r in ORIGINS],
        "given": [_status(fuzz_ref.token_given, req, s.encode()) for s in SECRETS],
        "secret": [_status(req.has_token, k.encode(), b"echo", False) for k in NAMES],
    }  # fmt: skip


def run(mp, cap: int, cases: list[list[bytes]]) -> dict | None:
    """Parse every case in one request; the first that breaks a property,
    with what the device did and what it should have, else None."""
    req = {"cap": cap, "names": NAMES, "protocols": PROTOCOLS, "origins": ORIGINS,
           "secrets": SECRETS, "cases": [[c.hex() for c in chunks] for chunks in cases]}  # fmt: skip
    results = mp(req)["results"]
    assert len(results) == len(cases)
    for chunks, got in zip(cases, results, strict=True):
        want = expected(b"".join(chunks), cap)
        # How many bytes came after the head depends on the cuts (reads stop
        # there); that it never exceeds what was sent is all that is fixed.
        if "extra" in got and "extra" in want and 0 <= got["extra"] <= want["extra"]:
            got = {**got, "extra": want["extra"]}
        if got != want:
            return {"cap": cap, "chunks": [c.hex() for c in chunks], "got": got, "want": want}
    return None


@st.composite
def fed(draw) -> list[list[bytes]]:
    """One input at the cuts Hypothesis chose and at a few more (cheap to
    make here, where drawing each through Hypothesis would cost far more than
    MicroPython takes to parse them)."""
    data = draw(st.one_of(request_head(), access_head(), st.binary(max_size=80)))
    return [draw(split(data)), *chunks_of(data, draw(st.integers(0, 1 << 16)))]


def test_parser_matches_the_reference_on_any_input(mp):
    fuzz_and_keep(
        "http",
        (st.sampled_from(CAPS), batch(fed())),
        lambda cap, inputs: run(mp, cap, [chunks for pats in inputs for chunks in pats]),
    )


CASES = corpus("http")


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_corpus_replays(mp, case):
    """Every input that ever failed, read as it failed and at other cuts."""
    pats = replay_patterns(case["chunks"])
    bad = run(mp, case["cap"], pats)
    assert bad is None, bad


def test_reference_agrees_with_hand_checked_cases():
    """The reference itself, on answers known from RFC 6455's own example."""
    ok = (
        b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    req = fuzz_ref.Request(ok)
    assert fuzz_ref.check_upgrade(req) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert fuzz_ref.choose_subprotocol(req, ["superchat", "chat"]) == "superchat"
    routes = {"/chat": ()}
    assert fuzz_ref.answer(ok, 1024, routes, set()) == 101
    assert fuzz_ref.answer(ok.replace(b"13", b"8"), 1024, routes, set()) == 426
    assert fuzz_ref.answer(ok.replace(b"GET", b"PUT"), 1024, routes, set()) == 405
    assert fuzz_ref.answer(ok.replace(b"/chat", b"/x"), 1024, routes, set()) == 404
    assert fuzz_ref.answer(ok, 40, routes, set()) == 431
    assert fuzz_ref.answer(ok, 10, routes, set()) == 414
    assert fuzz_ref.answer(ok[:30], 1024, routes, set()) is None
    assert fuzz_ref.answer(ok.replace(b"Host:", b" Host:"), 1024, routes, set()) == 400
    assert fuzz_ref.answer(ok.replace(b"HTTP/1.1", b"HTTP/2"), 1024, routes, set()) == 505
    assert fuzz_ref.head_end(b"\r\nGET / HTTP/1.1\n\n") == 18


def test_access_reference_agrees_with_hand_checked_cases():
    """The Origin and token references, on the README's Security examples."""

    def req(target: str = "/ws", extra: str = "") -> fuzz_ref.Request:
        return fuzz_ref.Request(
            f"GET {target} HTTP/1.1\r\nHost: 192.168.4.1\r\n{extra}\r\n".encode()
        )

    def origin(r: fuzz_ref.Request, allowed: str = "same", required: bool = False) -> dict:
        return _refusal(fuzz_ref.check_origin, r, allowed, required) or {"status": 101}

    assert origin(req(extra="Origin: http://192.168.4.1\r\n"))["status"] == 101
    assert origin(req(extra="Origin: HTTP://192.168.4.1\r\n"))["status"] == 101
    assert origin(req(extra="Origin: http://stormproof.local\r\n")) == {
        "status": 403,
        "counter": "refused_origin",
    }
    two = req(extra="Origin: http://192.168.4.1\r\nOrigin: http://192.168.4.1\r\n")
    assert origin(two)["status"] == 403 and origin(two, "*")["status"] == 101
    assert origin(req())["status"] == 101 and origin(req(), "same", True)["status"] == 403
    app = req(extra="Origin: http://App.example:8000\r\n")
    assert origin(app, "same, http://app.example:8000/")["status"] == 101
    assert origin(app, "http://app.example")["status"] == 403
    s = b"s3cret-Token_1"
    assert fuzz_ref.token_given(req("/ws?x=1&token=s3cret-Token_1&y=2"), s) == 1
    assert fuzz_ref.token_given(req("/ws?token=s3cret-Token_"), s) == 0
    offer = "Sec-WebSocket-Protocol: chat, token.s3cret-Token_1\r\n"
    assert fuzz_ref.token_given(req(extra=offer), s) == 2
    assert fuzz_ref.token_given(req(extra=offer.replace("token.", "Token.")), s) == 0
