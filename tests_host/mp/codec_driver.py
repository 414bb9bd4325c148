# Runs under MicroPython: feeds the real codec and reports its events as JSON lines.
# stdin, one JSON object a line:
#   {"max": 100, "chunks": ["hex", ...]}           feed the chunks in order
#   {"max": 100, "data": "hex", "every_split": 1}   every 2-way split of data
#   {"utf8": ["hex", ...]}                          UTF-8 DFA end state of each
#   {"drain_after_error": 1, ...}                   after EV_ERROR, drain_mode() and go on
# stdout: {"events": [...]} or, for every_split, {"splits": [[...], ...]}
import json
import sys

sys.path.insert(0, sys.argv[1])
from stormproof import codec, utf8  # noqa: E402

NAMES = {1: "text", 2: "binary", 3: "ping", 4: "pong", 5: "close", 6: "error"}


def run(p, chunks, drain):
    out = []
    for chunk in chunks:
        pos = 0
        while True:
            ev = p.feed(chunk, pos, len(chunk))
            pos = p.pos
            if ev == codec.EV_NONE:
                break
            name = NAMES[ev]
            if ev in (1, 2):
                out.append([name, bytes(p.message[: p.msg_len]).hex()])
            elif ev in (3, 4):
                out.append([name, bytes(p.control[: p.ctl_len]).hex()])
            elif ev == 5:
                out.append([name, p.close_code, bytes(p.control[2 : p.ctl_len]).hex()])
            else:
                out.append([name, p.error_code, p.error_reason])
                if drain and not p._closing:
                    p.drain_mode()
                    continue
                break
        if out and out[-1][0] == "error" and not drain:
            break
    return out


for line in sys.stdin:
    req = json.loads(line)
    if "utf8" in req:
        states = []
        for h in req["utf8"]:
            b = bytes.fromhex(h)
            states.append(utf8.scan(b, 0, len(b), utf8.ACCEPT))
        print(json.dumps({"states": states}))
        continue
    p = codec.FrameParser(bytearray(req["max"]), req["max"])
    drain = req.get("drain_after_error", 0)
    if req.get("every_split"):
        data = bytes.fromhex(req["data"])
        res = []
        for i in range(len(data) + 1):
            p.reset()
            res.append(run(p, [data[:i], data[i:]], drain))
        print(json.dumps({"splits": res}))
    else:
        chunks = [bytes.fromhex(c) for c in req["chunks"]]
        print(json.dumps({"events": run(p, chunks, drain)}))
