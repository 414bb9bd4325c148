"""HTTP/1.1 request parsing and the WebSocket opening handshake (RFC 6455 section 4).

Pure: it works on a request already read into a fixed buffer and never
touches a socket. Header values are looked up and token lists scanned in
that buffer, in place, so a hostile request (a thousand list elements, bytes
that are not text) costs no allocation; strings are made only for a
method or path the server does not know, a query, and the headers a caller
asks for.
"""

import micropython
from micropython import const

from .kernels import copy, sha1

# What the accept hashes: the Sec-WebSocket-Key (24 bytes), then the GUID.
_ACCEPT_INPUT = bytearray(24) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADERS = const(40)
_MAX_REQUEST_LINE = const(1024)
_LF = const(10)
_CR = const(13)


RESPONSE_HEAD = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sConnection: close\r\n%s\r\n"  # status, reason phrase, content type, Content-Length line or "", extra header lines
NO_STORE = (
    "Cache-Control: no-store\r\n"  # unless the extra lines say otherwise: live numbers, errors
)
STATUS = {
    101: "Switching Protocols", 200: "OK", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    413: "Content Too Large", 414: "URI Too Long", 426: "Upgrade Required",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}  # fmt: skip


class HandshakeError(Exception):
    """A request to refuse: an HTTP status, a reason, any extra header lines,
    and the /stats counter that counts it."""

    def __init__(self, status, reason, extra=b"", counter="refused_bad"):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra
        self.counter = counter


@micropython.native
def skip_empty_lines(buf, n):
    """Index of the first byte of buf[:n] that is not CR or LF: RFC 9112 2.2
    asks a server to ignore empty lines before the request line."""
    i = 0
    while i < n and (buf[i] == _CR or buf[i] == _LF):
        i += 1
    return i


@micropython.native
def find_end(buf, n):
    """Index just past the empty line ending the head in buf[:n], or -1.

    Lines may end in CRLF or in a bare LF (RFC 9112 2.2 tolerates it), so the
    head ends at LF LF or LF CR LF, whichever way the last header line ended.
    """
    i = skip_empty_lines(buf, n)
    while True:
        i = buf.find(b"\n", i, n)
        if i < 0 or i + 1 >= n:
            return -1
        c = buf[i + 1]
        if c == _LF:
            return i + 2
        if c == _CR:
            if i + 2 >= n:
                return -1
            if buf[i + 2] == _LF:
                return i + 3
        i += 1


@micropython.native
def _is_space(c):
    return c == 32 or c == 9


@micropython.native
def _visible(buf, a, b, space):
    """Are buf[a:b] all printable ASCII? (`space`: are SP and HTAB allowed.)
    Field values may carry obs-text, but none of the handshake's may."""
    while a < b:
        c = buf[a]
        if not (33 <= c <= 126 or (space and _is_space(c))):
            return False
        a += 1
    return True


_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


@micropython.native
def _text(buf, a, b, known):
    """buf[a:b] (ASCII) as str: the one of `known` it equals, if any, so
    the usual request line allocates nothing; else a new str."""
    n = b - a
    for word in known:
        if len(word) == n:
            i = 0
            while i < n and buf[a + i] == ord(word[i]):
                i += 1
            if i == n:
                return word
    return str(buf[a:b], "ascii")


@micropython.native
def _same(buf, a, b, word, fold):
    """buf[a:b] == word (bytes), ASCII case folded in buf when `fold`."""
    if b - a != len(word):
        return False
    i = 0
    while a < b:
        c = buf[a]
        if fold and 65 <= c <= 90:
            c += 32  # ASCII lowercase
        if c != word[i]:
            return False
        a += 1
        i += 1
    return True


