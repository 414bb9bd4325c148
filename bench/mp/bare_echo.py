"""The runtime's ceiling: a bare asyncio TCP echo (MicroPython).

Whatever bytes arrive go straight back (no framing, no parsing, no
unmasking), read with readinto() into one buffer allocated at start.
TCP_NODELAY is set per connection, as Stormproof does. Heap figures are
served on a second port (BENCH_STATS_PORT: GET /stats or /mem), so the echo
path has no check in it.
"""

import asyncio
import os

import micropython
from heapstats import mem, snapshot

micropython.kbd_intr(-1)  # SIGINT ends the process
buf = bytearray(8192)  # a 4 KB message's frame (4104 bytes) arrives in one read
mv = memoryview(buf)


async def echo(reader, writer):
    try:
        writer.s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (Linux numbers)
    except (AttributeError, OSError):
        pass
    try:
        while True:
            n = await reader.readinto(buf)
            if not n:
                break
            # write() sends at once when the socket takes it all, and copies
            # any rest: sharing one buffer between connections is safe.
            writer.write(mv[:n])
            await writer.drain()
    except OSError:
        pass
    writer.close()
    await writer.wait_closed()


async def stats(reader, writer):
    try:
        req = await reader.read(1024)
        body = mem() if req.startswith(b"GET /mem") else snapshot()
        writer.write(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + "Content-Length: "
            + str(len(body))
            + "\r\n\r\n"
            + body
        )
        await writer.drain()
    except OSError:
        pass
    writer.close()
    await writer.wait_closed()


async def main():
    port = int(os.getenv("BENCH_PORT") or "5001")
    stats_port = int(os.getenv("BENCH_STATS_PORT") or "5002")
    await asyncio.start_server(echo, "127.0.0.1", port, backlog=8)
    await asyncio.start_server(stats, "127.0.0.1", stats_port, backlog=4)
    print("listening on 127.0.0.1:" + str(port))
    while True:
        await asyncio.sleep(3600)


asyncio.run(main())
