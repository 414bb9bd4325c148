"""Start-up only code: checking the settings, reading overrides, and building
the server's tables. Imported when the server starts and released right
after (config.py keeps only the defaults, server.py only what serves), so
none of this code or its messages stays in RAM while serving.
"""

import gc
import socket
import sys

from micropython import const

from . import aio, handshake
from .config import BUFFER_CAP, Config, ConfigError
from .kernels import set_view

_HEAP_RESERVE = const(16 * 1024)  # left for the app, asyncio, sockets and GC slack
_IPPROTO_TCP = const(6)  # Linux's numbers, for the unix port
_TCP_NODELAY = const(1)


def validate(cfg, heap_free=None):
    """Check every setting of cfg; ConfigError names the first bad one."""

    def need(ok, msg):
        if not ok:
            raise ConfigError(msg)

    need(cfg.max_clients >= 1 and cfg.handshakes >= 1, "max_clients and handshakes must be >= 1")
    for k in ("max_message", "rx_chunk", "tx_size", "request_max"):
        need(0 < getattr(cfg, k) <= BUFFER_CAP, "%s must be 1..%d bytes" % (k, BUFFER_CAP))
    need(cfg.tx_size >= 256, "tx_size must be >= 256 (control frames)")
    need(cfg.request_max >= 512, "request_max must be >= 512")
    need(cfg.rx_chunk >= 64, "rx_chunk must be >= 64")
    used = 1 + cfg.max_clients + cfg.handshakes + cfg.reserved_sockets
    need(
        used <= cfg.socket_budget,
        "sockets: 1 listener + max_clients + handshakes + reserved_sockets = %d > socket_budget %d"
        % (used, cfg.socket_budget),
    )
    for k in (
        "handshake_timeout",
        "pong_timeout",
        "probe_timeout",
        "send_timeout",
        "close_timeout",
    ):
        need(getattr(cfg, k) > 0, k + " must be > 0 ms")
    need(
        cfg.ping_interval >= 0 and cfg.idle_timeout >= 0 and cfg.probe_silence >= 0,
        "timeouts must be >= 0",
    )
    need(10 <= cfg.sweep_interval <= 5000, "sweep_interval must be 10..5000 ms")
    need(cfg.retry_after >= 1, "retry_after must be >= 1 s")
    origin_rule(cfg)
    for c in cfg.token:
        need(
            ord(c) < 128 and (c.isalpha() or c.isdigit() or c in "-._~"),
            "token: letters, digits and -._~ only",
        )
    need(cfg.per_address_slots >= -1, "per_address_slots must be -1 (auto), 0 (off) or more")
    need(
        cfg.handshake_rate >= 0 and cfg.handshake_burst >= 1,
        "handshake_rate >= 0, handshake_burst >= 1",
    )
    need(cfg.peer_table >= 1, "peer_table must be >= 1")
    if heap_free is None:
        heap_free = _heap_free(True)
    need_bytes = cfg.slot_bytes() * cfg.max_clients + cfg.request_max * cfg.handshakes
    need(
        need_bytes + _HEAP_RESERVE <= heap_free,
        "memory: %d B of buffers + %d B reserve > %d B free heap; lower max_clients or max_message"
        % (need_bytes, _HEAP_RESERVE, heap_free),
    )
    return cfg


def _heap_free(usable=False):
    """The Python heap's free bytes (a board's gc.mem_free() adds the IDF
    block it could grow into); usable: plus what it may still grow."""
    gc.collect()
    if sys.platform != "esp32":
        return gc.mem_free()
    from . import board

    return board.usable_heap() if usable else board.heap_figures()[0]


def overrides():
    """Settings that replace the defaults: the "server" section and the
    profile of settings.json, if there is one, then (on the unix port, which
    has an environment) STORMPROOF_<NAME> variables, e.g. STORMPROOF_MAX_CLIENTS=6."""
    out = {}
    import os

    try:
        os.stat("settings.json")
    except OSError:
        pass  # none (make run): the loader is not even imported
    else:
        from . import settings

        values, problems = settings.load()
        _release(settings)
        if sys.platform != "esp32":  # a board's boot (board.py) has printed them
            for p in problems:
                print("[W] settings.json:", p)
        out.update(values["server"])
        if values["profile"]:
            out["profile"] = values["profile"]
    try:
        from os import getenv  # pyright: ignore[reportAttributeAccessIssue]
    except ImportError:
        return out  # a board: no environment
    for k in dir(Config):
        if k[0] != "_" and not callable(getattr(Config, k)):
            v = getenv("STORMPROOF_" + k.upper())
            if v:
                out[k] = v if isinstance(getattr(Config, k), str) else int(v)
    return out


def _release(mod):
    """Forget a module used once at start, so its code leaves RAM."""
    sys.modules.pop(mod.__name__, None)
    pkg = sys.modules.get(mod.__name__.rpartition(".")[0])
    name = mod.__name__.rpartition(".")[2]
    if pkg is not None and hasattr(pkg, name):
        delattr(pkg, name)