class Request:
    """One parsed request; `buf` must stay untouched while it is used.

    The server keeps one per request buffer and parses each new request
    into it (parse()); its method and path are existing strings when the
    server knows them, so a usual request allocates nothing but a query
    string, if it has one. A handler gets it for the length of its call."""

    @micropython.native
    def __init__(self, buf, end=-1):
        self.buf = buf
        self.end = 0
        self.method = ""
        self.path = ""
        self.query = ""
        self.http10 = False
        self._lines = 0  # start of the first header line
        self._paths = ()
        self.vend = 0  # the last _find's value end...
        self.vnext = 0  # ...and the start of the line after it
        if end >= 0:
            self.parse(end)

    @micropython.native
    def parse(self, end, paths=()):
        """Read the request whose head ends at `end` in buf. `paths`: the
        server's routes; a path that is one of them is that very string, so
        a request for a route makes no new one."""
        self.end = end
        self._paths = paths
        self.method = self.path = self.query = ""
        self.http10 = False
        self._lines = 0
        self._parse()

    @micropython.native  # its locals pass the 11 words of a C-stack frame: no heap frame per request
    def _parse(self):
        buf = self.buf
        end = self.end
        start = skip_empty_lines(buf, end)
        eol = buf.find(b"\n", start, end)
        stop = eol - 1 if eol > start and buf[eol - 1] == _CR else eol
        if stop - start > _MAX_REQUEST_LINE:
            raise HandshakeError(414, "request line too long")
        # method SP target SP version, each visible ASCII (RFC 9112 3).
        sp1 = buf.find(b" ", start, stop)
        sp2 = buf.find(b" ", sp1 + 1, stop) if sp1 > start else -1
        if sp2 <= sp1 + 1 or sp2 + 1 >= stop or buf.find(b" ", sp2 + 1, stop) >= 0:
            raise HandshakeError(400, "malformed request line")
        if not (_visible(buf, start, sp1, False) and _visible(buf, sp1 + 1, sp2, False)
                and _visible(buf, sp2 + 1, stop, False)):  # fmt: skip
            raise HandshakeError(400, "request line is not printable ASCII")
        if not _same(buf, sp2 + 1, min(sp2 + 8, stop), b"HTTP/1.", False):
            raise HandshakeError(505, "HTTP/1.1 required")
        # RFC 6455 4.1 needs 1.1 for the upgrade; plain pages are served to 1.0 too.
        self.http10 = not _same(buf, sp2 + 1, stop, b"HTTP/1.1", False)
        self.method = _text(buf, start, sp1, _METHODS)
        a = sp1 + 1
        if buf[a] != 47:  # '/'
            # Absolute form (RFC 9112 3.2.2), e.g. via a proxy: keep the path.
            scheme = buf.find(b"://", a, sp2)
            a = buf.find(b"/", scheme + 3, sp2) if scheme > a else -1
            if a < 0:
                raise HandshakeError(400, "request target is not a path")
        q = buf.find(b"?", a, sp2)
        if q >= 0:
            self.query = str(buf[q + 1 : sp2], "ascii")
        else:
            q = sp2
        self.path = _text(buf, a, q, self._paths)
        self._lines = eol + 1
        # Validate header syntax once, so later lookups can trust it.
        count = 0
        pos = self._lines
        while pos < end:
            nl = buf.find(b"\n", pos, end)
            if nl < 0:
                nl = end
            stop = nl - 1 if nl > pos and buf[nl - 1] == _CR else nl
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

    @micropython.native  # called for every header looked up: no heap frame per call
    def _find(self, name, start):
        """Where the value of the first header `name` at or after line offset
        `start` begins, or -1; name must be lowercase bytes. Its end and the
        next line's start are left in self.vend and self.vnext (attributes,
        not a tuple: a lookup allocates nothing)."""
        buf = self.buf
        end = self.end
        ln = len(name)
        pos = start
        while pos < end:
            nl = buf.find(b"\n", pos, end)
            if nl < 0:
                nl = end
            stop = nl - 1 if nl > pos and buf[nl - 1] == _CR else nl
            if stop == pos:
                return -1
            if (
                pos + ln < stop and buf[pos + ln] == 58 and _same(buf, pos, pos + ln, name, True)
            ):  # ':'
                a = pos + ln + 1
                while a < stop and _is_space(buf[a]):
                    a += 1
                b = stop
                while b > a and _is_space(buf[b - 1]):
                    b -= 1
                self.vend = b
                self.vnext = nl + 1
                return a
            pos = nl + 1
        return -1

    @micropython.native
    def header(self, name):
        """The value of header `name` (case-insensitive) as str, or None.
        Repeated headers are joined with ', ' as RFC 9110 5.3 allows.
        A value that is not UTF-8 refuses the request (400)."""
        key = name.lower().encode()
        a = self._find(key, self._lines)
        if a < 0:
            return None
        value = bytes(self.buf[a : self.vend])
        a = self._find(key, self.vnext)
        while a >= 0:
            value += b", " + bytes(self.buf[a : self.vend])
            a = self._find(key, self.vnext)
        try:
            return value.decode()
        except UnicodeError:
            raise HandshakeError(400, "header %s is not UTF-8" % name)

    @micropython.native
    def header_count(self, name):
        """How many `name` header lines there are (name: lowercase bytes)."""
        n = 0
        a = self._find(name, self._lines)
        while a >= 0:
            n += 1
            a = self._find(name, self.vnext)
        return n

    @micropython.native  # no heap frame per call
    def has_token(self, name, token, fold=True):
        """Is `token` an element of the comma-separated header `name`, in any of
        its lines? name and token: lowercase bytes; `fold`: compare ignoring
        ASCII case (Upgrade, Connection), or exactly (subprotocols), or, with
        fold=SECRET, exactly and in constant time (a token). Scanned in
        place; a value that is not printable ASCII refuses the request (400)."""
        buf = self.buf
        found = False
        a = self._find(name, self._lines)
        while a >= 0:
            b = self.vend
            nxt = self.vnext
            if not _visible(buf, a, b, True):
                raise HandshakeError(400, "%s header is not printable ASCII" % name.decode())
            while a < b and not found:
                c = buf.find(b",", a, b)
                if c < 0:
                    c = b
                s = a
                while s < c and _is_space(buf[s]):
                    s += 1
                e = c
                while e > s and _is_space(buf[e - 1]):
                    e -= 1
                if fold == SECRET:
                    found = secret_equal(buf, s, e, token)
                else:
                    found = _same(buf, s, e, token, fold)
                a = c + 1
            a = self._find(name, nxt)
        return found

    @micropython.native
    def is_upgrade(self):
        return self.has_token(b"upgrade", b"websocket")


