"""Live numbers: counters kept in storage allocated at start, plus heap figures.

Counters are plain attributes holding small ints, so bumping one never
allocates. The close-code table is a dict whose keys all exist from the
start for the same reason. The report is written by render() into a buffer
the caller owns, piece by piece, without allocating.
"""

import gc
import time

import micropython
from micropython import const

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING:
    from .log import Log

from .kernels import copy

_PIECE_MAX = const(480)  # bytes a piece of the report takes at most

# Close codes counted individually; anything else lands in "other".
_CODES = (1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013)

# Why connections ended (one per WebSocket connection).
REASONS = (
    "peer_close",  # the client sent a close frame
    "server_close",  # the application closed it, or the handler returned
    "protocol_error",  # the client broke RFC 6455 (1002/1007/1009)
    "handler_error",  # the handler raised (1011)
    "keepalive",  # no pong in time (dead or half-open peer)
    "idle",  # idle_timeout passed without a message
    "send_timeout",  # the client stopped reading while we sent
    "peer_reset",  # EOF, RST or a socket error without a close frame
    "memory",  # MemoryError on this connection
    "shutdown",  # the server stopped
    "fair_share",  # one address held more than its share while another waited (1013)
)


# What /stats reports, in order. A fixed tuple rather than __dict__, which
# MicroPython copies on every access: one more block a fragmented heap may
# not have at the very moment someone asks how the heap is doing.
_FIELDS = (
    "max_message", "slots_total", "slots_in_use", "slots_peak", "handshakes_total",
    "handshakes_in_use", "sockets_open", "tasks", "accepted", "closed", "accept_errors",
    "ws_opened", "ws_closed", "http_served", "http_errors", "refused_full", "refused_busy",
    "refused_bad", "refused_timeout", "refused_origin", "refused_auth",
    "refused_share", "refused_rate", "close_codes", "close_reasons", "pings_sent", "probes",
    "pongs_received", "pongs_missed", "msgs_in", "msgs_out", "bytes_in", "bytes_out",
    "send_drops", "memory_errors", "handler_errors",
)  # fmt: skip


class Stats:
    board = None  # a board's fn(buf, off) -> off: its heap figures (board.py)

    @micropython.native
    def __init__(self, slots_total, handshakes_total, max_message=0):
        self.max_message = max_message  # clients may read the limit here
        self.started = time.ticks_ms()
        self.slots_total = slots_total
        self.handshakes_total = handshakes_total
        self.slots_in_use = 0
        self.slots_peak = 0
        self.handshakes_in_use = 0
        self.sockets_open = 0  # accepted and not yet closed, any phase
        self.tasks = 0  # connections a worker is serving (one per accepted socket, until its end)
        self.accepted = 0
        self.closed = 0
        self.accept_errors = 0
        self.ws_opened = 0
        self.ws_closed = 0
        self.http_served = 0
        self.http_errors = 0  # plain HTTP answered 4xx (404, 405, 426)
        self.refused_full = 0  # 503: every WebSocket slot busy
        self.refused_busy = 0  # 503: every handshake slot busy, refused at accept
        self.refused_bad = 0  # 4xx: a malformed request or refused WebSocket upgrade
        self.refused_timeout = 0  # the request did not arrive within handshake_timeout
        self.refused_origin = 0  # 403: an Origin not allowed (or none, with require_origin)
        self.refused_auth = 0  # 401: no or a wrong token; 429: an address failing too often
        self.refused_share = 0  # an address holding its share while another waits
        self.refused_rate = 0  # 429: an address opening connections faster than handshake_rate
        self.close_codes: dict = {"other": 0}
        for c in _CODES:
            self.close_codes[c] = 0
        self.close_reasons = {}
        for r in REASONS:
            self.close_reasons[r] = 0
        self.pings_sent = 0
        self.probes = 0  # pings sent to silent slots while a client was refused
        self.pongs_received = 0
        self.pongs_missed = 0
        self.msgs_in = 0
        self.msgs_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.send_drops = 0  # broadcast frames a busy or slow client did not get
        self.memory_errors = 0
        self.handler_errors = 0
        self.log: "Log | None" = None  # the server's Log, for its suppressed-line count
        self.probe_cap = 65536  # largest block the heap probe tries
        self.probe_next = True  # the next report probes for the largest free block

    @micropython.native
    def count_close(self, code, reason):
        self.ws_closed += 1
        codes = self.close_codes
        codes[code if code in codes else "other"] += 1
        self.close_reasons[reason] += 1

    @micropython.native
    def render(self, buf, off, item):
        """Write piece `item` (0 .. ITEMS-1) of the JSON report at buf[off:];
        the new offset, or -1 if it may not fit (write out buf[:off] and call
        again at 0; a piece never needs more than 480 bytes).

        Nothing here allocates, frames included (every function below keeps
        its locals and stack within the 11 words MicroPython holds on the C
        stack), so a report can neither fail half-way on a full heap nor move
        the heap it describes, and each piece is written whole: the text is
        valid JSON however the caller cuts it into writes.
        """
        if len(buf) - off < _PIECE_MAX:
            return -1
        if item == 0:
            return self._heap(buf, off)
        if item > len(_FIELDS):
            buf[off] = 125  # }
            return off + 1
        item = _FIELDS[item - 1]  # from here, the field's name
        v = getattr(self, item)
        off = _put(buf, off, ", ")
        if not isinstance(v, dict):
            return _kv(buf, off, item, v)
        off = _kv(buf, off, item, None)
        # A fixed order: a dict's own is not.
        return _table(buf, off, v, _CODE_ORDER if v is self.close_codes else REASONS)

    @micropython.native
    def _heap(self, buf, off):
        # Bytes ever allocated (unix port; boards build without mem stats),
        # read before anything here allocates: differences of it give
        # allocation per message.
        x = _mem_total() if _mem_total is not None else -1
        off = _put(buf, off, "{")
        if x >= 0:
            off = _put(buf, _kv(buf, off, "mem_total", x), ", ")
        # Heap figures before this request's own objects.
        gc.collect()
        x = largest_free_block(self.probe_cap) if self.probe_next and self.probe_cap else -1
        gc.collect()
        off = _put(buf, _kv(buf, off, "largest_free", x), ", ")
        off = _mem_free(self, buf, off)
        x = gc.mem_alloc()
        off = _put(buf, _kv(buf, off, "mem_alloc", x), ", ")
        x = time.ticks_diff(time.ticks_ms(), self.started)
        off = _put(buf, _kv(buf, off, "uptime_ms", x), ", ")
        x = self.log
        return _kv(buf, off, "log_suppressed", x.suppressed if x is not None else 0)


