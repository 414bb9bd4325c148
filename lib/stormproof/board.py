"""Everything that differs between an ESP32 and the unix port lives here.

The rest of the package never imports `network` or `machine`. On the unix
port (host tests, `make run`) each function is a harmless stand-in.
"""

import sys

ON_ESP32 = sys.platform == "esp32"


def settings():
    """Overrides for Config: environment variables on the unix port, the
    optional module `stormproof_settings` (a dict named CONFIG) on a board."""
    out = {} if ON_ESP32 else {"host": "127.0.0.1", "port": 8080}
    try:
        import stormproof_settings  # pyright: ignore[reportMissingImports]

        out.update(stormproof_settings.CONFIG)
    except ImportError:
        pass
    if not ON_ESP32:
        import os

        for key, conv in (
            ("HOST", str), ("PORT", int), ("MAX_CLIENTS", int), ("HANDSHAKES", int),
            ("MAX_MESSAGE", int), ("TX_SIZE", int), ("RX_CHUNK", int),
            ("HANDSHAKE_TIMEOUT", int), ("PING_INTERVAL", int), ("PONG_TIMEOUT", int),
            ("IDLE_TIMEOUT", int), ("SEND_TIMEOUT", int), ("CLOSE_TIMEOUT", int),
            ("SWEEP_INTERVAL", int), ("SOCKET_BUDGET", int), ("LOG_LEVEL", int),
        ):  # fmt: skip
            v = os.getenv("STORMPROOF_" + key)
            if v:
                out[key.lower()] = conv(v)
    return out


def connect_wifi(ssid, key, hostname="stormproof", timeout_ms=15000):
    """Join a Wi-Fi network as a station; falls back to an access point.
    Returns the IP address to print. No-op off the ESP32."""
    if not ON_ESP32:
        return None
    import network
    import time

    network.hostname(hostname)  # before activation: it goes into DHCP and mDNS
    sta = network.WLAN(network.WLAN.IF_STA)
    sta.active(True)
    if ssid:
        sta.config(pm=sta.PM_NONE, reconnects=-1)
        sta.connect(ssid, key)
        start = time.ticks_ms()
        while not sta.isconnected() and time.ticks_diff(time.ticks_ms(), start) < timeout_ms:
            time.sleep_ms(100)
        if sta.isconnected():
            return sta.ifconfig()[0]
    ap = network.WLAN(network.WLAN.IF_AP)
    ap.config(ssid=hostname + "-setup", key="stormproof", security=network.AUTH_WPA2_PSK, max_clients=4)
    ap.active(True)
    return ap.ifconfig()[0]


class Watchdog:
    """machine.WDT on a board, nothing elsewhere. Feed it only from code that
    has checked the server is alive: a blind timer defeats the purpose."""

    def __init__(self, timeout_ms):
        self._wdt = None
        if ON_ESP32:
            from machine import WDT

            self._wdt = WDT(timeout=timeout_ms)

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()


def reset():
    if ON_ESP32:
        import machine

        machine.reset()
    raise SystemExit(1)