@micropython.native
def check_upgrade(req):
    """Validate a WebSocket upgrade request; return the Sec-WebSocket-Accept value.
    Raises HandshakeError with the status a strict server answers."""
    if req.method != "GET":
        raise HandshakeError(405, "WebSocket upgrade needs GET", b"Allow: GET\r\n")
    if req.http10:
        raise HandshakeError(400, "WebSocket upgrade needs HTTP/1.1")
    if req.header_count(b"host") != 1:
        raise HandshakeError(400, "exactly one Host header required")
    if not req.has_token(b"connection", b"upgrade"):
        raise HandshakeError(400, "Connection header lacks 'upgrade'")
    buf = req.buf
    a = req._find(b"sec-websocket-version", req._lines)
    b = req.vend
    if a >= 0 and not _visible(buf, a, b, True):
        raise HandshakeError(400, "Sec-WebSocket-Version is not printable ASCII")
    if (
        a < 0
        or not _same(buf, a, b, b"13", False)
        or req._find(b"sec-websocket-version", req.vnext) >= 0
    ):
        raise HandshakeError(426, "unsupported WebSocket version", b"Sec-WebSocket-Version: 13\r\n")
    a = req._find(b"sec-websocket-key", req._lines)
    b = req.vend
    if a < 0 or req._find(b"sec-websocket-key", req.vnext) >= 0:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key required")
    if not key_valid(buf, a, b):
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    req.has_token(b"sec-websocket-protocol", b",", False)  # checks it now, before a slot is taken
    return accept_key(buf, a)


@micropython.native
def accept_key(buf, a):
    """Sec-WebSocket-Accept for the 24-byte key at buf[a:], in a buffer made
    once (valid until the next handshake). The key goes next to the GUID
    and the digest into the answer's buffer, where it becomes its base64:
    nothing is allocated."""
    copy(_ACCEPT_INPUT, 0, buf, a, 24)
    digest(_ACCEPT_KEY, _ACCEPT_INPUT, 60)
    return _base64_in_place(_ACCEPT_KEY)


digest = sha1  # into a fixed buffer; startup swaps in hashlib if need be


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ACCEPT_KEY = bytearray(28)  # Sec-WebSocket-Accept: base64 of a SHA-1 digest


@micropython.native
def _base64_in_place(buf):
    """buf[0:28] = base64 of the 20-byte digest in buf[0:20]; buf. Written
    from the end: each group's 4 characters land at or after the 3 bytes
    they come from, past every byte still to be read."""
    v = (buf[18] << 16) | (buf[19] << 8)  # 20 = 6 * 3 + 2: one '=' of padding
    buf[24] = _B64[v >> 18]
    buf[25] = _B64[(v >> 12) & 63]
    buf[26] = _B64[(v >> 6) & 63]
    buf[27] = 61
    i = 15
    while i >= 0:
        v = (buf[i] << 16) | (buf[i + 1] << 8) | buf[i + 2]
        o = i // 3 * 4
        buf[o] = _B64[v >> 18]
        buf[o + 1] = _B64[(v >> 12) & 63]
        buf[o + 2] = _B64[(v >> 6) & 63]
        buf[o + 3] = _B64[v & 63]
        i -= 3
    return buf


