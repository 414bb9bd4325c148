"""Property-based fuzzing of the frame codec, run by MicroPython itself.

Arbitrary bytes and mutated frame sequences, cut at arbitrary points, are
fed to lib/stormproof/codec.py the way websocket.py feeds it. For every
input the events must be exactly those of the CPython reference decoder in
fuzz_ref.py (messages, pings, pongs, then the peer's close or the right
close code: 1002, 1007, 1009), no exception may escape the parser, no byte
around its buffers may change, and the bytes it was fed must stay as they were.
"""

from __future__ import annotations

from pathlib import Path

import fuzz_ref
import pytest
from conftest import mp_driver
from fuzzing import batch, chunks_of, corpus, frame_stream, fuzz_and_keep, replay_patterns, split
from hypothesis import strategies as st

DRIVER = Path(__file__).parent / "mp" / "fuzz_frames_driver.py"
MAXES = [1, 7, 125, 300, 4096]


@pytest.fixture(scope="module")
def mp():
    with mp_driver(DRIVER, heap="32M") as ask:
        yield ask


def run(mp, max_message: int, cases: list[dict]) -> dict | None:
    """Feed every case in one request; the first case that breaks a property,
    with what the device did and what it should have, else None. Each case
    runs twice: payload fed through the read chunk, and taken straight into
    the message buffer (direct_room()/took(), the Receiver's long reads)."""
    for direct in (0, 1):
        req = {"max": max_message, "cases": [{"chunks": [c.hex() for c in k["chunks"]], "drain": k["drain"],
                                              "direct": direct} for k in cases]}  # fmt: skip
        results = mp(req)["results"]
        assert len(results) == len(cases)
        for case, res in zip(cases, results, strict=True):
            data = b"".join(case["chunks"])
            want = fuzz_ref.frames(data, max_message, case["drain"])
            if "exc" in res or not res["guards"] or res["events"] != want:
                return {
                    "max": max_message,
                    "drain": case["drain"],
                    "direct": direct,
                    "chunks": [c.hex() for c in case["chunks"]],
                    "got": res,
                    "want": want,
                }
    return None


@st.composite
def fed(draw) -> list[dict]:
    """One input at the cuts Hypothesis chose and at a few more (cheap to
    make here, where drawing each through Hypothesis would cost far more than
    MicroPython takes to parse them), with and without drain mode."""
    data = draw(frame_stream())
    pats = [draw(split(data)), *chunks_of(data, draw(st.integers(0, 1 << 16)))]
    return [{"chunks": p, "drain": d} for p in pats for d in (0, 1)]


def test_codec_matches_the_reference_on_any_input(mp):
    fuzz_and_keep(
        "frames",
        (st.sampled_from(MAXES), batch(fed())),
        lambda max_message, inputs: run(mp, max_message, [c for cases in inputs for c in cases]),
    )


CASES = corpus("frames")


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_corpus_replays(mp, case):
    """Every input that ever failed, fed as it failed and at other splits."""
    pats = replay_patterns(case["chunks"])
    for drain in (0, 1):
        bad = run(mp, case["max"], [{"chunks": p, "drain": drain} for p in pats])
        assert bad is None, bad


def test_every_close_code(mp):
    """A close frame with every code up to 5100 and every 7th above, as the
    reference judges it (test_fuzz_reference holds that to wsproto's)."""
    from fuzz_ref import CLOSE_CODES_CHECKED
    from wsutil import CLOSE, close_payload, frame

    cases = [{"chunks": [frame(CLOSE, close_payload(c, b"r"), key=b"\1\2\3\4")], "drain": 0}
             for c in CLOSE_CODES_CHECKED]  # fmt: skip
    assert run(mp, 7, cases) is None


def test_every_server_header_length(mp):
    """write_header for every length a server frame can have (a tx buffer is
    16 KiB at most): the RFC's shortest length form, the FIN bit as asked,
    and nothing written outside the header."""
    lengths = list(range(16385))
    got = mp({"headers": lengths})["headers"]
    for n, (head, guards) in zip(lengths, got, strict=True):
        b0 = (0x80 if n % 2 == 0 else 0) | 2
        want = bytes([b0, n]) if n < 126 else bytes([b0, 126]) + n.to_bytes(2, "big")
        assert (bytes.fromhex(head), guards) == (want, True), n


def test_reference_agrees_with_hand_checked_cases():
    """The reference itself, on cases whose answer is known by hand, so a
    fault shared by device and model cannot pass unseen."""
    from wsutil import BINARY, CLOSE, PING, TEXT, close_payload, frame

    f = fuzz_ref.frames
    assert f(frame(TEXT, b"hi") + frame(PING, b"p"), 10, False) == [
        ["text", "6869"],
        ["ping", "70"],
    ]
    assert f(frame(TEXT, b"a", fin=False) + frame(PING) + frame(0, b"b"), 10, False) == [
        ["ping", ""],
        ["text", "6162"],
    ]
    assert f(frame(BINARY, b"x" * 11), 10, False) == [["error", 1009]]
    assert f(frame(TEXT, b"\xff")[:7], 10, False) == [["error", 1007]]
    assert f(frame(TEXT, b"\xe2\x82"), 10, False) == [["error", 1007]]
    assert f(frame(CLOSE, close_payload(1005)), 10, False) == [["error", 1002]]
    assert f(frame(CLOSE, b""), 10, False) == [["close", 1005, ""]]
    assert f(frame(TEXT, b"x", rsv=1) + frame(CLOSE), 10, True) == [["error", 1002], ["close"]]
    huge = bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + b"kkkk"
    assert f(huge, 10, True) == [["error", 1009], ["stuck", 1009]]  # nothing after it can be read
    assert f(huge + b"?", 10, True) == [["error", 1009], ["stuck", 1009]]
    assert f(frame(0, b"x"), 10, False) == [["error", 1002]]
    assert f(frame(TEXT, b"x", masked=False), 10, False) == [["error", 1002]]
