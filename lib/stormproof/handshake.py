"""HTTP/1.1 request parsing and the WebSocket opening handshake (RFC 6455 section 4).

Pure: it works on a request already read into a fixed buffer and never
touches a socket. Header values are looked up in that buffer on demand, so
a request costs no allocation beyond the few strings a caller asks for.
"""

import binascii
import hashlib

from micropython import const

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADERS = const(40)
_MAX_REQUEST_LINE = const(1024)
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class HandshakeError(Exception):
    """A request to refuse: an HTTP status, a reason, and any extra header lines."""

    def __init__(self, status, reason, extra=b""):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


def find_end(buf, n):
    """Index just past the blank line ending the headers in buf[:n], or -1."""
    i = buf.find(b"\r\n\r\n", 0, n)
    if i >= 0:
        return i + 4
    i = buf.find(b"\n\n", 0, n)  # bare LF line ends are tolerated (RFC 9112 2.2)
    return i + 2 if i >= 0 else -1


def _lower(c):
    return c + 32 if 65 <= c <= 90 else c


def _is_space(c):
    return c == 32 or c == 9


class Request:
    """One parsed request; `buf` must stay untouched while it is used."""

    def __init__(self, buf, end):
        self.buf = buf
        self.end = end
        self.method = ""
        self.path = ""
        self.query = ""
        self._lines = 0  # start of the first header line
        self._parse()

    def _parse(self):
        buf = self.buf
        eol = buf.find(b"\n", 0, self.end)
        if eol > _MAX_REQUEST_LINE:
            raise HandshakeError(414, "request line too long")
        line = bytes(buf[0:eol]).rstrip(b"\r")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise HandshakeError(400, "malformed request line")
        version = parts[2]
        if version[:7] != b"HTTP/1.":
            raise HandshakeError(505, "HTTP/1.1 required")
        if version != b"HTTP/1.1":
            # RFC 6455 4.1 needs 1.1 for the upgrade; plain pages are served
            # to 1.0 clients too.
            self.http10 = True
        else:
            self.http10 = False
        self.method = parts[0].decode()
        target = parts[1]
        if target[:1] != b"/":
            # Absolute form (RFC 9112 3.2.2), e.g. via a proxy: keep the path.
            slash = target.find(b"/", target.find(b"://") + 3) if b"://" in target else -1
            if slash < 0:
                raise HandshakeError(400, "request target is not a path")
            target = target[slash:]
        q = target.find(b"?")
        if q >= 0:
            self.query = target[q + 1 :].decode()
            target = target[:q]
        self.path = target.decode()
        self._lines = eol + 1
        # Validate header syntax once, so later lookups can trust it.
        count = 0
        pos = self._lines
        end = self.end
        while pos < end:
            nl = buf.find(b"\n", pos, end)
            if nl < 0:
                nl = end
            stop = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
            if stop == pos:
                break  # the blank line
            if _is_space(buf[pos]):
                raise HandshakeError(400, "obsolete header line folding")
            colon = buf.find(b":", pos, stop)
            if colon <= pos or _is_space(buf[colon - 1]):
                raise HandshakeError(400, "malformed header line")
            count += 1
            if count > _MAX_HEADERS:
                raise HandshakeError(431, "too many header fields")
            pos = nl + 1

    def _value_span(self, name, start):
        """(value_start, value_stop, next_line) of the first header `name` at or
        after line offset `start`; name must be lowercase bytes."""
        buf = self.buf
        end = self.end
        ln = len(name)
        pos = start
        while pos < end:
            nl = buf.find(b"\n", pos, end)
            if nl < 0:
                nl = end
            stop = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
            if stop == pos:
                return None
            if pos + ln < stop and buf[pos + ln] == 58:  # ':'
                i = 0
                while i < ln and _lower(buf[pos + i]) == name[i]:
                    i += 1
                if i == ln:
                    a = pos + ln + 1
                    while a < stop and _is_space(buf[a]):
                        a += 1
                    b = stop
                    while b > a and _is_space(buf[b - 1]):
                        b -= 1
                    return a, b, nl + 1
            pos = nl + 1
        return None

    def header(self, name):
        """The value of header `name` (case-insensitive) as str, or None.
        Repeated headers are joined with ', ' as RFC 9110 5.3 allows."""
        key = name.lower().encode()
        span = self._value_span(key, self._lines)
        if span is None:
            return None
        value = bytes(self.buf[span[0] : span[1]])
        span = self._value_span(key, span[2])
        while span is not None:
            value += b", " + bytes(self.buf[span[0] : span[1]])
            span = self._value_span(key, span[2])
        return value.decode()

    def header_count(self, name):
        key = name.lower().encode()
        n = 0
        span = self._value_span(key, self._lines)
        while span is not None:
            n += 1
            span = self._value_span(key, span[2])
        return n

    def has_token(self, name, token):
        """Does the comma-separated header `name` contain `token` (case-insensitive)?"""
        value = self.header(name)
        if value is None:
            return False
        token = token.lower()
        for part in value.split(","):
            if part.strip().lower() == token:
                return True
        return False

    def is_upgrade(self):
        return self.has_token("upgrade", "websocket")


def check_upgrade(req):
    """Validate a WebSocket upgrade request; return the Sec-WebSocket-Accept value.
    Raises HandshakeError with the status a strict server answers."""
    if req.method != "GET":
        raise HandshakeError(405, "WebSocket upgrade needs GET", b"Allow: GET\r\n")
    if req.http10:
        raise HandshakeError(400, "WebSocket upgrade needs HTTP/1.1")
    if req.header_count("host") != 1:
        raise HandshakeError(400, "exactly one Host header required")
    if not req.has_token("connection", "upgrade"):
        raise HandshakeError(400, "Connection header lacks 'upgrade'")
    if req.header_count("sec-websocket-version") != 1 or req.header("sec-websocket-version") != "13":
        raise HandshakeError(426, "unsupported WebSocket version", b"Sec-WebSocket-Version: 13\r\n")
    if req.header_count("sec-websocket-key") != 1:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key required")
    key = req.header("sec-websocket-key")
    if not key_valid(key):
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    return accept_key(key)


def key_valid(key):
    # a2b_base64 skips characters it does not know, so check the form first:
    # 16 bytes are exactly 22 base64 digits and '=='.
    if key is None or len(key) != 24 or key[22:] != "==":
        return False
    for c in key[:22].encode():
        if _B64.find(bytes((c,))) < 0:
            return False
    return len(binascii.a2b_base64(key)) == 16


def accept_key(key):
    digest = hashlib.sha1(key.encode() + _GUID).digest()
    return binascii.b2a_base64(digest, newline=False)


def offered_subprotocols(req):
    value = req.header("sec-websocket-protocol")
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]