ITEMS = len(_FIELDS) + 2  # pieces of the report
_CODE_ORDER = ("other",) + _CODES


def _mem_free(stats, buf, off):
    if stats.board is not None:  # its own mem_free (ESP-IDF's RAM apart), IDF figures, reset cause
        return stats.board(buf, off)
    x = gc.mem_free()
    return _put(buf, _kv(buf, off, "mem_free", x), ", ")


@micropython.native
def _table(buf, off, v, keys):
    """{"k": v[k], ...} for keys, at buf[off:]; the new offset."""
    i = 0
    while i < len(keys):
        off = _pair(buf, _put(buf, off, ", " if i else "{"), v, keys[i])
        i += 1
    buf[off] = 125  # }
    return off + 1


@micropython.native
def _pair(buf, off, v, k):
    return _kv(buf, off, k, v[k])


@micropython.native
def _put(buf, off, s):
    copy(buf, off, s, 0, len(s))
    return off + len(s)


@micropython.native
def _kv(buf, off, key, v):
    """ "key": v at buf[off:] (key str or int; v None: no value); the new offset."""
    buf[off] = 34  # "
    off = _int(buf, off + 1, key) if isinstance(key, int) else _put(buf, off + 1, key)
    buf[off] = 34
    buf[off + 1] = 58  # :
    buf[off + 2] = 32
    return off + 3 if v is None else _int(buf, off + 3, v)


@micropython.native
def _int(buf, off, v):
    """Decimal digits of v at buf[off:]; the new offset. (Not "%d" % v:
    that is a new string every time.)"""
    if v < 0:
        buf[off] = 45  # '-'
        off += 1
        v = -v
    end = off + 1
    t = v
    while t >= 10:
        t //= 10
        end += 1
    i = end
    while True:
        i -= 1
        buf[i] = 48 + v % 10
        v //= 10
        if not v:
            return end


try:
    _mem_total = micropython.mem_total  # pyright: ignore[reportAttributeAccessIssue]
except AttributeError:
    _mem_total = None


@micropython.native
def largest_free_block(cap):
    """Largest bytearray the heap can hand out now (up to `cap`), found by trying.

    MicroPython has no call that returns this figure (mem_info() only prints
    it). A failed allocation collects garbage and retries before raising, so
    each probe is answered for a clean heap; every probe is freed at once.
    """
    lo = 0
    hi = min(gc.mem_free(), cap)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            bytearray(mid)  # garbage at once: nothing keeps it
            lo = mid
        except MemoryError:
            hi = mid - 1
    return lo
