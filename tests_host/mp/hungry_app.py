# A test application on the real Server: its handler allocates what the client
# asks for, so a test can make the heap fail on demand and watch the server
# survive. Run from build/unix (the compiled lib/ is there), like main.py.
import asyncio
import sys

sys.path.insert(0, "lib")

import micropython  # noqa: E402
from stormproof import Config, Server, overrides  # noqa: E402

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


server.route("/stats", lambda req: (200, "application/json", server.stats_json()))
asyncio.run(server.serve())
