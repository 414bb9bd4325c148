"""Everything ESP32-specific: Wi-Fi (station, setup access point, supervisor),
the watchdog, the reset cause, safe mode, the crash log and heap figures.

Only main.py on a board imports this module (`make run` and the served
suite never load it); the host tests run it under the unix port with
stand-ins for `network` and `machine` (tests_host/mp/board/).
"""

import gc
import os
import sys
import time

import machine
import network

SAFE_FLAG = "safe_mode"  # while this file exists, every boot is in safe mode
LOG = "crash.log"  # the ring log: boots, crashes, Wi-Fi events; survives resets
LOG_MAX = 2048
KEY_FILE = "setup_key"  # the setup access point's password when none is chosen
SAFE_WINDOW_MS = 1000  # how long after boot the BOOT button is watched
CRASH_DELAY_MS = 3000  # between a crash's report and the reset: time for Ctrl-C
IDF_KEEP = 40 * 1024  # IDF RAM the Python heap must leave to Wi-Fi and lwIP
POLL_MS = 2000  # the supervisor's look at the link
ADDRESS_EVERY = 15  # ...and at the address, every this many looks (ifconfig allocates)
BACKOFF_MIN = 1000
BACKOFF_MAX = 60000
_KEY_CHARS = "abcdefghjkmnpqrstuvwxyz23456789"  # nothing to misread on a console


class SafeMode(Exception):
    """Raised at boot in safe mode: main.py ends there and the REPL is left."""


def reset_cause():
    """Why the board (re)started, as a word for the log and /stats."""
    c = machine.reset_cause()
    for name, value in (
        ("power_on", machine.PWRON_RESET),  # also brownout
        ("hard_reset", machine.HARD_RESET),  # machine.reset(), or a panic
        ("watchdog", machine.WDT_RESET),
        ("deep_sleep", machine.DEEPSLEEP_RESET),
        ("soft_reset", machine.SOFT_RESET),
    ):
        if c == value:
            return name
    return "unknown"


def log_event(text, path=LOG, cap=LOG_MAX):
    """Append a line to the ring log on flash, which keeps its last cap/2 to
    cap bytes (whole lines). Never raises: a full or broken filesystem must
    not turn a crash report into a second crash."""
    try:
        try:
            with open(path) as f:
                data = f.read()
        except OSError:
            data = ""
        data += text.rstrip("\n") + "\n"
        if len(data) > cap:
            data = data[len(data) - cap // 2 :]
            data = data[data.find("\n") + 1 :]
        with open(path, "w") as f:
            f.write(data)
    except Exception as e:
        print("[W] log:", e)


def safe_mode(pin=None, window_ms=SAFE_WINDOW_MS):
    """Why this boot is in safe mode, or None. The flag file, or the BOOT
    button held during the first window_ms (not at reset itself: held at
    reset it selects the ROM bootloader)."""
    try:
        os.stat(SAFE_FLAG)
        return "the file " + SAFE_FLAG + " exists (remove it and reset to serve)"
    except OSError:
        pass
    if pin is None:
        pin = 9 if "C3" in sys.implementation._machine else 0  # the BOOT button's GPIO
    button = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
    print("[I] hold BOOT now for safe mode")
    start = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), start) < window_ms:
        if button.value() == 0:
            return "BOOT button held"
        time.sleep_ms(20)
    return None


def setup_key(chosen="", path=KEY_FILE):
    """The setup access point's password: the one chosen in the settings,
    else one made for this board at its first setup (random, kept on flash,
    printed on the serial console). Not derived from the chip's ID: that is
    its MAC address, which the access point itself broadcasts."""
    if chosen:
        return chosen
    try:
        with open(path) as f:
            key = f.read().strip()
        if len(key) >= 8:
            return key
    except OSError:
        pass
    # (Called with the radio on: only then is the ESP32's RNG truly random.)
    key = "".join(_KEY_CHARS[b % len(_KEY_CHARS)] for b in os.urandom(12))
    with open(path, "w") as f:
        f.write(key)
    return key


def join(sta, ssid, key, timeout_ms):
    """Join ssid as a station within timeout_ms: the address, or None."""
    sta.connect(ssid, key)
    start = time.ticks_ms()
    while not sta.isconnected():
        if time.ticks_diff(time.ticks_ms(), start) > timeout_ms or sta.status() in (
            network.STAT_WRONG_PASSWORD,
            network.STAT_NO_AP_FOUND,
        ):
            print("[W] Wi-Fi: could not join %r (status %d)" % (ssid, sta.status()))
            sta.disconnect()
            return None
        time.sleep_ms(100)
    return sta.ifconfig()[0]


