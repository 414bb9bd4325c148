"""Server configuration, checked once at start so a bad value fails loudly, not later.

Defaults are class attributes (one copy in the class, none per instance);
Config(max_clients=6, ...) overrides only what it names. Sizes are bytes,
times milliseconds.
"""

from micropython import const

BUFFER_CAP = const(16384)  # no single buffer above 16 KiB: big blocks fragment a small heap
_PER_SLOT = const(125 + 14 + 16)  # parser's control and header bytes, bookkeeping


class ConfigError(ValueError):
    pass


class Config:
    host = "0.0.0.0"
    port = 80
    max_clients = 4  # open WebSocket connections (slots), each with fixed buffers
    handshakes = (
        1  # request buffers of the separate pool (requests are also read in free slots' buffers)
    )
    socket_budget = 10  # sockets the device allows in all (ESP32: 10 lwIP sockets)
    reserved_sockets = 2  # sockets the application keeps for itself (WebREPL, NTP, ...)
    max_message = 4096  # largest message accepted (1009 above); a slot's message buffer
    rx_chunk = 256  # bytes read from the socket per call
    tx_size = 512  # a slot's send buffer: headers, small payloads, control frames, broadcasts
    request_max = 1024  # largest HTTP request head (431 above)
    handshake_timeout = 5000  # the whole request must arrive within this
    ping_interval = 20000  # ping a connection silent this long; 0: no keepalive
    pong_timeout = 10000  # no pong within this: close 1011
    idle_timeout = 0  # close 1001 after this long without a message; 0: never
    probe_silence = (
        2000  # every slot busy and a client refused: ping slots silent this long; 0: never
    )
    probe_timeout = 2000  # ...and close them (1011) if their pong is not back within this
    send_timeout = 10000  # a send stalled this long (client not reading): close 1008
    close_timeout = 3000  # wait this long for the peer's close frame, then drop TCP
    sweep_interval = 250  # how often the sweep checks every deadline
    retry_after = 5  # seconds; a 503 says retry_after plus 0-2 s of jitter
    # Every slot busy and the request has an Origin (a browser, which cannot
    # read a 503): answer 101, then close at once with 1013 "retry=<ms>".
    # No slot is taken. False: a 503 for every client.
    browser_refusal = True
    # Who may open a WebSocket (403 otherwise, before any slot is taken): a
    # comma-separated list of exact origins ("http://192.168.1.20:8000"),
    # "same" (the Origin names the host the request was sent to: the
    # device's own page) and "*" (anyone: then any site a user visits can
    # open a socket to the device). Requests without Origin are not from a
    # browser; require_origin=True refuses them too.
    allowed_origins = "same"
    require_origin = False
    # A shared secret a client must present (`?token=...`, or the WebSocket
    # subprotocol "token.<secret>"), else 401; "" for none. Letters, digits
    # and "-._~" only (it must fit both places unescaped).
    token = ""
    # Slots one client address may hold while another address is waiting:
    # -1 all but one (at least one), 0 no cap. Alone, an address may use
    # them all; one that holds more when another knocks gives one back (1013).
    per_address_slots = -1
    handshake_rate = 0  # new connections per second one address may open; 0: no limit
    handshake_burst = 20  # ...with this many at once
    peer_table = 8  # client addresses remembered for the rate and failed tokens
    # Bytes allocated between collections. -1: half the heap left free after
    # the tables; 0: collect only when the heap is full. Collecting before the
    # heap is full frees garbage while it is still small and low in the heap,
    # so storms leave the free space in big blocks (measured: with it off the
    # largest free block fell to 224 B in a storm, with it on it stayed >2 KB).
    gc_threshold = -1
    backlog = 8  # listen() backlog: a burst waits here instead of being dropped (lwIP caps it by its PCBs)
    log_level = 2  # 0 error, 1 warn, 2 info, 3 debug
    profile = ""  # "test": make deploy PROFILE=test (the suite reads it at /config)

    def __init__(self, **overrides):
        for k in overrides:
            if not hasattr(Config, k):
                raise ConfigError("unknown setting: " + k)
            setattr(self, k, overrides[k])

    def slot_bytes(self):
        """Buffer bytes one WebSocket slot owns for its whole life."""
        return self.max_message + self.rx_chunk + self.tx_size + _PER_SLOT

    def report(self, req=None):
        """Route handler for the active settings as JSON (/config on a board
        or with a profile), with the MicroPython version and platform. The
        token is never shown, only whether one is set: /config is open to
        anyone who can reach the device."""
        # Its one block of any size (dir()'s, 752 B on the 64-bit unix port)
        # is taken now: on a heap without it the answer is a 503, not a 200
        # cut short.
        return 200, "application/json", self._report(dir(Config))

    def _report(self, names):
        # Streamed one setting per piece, with no dict of every setting and
        # no whole document (one JSON dump took a 600 B and a 700 B block).
        # Rendered here, not by start-up code: loading that for a request
        # would need several KB at once.
        import json
        import sys

        v = sys.implementation.version
        yield '{"micropython": "%d.%d.%d", "platform": "%s"' % (v[0], v[1], v[2], sys.platform)
        for k in names:
            if k[0] != "_" and not callable(getattr(Config, k)):
                value = getattr(self, k)
                if k == "token" and value:
                    value = "(hidden)"
                yield ', "%s": %s' % (k, json.dumps(value))
        yield "}"

    def validate(self, heap_free=None):
        """Check every setting (ConfigError naming the bad one); self."""
        return _startup("validate")(self, heap_free)


def overrides():
    """Settings that replace the defaults: the "server" section of
    settings.json, then (on the unix port, which has an environment)
    STORMPROOF_<NAME> variables, e.g. STORMPROOF_MAX_CLIENTS=6."""
    return _startup("overrides")()


def _startup(name):
    """startup.py's function `name`, with the module released from RAM again
    (the function object keeps what it needs while it runs)."""
    import sys

    try:
        from . import startup
    except BaseException as e:  # (MemoryError): a half-loaded module must not stay behind
        sys.modules.pop(__name__.rpartition(".")[0] + ".startup", None)
        raise e
    fn = getattr(startup, name)
    sys.modules.pop(startup.__name__, None)
    pkg = sys.modules.get(__name__.rpartition(".")[0])
    if pkg is not None and hasattr(pkg, "startup"):
        delattr(pkg, "startup")
    return fn