SECRET = const(2)  # has_token's `fold` for a secret


@micropython.native
def secret_equal(buf, a, b, secret):
    """buf[a:b] == secret, in a time that depends on the secret's length only
    (it tells a guesser nothing about which bytes were right)."""
    n = len(secret)
    diff = (b - a) ^ n
    i = 0
    while i < n:
        diff |= secret[i] ^ (buf[a + i] if a + i < b else 0)
        i += 1
    return diff == 0


@micropython.native
def check_origin(req, rule):
    """403 unless the request's Origin is allowed by `rule` (from startup:
    (same host allowed, anyone allowed, origin required, exact origins as
    lowercase bytes)). A request without Origin is not a browser's: it is
    let through unless an Origin is required."""
    same, anyone, required, exact = rule
    a = req._find(b"origin", req._lines)
    if a < 0:
        if required:
            raise HandshakeError(403, "an Origin header is required", b"", "refused_origin")
        return
    if anyone:
        return
    b = req.vend
    if req._find(b"origin", req.vnext) < 0:
        buf = req.buf
        for o in exact:
            if _same(buf, a, b, o, True):
                return
        if same and _origin_is_host(req, a, b):
            return
    raise HandshakeError(403, "Origin not allowed", b"", "refused_origin")


@micropython.native
def _origin_is_host(req, a, b):
    # Origin is scheme "://" host [":" port]; the Host header is host [":" port].
    # A page's scheme is http or https (a browser sets the header itself).
    buf = req.buf
    s = buf.find(b"://", a, b)
    if not (_same(buf, a, s, b"http", True) or _same(buf, a, s, b"https", True)):
        return False
    h = req._find(b"host", req._lines)
    if s < 0 or h < 0:
        return False
    s += 3
    if b - s != req.vend - h:
        return False
    while s < b:
        c = buf[s]
        d = buf[h]
        if 65 <= c <= 90:
            c += 32
        if 65 <= d <= 90:
            d += 32
        if c != d:
            return False
        s += 1
        h += 1
    return True


_ACCEPT_HEAD = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "


@micropython.native
def write_accept(buf, accept_key, chosen):
    """The 101 answer (with the chosen subprotocol, str or None) at buf[0:];
    its length. buf: a bytearray with room for it, or a view (which raises
    rather than grows)."""
    n = copy_into(buf, 0, _ACCEPT_HEAD)
    n = copy_into(buf, n, accept_key)
    if chosen:
        n = copy_into(buf, n, b"\r\nSec-WebSocket-Protocol: ")
        n = copy_into(buf, n, chosen)
    return copy_into(buf, n, b"\r\n\r\n")


@micropython.native
def copy_into(buf, off, data):
    """Copy data (bytes-like, or an ASCII str) to buf at off; the offset after
    it. No slice assignment: that would allocate its slice object. A view
    raises IndexError past its end instead of growing."""
    n = len(data)
    if n > len(buf) - off:
        raise IndexError("answer over its buffer")
    if isinstance(data, str):
        i = 0
        while i < n:
            buf[off + i] = ord(data[i])
            i += 1
    else:
        copy(buf, off, data, 0, n)
    return off + n


@micropython.native
def key_valid(buf, a, b):
    # 16 bytes are exactly 22 base64 digits and '=='. (a2b_base64 would skip
    # characters it does not know, so the form is checked by hand.)
    if b - a != 24 or buf[a + 22] != 61 or buf[a + 23] != 61:  # '='
        return False
    while a < b - 2:
        c = buf[a]
        if not (65 <= c <= 90 or 97 <= c <= 122 or 48 <= c <= 57 or c == 43 or c == 47):
            return False
        a += 1
    return True


@micropython.native
def choose_subprotocol(req, protocols, encoded=None):
    """The first of the server's `protocols` (str, in its order of preference)
    that the client offers, or None. Compared exactly (RFC 6455 4.2.2).
    `encoded`: the same as bytes, made once (a route keeps them)."""
    for i in range(len(protocols)):
        token = encoded[i] if encoded is not None else protocols[i].encode()
        if req.has_token(b"sec-websocket-protocol", token, False):
            return protocols[i]
    return None
