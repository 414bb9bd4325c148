"""Property-based fuzzing of the access limits, run by MicroPython itself.

The table of client addresses (access.Peers: a token bucket per address,
failed tokens, one shared overflow row) is driven through arbitrary
sequences of connections and token checks on a fake clock, the way Access
drives it, and must answer each exactly as the README's model in
fuzz_ref.PeersModel does: which row an address gets, and whether it is let
in, over its rate, or waiting after failed tokens. The clock crosses the
ticks wrap, and may jump further than half the ticks period (on a board,
ticks_ms wraps every 12.4 days). The constant-time token compare and the
address key are checked on raw input too.
"""

from __future__ import annotations

from pathlib import Path

import fuzz_ref
import pytest
from conftest import mp_driver
from fuzzing import FUZZ, batch, corpus, fuzz_and_keep
from hypothesis import given
from hypothesis import strategies as st

DRIVER = Path(__file__).parent / "mp" / "fuzz_access_driver.py"
KEYS = [1, 2, 3, 4, 5, 6, "10.0.0.1", "10.0.0.2"]  # more addresses than rows
STEPS = st.one_of(
    st.sampled_from([0, 0, 0, 0, 1, 10, 100, 500, 999, 1000, 1001, 2000, 4000, 30000, 59999,
                     60000, 60001, 120000]),
    st.integers(0, 200000),
)  # fmt: skip
HALF_PERIOD = 1 << 61  # of the unix port's ticks (1 << 29 on a board)


@pytest.fixture(scope="module")
def mp():
    with mp_driver(DRIVER, heap="32M") as ask:
        yield ask


@st.composite
def sequence(draw) -> dict:
    ops: list[list] = []
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=6, unique=True))
    for _ in range(draw(st.integers(1, 40))):
        dt, key = draw(STEPS), draw(st.sampled_from(keys))
        if draw(st.integers(0, 2)):
            ops.append([dt, "knock", key])
        else:
            ops.append([dt, "token", key, draw(st.integers(0, 3)) == 0])
    if draw(st.integers(0, 4)) == 0:  # one jump past half the ticks period
        ops[draw(st.integers(0, len(ops) - 1))][0] = HALF_PERIOD + draw(st.integers(0, 10**6))
    return {
        "size": draw(st.integers(1, 4)),
        "burst": draw(st.integers(1, 3)),
        "rate": draw(st.sampled_from([0, 1, 1, 2, 5])),
        "back": draw(st.sampled_from([0, 1, 30000, 1 << 20, 1 << 40])),
        "ops": ops,
    }


def expected(s: dict) -> list:
    model = fuzz_ref.PeersModel(s["size"], s["burst"], s["rate"])
    now, out = 0, []
    for op in s["ops"]:
        now += op[0]
        if op[1] == "knock":
            out.append(list(model.knock(op[2], now)))
        else:
            out.append([model.token(op[2], op[3], now)])
    return out


def check(mp, seqs: list[dict]) -> dict | None:
    results = mp({"peers": seqs})["results"]
    assert len(results) == len(seqs)
    for s, got in zip(seqs, results, strict=True):
        want = expected(s)
        if got != want:
            first = next(
                i
                for i, (g, w) in enumerate(zip(got + [None] * len(want), want, strict=False))
                if g != w
            )
            return {"seq": s, "first_difference": first, "got": got, "want": want}
    return None


def test_peer_table_matches_the_model(mp):
    fuzz_and_keep("peers", (batch(sequence()),), lambda seqs: check(mp, seqs))


CASES = corpus("peers")


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_peer_corpus_replays(mp, case):
    bad = check(mp, [case["seq"]])
    assert bad is None, bad


@st.composite
def compare(draw) -> tuple[bytes, int, int, bytes]:
    """A span of a buffer and a secret, often equal or nearly (a prefix, a
    longer run that goes on past the span into the rest of the buffer)."""
    buf = draw(st.binary(min_size=0, max_size=40))
    a = draw(st.integers(0, len(buf)))
    n = draw(st.integers(0, len(buf) - a))
    secret = buf[a : a + n]
    b = draw(st.integers(a, len(buf))) if draw(st.integers(0, 3)) == 0 else a + n
    if draw(st.integers(0, 2)) == 0:
        secret = draw(st.binary(min_size=1, max_size=12))
    elif secret and draw(st.booleans()):
        i = draw(st.integers(0, len(secret) - 1))
        secret = secret[:i] + bytes([secret[i] ^ (1 << draw(st.integers(0, 7)))]) + secret[i + 1 :]
    return buf, a, b, secret or b"x"


