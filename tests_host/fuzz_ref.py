"""Reference models, in CPython, of what the device's parsers must answer.

Written from RFC 6455, RFC 9112 and the choices the README documents, not
from the device code's structure: each consumes the whole input at once,
where the device works incrementally on fixed buffers split anywhere. The
fuzz tests hold the device to these answers for every input.
"""

from __future__ import annotations

import base64
import codecs
import hashlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009

# ---- frames --------------------------------------------------------------


def utf8_prefix_ok(data: bytes) -> bool:
    """Can `data` still grow into valid UTF-8 (strict: no overlongs, no surrogates)?"""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def utf8_ok(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# Every code around the defined ranges, and a sample of the rest.
CLOSE_CODES_CHECKED = [*range(5101), *range(5101, 65536, 7), 65535]


def close_code_ok(code: int) -> bool:
    # RFC 6455 7.4: 1004-1006 and 1015 are never sent; 1016-2999 unassigned;
    # 3000-4999 registered or private.
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _unmask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def _length(data: bytes, pos: int) -> tuple[int, int] | None:
    """(header size without the key, payload length) of the frame at pos, or
    None while its length field is incomplete."""
    n = data[pos + 1] & 0x7F
    size = {126: 4, 127: 10}.get(n, 2)
    if pos + size > len(data):
        return None
    if n == 126:
        n = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif n == 127:
        n = int.from_bytes(data[pos + 2 : pos + 10], "big")
    return size, n


def _too_long(n: int) -> int | None:
    """The device's 64-bit length rule: the top bit is illegal (1002); a
    length of 2**24 or more exceeds any buffer it can have (1009)."""
    if n >> 63:
        return PROTOCOL_ERROR
    if n >= 1 << 24:
        return TOO_BIG
    return None


def frames(data: bytes, max_message: int, drain: bool) -> list:
    """Events of a server's frame parser for client bytes `data`: text,
    binary, ping, pong, then a close or an error, as the device driver
    reports them. With `drain`, an error is followed by what skipping frames
    to the peer's close finds (["close"], or ["stuck", code] when the length
    of a frame cannot be followed)."""
    out: list = []
    pos = 0
    msg_op = None  # opcode of the message being reassembled
    msg = b""

    def fail(code: int, resume: int, stuck: bool = False) -> list:
        # resume: where skipping frames picks the stream up again; `stuck`:
        # nowhere (every byte after the header is the refused frame's payload,
        # which cannot be skipped): known at once, since the server's drain
        # loop feeds the parser once more right after drain_mode().
        out.append(["error", code])
        if drain:
            if stuck:
                out.append(["stuck", code])
            else:
                out.extend(_drain(data, resume))
        return out

    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        fin, rsv, op, masked = b0 & 0x80, b0 & 0x70, b0 & 0x0F, b1 & 0x80
        if rsv or not masked or op not in (0, 1, 2, 8, 9, 10):
            return fail(PROTOCOL_ERROR, pos)
        if op >= 8 and (not fin or b1 & 0x7F > 125):
            return fail(PROTOCOL_ERROR, pos)
        if op < 8 and (op == 0) != (msg_op is not None):  # continuation iff a message is open
            return fail(PROTOCOL_ERROR, pos)
        got = _length(data, pos)
        if got is None or pos + got[0] + 4 > len(data):
            return out
        size, n = got
        if b1 & 0x7F == 127 and _too_long(n):
            return fail(_too_long(n) or 0, pos + size + 4, stuck=True)
        key = data[pos + size : pos + size + 4]
        start = pos + size + 4
        payload = _unmask(data[start : start + n], key)
        complete = len(payload) == n
        pos = start + n
        if op < 8:
            if op:
                msg_op, msg = op, b""
            if len(msg) + n > max_message:
                return fail(TOO_BIG, pos)
            msg += payload
            if msg_op == 1 and not utf8_prefix_ok(msg):
                return fail(INVALID_DATA, pos)  # fails fast, before the frame ends
            if not complete:
                return out
            if fin:
                if msg_op == 1 and not utf8_ok(msg):
                    return fail(INVALID_DATA, pos)
                out.append(["text" if msg_op == 1 else "binary", msg.hex()])
                msg_op, msg = None, b""
            continue
        if not complete:
            return out
        if op == 9:
            out.append(["ping", payload.hex()])
        elif op == 10:
            out.append(["pong", payload.hex()])
        elif not payload:
            out.append(["close", 1005, ""])
            return out
        elif len(payload) == 1:
            return fail(PROTOCOL_ERROR, pos)
        else:
            code = int.from_bytes(payload[:2], "big")
            if not close_code_ok(code):
                return fail(PROTOCOL_ERROR, pos)
            if not utf8_ok(payload[2:]):
                return fail(INVALID_DATA, pos)
            out.append(["close", code, payload[2:].hex()])
            return out
    return out


def _drain(data: bytes, pos: int) -> list:
    """After an error: frames are only skipped (their rules no longer
    matter), up to the peer's close frame."""
    while pos + 2 <= len(data):
        got = _length(data, pos)
        if got is None:
            return []
        size, n = got
        key = 4 if data[pos + 1] & 0x80 else 0
        if pos + size + key > len(data):
            return []
        if data[pos + 1] & 0x7F == 127 and _too_long(n):
            return [["stuck", _too_long(n)]]
        pos += size + key + n
        if pos > len(data):
            return []
        if data[pos - n - size - key] & 0x0F == 8:
            return [["close"]]
    return []


# ---- HTTP requests and the opening handshake -------------------------------

SP_HT = b" \t"


class Refused(Exception):
    def __init__(self, status: int, counter: str = "refused_bad"):
        super().__init__(status)
        self.status = status
        self.counter = counter  # the /stats counter it moves


def _skip_empty(data: bytes) -> int:
    return len(data) - len(data.lstrip(b"\r\n"))


def head_end(data: bytes) -> int:
    """Just past the empty line ending the head (lines end in CRLF or LF), or -1."""
    start = _skip_empty(data)
    i = data.find(b"\n", start)
    while i >= 0:
        if data[i + 1 : i + 2] == b"\n":
            return i + 2
        if data[i + 1 : i + 3] == b"\r\n":
            return i + 3
        i = data.find(b"\n", i + 1)
    return -1


def _visible(s: bytes, space: bool) -> bool:
    return all(33 <= c <= 126 or (space and c in SP_HT) for c in s)


def mp_str_ok(b: bytes) -> bool:
    """Does MicroPython's bytes.decode() accept b? Its check is structural
    (lead byte, then that many continuation bytes): overlongs and surrogates
    pass, unlike CPython's."""
    need = 0
    for c in b:
        if need:
            if c & 0xC0 != 0x80:
                return False
            need -= 1
        elif c >= 0xF8 or 0x80 <= c < 0xC0:
            return False
        elif c >= 0xC0:
            need = 1 if c < 0xE0 else 2 if c < 0xF0 else 3
    return need == 0


class Request:
    """A request head judged by RFC 9112's grammar as the README narrows it."""

    def __init__(self, head: bytes):
        lines = head[_skip_empty(head) :].split(b"\n")
        lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
        line = lines[0]
        if len(line) > 1024:
            raise Refused(414)
        parts = line.split(b" ")
        if len(parts) != 3 or not all(parts):
            raise Refused(400)
        if not all(_visible(p, False) for p in parts):
            raise Refused(400)
        method, target, version = parts
        self.target = target
        if not version.startswith(b"HTTP/1."):
            raise Refused(505)
        self.http10 = version != b"HTTP/1.1"
        self.method = method.decode()
        if not target.startswith(b"/"):
            scheme = target.find(b"://")
            slash = target.find(b"/", scheme + 3) if scheme > 0 else -1
            if slash < 0:
                raise Refused(400)
            target = target[slash:]
        path, q, query = target.partition(b"?")
        self.path, self.query = path.decode(), query.decode()
        self.fields: list[tuple[bytes, bytes]] = []
        for ln in lines[1:]:
            if not ln:
                break
            if ln[:1] in (b" ", b"\t"):
                raise Refused(400)  # obsolete line folding
            name, colon, value = ln.partition(b":")
            if not colon or not name or name[-1:] in (b" ", b"\t"):
                raise Refused(400)
            self.fields.append((name.lower(), value.strip(SP_HT)))
            if len(self.fields) > 40:
                raise Refused(431)

    def values(self, name: bytes) -> list[bytes]:
        # Only ASCII letters fold (bytes.lower() folds nothing else).
        return [v for k, v in self.fields if k == name]

    def header(self, name: str) -> bytes | None:
        vs = self.values(name.lower().encode())
        if not vs:
            return None
        v = b", ".join(vs)
        if not mp_str_ok(v):
            raise Refused(400)
        return v

    def has_token(self, name: bytes, token: bytes, fold: bool = True) -> bool:
        found = False
        for v in self.values(name):
            if not _visible(v, True):
                raise Refused(400)
            for el in v.split(b","):
                el = el.strip(SP_HT)
                found = found or (el.lower() if fold else el) == token
        return found


def check_upgrade(req: Request) -> str:
    """RFC 6455 4.2.1 in the order the README's statuses imply."""
    if req.method != "GET":
        raise Refused(405)
    if req.http10:
        raise Refused(400)
    if len(req.values(b"host")) != 1:
        raise Refused(400)
    if not req.has_token(b"connection", b"upgrade"):
        raise Refused(400)
    versions = req.values(b"sec-websocket-version")
    if versions and not _visible(versions[0], True):
        raise Refused(400)
    if versions != [b"13"]:
        raise Refused(426)
    keys = req.values(b"sec-websocket-key")
    if len(keys) != 1:
        raise Refused(400)
    key = keys[0]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    if len(key) != 24 or key[22:] != b"==" or any(c not in alphabet for c in key[:22]):
        raise Refused(400)
    req.has_token(b"sec-websocket-protocol", b",", False)
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def choose_subprotocol(req: Request, protocols: list[str]) -> str | None:
    for p in protocols:
        if req.has_token(b"sec-websocket-protocol", p.encode(), False):
            return p
    return None


def read_outcome(data: bytes, cap: int) -> tuple[str, object]:
    """What reading `data` into a cap-byte buffer ends in: ("head", end),
    ("status", 414|431), or ("incomplete", bytes read)."""
    got = data[:cap]
    end = head_end(got)
    if end >= 0:
        return "head", end
    if len(got) >= cap:
        return "status", 431 if b"\n" in got[_skip_empty(got) :] else 414
    return "incomplete", len(got)


def answer(data: bytes, cap: int, ws_routes: dict, http_routes: set) -> int | None:
    """The status the server answers `data` with (101 for an upgrade), or
    None when the request never completes; routes as server.py applies them."""
    return answer_counted(data, cap, ws_routes, http_routes)[0]


def answer_counted(
    data: bytes, cap: int, ws_routes: dict, http_routes: set, admit=None
) -> tuple[int | None, str]:
    """answer() and the /stats counter it moves: refused_bad (a refused
    request or upgrade), http_errors, http_served, ws_opened, or "" for none.
    `admit(req)`: the server's admission policy for a valid upgrade (Origin,
    token...), raising Refused with its status, or None to admit all."""
    kind, v = read_outcome(data, cap)
    if kind == "incomplete":
        return None, ""
    if kind == "status":
        return int(v), "refused_bad"  # type: ignore[arg-type]
    try:
        req = Request(data[: int(v)])  # type: ignore[call-overload]
        route = ws_routes.get(req.path)
        if not (route is None and req.path in http_routes) and req.has_token(
            b"upgrade", b"websocket"
        ):
            if route is None:
                return 404, "refused_bad"
            check_upgrade(req)
            if admit is not None:
                admit(req)
            choose_subprotocol(req, list(route))
            return 101, "ws_opened"
    except Refused as e:
        return e.status, e.counter
    if req.path in ws_routes:
        return 426, "http_errors"
    if req.path not in http_routes:
        return 404, "http_errors"
    if req.method not in ("GET", "HEAD"):
        return 405, "http_errors"
    return 200, "http_served"


# ---- who may connect: Origin, token, the table of addresses ----------------
# From the README's Security section: what each setting lets in.


def check_origin(req: Request, allowed_origins: str, require_origin: bool) -> None:
    """Refused(403) unless the Origin is let in. allowed_origins: the setting
    (comma-separated "same", "*", or scheme://host[:port], any case, a
    trailing "/" ignored). No Origin: not a browser, in unless required.
    "*": any Origin. Else exactly one Origin, equal (ASCII case-insensitively)
    to a listed one, or with "same", naming the host the request was sent to:
    an http or https origin whose host[:port] is the Host header's value."""
    # Case folds ASCII only (bytes.lower), in the setting too: an origin's
    # host is ASCII (punycode), and MicroPython's str.lower() folds no more.
    listed = [o.strip().encode().lower().rstrip(b"/") for o in allowed_origins.split(",")]
    origins = req.values(b"origin")
    if not origins:
        if require_origin:
            raise Refused(403, "refused_origin")
        return
    if b"*" in listed:
        return
    if len(origins) == 1:
        origin = origins[0].lower()
        if any(o == origin for o in listed if b"://" in o):
            return
        hosts = req.values(b"host")
        scheme, sep, named = origin.partition(b"://")
        page = sep and scheme in (b"http", b"https")
        if b"same" in listed and page and hosts and named == hosts[0].lower():
            return
    raise Refused(403, "refused_origin")


def token_given(req: Request, secret: bytes) -> int:
    """Where the secret was presented: 1 as a `token=<secret>` parameter of
    the query (what follows the target's first "?", RFC 3986 3.4, split at
    "&", compared exactly), else 2 as the subprotocol "token.<secret>", else 0.
    (Request.query differs only for a "?" in an absolute form's authority.)"""
    query = req.target.partition(b"?")[2]
    if any(p == b"token=" + secret for p in query.split(b"&")):
        return 1
    if req.has_token(b"sec-websocket-protocol", b"token." + secret, False):
        return 2
    return 0


FREE_FAILS = 3  # failed tokens in a row before an address waits
FORGET = 60000  # ms after its last failure (or wait) that a row's failures stop counting
PENALTY_MAX = 60000


class _Row:
    def __init__(self, key, now: int, cap: int):
        self.key = key
        self.tokens = cap  # thousandths of a connection, as of `stamp`
        self.stamp = now
        self.fails = 0
        self.quiet_from = now  # when its last failure, or the wait after it, ended


class PeersModel:
    """The table of client addresses as the README describes it: a token
    bucket per address (`burst` connections, refilled at `rate` a second; no
    limit at rate 0) and its failed tokens (after FREE_FAILS in a row it
    waits 1 s, doubling per failure up to 60 s). A newcomer takes a row whose
    address has nothing left to remember (bucket full, no failure in the
    last FORGET ms), the first such in table order; with none, every newcomer
    shares the overflow row (index `size`). Time is a plain, unbounded int."""

    def __init__(self, size: int, burst: int, rate: int):
        self.cap = burst * 1000
        self.rate = rate
        self.rows: list[_Row | None] = [None] * size
        self.overflow = _Row(None, 0, self.cap)

    def _tokens(self, row: _Row, now: int) -> int:
        return min(self.cap, row.tokens + (now - row.stamp) * self.rate)

    def _forgettable(self, row: _Row, now: int) -> bool:
        recent = row.fails and now - row.quiet_from < FORGET
        return not recent and self._tokens(row, now) >= self.cap

    def find(self, key, now: int) -> int:
        for i, row in enumerate(self.rows):
            if row is not None and row.key == key:
                return i
        for i, row in enumerate(self.rows):
            if row is None or self._forgettable(row, now):
                self.rows[i] = _Row(key, now, self.cap)
                return i
        return len(self.rows)

    def row(self, i: int) -> _Row:
        return self.overflow if i == len(self.rows) else self.rows[i]  # type: ignore[return-value]

    def knock(self, key, now: int) -> tuple[int, str]:
        """A new connection (Access.too_many): "auth" while waiting after
        failed tokens, "rate" over the rate, else "ok" (one taken)."""
        i = self.find(key, now)
        row = self.row(i)
        if row.fails >= FREE_FAILS and now < row.quiet_from:
            return i, "auth"
        if self.rate:
            tokens = self._tokens(row, now)
            if tokens < 1000:
                return i, "rate"
            row.tokens, row.stamp = tokens - 1000, now
        return i, "ok"

    def token(self, key, ok: bool, now: int) -> int:
        """The token checked at an upgrade (Access.check_token)."""
        i = self.find(key, now)
        row = self.row(i)
        if ok:
            row.fails = 0
            return i
        row.fails += 1
        wait = 0 if row.fails < FREE_FAILS else min(1000 << (row.fails - FREE_FAILS), PENALTY_MAX)
        row.quiet_from = now + wait
        return i