def build(cfg, log, bufs, slot_class, pending_class, receiver_class):
    """The server's tables: (slots, pending pool, every handshake carrier,
    the 503 answers followed by their 1013 close frames and the 429, the 408 answer,
    the TCP_NODELAY option or None, the Origin rule for check_origin).

    Everything that lives as long as the server is allocated here, at the
    bottom of the heap, so what connections allocate and free later never
    has a long-lived object between it and the free space above."""
    receiver_class.view_len = view_len_index()
    if not sha1_kernel_ok():
        handshake.digest = _hashlib_digest
    # At most the listener and every connection reading or open wait at once.
    aio.install(1 + cfg.max_clients + cfg.handshakes)
    gc.collect()
    before = gc.mem_free()
    slots = [slot_class(i, cfg, bufs[i]) for i in range(cfg.max_clients)]
    pending = [
        pending_class(bytearray(cfg.request_max), cfg.request_max) for _ in range(cfg.handshakes)
    ]
    # Every handshake carrier, the pool's and the slots' own.
    carriers = pending + [s.pending for s in slots if s.pending is not None]
    # The 503, built now so a refusal allocates nothing. Its Retry-After
    # value is rewritten in place at each refusal (Server._next_refusal) so
    # refused clients do not all come back in the same second: room for the
    # longest of the 3 delays, right-aligned after optional whitespace.
    # Also the answer when a request meets a MemoryError: one prebuilt body for both.
    body = b"server busy: every WebSocket slot is in use, or memory is short; retry later\n"
    delay = str(cfg.retry_after)
    pad = " " * (len(str(cfg.retry_after + 2)) - len(delay))
    refusals: list = [bytearray(_prebuilt(503, body, "Retry-After: %s%s\r\n" % (pad, delay)))]
    # The same refusal for browsers, which cannot read a 503 (a refused
    # handshake reaches a page as close code 1006): close frames with 1013
    # and the delay in milliseconds, sent right behind a 101.
    for extra in range(3):
        refusals.append(_close_frame(1013, "retry=%d" % ((cfg.retry_after + extra) * 1000)))
    refusals.append(
        _prebuilt(
            429, b"too many connections from this address; retry later\n", "Retry-After: 1\r\n"
        )
    )
    timeout = _prebuilt(408, b"the request did not arrive in time\n", "")
    gc.collect()
    per = cfg.slot_bytes()
    log.info(
        "memory: %d slots x %d B = %d B, handshake pool %d B; heap used by tables %d B, free %d B",
        cfg.max_clients, per, per * cfg.max_clients, cfg.request_max * cfg.handshakes,
        before - gc.mem_free(), _heap_free(),
    )  # fmt: skip
    if cfg.gc_threshold:
        gc.threshold(cfg.gc_threshold if cfg.gc_threshold > 0 else _heap_free() // 2)
    # TCP_NODELAY where setting it works: firmware whose socket module
    # names it implements it; the unix port passes any option to the
    # kernel (Linux numbers). Older ESP32 firmware prints a warning for
    # every unknown option, once per connection: there it is left alone.
    if hasattr(socket, "TCP_NODELAY"):
        nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY)  # pyright: ignore[reportAttributeAccessIssue]
    elif sys.platform == "linux":
        nodelay = (_IPPROTO_TCP, _TCP_NODELAY)
    else:
        nodelay = None
    return slots, pending, carriers, refusals, timeout, nodelay, origin_rule(cfg)


def origin_rule(cfg):
    """allowed_origins (a comma-separated str, or a list) as check_origin
    takes it: (same host, anyone, required, exact origins as lowercase bytes)."""
    items = cfg.allowed_origins
    if isinstance(items, str):
        items = items.split(",")
    same = anyone = False
    exact = []
    for o in items:
        o = o.strip().lower().rstrip("/")
        if o == "same":
            same = True
        elif o == "*":
            anyone = True
        elif o:
            if "://" not in o:
                raise ConfigError("allowed_origins: %r is not same, * or scheme://host[:port]" % o)
            exact.append(o.encode())
    return same, anyone, bool(cfg.require_origin), tuple(exact)


def _close_frame(code, reason):
    reason = reason.encode()
    return bytes((0x88, 2 + len(reason), code >> 8, code & 0xFF)) + reason


def _prebuilt(status, body, extra):
    head = handshake.RESPONSE_HEAD % (
        status,
        handshake.STATUS[status],
        "text/plain",
        "Content-Length: %d\r\n" % len(body),
        handshake.NO_STORE + extra,
    )
    return head.encode() + body


def sha1_kernel_ok():
    """Whether the viper SHA-1 gives RFC 6455's own example accept
    (section 1.3) on this build: its 32-bit arithmetic is the kind of code
    a port's native emitter could get wrong, and a wrong accept would fail
    every handshake."""
    return handshake.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==", 0) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def _hashlib_digest(out, msg, n):
    """handshake.digest on a build where the viper SHA-1 is wrong: hashlib's
    SHA-1 of the accept's 60 bytes, with a hash object and a digest made at
    every handshake (and this module kept in RAM)."""
    import hashlib

    out[0:20] = hashlib.sha1(memoryview(msg)[:n]).digest()


def view_len_index():
    """The 32-bit word index of a memoryview's length, if setting it and the
    view's offset in place works on this build (checked on a probe view),
    else -1.

    A memoryview is (type, typecode and offset, len, items): len is the
    third machine word. Setting it lets one view per slot show each message
    at its length, where a slice would be a new object per message; setting
    the offset too lets a long payload be read straight into the message
    buffer where it belongs."""
    import sys

    index = 4 if sys.maxsize > 0xFFFFFFFF else 2
    buf = bytearray(b"abcd")
    view = memoryview(buf)
    set_view(view, 1, 2, index)
    ok = len(view) == 2 and bytes(view) == b"bc"
    view[0] = 66  # writes go where reads come from
    ok = ok and buf == bytearray(b"aBcd")
    set_view(view, 0, 4, index)
    return index if ok and len(view) == 4 and view[3] == 100 and view[0] == 97 else -1
