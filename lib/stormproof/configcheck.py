"""Startup-only half of the configuration: checking the settings and reading
overrides. Imported when the server starts and released right after
(config.py keeps only the defaults), so none of this code or its messages
stays in RAM while serving: about 3 KB on the 64-bit unix port.
"""

import gc

from micropython import const

from .config import BUFFER_CAP, Config, ConfigError

_HEAP_RESERVE = const(16 * 1024)  # left for the app, asyncio, sockets and GC slack


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
    if heap_free is None:
        gc.collect()
        heap_free = gc.mem_free()
    need_bytes = cfg.slot_bytes() * cfg.max_clients + cfg.request_max * cfg.handshakes
    need(
        need_bytes + _HEAP_RESERVE <= heap_free,
        "memory: %d B of buffers + %d B reserve > %d B free heap; lower max_clients or max_message"
        % (need_bytes, _HEAP_RESERVE, heap_free),
    )
    return cfg


def overrides():
    """Settings that replace the defaults: the CONFIG dict of an optional
    module `stormproof_settings`, then (on the unix port, which has an
    environment) STORMPROOF_<NAME> variables, e.g. STORMPROOF_MAX_CLIENTS=6."""
    out = {}
    try:
        import stormproof_settings  # pyright: ignore[reportMissingImports]

        out.update(stormproof_settings.CONFIG)
    except ImportError:
        pass
    try:
        from os import getenv  # pyright: ignore[reportAttributeAccessIssue]
    except ImportError:
        return out  # a board: no environment
    for k in dir(Config):
        if k[0] != "_" and not callable(getattr(Config, k)):
            v = getenv("STORMPROOF_" + k.upper())
            if v:
                out[k] = v if k == "host" else int(v)
    return out
