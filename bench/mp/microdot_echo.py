"""microdot's WebSocket echo at /ws, heap figures at /stats and /mem (MicroPython).

Run from a directory whose lib/ holds the microdot package; the port comes
from BENCH_PORT. The echo is microdot's documented one (`with_websocket`,
`receive()`, `send()`), nothing tuned.
"""

import os
import sys

import micropython

sys.path.insert(0, "lib")

from heapstats import mem, snapshot  # noqa: E402
from microdot import Microdot, Response  # noqa: E402
from microdot.websocket import with_websocket  # noqa: E402

micropython.kbd_intr(-1)  # SIGINT ends the process (as in Stormproof's main.py)
app = Microdot()
JSON = {"Content-Type": "application/json"}


@app.route("/ws")
@with_websocket
async def echo(request, ws):
    while True:
        msg = await ws.receive()
        await ws.send(msg)


@app.route("/stats")
async def stats(request):
    return Response(snapshot(), headers=JSON)


@app.route("/mem")
async def mem_total(request):
    return Response(mem(), headers=JSON)


port = int(os.getenv("BENCH_PORT") or "5000")
print("listening on 127.0.0.1:" + str(port))
app.run(host="127.0.0.1", port=port)
