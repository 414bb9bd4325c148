"""Raw RFC 6455 bytes over asyncio streams, for the peers `websockets` refuses to be."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import sys
from pathlib import Path

# One frame builder for the tests and the tools.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests_host"))
from wsutil import close_payload, frame  # noqa: E402, F401

TEXT, BINARY, CLOSE, PING, CONT = 1, 2, 8, 9, 0
HEAD_MAX = 8192  # a response head longer than this is not from our server


def upgrade_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def open_stream(host: str, port: int, timeout: float, rcvbuf: int = 0):
    """(reader, writer); rcvbuf shrinks the kernel's receive buffer before
    connecting, so a peer that stops reading pushes back on the server soon."""
    if not rcvbuf:
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    loop = asyncio.get_running_loop()
    family, kind, proto, _, addr = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def read_head(reader: asyncio.StreamReader, timeout: float) -> tuple[int, dict]:
    """Status and headers of an HTTP response; raises EOFError if the server hung up."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.IncompleteReadError as e:
        raise EOFError(f"closed before a response head ({len(e.partial)} bytes)") from None
    except asyncio.LimitOverrunError:
        raise EOFError("response head too long") from None
    lines = head[:HEAD_MAX].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if b1 & 0x80 or b0 & 0x70 or n > 1 << 20:
        raise ValueError(f"bad server frame header {b0:#x} {b1:#x} len {n}")
    return b0 & 0x0F, await reader.readexactly(n)


async def expect_close(reader: asyncio.StreamReader, timeout: float) -> int | None:
    """The code of the server's close frame, skipping data and pings; None
    for an empty close. Raises EOFError if TCP closed without one."""

    async def scan():
        for _ in range(256):  # an echo of earlier frames at most, then the close
            op, data = await read_frame(reader)
            if op == CLOSE:
                return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
        raise ValueError("no close frame among 256 frames")

    try:
        return await asyncio.wait_for(scan(), timeout)
    except asyncio.IncompleteReadError:
        raise EOFError("TCP closed without a close frame") from None


async def wait_eof(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True once the server closed TCP (FIN or RST) within timeout."""

    async def drain():
        for _ in range(1024):
            if not await reader.read(65536):
                return
        raise ValueError("server kept sending after its close")

    try:
        await asyncio.wait_for(drain(), timeout)
    except (ConnectionError, OSError):
        pass
    except TimeoutError:
        return False
    return True


def hang_up(writer: asyncio.StreamWriter, reset: bool) -> None:
    """Drop the connection now: an RST (SO_LINGER 0) when reset, else a FIN."""
    with contextlib.suppress(OSError):
        if reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