def test_secret_equal_is_the_span_equal_to_the_secret(mp):
    @FUZZ
    @given(st.lists(compare(), min_size=10, max_size=60))
    def prop(cases):
        got = mp({"secret_equal": [[b.hex(), a, e, s.hex()] for b, a, e, s in cases]})["results"]
        assert got == [b[a:e] == s for b, a, e, s in cases], cases

    prop()


@st.composite
def address(draw) -> tuple[str, bytes | tuple]:
    """(the client's IP, the address accept() gives: a raw sockaddr on the
    unix port, Linux or BSD layout, or a board's (host, port))."""
    port = draw(st.integers(0, 65535)).to_bytes(2, "big")
    kind = draw(st.integers(0, 2))
    if kind == 0:
        ip = draw(st.sampled_from([b"\x7f\0\0\x01", b"\x7f\0\0\x02", b"\x0a\0\0\x01"])
                  | st.binary(min_size=4, max_size=4))  # fmt: skip
        fam = draw(st.sampled_from([b"\x02\x00", b"\x10\x02"]))
        return "4:" + ip.hex(), fam + port + ip + bytes(8)
    if kind == 1:
        ip = draw(st.sampled_from([bytes(15) + b"\x01", b"\xfe\x80" + bytes(13) + b"\x02"])
                  | st.binary(min_size=16, max_size=16))  # fmt: skip
        flow = draw(st.binary(min_size=4, max_size=4))
        scope = draw(st.binary(min_size=4, max_size=4))
        return "6:" + ip.hex(), b"\x0a\x00" + port + flow + ip + scope
    host = draw(st.sampled_from(["192.168.4.2", "192.168.4.3", "fe80::1"]))
    return host, (host, int.from_bytes(port, "big"))


def test_address_key_tells_addresses_apart_and_ignores_ports(mp):
    """IPv4: the same key exactly when the IP is the same; IPv6 (folded):
    the same IP gives the same key whatever its port, flow and scope; a
    board's (host, port): the host."""

    @FUZZ
    @given(st.lists(address(), min_size=2, max_size=30))
    def prop(addrs):
        q = [[a.hex()] if isinstance(a, bytes) else list(a) for _, a in addrs]
        keys = mp({"address_key": q})["results"]
        for (ip, a), k in zip(addrs, keys, strict=True):
            if isinstance(a, tuple):
                assert k == ip
            for (ip2, _), k2 in zip(addrs, keys, strict=True):
                if ip == ip2:
                    assert k == k2, (ip, k, k2)
                elif ip[:2] == ip2[:2] == "4:":
                    assert k != k2, (ip, ip2, k)

    prop()


def test_model_agrees_with_hand_checked_cases():
    """The model itself, on the README's numbers."""
    m = fuzz_ref.PeersModel(1, 2, 1)
    assert [m.knock("a", 0)[1] for _ in range(3)] == ["ok", "ok", "rate"]  # a burst of 2
    assert m.knock("a", 999) == (0, "rate") and m.knock("a", 1000 + 999) == (0, "ok")
    assert m.knock("b", 2000) == (1, "ok")  # a's bucket is not full: b shares the overflow
    assert m.knock("c", 2000) == (1, "ok")
    assert m.knock("c", 2000) == (1, "rate")  # ...with c
    assert m.find("c", 4000) == 0  # a's bucket is full again: c takes its row
    m = fuzz_ref.PeersModel(1, 1, 0)
    for t in (0, 1, 2):
        m.token("a", False, t)
    assert m.knock("a", 2) == (0, "auth") and m.knock("a", 1002) == (0, "ok")  # waits 1 s
    m.token("a", False, 1002)
    assert m.knock("a", 3001) == (0, "auth") and m.knock("a", 3002) == (0, "ok")  # then 2 s
    assert m.find("b", 3002 + 59999) == 1 and m.find("b", 3002 + 60000) == 0  # forgotten
    m = fuzz_ref.PeersModel(1, 1, 0)
    m.token("a", False, 0)
    m.token("a", False, 59000)  # a failure is recent for 60 s after it
    assert m.find("b", 60000) == 1 and m.find("b", 119000) == 0
