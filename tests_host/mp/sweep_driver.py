# Runs under MicroPython: the sweep's rules (stormproof.sweep.slot_due and
# request_expired) on slots and requests described in JSON, at a fixed clock.
# stdin, one JSON object a line:
#   {"slot": {...}, "cfg": {...}, "now": 123}      -> {"due": <constant name>}
#   {"pend": {...}, "cfg": {...}, "now": 123}      -> {"expired": true|false}
#   {"period": 1}                                  -> {"period": ticks period}
# Fields left out take the values of a fresh slot (all 0) and the default Config.
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
from stormproof import Config, sweep  # noqa: E402

NAMES = {0: "nothing", 1: "send_timeout", 2: "keepalive", 3: "idle", 4: "ping", 5: "kick"}


class Obj:
    pass


def make(fields, defaults):
    o = Obj()
    for k in defaults:
        setattr(o, k, fields.get(k, defaults[k]))
    return o


SLOT = {
    "open": True, "aborted": False, "closing_since": 0, "close_kicked": False, "tx_since": 0,
    "ping_sent": 0, "pong_wait": 0, "last_message": 0, "last_rx": 0,
}  # fmt: skip
PEND = {"task": True, "expired": False, "started": 0}

for line in sys.stdin:
    req = json.loads(line)
    if "period" in req:
        print(json.dumps({"period": time.ticks_add(0, -1) + 1}))
        continue
    cfg = Config(**req.get("cfg", {}))
    if "slot" in req:
        slot = make(req["slot"], SLOT)
        slot.ws = make({"open": slot.open}, {"open": True})
        print(json.dumps({"due": NAMES[sweep.slot_due(slot, cfg, req["now"])]}))
    else:
        pend = make(req["pend"], PEND)
        pend.task = pend.task or None
        print(json.dumps({"expired": sweep.request_expired(pend, cfg, req["now"])}))
