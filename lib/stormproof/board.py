"""Everything ESP32-specific lives here: Wi-Fi, the watchdog, reset.

The rest of the package never imports `network` or `machine`, and the unix
port (host tests, `make run`) never imports this module at all.
"""

import sys

ON_ESP32 = sys.platform == "esp32"


def connect_wifi(ssid, key, hostname="stormproof", timeout_ms=15000):
    """Join a Wi-Fi network as a station; falls back to an access point.
    Returns the IP address to print. No-op off the ESP32."""
    if not ON_ESP32:
        return None
    import time

    import network

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
    ap.config(
        ssid=hostname + "-setup", key="stormproof", security=network.AUTH_WPA2_PSK, max_clients=4
    )
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
