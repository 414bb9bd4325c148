"""Server configuration, checked once at start so a bad value fails loudly, not later."""

import gc

from micropython import const

BUFFER_CAP = const(16384)  # no single buffer above 16 KiB: big blocks fragment a small heap
_CONTROL = const(125 + 14 + 16)  # parser's control, header and bookkeeping bytes per slot
_HEAP_RESERVE = const(16 * 1024)  # left for the app, asyncio, sockets and GC slack


class ConfigError(ValueError):
    pass


class Config:
    """All limits in one place. Sizes are bytes, times milliseconds.

    max_clients     open WebSocket connections (slots), each with fixed buffers
    handshakes      connections reading their HTTP request at once (separate pool)
    socket_budget   sockets the device allows in all (ESP32: 10 lwIP sockets)
    reserved_sockets sockets the application keeps for itself (WebREPL, NTP, ...)
    max_message     largest message accepted (1009 above it); the slot's message buffer
    rx_chunk        bytes read from the socket per call
    tx_size         a slot's send buffer; longer messages go out as fragments
    request_max     largest HTTP request head (431 above it)
    """

    def __init__(
        self,
        host="0.0.0.0",
        port=80,
        max_clients=4,
        handshakes=2,
        socket_budget=10,
        reserved_sockets=2,
        max_message=4096,
        rx_chunk=512,
        tx_size=1024,
        request_max=1536,
        handshake_timeout=5000,
        ping_interval=20000,
        pong_timeout=10000,
        idle_timeout=0,
        send_timeout=10000,
        close_timeout=3000,
        sweep_interval=250,
        retry_after=5,
        backlog=4,
        log_level=2,
    ):
        self.host = host
        self.port = port
        self.max_clients = max_clients
        self.handshakes = handshakes
        self.socket_budget = socket_budget
        self.reserved_sockets = reserved_sockets
        self.max_message = max_message
        self.rx_chunk = rx_chunk
        self.tx_size = tx_size
        self.request_max = request_max
        self.handshake_timeout = handshake_timeout
        self.ping_interval = ping_interval  # 0 disables keepalive pings
        self.pong_timeout = pong_timeout
        self.idle_timeout = idle_timeout  # 0: no idle limit (keepalive still reaps dead peers)
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.sweep_interval = sweep_interval
        self.retry_after = retry_after  # seconds; the 503 adds 0-retry_after of jitter
        self.backlog = backlog
        self.log_level = log_level

    def slot_bytes(self):
        """Buffer bytes one WebSocket slot owns for its whole life."""
        return self.max_message + self.rx_chunk + self.tx_size + _CONTROL

    def budget(self):
        """(bytes per slot, all slots, handshake pool) allocated once at start."""
        per = self.slot_bytes()
        return per, per * self.max_clients, self.request_max * self.handshakes

    def validate(self, heap_free=None):
        def need(ok, msg):
            if not ok:
                raise ConfigError(msg)

        need(self.max_clients >= 1, "max_clients must be at least 1")
        need(self.handshakes >= 1, "handshakes must be at least 1")
        for name in ("max_message", "rx_chunk", "tx_size", "request_max"):
            v = getattr(self, name)
            need(0 < v <= BUFFER_CAP, "%s=%d: must be 1..%d bytes" % (name, v, BUFFER_CAP))
        need(self.tx_size >= 256, "tx_size must be at least 256 bytes (control frames)")
        need(self.request_max >= 512, "request_max must be at least 512 bytes")
        need(self.rx_chunk >= 64, "rx_chunk must be at least 64 bytes")
        used = 1 + self.max_clients + self.handshakes + self.reserved_sockets
        need(
            used <= self.socket_budget,
            "sockets: listener + %d clients + %d handshakes + %d reserved = %d > socket_budget %d"
            % (self.max_clients, self.handshakes, self.reserved_sockets, used, self.socket_budget),
        )
        for name in ("handshake_timeout", "pong_timeout", "send_timeout", "close_timeout"):
            need(getattr(self, name) > 0, name + " must be > 0 ms")
        need(self.ping_interval >= 0 and self.idle_timeout >= 0, "timeouts must be >= 0")
        need(10 <= self.sweep_interval <= 5000, "sweep_interval must be 10..5000 ms")
        need(self.retry_after >= 1, "retry_after must be at least 1 s")
        if heap_free is None:
            gc.collect()
            heap_free = gc.mem_free()
        per, slots, pool = self.budget()
        need(
            slots + pool + _HEAP_RESERVE <= heap_free,
            "memory: %d slots x %d B + handshake pool %d B + reserve %d B > free heap %d B"
            % (self.max_clients, per, pool, _HEAP_RESERVE, heap_free),
        )
        return self