def start_network(s):
    """Station mode when the settings name a network that answers within
    wifi_timeout, else the setup access point. (mode, address, sta or None)."""
    network.hostname(s["hostname"])  # before activation: it goes into DHCP and mDNS
    sta = network.WLAN(network.WLAN.IF_STA)
    sta.active(True)
    if s["ssid"]:
        # A few driver retries per connect(); past them the supervisor takes
        # over, with its own backoff.
        sta.config(pm=sta.PM_NONE, reconnects=3)
        ip = join(sta, s["ssid"], s["key"], s["wifi_timeout"])
        if ip:
            print("[I] Wi-Fi: joined %r as %s.local, address %s" % (s["ssid"], s["hostname"], ip))
            print("[I] open http://%s/ or http://%s.local/" % (ip, s["hostname"]))
            return "station", ip, sta
    key = setup_key(s["ap_key"])
    sta.active(False)
    ap = network.WLAN(network.WLAN.IF_AP)
    ssid = "%s-setup-%s" % (s["hostname"], "".join("%02x" % b for b in ap.config("mac")[-2:]))
    ap.config(ssid=ssid, key=key, security=network.AUTH_WPA2_PSK, max_clients=2)
    ap.active(True)
    ip = ap.ifconfig()[0]
    print("[I] setup: join Wi-Fi %r with password %r, then open http://%s/setup" % (ssid, key, ip))
    return "setup", ip, None


