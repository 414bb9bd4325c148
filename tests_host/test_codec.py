"""The pure frame codec, run by MicroPython itself (the target interpreter).

Frames are built here in CPython, fed to lib/stormproof/codec.py inside a
`micropython` process, and the events it reports are asserted on.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import mp_driver
from wsutil import BINARY, CLOSE, CONT, PING, PONG, TEXT, close_payload, frame

DRIVER = Path(__file__).parent / "mp" / "codec_driver.py"


@pytest.fixture(scope="module")
def mp():
    with mp_driver(DRIVER) as ask:
        yield ask


def events(mp, *chunks: bytes, max_message: int = 4096, drain: bool = False) -> list:
    req = {"max": max_message, "chunks": [c.hex() for c in chunks]}
    if drain:
        req["drain_after_error"] = 1
    return mp(req)["events"]


def error_code(evs: list) -> int | None:
    return evs[-1][1] if evs and evs[-1][0] == "error" else None


def test_text_and_binary(mp):
    evs = events(mp, frame(TEXT, b"hello") + frame(BINARY, b"\x00\xff"))
    assert evs == [["text", b"hello".hex()], ["binary", "00ff"]]


def test_empty_messages_are_valid(mp):
    evs = events(mp, frame(TEXT) + frame(BINARY) + frame(TEXT, fin=False) + frame(CONT))
    assert evs == [["text", ""], ["binary", ""], ["text", ""]]


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 4096, 65535, 65536])
def test_length_encodings(mp, n):
    payload = random.randbytes(n)
    evs = events(mp, frame(BINARY, payload), max_message=70000)
    assert evs == [["binary", payload.hex()]]


def test_64bit_length_field(mp):
    # A 64-bit length field carrying a small payload is legal framing.
    payload = b"x" * 300
    raw = bytes([0x82, 0x80 | 127]) + (300).to_bytes(8, "big") + b"\0\0\0\0" + payload
    assert events(mp, raw) == [["binary", payload.hex()]]


def test_every_split_point(mp):
    """A fragmented text message with a ping between fragments and a close,
    cut at every byte boundary, always yields the same events."""
    data = (
        frame(TEXT, "κό".encode(), fin=False)
        + frame(PING, b"are you there")
        + frame(CONT, "σμε".encode(), fin=False)
        + frame(CONT, b"!" * 130)
        + frame(CLOSE, close_payload(1000, b"bye"))
    )
    res = mp({"max": 4096, "data": data.hex(), "every_split": 1})["splits"]
    want = [
        ["ping", b"are you there".hex()],
        ["text", ("κόσμε" + "!" * 130).encode().hex()],
        ["close", 1000, b"bye".hex()],
    ]
    assert len(res) == len(data) + 1
    for i, evs in enumerate(res):
        assert evs == want, f"split at byte {i}"


def test_byte_at_a_time(mp):
    data = frame(BINARY, b"abc" * 50) + frame(PONG, b"p")
    evs = events(mp, *[data[i : i + 1] for i in range(len(data))])
    assert evs == [["binary", (b"abc" * 50).hex()], ["pong", b"p".hex()]]


def test_unmasked_frame_is_1002(mp):
    assert error_code(events(mp, frame(TEXT, b"hi", masked=False))) == 1002


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_reserved_bits_are_1002(mp, rsv):
    assert error_code(events(mp, frame(TEXT, b"hi", rsv=rsv))) == 1002


@pytest.mark.parametrize("op", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_unknown_opcodes_are_1002(mp, op):
    assert error_code(events(mp, frame(op, b"x"))) == 1002


def test_control_frame_over_125_is_1002(mp):
    assert error_code(events(mp, frame(PING, b"x" * 126))) == 1002


def test_control_frame_of_125_is_fine(mp):
    assert events(mp, frame(PING, b"x" * 125)) == [["ping", (b"x" * 125).hex()]]


@pytest.mark.parametrize("op", [PING, PONG, CLOSE])
def test_fragmented_control_frame_is_1002(mp, op):
    assert error_code(events(mp, frame(op, b"", fin=False))) == 1002


def test_continuation_without_a_message_is_1002(mp):
    assert error_code(events(mp, frame(CONT, b"x"))) == 1002


def test_new_message_inside_a_fragmented_one_is_1002(mp):
    evs = events(mp, frame(TEXT, b"a", fin=False) + frame(BINARY, b"b"))
    assert error_code(evs) == 1002


def test_ping_between_fragments_is_answered_in_order(mp):
    evs = events(mp, frame(BINARY, b"a", fin=False) + frame(PING, b"1") + frame(CONT, b"b"))
    assert evs == [["ping", b"1".hex()], ["binary", b"ab".hex()]]


def test_invalid_utf8_fails_fast(mp):
    # The invalid byte arrives; the rest of the frame never does. The error
    # must not wait for the end of the message.
    whole = frame(TEXT, b"ok \xc0\xaf and a lot more text" * 4)
    evs = events(mp, whole[:12])
    assert error_code(evs) == 1007


def test_invalid_utf8_in_a_later_fragment(mp):
    evs = events(mp, frame(TEXT, b"fine", fin=False) + frame(CONT, b"\xed\xa0\x80"))
    assert error_code(evs) == 1007


def test_text_ending_inside_a_character_is_1007(mp):
    assert error_code(events(mp, frame(TEXT, "€".encode()[:2]))) == 1007


def test_utf8_split_across_fragments_at_every_byte(mp):
    text = "a€𝄞b".encode()
    for cut in range(len(text) + 1):
        data = frame(TEXT, text[:cut], fin=False) + frame(CONT, text[cut:])
        assert events(mp, data) == [["text", text.hex()]], cut


def test_message_too_big_is_refused_from_the_header(mp):
    # Only the header is fed: the limit is enforced before any payload arrives.
    header = frame(BINARY, b"x" * 5000)[:8]
    assert error_code(events(mp, header, max_message=4096)) == 1009


def test_message_too_big_across_fragments(mp):
    data = frame(BINARY, b"x" * 3000, fin=False) + frame(CONT, b"y" * 2000)[:8]
    assert error_code(events(mp, data, max_message=4096)) == 1009


def test_message_at_the_limit_is_fine(mp):
    data = frame(BINARY, b"x" * 3000, fin=False) + frame(CONT, b"y" * 1096)
    assert events(mp, data, max_message=4096) == [["binary", (b"x" * 3000 + b"y" * 1096).hex()]]


def test_huge_64bit_length_is_1009_without_reading(mp):
    raw = bytes([0x82, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + b"mask"
    assert error_code(events(mp, raw)) == 1009


def test_64bit_length_with_top_bit_is_1002(mp):
    raw = bytes([0x82, 0x80 | 127]) + (1 << 63).to_bytes(8, "big") + b"mask"
    assert error_code(events(mp, raw)) == 1002


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
)
def test_valid_close_codes(mp, code):
    assert events(mp, frame(CLOSE, close_payload(code))) == [["close", code, ""]]


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes_are_1002(mp, code):
    assert error_code(events(mp, frame(CLOSE, close_payload(code)))) == 1002


def test_close_with_one_byte_is_1002(mp):
    assert error_code(events(mp, frame(CLOSE, b"\x03"))) == 1002


def test_close_reason_not_utf8_is_1007(mp):
    assert error_code(events(mp, frame(CLOSE, close_payload(1000, b"\xff")))) == 1007


def test_empty_close_is_1005(mp):
    assert events(mp, frame(CLOSE)) == [["close", 1005, ""]]


def test_drain_mode_finds_the_close_after_a_refused_frame(mp):
    # After a 1009 the rest of the oversized frame is skipped, not parsed,
    # and the peer's close frame behind it is still found.
    big = frame(BINARY, b"z" * 6000)
    evs = events(mp, big[:100], big[100:] + frame(CLOSE, close_payload(1000)), drain=True)
    # Nothing in between is parsed; the close's payload is skipped too (we have
    # closed already), so its code reads as absent (1005).
    assert evs == [["error", 1009, "message too big"], ["close", 1005, ""]]


def test_drain_mode_after_bad_first_bytes(mp):
    # Refused on its first two bytes (RSV set): its length is still read so
    # the stream can be followed to the close frame.
    evs = events(mp, frame(TEXT, b"q" * 300, rsv=1) + frame(PING) + frame(CLOSE), drain=True)
    assert evs[0][:2] == ["error", 1002]
    assert evs[-1][0] == "close"


def test_utf8_dfa_agrees_with_cpython(mp):
    """Every 1- and 2-byte sequence, and a sample of 3- and 4-byte ones,
    classified as CPython's strict decoder does (complete, invalid or prefix)."""
    rng = random.Random(6455)
    seqs = [bytes([a]) for a in range(256)]
    seqs += [bytes([a, b]) for a in range(0xC0, 0x100) for b in range(0x70, 0xD0)]
    for _ in range(6000):
        lead = rng.choice([0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5])
        tail = [rng.randrange(0x70, 0xD0) for _ in range(rng.choice([2, 3]))]
        seqs.append(bytes([lead, *tail]))
    seqs += ["\U0010ffff".encode(), "\ud7ff".encode(), "\ue000".encode(), b"\xf4\x90\x80\x80"]

    def expected(s: bytes) -> str:
        try:
            s.decode("utf-8")
            return "ok"
        except UnicodeDecodeError as e:
            return "prefix" if e.reason == "unexpected end of data" else "bad"

    for i in range(0, len(seqs), 4000):
        batch = seqs[i : i + 4000]
        states = mp({"utf8": [s.hex() for s in batch]})["states"]
        for s, st in zip(batch, states, strict=True):
            got = "ok" if st == 0 else ("bad" if st == 1 else "prefix")
            assert got == expected(s), s.hex()
