# Runs under MicroPython: stormproof.board with the stand-ins of
# board_standins.py for network/machine/esp32, one JSON request a line; every
# reply carries "calls", what board.py did to the stand-ins meanwhile, and
# "console", what it printed.
#   {"dir": path}                      work in path (settings, flag, logs), fresh stand-ins
#   {"air": {...}} / {"board": {...}}  change the world the stand-ins model
#   {"call": name, "args": [...]}      board.<name>(*args) -> {"result": ...}
#   {"network": settings}              board.start_network -> {"result": [mode, ip, has_sta]}
#   {"supervise": [ssid, key, ip], "steps": n, "air": [{...} per step]}  -> {"delays": [...]}
#   {"sweep": n, "listener": bool, "fail": bool}  -> {"fed": count}
#   {"crash": text}                    board.crash(ValueError(text), 0) -> {"reset": bool}
#   {"setup": query, "path": file}     board.setup_page -> {"result": [status, ctype, body]}
#   {"stats": cause}                   a Stats report with the board's part -> {"report": {...}}
#   {"server": overrides}              Board.server -> {"slots": n, "watchdog": bool}
#   {"start": 1}                       Board.start -> {"mode": .., "ip": ..} or {"safe": reason}
import json
import os
import sys

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[0].rpartition("/")[0])
import board_standins as fake  # noqa: E402

fake.install()
from stormproof import board  # noqa: E402

AIR0 = dict(fake.AIR)
CONSOLE = []


def console(*args):
    CONSOLE.append(" ".join(str(a) for a in args))


board.print = console  # a module global: board's prints come here
sys.modules["stormproof.log"].print = console  # and the server's log lines


class Req:
    def __init__(self, query):
        self.query = query


def fresh(path):
    os.chdir(path)
    fake.AIR.clear()
    fake.AIR.update(AIR0)
    fake.BOARD["cause"] = 1
    fake.BOARD["pins"] = {}
    fake.WLAN._all.clear()
    del fake.CALLS[:]


def handle(req):
    if "dir" in req:
        fresh(req["dir"])
        return {}
    if "air" in req and "supervise" not in req:
        fake.AIR.update(req["air"])
        return {}
    if "board" in req:
        fake.BOARD.update(req["board"])
        return {}
    if "call" in req:
        return {"result": getattr(board, req["call"])(*req.get("args", []))}
    if "network" in req:
        mode, ip, sta = board.start_network(req["network"])
        return {"result": [mode, ip, sta is not None]}
    if "supervise" in req:
        ssid, key, ip = req["supervise"]
        sup = board.Supervisor(fake.WLAN(0), ssid, key, ip)
        delays = []
        for air in req["air"]:
            fake.AIR.update(air)
            delays.append(sup.step())
        return {"delays": delays, "ip": sup.ip}
    if "sweep" in req:
        return sweep(req)
    if "crash" in req:
        try:
            board.crash(ValueError(req["crash"]), 0)
        except fake.Reset:
            return {"reset": True}
        return {"reset": False}
    if "setup" in req:
        return {"result": list(board.setup_page(Req(req["setup"]), req["path"], False))}
    if "stats" in req:
        return {"report": report(req["stats"])}
    if "server" in req:
        b = board.Board()
        b.settings = {"watchdog": 10000}
        srv = b.server(req["server"])
        return {"slots": srv.stats.slots_total, "watchdog": srv.watchdog is not None}
    if "start" in req:
        b = board.Board()
        try:
            b.start()
        except board.SafeMode as e:
            return {"safe": str(e)}
        return {"mode": b.mode, "ip": b.ip, "cause": b.cause}
    raise ValueError("unknown request")


def sweep(req):
    # The server's own sweep task, for a counted number of passes (each
    # pass counted as it runs, so the wait below is on a condition).
    import asyncio

    from stormproof import Config, Server, sweep

    srv = Server(Config(max_clients=1, sweep_interval=10, log_level=0))
    srv.watchdog = wdt = fake.WDT(10000)
    srv.listener = object() if req["listener"] else None
    passes = [0]

    def counted(server, now):
        passes[0] += 1
        if req["fail"]:
            raise RuntimeError("a broken sweep")

    real, sweep.once = sweep.once, counted

    async def main():
        task = asyncio.create_task(sweep.run(srv))
        while passes[0] < req["sweep"]:
            await asyncio.sleep_ms(5)
        task.cancel()

    srv.log.level = -1  # the broken sweep's error lines
    try:
        asyncio.run(main())
    finally:
        sweep.once = real
    return {"fed": wdt.fed, "passes": passes[0]}


def report(cause):
    from stormproof.stats import ITEMS, Stats

    st = Stats(2, 1)
    st.probe_cap = 0
    st.board = board.StatsPart(cause)
    buf = bytearray(4096)
    off = 0
    for item in range(ITEMS):
        off = st.render(buf, off, item)
    return json.loads(bytes(buf[:off]))


for line in sys.stdin:
    req = json.loads(line)
    try:
        out = handle(req)
    except Exception as e:
        out = {"error": "%s: %s" % (type(e).__name__, e)}
    out["calls"] = list(fake.CALLS)
    out["console"] = list(CONSOLE)
    del fake.CALLS[:]
    del CONSOLE[:]
    print(json.dumps(out))
