# Runs under MicroPython: many fuzz cases per request through the real request
# parser, read the way the server reads (Server._read_some) (into a buffer of `cap`
# bytes, the head looked for after every read, 414/431 when the buffer fills).
# stdin, one JSON object a line:
#   {"cap": 1024, "names": ["host", ...], "protocols": ["echo", ...],
#    "cases": [["hex chunk", ...], ...]}
# stdout: {"results": [{...}, ...]}, each with
#   "status": the refusal (414/431 while reading, 400/414/431/505 from Request)
#   or the request's method/path/query/http10/extra, each header's value
#   (hex of its UTF-8, or a status), count and token match, is_upgrade,
#   check_upgrade's accept key and choose_subprotocol's pick (or statuses);
#   "exc": any other exception; "kept": false if the parser wrote to the buffer;
#   with "origins": [[allowed_origins, require_origin], ...] and "secrets":
#   ["...", ...] in the request, also check_origin's verdict for each rule
#   (built by startup.origin_rule), access.token_given's answer for each
#   secret, and has_token(name, b"echo", SECRET) for each name.
# The buffer beyond what was read holds an old request, as a slot's reused
# buffer does: a parser that read past `n` or `end` would find it.
import json
import sys

sys.path.insert(0, sys.argv[1])
from stormproof import access, handshake, startup  # noqa: E402

STALE = b"GET /old HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\r\n"


def call(fn, *args):
    try:
        return fn(*args)
    except handshake.HandshakeError as e:
        return {"status": e.status}


def read(buf, cap, chunks):
    """(end, n) once the head is in, or raise the status, or (-1, n)."""
    n = 0
    for chunk in chunks:
        i = 0
        while i < len(chunk) and n < cap:
            r = min(len(chunk) - i, cap - n)
            buf[n : n + r] = chunk[i : i + r]
            n += r
            i += r
            end = handshake.find_end(buf, n)
            if end >= 0:
                return end, n
            if n >= cap:
                nl = buf.find(b"\n", handshake.skip_empty_lines(buf, n), n)
                raise handshake.HandshakeError(431 if nl >= 0 else 414, "over")
    return -1, n


def header_hex(req, name):
    v = req.header(name)
    return None if v is None else v.encode().hex()


class Setting:
    def __init__(self, allowed, required):
        self.allowed_origins = allowed
        self.require_origin = required


def origin(req, rule):
    try:
        handshake.check_origin(req, rule)
    except handshake.HandshakeError as e:
        return {"status": e.status, "counter": e.counter}
    return None


def one(buf, cap, chunks, names, protocols, rules, secrets):
    for i in range(len(buf)):
        buf[i] = STALE[i % len(STALE)]
    try:
        end, n = read(buf, cap, chunks)
    except handshake.HandshakeError as e:
        return {"status": e.status}
    if end < 0:
        return {"incomplete": n}
    before = bytes(buf)
    try:
        req = handshake.Request(buf, end)
    except handshake.HandshakeError as e:
        return {"status": e.status, "kept": bytes(buf) == before}
    res = {
        "method": req.method, "path": req.path, "query": req.query, "http10": req.http10,
        "extra": n - end,
        "headers": [call(header_hex, req, k) for k in names],
        "counts": [req.header_count(k.encode()) for k in names],
        "tokens": [call(req.has_token, k.encode(), b"upgrade") for k in names],
        "exact": [call(req.has_token, k.encode(), b"echo", False) for k in names],
        "is_upgrade": call(req.is_upgrade),
        "accept": call(handshake.check_upgrade, req),
        "protocol": call(handshake.choose_subprotocol, req, protocols),
    }  # fmt: skip
    res["origins"] = [origin(req, r) for r in rules]
    res["given"] = [call(access.token_given, req, s, b"token." + s) for s in secrets]
    res["secret"] = [call(req.has_token, k.encode(), b"echo", handshake.SECRET) for k in names]
    if isinstance(res["accept"], (bytes, bytearray)):
        res["accept"] = bytes(res["accept"]).decode()
    res["kept"] = bytes(buf) == before
    return res


for line in sys.stdin:
    q = json.loads(line)
    cap = q["cap"]
    buf = bytearray(cap + 64)  # a slot's buffer is longer than request_max
    rules = [startup.origin_rule(Setting(a, r)) for a, r in q.get("origins", ())]
    secrets = [s.encode() for s in q.get("secrets", ())]
    out = []
    for case in q["cases"]:
        try:
            r = one(
                buf,
                cap,
                [bytes.fromhex(c) for c in case],
                q["names"],
                q["protocols"],
                rules,
                secrets,
            )
        except Exception as e:  # noqa: BLE001 (reported, and fails the test)
            r = {"exc": repr(e)}
        out.append(r)
    print(json.dumps({"results": out}))
