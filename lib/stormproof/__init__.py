"""Stormproof: a WebSocket server for MicroPython that survives reconnect storms."""

import gc

from .config import Config, ConfigError, overrides
from .server import Server
from .websocket import ConnectionClosed, WebSocket

# Loading left garbage below the last objects loaded; collected now, what
# the application makes next fills it, and the heap above stays in one
# piece for the server's buffers.
gc.collect()

__all__ = ["Config", "ConfigError", "ConnectionClosed", "Server", "WebSocket", "overrides"]
__version__ = "0.1.0"
