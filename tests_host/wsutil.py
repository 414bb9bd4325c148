"""Raw-socket tools for talking to the server the way hostile or strict peers do."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# Generous for Wi-Fi: no test assumes loopback speed.
IO_TIMEOUT = float(os.environ.get("STORMPROOF_IO_TIMEOUT", "10"))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0  # opcodes


@dataclass
class Target:
    host: str
    port: int
    ws_path: str = "/ws"
    local: bool = True
    process: Any = field(default=None, repr=False)
    # The server's active settings (its /config), where a test needs them.
    config: dict = field(default_factory=dict, repr=False)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def connect(
    target: Target, timeout: float = IO_TIMEOUT, source: str | None = None
) -> socket.socket:
    """A TCP connection to the target; `source`: the local address to come
    from (other loopback addresses, 127.0.0.2 ..., stand for other clients)."""
    src = (source, 0) if source else None
    s = socket.create_connection((target.host, target.port), timeout=timeout, source_address=src)
    s.settimeout(timeout)
    return s


def recv_until_closed(s: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes the connection (EOF)."""
    out = b""
    while len(out) < limit:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk
    raise AssertionError("server kept sending")


def read_head(s: socket.socket) -> bytes:
    """Bytes up to the end of a response head (or EOF), and what came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def http(target: Target, raw: bytes, timeout: float = IO_TIMEOUT) -> tuple[int, dict, bytes]:
    """Send a raw request; return (status, headers, body) of the response.
    A 101 returns as soon as its head is in; anything else is read to EOF
    (the server answers with Connection: close)."""
    with connect(target, timeout) as s:
        s.sendall(raw)
        data = read_head(s)
        if not data.startswith(b"HTTP/1.1 101 "):
            data += recv_until_closed(s)
    return parse_response(data)


def parse_response(data: bytes) -> tuple[int, dict, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def get(target: Target, path: str) -> tuple[int, dict, bytes]:
    req = f"GET {path} HTTP/1.1\r\nHost: {target.host}\r\n\r\n".encode()
    return http(target, req)


def get_stats(target: Target) -> dict:
    status, _, body = get(target, "/stats")
    assert status == 200, status
    return json.loads(body)


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def upgrade_request(
    target: Target, key: str | None = None, extra: str = "", path: str | None = None
) -> bytes:
    key = key or new_key()
    return (
        f"GET {path or target.ws_path} HTTP/1.1\r\n"
        f"Host: {target.host}:{target.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def frame(
    op: int,
    payload: bytes = b"",
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    key: bytes | None = None,
) -> bytes:
    """A client frame, masked unless told otherwise."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | op])
    mbit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def reluctant_reader(target: Target, path: str | None = None) -> socket.socket:
    """A handshaken WebSocket whose tiny receive buffer fills at once: a
    client that does not (or cannot) keep up with what the server sends."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(IO_TIMEOUT)
    s.connect((target.host, target.port))
    s.sendall(upgrade_request(target, path=path))
    assert s.recv(4096).startswith(b"HTTP/1.1 101")
    return s


class Refused(ConnectionError):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status: int, head: bytes):
        super().__init__(f"HTTP {status}: {head!r}")
        self.status = status


class RawWS:
    """A WebSocket client with no opinions: it sends whatever bytes a test wants."""

    def __init__(
        self,
        target: Target,
        timeout: float = IO_TIMEOUT,
        handshake: bool = True,
        source: str | None = None,
        path: str | None = None,
        extra: str = "",
    ):
        self.sock = connect(target, timeout, source)
        self.buf = b""
        self.head = b""
        if handshake:
            key = new_key()
            self.sock.sendall(upgrade_request(target, key, extra, path))
            head = self._read_head()
            status, headers, _ = parse_response(head)
            if status != 101:
                self.sock.close()
                raise Refused(status, head)
            assert headers["sec-websocket-accept"] == accept_for(key)
            self.head = head

    def _read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during handshake: {self.buf!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self) -> tuple[int, bool, bytes]:
        """(opcode, fin, payload) of the next server frame; checks server framing."""
        b0, b1 = self._need(2)
        assert b0 & 0x70 == 0, "server set RSV bits"
        assert b1 & 0x80 == 0, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        return b0 & 0x0F, bool(b0 & 0x80), self._need(n)

    def recv_message(self) -> tuple[int, bytes]:
        """Next data message, reassembled; control frames are returned as they come."""
        op, fin, data = self.recv_frame()
        if op >= 8:
            return op, data
        while not fin:
            op2, fin, more = self.recv_frame()
            assert op2 == 0, f"expected continuation, got opcode {op2}"
            data += more
        return op, data

    def recv_data(self) -> tuple[int, bytes]:
        """Next message that is not a ping, answering pings on the way, as any
        client must (a server with keepalive pings a client that only reads)."""
        while True:
            op, data = self.recv_message()
            if op != PING:
                return op, data
            self.send(frame(PONG, data))

    def expect_close(self) -> tuple[int | None, bytes]:
        """Read until the server's close frame; return (code, reason)."""
        while True:
            op, _, data = self.recv_frame()
            if op == 8:
                if len(data) >= 2:
                    return struct.unpack("!H", data[:2])[0], data[2:]
                return None, b""

    def expect_eof(self, timeout: float = IO_TIMEOUT) -> float:
        """Wait for the server to close TCP; return how long it took."""
        t0 = time.monotonic()
        self.sock.settimeout(timeout)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return time.monotonic() - t0
            if not chunk:
                return time.monotonic() - t0
            self.buf += chunk

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Holder(RawWS):
    """A WebSocket that holds its slot and sends nothing, but answers pings,
    as a live browser tab does: a server that probes silent slots (or sends
    keepalive pings) keeps it. Its frames are read in a thread of its own."""

    def __init__(self, target: Target, **kw):
        super().__init__(target, **kw)
        self.sock.settimeout(None)
        self.closed_with: tuple[int | None, bytes] | None = None
        self._reader = threading.Thread(target=self._answer, daemon=True)
        self._reader.start()

    def _answer(self):
        try:
            while True:
                op, _, data = self.recv_frame()
                if op == PING:
                    self.send(frame(PONG, data))
                elif op == CLOSE:
                    self.closed_with = (
                        struct.unpack("!H", data[:2])[0] if data else None,
                        data[2:],
                    )
                    return
        except (OSError, EOFError):
            return  # closed under it (close()) or by the server

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(IO_TIMEOUT)
        super().close()


def echo_ok(target) -> None:
    """One full cycle: connect, upgrade, echo, closing handshake, TCP closed by the server."""
    with RawWS(target) as ws:
        ws.send(frame(TEXT, b"still alive"))
        assert ws.recv_message() == (TEXT, b"still alive")
        ws.send(frame(CLOSE, close_payload(1000)))
        assert ws.expect_close()[0] == 1000
        ws.expect_eof()
