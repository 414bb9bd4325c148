# Runs under MicroPython: the access limits' table of client addresses
# (access.Peers) driven through op sequences on a fake clock, as Access
# drives it, plus handshake.secret_equal and server.address_key on raw input.
# stdin, one JSON object a line, one of:
#   {"peers": [{"size": 2, "burst": 1, "rate": 1, "back": ms, "ops": [...]}, ...]}
#     each op [dt, "knock", key] (Access.too_many) or [dt, "token", key, ok]
#     (Access.check_token); dt: ms since the op before. The clock starts
#     `back` ms before ticks 0, so long sequences cross the wrap.
#   {"secret_equal": [["buf hex", a, b, "secret hex"], ...]}
#   {"address_key": [["hex of a raw sockaddr"] or ["host", port], ...]}
# stdout: {"results": [...]}: per sequence a list of [row, "ok"|"rate"|"auth"]
#   or [row] per op; per secret_equal a bool; per address a key.
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
from stormproof import access, handshake, server  # noqa: E402

_STEP = 1 << 60  # a quarter of the unix port's ticks period


def sequence(s):
    peers = access.Peers(s["size"], s["burst"], s["rate"])
    now = time.ticks_add(0, -s["back"])
    out = []
    try:
        run(peers, now, s["ops"], out)
    except Exception as e:  # noqa: BLE001 (reported, and fails the test)
        out.append(["exc", repr(e)])
    return out


def run(peers, now, ops, out):
    for op in ops:
        dt = op[0]
        while dt > _STEP:  # ticks_add takes less than half the period at a time
            now = time.ticks_add(now, _STEP)
            dt -= _STEP
        now = time.ticks_add(now, dt)
        row = peers.find(op[2], now)
        if op[1] == "knock":
            if peers.waiting(row, now):
                out.append([row, "auth"])
            elif not peers.admit(row, now):
                out.append([row, "rate"])
            else:
                out.append([row, "ok"])
        else:
            if op[3]:
                peers.passed(row)
            else:
                peers.failed(row, now)
            out.append([row])


def key(addr):
    a = bytes.fromhex(addr[0]) if len(addr) == 1 else (addr[0], addr[1])
    return server.address_key(a)


for line in sys.stdin:
    q = json.loads(line)
    if "peers" in q:
        out = [sequence(s) for s in q["peers"]]
    elif "secret_equal" in q:
        out = [
            handshake.secret_equal(bytes.fromhex(b), a, e, bytes.fromhex(s))
            for b, a, e, s in q["secret_equal"]
        ]
    else:
        out = [key(a) for a in q["address_key"]]
    print(json.dumps({"results": out}))