class Supervisor:
    """Keeps the station on its network: step() looks at the link and
    reconnects with a doubling backoff; address changes are logged. A pure
    step of (link, clock) so it is tested without waiting."""

    def __init__(self, sta, ssid, key, ip):
        self.sta = sta
        self.ssid = ssid
        self.key = key
        self.ip = ip
        self.backoff = 0
        self.looks = 0
        self.reconnects = 0

    def step(self):
        """One look at the link; the ms until the next one."""
        if self.sta.isconnected():
            self.looks += 1
            if self.ip is None or self.backoff or self.looks >= ADDRESS_EVERY:
                self.looks = 0
                ip = self.sta.ifconfig()[0]
                if ip != self.ip:
                    event("Wi-Fi: address %s (was %s)" % (ip, self.ip))
                    self.ip = ip
            self.backoff = 0
            return POLL_MS
        if self.ip is not None:
            event("Wi-Fi: lost %r" % self.ssid)
            self.ip = None
        if self.sta.status() == network.STAT_CONNECTING:
            return POLL_MS  # the driver is still on it
        self.backoff = min(max(self.backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
        self.reconnects += 1
        print("[I] Wi-Fi: reconnecting to %r, next look in %d ms" % (self.ssid, self.backoff))
        try:
            self.sta.connect(self.ssid, self.key)
        except OSError as e:
            print("[W] Wi-Fi: connect: %r" % e)
        return self.backoff


async def supervise(sup):
    import asyncio

    while True:
        await asyncio.sleep_ms(sup.step())


def _uptime_s():
    return time.ticks_diff(time.ticks_ms(), 0) // 1000


def event(text):
    print("[I]", text)
    log_event("%d s: %s" % (_uptime_s(), text))


class Watchdog:
    """machine.WDT, fed by the server's sweep only while the event loop and
    the server's accept loop are alive (Server.watchdog): a hang resets the
    board. It cannot be stopped, and survives a soft reset."""

    def __init__(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        self._wdt.feed()


def heap_figures():
    """(Python heap free, largest free IDF block, IDF free) in bytes, without
    allocating to find out. Since 1.21 the ESP32's gc.mem_free() adds the
    largest free IDF block (where the heap could grow) to the heap's own free
    space; here the two are apart."""
    import esp32

    largest = 0
    free = 0
    for region in esp32.idf_heap_info(esp32.HEAP_DATA):  # (total, free, largest, min free)
        free += region[1]
        if region[2] > largest:
            largest = region[2]
    return gc.mem_free() - largest, largest, free


def usable_heap():
    """What the server's start-up check may count on: the Python heap's free
    space plus what it can still grow while leaving IDF_KEEP to Wi-Fi."""
    py, largest, _ = heap_figures()
    return py + max(0, largest - IDF_KEEP)


class StatsPart:
    """A board's part of /stats, rendered into the report's buffer by
    Stats._heap: mem_free for the Python heap alone, what ESP-IDF has left
    beside it, the reset cause. (esp32.idf_heap_info builds a small list per
    report; allocating to probe the largest free block could instead grow
    the heap into RAM that Wi-Fi and lwIP need, so largest_free is -1.)"""

    def __init__(self, cause):
        self.cause = cause

    def __call__(self, buf, off):
        from .stats import _kv, _put

        py, largest, free = heap_figures()
        off = _put(buf, _kv(buf, off, "mem_free", py), ", ")
        off = _put(buf, _kv(buf, off, "idf_free", free), ", ")
        off = _put(buf, _kv(buf, off, "idf_largest", largest), ", ")
        off = _put(buf, _kv(buf, off, "reset_cause", None), '"')
        return _put(buf, _put(buf, off, self.cause), '", ')


def form(query):
    """The fields of a URL-encoded query string (a form sent with GET)."""
    out = {}
    for part in query.split("&"):
        if part:
            k, _, v = part.partition("=")
            out[unquote(k)] = unquote(v)
    return out


def unquote(s):
    """%XX and + decoded; ValueError if what they spell is not UTF-8."""
    raw = s.replace("+", " ").encode()
    if b"%" not in raw:
        return s.replace("+", " ")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 37 and _hex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode()
    except UnicodeError:
        raise ValueError("not UTF-8")


def _hex(two):
    return len(two) == 2 and all(c in b"0123456789abcdefABCDEF" for c in two)


_FORM = """<!doctype html><meta name=viewport content="width=device-width">
<title>Stormproof setup</title><h1>Wi-Fi for %s</h1>
<form action=/setup><p>Network <input name=ssid required maxlength=32>
<p>Password <input name=key type=password maxlength=63>
<p>Hostname <input name=hostname value="%s" maxlength=63>
<p><button>Save and restart</button></form>"""


def setup_page(req, path=None, restart=True):
    """GET /setup: the form; GET /setup?ssid=..&key=..: check the values,
    write them to the settings file and restart into station mode. (GET,
    because the server answers GET only; the setup network is the board's
    own WPA2 access point.)"""
    from . import settings

    path = path or settings.FILE
    values, _ = settings.load(path)
    try:
        got = form(req.query)
    except ValueError as e:
        return 400, "text/plain", "setup: %s" % e
    if not got.get("ssid"):
        return 200, "text/html; charset=utf-8", _FORM % (values["hostname"], values["hostname"])
    for k in ("ssid", "key", "hostname"):
        if got.get(k) is not None and (k != "hostname" or got[k]):
            values[k] = got[k]
    try:
        settings.save(values, path)
    except ValueError as e:
        return 400, "text/plain", "setup: %s" % e
    event("setup: settings saved for %r" % values["ssid"])
    if restart:
        import asyncio

        asyncio.create_task(_restart_later(2000))
    return (
        200,
        "text/plain",
        "Saved. Restarting to join %r: find this board at http://%s.local/ "
        "(or its address, printed on the serial console)." % (values["ssid"], values["hostname"]),
    )


async def _restart_later(ms):
    import asyncio

    await asyncio.sleep_ms(ms)  # the answer leaves first
    machine.reset()


def crash(e, delay_ms=CRASH_DELAY_MS):
    """An exception nobody caught: print it, keep it in the ring log, reset
    after delay_ms (Ctrl-C in that time leaves the REPL instead)."""
    import io

    buf = io.StringIO()
    sys.print_exception(e, buf)  # pyright: ignore[reportArgumentType]
    text = buf.getvalue()  # pyright: ignore[reportAttributeAccessIssue]
    print(text)
    log_event("%d s: crash: %s" % (_uptime_s(), text))
    print("[E] resetting in %d ms (Ctrl-C: the REPL)" % delay_ms)
    time.sleep_ms(delay_ms)
    machine.reset()


class Board:
    """What main.py does on a board, in order: start() before the server is
    built, attach(server) after, run(server) to serve until a reset."""

    def __init__(self):
        self.cause = ""
        self.settings = {}
        self.mode = ""
        self.ip = None
        self.sta = None

    def start(self):
        """The reset cause, safe mode, the settings, Wi-Fi. Raises SafeMode."""
        self.cause = reset_cause()
        print("[I] reset cause:", self.cause)
        log_event("%d s: boot, reset cause %s" % (_uptime_s(), self.cause))
        why = safe_mode()
        if why:
            print("[W] safe mode: %s; no server, no watchdog" % why)
            raise SafeMode(why)
        from . import settings

        self.settings, problems = settings.load()
        for p in problems:
            print("[W] settings.json:", p)
        self.mode, self.ip, self.sta = start_network(self.settings)
        return self

    def server(self, overrides):
        """The server from the settings' overrides; with the defaults when
        they do not pass Config's checks (a board that serves beats one
        that stops at boot)."""
        from . import Config, ConfigError, Server

        try:
            server = Server(Config(**overrides))
        except ConfigError as e:
            event("settings.json: server: %s; defaults used" % e)
            server = Server(Config())
        self.attach(server)
        return server

    def attach(self, server):
        stats = server.stats
        stats.probe_cap = 0  # never probe by allocating: a failed one grows the heap into IDF RAM
        stats.board = StatsPart(self.cause)
        if self.mode == "setup":
            server.route("/setup", setup_page)
        if self.settings.get("watchdog"):
            server.watchdog = Watchdog(self.settings["watchdog"])

    def run(self, server):
        import asyncio

        async def main():
            if self.sta is not None:
                s = self.settings
                asyncio.create_task(supervise(Supervisor(self.sta, s["ssid"], s["key"], self.ip)))
            await server.serve()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:  # Ctrl-C at the REPL: every client gets its 1001 first
            asyncio.run(server.stop())
            print("stopped")
        except Exception as e:
            crash(e)
