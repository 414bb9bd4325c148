"""The benchmark's client: blocking sockets on loopback, frames built once.

Nothing here is measured; it only has to be cheap enough to keep the server
busy and strict enough to notice a wrong answer. Every frame a client sends is
built (and masked) once, so the client's cost per message is a send and a few
receives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct

HOST = "127.0.0.1"  # the only target this benchmark ever talks to
IO_TIMEOUT = 10.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: the reply is checked, not the key
ACCEPT = base64.b64encode(hashlib.sha1(KEY.encode() + GUID).digest())
MASK = b"\x37\xfa\x21\x3d"
BINARY, CLOSE = 2, 8
MAX_FRAME = 1 << 16  # nothing this benchmark sends or expects is longer


class Refused(ConnectionError):
    """The server answered an upgrade with a status other than 101 (a 503 when full)."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


def payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def masked_frame(op: int, data: bytes, key: bytes = MASK) -> bytes:
    """One client frame (FIN set, masked as RFC 6455 requires of clients)."""
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | op, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n)
    if not n:
        return head + key
    mask = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + body


CLOSE_FRAME = masked_frame(CLOSE, struct.pack("!H", 1000))


def upgrade_request(port: int, path: str = "/ws") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class Conn:
    """One TCP connection with a receive buffer."""

    def __init__(self, port: int, timeout: float = IO_TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def need(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 8192:
                raise ValueError("response head too long")
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def frame(self) -> tuple[int, bool, bytes]:
        b0, b1 = self.need(2)
        if b1 & 0x80:
            raise ValueError("the server masked a frame")
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.need(8))
        if n > MAX_FRAME:
            raise ValueError(f"a {n}-byte frame: not an echo of ours")
        return b0 & 0x0F, bool(b0 & 0x80), self.need(n)

    def message(self) -> tuple[int, bytes]:
        """The next data message, reassembled from its fragments."""
        op, fin, data = self.frame()
        while not fin:
            _, fin, more = self.frame()
            data += more
            if len(data) > MAX_FRAME:
                raise ValueError("a message longer than any we sent")
        return op, data

    def until_eof(self) -> None:
        for _ in range(1000):  # each recv is bounded by the socket's timeout
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
        raise ValueError("the server kept sending")

    def close(self) -> None:
        self.sock.close()


def ws_open(port: int, path: str = "/ws") -> Conn:
    c = Conn(port)
    try:
        c.sock.sendall(upgrade_request(port, path))
        head = c.head()
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            raise Refused(status)
        if ACCEPT not in head:
            raise ValueError(f"no Sec-WebSocket-Accept for our key in {head!r}")
    except BaseException:
        c.close()
        raise
    return c


def ws_close(c: Conn) -> None:
    """The closing handshake from the client's side, then wait for the server's FIN."""
    c.sock.sendall(CLOSE_FRAME)
    for _ in range(100):  # what is still in flight, then the close frame
        if c.frame()[0] == CLOSE:
            break
    else:
        raise ValueError("no close frame")
    c.until_eof()
    c.close()


def ws_cycle(port: int, frame: bytes, data: bytes, path: str = "/ws") -> None:
    """One reconnect cycle: TCP connect, upgrade, one echo, closing handshake, FIN."""
    c = ws_open(port, path)
    try:
        c.sock.sendall(frame)
        if c.message() != (BINARY, data):
            raise ValueError("wrong echo")
        ws_close(c)
    finally:
        c.close()


def tcp_cycle(port: int, frame: bytes) -> None:
    """The bare echo's cycle: connect, the same bytes out and back, FIN both ways."""
    c = Conn(port)
    try:
        c.sock.sendall(frame)
        if c.need(len(frame)) != frame:
            raise ValueError("wrong echo")
        c.sock.shutdown(socket.SHUT_WR)
        c.until_eof()
    finally:
        c.close()


class Echoer:
    """An open connection that echoes one message size, again and again."""

    def __init__(self, port: int, ws: bool, size: int, path: str = "/ws"):
        self.ws = ws
        self.data = payload(size)
        self.frame = masked_frame(BINARY, self.data)
        self.conn = ws_open(port, path) if ws else Conn(port)

    def run(self, n: int) -> None:
        c, frame, data = self.conn, self.frame, self.data
        send = c.sock.sendall
        if self.ws:
            for _ in range(n):
                send(frame)
                if c.message() != (BINARY, data):
                    raise ValueError("wrong echo")
        else:
            size = len(frame)
            for _ in range(n):
                send(frame)
                if c.need(size) != frame:
                    raise ValueError("wrong echo")

    def close(self) -> None:
        try:
            if self.ws:
                ws_close(self.conn)
            else:
                self.conn.sock.shutdown(socket.SHUT_WR)
                self.conn.until_eof()
        finally:
            self.conn.close()


def get_json(port: int, path: str) -> dict:
    """GET a JSON document (the server closes the connection after it)."""
    c = Conn(port)
    try:
        c.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        head = c.head()
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            raise ValueError(f"GET {path}: HTTP {status}")
        body = c.buf
        while len(body) < MAX_FRAME:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            body += chunk
    finally:
        c.close()
    return json.loads(body)
