# Runs under MicroPython: many fuzz cases per request through the real codec,
# fed the way websocket.py feeds it (feed(rx, pos, end) while bytes remain;
# after an error, drain_mode() until the peer's close, as _await_peer_close does).
# stdin, one JSON object a line:
#   {"max": 64, "cases": [{"chunks": ["hex", ...], "drain": 0|1, "direct": 0|1}, ...]}
#   {"headers": [n, ...]}   write_header() of a binary frame of n bytes (fin when n is even)
# stdout: {"results": [{"events": [...], "guards": true}, ...]}; "exc" (an
# exception escaped) and the events ["pos", n] (feed() stopped outside the
# chunk) and ["input_changed"] (it wrote to the bytes it was fed) are failures.
# The message and control buffers sit between guard bytes, and every chunk sits
# inside junk the parser must not read: a write out of bounds shows as a broken
# guard, a read out of bounds as different events.
import json
import sys

sys.path.insert(0, sys.argv[1])
from stormproof import codec  # noqa: E402

GUARD = 16
PAD = 0x5A
JUNK_BEFORE = b"\x88\x80\x00\x00\x00\x00"  # a masked close frame, were it read
JUNK_AFTER = b"\x89\xfe\xff\xff\x81"
NAMES = {1: "text", 2: "binary", 3: "ping", 4: "pong"}


def guarded(n):
    raw = bytearray(bytes([PAD]) * (GUARD + n + GUARD))
    return raw, memoryview(raw)[GUARD : GUARD + n]


def guards_ok(raw, n):
    pad = bytes([PAD]) * GUARD
    return raw[:GUARD] == pad and raw[GUARD + n :] == pad


def feed_all(p, chunks, drain, out, direct=0):
    # direct: payload bytes go straight into the message buffer whenever the
    # parser has room for them (direct_room(), then took()), as the server's
    # Receiver reads a long payload; here at every point, not only after a
    # whole read chunk, so both ways of taking bytes meet everywhere.
    draining = False
    for chunk in chunks:
        buf = bytearray(JUNK_BEFORE) + chunk + JUNK_AFTER
        pos = len(JUNK_BEFORE)
        end = pos + len(chunk)
        again = False  # after drain_mode(): fed once more even at the end (as the server does)
        while pos < end or again:
            again = False
            room = p.direct_room() if direct else 0
            if room and pos < end:
                n = min(room, end - pos)
                msg, at = p.message, p.msg_len
                for i in range(n):  # what readinto() into the view would do
                    msg[at + i] = buf[pos + i]
                pos += n
                ev = p.took(n)
                if ev == codec.EV_NONE:
                    continue
            else:
                ev = p.feed(buf, pos, end)
                if p.pos < pos or p.pos > end:
                    out.append(["pos", p.pos])
                    return
                pos = p.pos
                if ev == codec.EV_NONE:
                    if pos != end:
                        out.append(["pos", p.pos])
                        return
                    continue
            if draining:
                if ev == codec.EV_CLOSE:
                    out.append(["close"])
                else:
                    out.append(["stuck", p.error_code])  # the stream cannot be followed
                return
            if ev in NAMES:
                src = p.message if ev <= 2 else p.control
                n = p.msg_len if ev <= 2 else p.ctl_len
                out.append([NAMES[ev], bytes(src[:n]).hex()])
            elif ev == codec.EV_CLOSE:
                out.append(["close", p.close_code, bytes(p.control[2 : p.ctl_len]).hex()])
                return
            else:
                out.append(["error", p.error_code])
                if not drain:
                    return
                p.drain_mode()
                draining = True
                again = True
        if buf[: len(JUNK_BEFORE)] != JUNK_BEFORE or buf[end:] != JUNK_AFTER:
            out.append(["input_changed"])
            return
        if bytes(buf[len(JUNK_BEFORE) : end]) != chunk:
            out.append(["input_changed"])
            return


msg_raw = ctl_raw = p = None
for line in sys.stdin:
    req = json.loads(line)
    if "headers" in req:  # write_header for each length, at an offset, between guards
        raw, view = guarded(20)
        out = []
        for n in req["headers"]:
            h = codec.write_header(view, 3, codec.OP_BINARY, n, n % 2 == 0)
            out.append([bytes(view[3 : 3 + h]).hex(), guards_ok(raw, 20)])
        print(json.dumps({"headers": out}))
        continue
    m = req["max"]
    if p is None or p.max_message != m:
        msg_raw, message = guarded(m)
        p = codec.FrameParser(message, m)
        ctl_raw, p.control = guarded(125)
    results = []
    for case in req["cases"]:
        p.reset()  # one parser for every case, as a slot reuses its own
        out = []
        res = {"events": out}
        try:
            chunks = [bytes.fromhex(c) for c in case["chunks"]]
            feed_all(p, chunks, case.get("drain", 0), out, case.get("direct", 0))
        except Exception as e:  # noqa: BLE001 (reported, and fails the test)
            res["exc"] = repr(e)
        res["guards"] = guards_ok(msg_raw, m) and guards_ok(ctl_raw, 125)
        results.append(res)
    print(json.dumps({"results": results}))
