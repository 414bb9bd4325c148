"""Stormproof: a WebSocket server for MicroPython that survives reconnect storms."""

from .config import Config, ConfigError, overrides
from .server import Server
from .websocket import ConnectionClosed, WebSocket

__all__ = ["Config", "ConfigError", "ConnectionClosed", "Server", "WebSocket", "overrides"]
__version__ = "0.1.0"
