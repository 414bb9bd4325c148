# A test application on the real Server: its handler allocates what the client
# asks for, so a test can make the heap fail on demand and watch the server
# survive. Run from build/unix (the compiled lib/ is there), like main.py.
import asyncio
import sys

sys.path.insert(0, "lib")

import micropython  # noqa: E402
from stormproof import Config, ConnectionClosed, Server, overrides  # noqa: E402

micropython.kbd_intr(-1)  # SIGINT ends the process (see main.py)
settings = {"host": "127.0.0.1", "port": 8080}
settings.update(overrides())
server = Server(Config(**settings))


@server.websocket("/hungry")
async def hungry(ws):
    async for msg in ws:
        block = bytearray(int(msg))  # "abc" raises ValueError, "200000" MemoryError
        await ws.send("got %d" % len(block))
        block = None


hoard = None  # while set, the heap has no free block at all
hoard_age = 0


@server.websocket("/hoard")
async def hoard_all(ws):
    # Fills the heap to the last block, then fails an allocation: the close
    # path that follows must run without allocating anything itself.
    global hoard, hoard_age
    await ws.receive_view()
    for size in (1024, 256, 64, 16, 1):
        try:
            while True:
                hoard = (bytearray(size), hoard)
        except MemoryError:
            pass
    hoard_age = 0
    bytearray(100000)  # MemoryError, with nothing left to spare


async def janitor():
    # Gives the hoard back a few sweeps later (a preallocated loop: nothing
    # here allocates while the heap is full).
    global hoard, hoard_age
    while True:
        await asyncio.sleep_ms(100)
        if hoard is not None:
            hoard_age += 1
            if hoard_age > 5:
                hoard = None


@server.websocket("/text")
async def text(ws):
    # Sends the received bytes back as a text message, if they are UTF-8.
    async for msg in ws:
        try:
            await ws.send(msg if isinstance(msg, bytes) else msg.encode(), text=True)
        except ValueError as e:
            await ws.send("refused: %s" % e)


@server.websocket("/ws")
async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


kept = None  # a handle kept past its connection's end, as a careless app might


@server.websocket("/keep")
async def keep(ws):
    # The first client's handle is kept. The next one (on the same slot: the
    # first free) hears what that stale handle reads and does, then echoes.
    global kept
    old = kept
    kept = ws if old is None else None
    if old is not None:
        try:
            await old.send("from a stale handle")
            sent = "sent"
        except ConnectionClosed as e:
            sent = "ConnectionClosed %d" % e.code
        await ws.send("%s %s %s %d %s" % (old.path, old.query, old.closed, old.close_code, sent))
    async for msg in ws:
        await ws.send(msg)


server.route("/stats", server.stats_page)


async def main():
    asyncio.create_task(janitor())
    await server.serve()


asyncio.run(main())
