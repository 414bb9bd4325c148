"""Live numbers: counters kept in storage allocated at start, plus heap figures.

Counters are plain attributes holding small ints, so bumping one never
allocates. The close-code table is a dict whose keys all exist from the
start for the same reason. json() allocates, but only when asked.
"""

import gc
import time

import micropython

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
)


# What /stats reports, in order. A fixed tuple rather than __dict__, which
# MicroPython copies on every access: one more block a fragmented heap may
# not have at the very moment someone asks how the heap is doing.
_FIELDS = (
    "max_message", "slots_total", "slots_in_use", "slots_peak", "handshakes_total",
    "handshakes_in_use", "sockets_open", "tasks", "accepted", "closed", "accept_errors",
    "ws_opened", "ws_closed", "http_served", "http_errors", "refused_full", "refused_busy",
    "refused_bad", "refused_timeout", "close_codes", "close_reasons", "pings_sent",
    "pongs_received", "pongs_missed", "msgs_in", "msgs_out", "bytes_in", "bytes_out",
    "send_drops", "memory_errors", "handler_errors",
)  # fmt: skip


class Stats:
    def __init__(self, slots_total, handshakes_total, max_message=0):
        self.max_message = max_message  # clients may read the limit here
        self.started = time.ticks_ms()
        self.slots_total = slots_total
        self.handshakes_total = handshakes_total
        self.slots_in_use = 0
        self.slots_peak = 0
        self.handshakes_in_use = 0
        self.sockets_open = 0  # accepted and not yet closed, any phase
        self.tasks = 0  # connection tasks alive (one per accepted socket, until its end)
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
        self.close_codes: dict = {"other": 0}
        for c in _CODES:
            self.close_codes[c] = 0
        self.close_reasons = {}
        for r in REASONS:
            self.close_reasons[r] = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self.pongs_missed = 0
        self.msgs_in = 0
        self.msgs_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.send_drops = 0  # broadcast frames a busy or slow client did not get
        self.memory_errors = 0
        self.handler_errors = 0

    def slot_taken(self):
        self.slots_in_use += 1
        if self.slots_in_use > self.slots_peak:
            self.slots_peak = self.slots_in_use

    def count_close(self, code, reason):
        self.ws_closed += 1
        codes = self.close_codes
        codes[code if code in codes else "other"] += 1
        self.close_reasons[reason] += 1

    def json(self, probe_cap=65536, **extra):
        """Every counter plus heap figures as JSON, yielded in small pieces:
        a busy heap may not have one block for the whole text."""
        # Heap figures first, before this report makes any garbage.
        gc.collect()
        largest = largest_free_block(probe_cap)
        gc.collect()
        yield '{"mem_free": %d, "mem_alloc": %d' % (gc.mem_free(), gc.mem_alloc())
        yield ', "largest_free": %d, "uptime_ms": %d' % (
            largest, time.ticks_diff(time.ticks_ms(), self.started))
        try:
            # Bytes ever allocated (unix port; boards build without mem stats):
            # differences of it give allocation per message in benchmarks.
            yield ', "mem_total": %d' % micropython.mem_total()  # pyright: ignore[reportAttributeAccessIssue]
        except AttributeError:
            pass
        for k in extra:
            yield ', "%s": %d' % (k, extra[k])
        for k in _FIELDS:
            v = getattr(self, k)
            if isinstance(v, dict):
                yield ', "%s": {' % k
                sep = ""
                for kv in v.items():
                    yield sep + '"%s": %d' % kv
                    sep = ", "
                yield "}"
            else:
                yield ', "%s": %d' % (k, v)
        yield "}"


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
            b = bytearray(mid)
            b = None
            lo = mid
        except MemoryError:
            hi = mid - 1
    return lo
