"""Default application: echo at /ws, a broadcast chat at /chat, a page at /, numbers at /stats."""

import asyncio
import os
import sys

# After .frozen (a board has /lib there already): a stale /lib must not
# shadow a package frozen into the firmware.
sys.path.append("lib")

from stormproof import Config, Server, overrides  # noqa: E402

if sys.platform == "esp32":
    from stormproof.board import Board

    # The reset cause, safe mode (board.SafeMode ends this script: the REPL),
    # settings.json, Wi-Fi (the setup access point when it cannot join).
    board = Board().start()
    server = board.server(overrides())
else:
    # The unix port raises Ctrl-C's KeyboardInterrupt from inside the signal
    # handler, wherever the interpreter is; landing in a garbage collection it
    # can crash the process. Let SIGINT simply end it: the OS closes every socket.
    import micropython

    micropython.kbd_intr(-1)
    board = None
    settings = {"host": "127.0.0.1", "port": 8080}
    settings.update(overrides())
    server = Server(Config(**settings))


@server.websocket("/ws", subprotocols=("echo",))
async def echo(ws):
    # Zero-copy echo: the message is read into the slot's buffer and sent
    # back from it, whatever its size (up to max_message).
    while True:
        msg = await ws.receive_view()
        await ws.send(msg, text=ws.is_text)


@server.websocket("/chat")
async def chat(ws):
    # Every message goes to every /chat client. broadcast() never waits on a
    # slow reader: that one misses messages (counted in send_drops) and is
    # closed if it stops reading, while everyone else keeps up.
    while True:
        msg = await ws.receive_view()  # no copy: it goes straight to every tx buffer
        if len(msg) > server.broadcast_max:
            await ws.send("error: over %d bytes" % server.broadcast_max)
        else:
            server.broadcast(msg, text=ws.is_text, path="/chat")


@server.websocket("/live")
async def live(ws):
    # The dashboard's one socket: its console's echo, and the live numbers
    # each time it asks ("stats"), so an open page costs no HTTP requests.
    while True:
        msg = await ws.receive_view()
        if ws.is_text and msg == b"stats":  # (a view compares in place)
            msg = ws.stats_view()
        await ws.send(msg, text=ws.is_text)


def page(req):
    # "/" is revalidated at every load (a reload then costs a 304 and no
    # body); the helper script is cached for an hour. Both leave gzipped when
    # a .gz sits beside the file (the build writes them) and the browser takes it.
    if req.path == "/":
        name, ctype, cache = "www/index.html", "text/html; charset=utf-8", "no-cache"
    else:
        name, ctype, cache = "www/stormproof.js", "text/javascript", "max-age=3600"
    enc = ""
    if "gzip" in (req.header("accept-encoding") or ""):
        try:
            os.stat(name + ".gz")
            name += ".gz"
            enc = "Content-Encoding: gzip\r\n"
        except OSError:
            pass
    try:
        st = os.stat(name)
    except OSError:
        return 404, "text/plain", "no " + name
    tag = '"%x-%x"' % (st[6], st[8])  # size and mtime
    extra = (
        "Cache-Control: %s\r\nETag: %s\r\nVary: Accept-Encoding\r\n%s" % (cache, tag, enc)
    ).encode()
    if req.header("if-none-match") == tag:
        return 304, ctype, b"", extra
    return 200, ctype, chunks(open(name, "rb")), extra


def chunks(f):
    # The page leaves in small pieces: a reload storm never needs a block the
    # size of the whole page.
    with f:
        while True:
            piece = f.read(256)
            if not piece:
                return
            yield piece


server.route("/", page)
server.route("/stormproof.js", page)
server.route("/stats", server.stats_page)
if board is not None or server.config.profile:  # the suite's preflight reads it
    server.route("/config", server.config.report)

if board is None:
    asyncio.run(server.serve())
else:
    board.run(server)  # Ctrl-C: a 1001 to every client; a crash: logged, then a reset
