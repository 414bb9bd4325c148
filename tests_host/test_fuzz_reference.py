"""The frame reference (fuzz_ref.frames) against wsproto's own parser.

The device is held to fuzz_ref; this holds fuzz_ref to a second, independent
implementation of RFC 6455, on the same generated streams, so a mistake in
the model cannot hide a mistake in the device. Where the two may differ by
design, the input is left out of the comparison:
- lengths not in their shortest form: wsproto refuses them (1002); the RFC
  asks senders to use the shortest, and the device accepts either;
- close code 1014 (registered by IANA after RFC 6455): wsproto refuses it;
- a message over the device's limit (1009): wsproto has no limit;
- a frame refused on its first two bytes: wsproto reads its whole header
  first, so it is compared with the header completed.
Pure CPython: no MicroPython, no server.
"""

from __future__ import annotations

import fuzz_ref
from fuzzing import FUZZ, frame_stream
from hypothesis import assume, given
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

BIG = 1 << 24


def headers(data: bytes):
    """(pos, length field size, payload length) of every frame header in data
    that can be followed, in order."""
    pos = 0
    while pos + 2 <= len(data):
        got = fuzz_ref._length(data, pos)
        if got is None:
            return
        size, n = got
        yield pos, size, n
        pos += size + (4 if data[pos + 1] & 0x80 else 0) + n


def shortest_lengths(data: bytes) -> bool:
    """Is every frame header that can be followed in its shortest length form?"""
    return not any(
        (size == 4 and n <= 125) or (size == 10 and n <= 0xFFFF) for _, size, n in headers(data)
    )


def closes_with_1014(data: bytes) -> bool:
    """Does a close frame in data carry code 1014? wsproto refuses that code
    (1002), RFC 6455's registry has it (Bad Gateway): its answers differ."""
    for pos, size, n in headers(data):
        masked = data[pos + 1] & 0x80
        start = pos + size + (4 if masked else 0)
        if data[pos] & 0x0F == 8 and n >= 2 and start + 2 <= len(data):
            key = data[pos + size : pos + size + 4] if masked else bytes(4)
            if fuzz_ref._unmask(data[start : start + 2], key) == b"\x03\xf6":
                return True
    return False


def wsproto_events(data: bytes) -> list:
    fp = FrameProtocol(client=False, extensions=[])
    fp.receive_bytes(data)
    out: list = []
    parts: list = []
    try:
        for f in fp.received_frames():
            if f.opcode == Opcode.CLOSE:
                code, reason = f.payload
                out.append(["close", int(code), reason.encode().hex()])
                break
            if f.opcode in (Opcode.PING, Opcode.PONG):
                out.append([f.opcode.name.lower(), bytes(f.payload).hex()])
                continue
            parts.append(f.payload.encode() if isinstance(f.payload, str) else bytes(f.payload))
            if f.message_finished:
                kind = "text" if isinstance(f.payload, str) else "binary"
                out.append([kind, b"".join(parts).hex()])
                parts = []
    except ParseFailed as e:
        out.append(["error", int(e.code)])
    return out


@FUZZ
@given(frame_stream())
def test_reference_agrees_with_wsproto(data):
    want = fuzz_ref.frames(data, BIG, False)
    assume(shortest_lengths(data))
    assume(not closes_with_1014(data))
    # A 64-bit length with its top bit set is a protocol error (RFC 6455
    # 5.2): the device and the reference say 1002, wsproto does not check it.
    assume(not any(n >> 63 for _, _, n in headers(data)))
    assume(not want or want[-1][:2] not in (["error", 1009], ["close", 1014]))
    got = wsproto_events(data)
    if want and want[-1][0] == "error" and got == want[:-1]:
        # The device refuses a frame on its first two bytes when they decide
        # it; wsproto reads the whole header first. With the header complete
        # it must refuse the same way.
        got = wsproto_events(data + bytes(14))[: len(want)]
    assert got == want


def test_every_close_code_agrees_with_wsproto():
    from wsutil import CLOSE, close_payload, frame

    for code in fuzz_ref.CLOSE_CODES_CHECKED:
        if code != 1014:
            data = frame(CLOSE, close_payload(code, b"r"), key=b"\1\2\3\4")
            assert wsproto_events(data) == fuzz_ref.frames(data, BIG, False), code
