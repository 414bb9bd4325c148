"""Who may open a WebSocket: the Origin check (cross-site WebSocket hijacking).

Any page a user visits can open a WebSocket to a device on the user's LAN;
only the browser's Origin header tells the device's own page from a
stranger's. The default lets the device's own page in (an Origin naming the
host the request was sent to) and requests without Origin (scripts, other
devices: not browsers); every other Origin gets 403 before a slot is taken.
"""

from __future__ import annotations

import pytest
from conftest import settle
from wsutil import get_stats, http, upgrade_request


def knock(t, origin: str | None, host: str | None = None) -> int:
    extra = f"Origin: {origin}\r\n" if origin is not None else ""
    raw = upgrade_request(t, extra=extra)
    if host is not None:
        raw = raw.replace(f"Host: {t.host}:{t.port}".encode(), f"Host: {host}".encode())
    status, _, _ = http(t, raw)
    return status


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "http://127.0.0.1",
        "http://127.0.0.1:1",
        "https://evil.example:8080",
    ],
)
def test_a_foreign_origin_gets_403_and_is_counted(quiet, origin):
    before = get_stats(quiet)
    assert knock(quiet, origin) == 403
    after = get_stats(quiet)
    assert after["refused_origin"] == before["refused_origin"] + 1
    assert (
        after["ws_opened"] == before["ws_opened"] and after["refused_bad"] == before["refused_bad"]
    )
    settle(quiet)


def test_the_devices_own_page_and_non_browsers_get_in(quiet):
    host = f"{quiet.host}:{quiet.port}"
    assert knock(quiet, f"http://{host}") == 101
    assert knock(quiet, f"HTTP://{host.upper()}") == 101  # scheme and host are case-insensitive
    assert knock(quiet, f"https://{host}") == 101
    assert knock(quiet, f"ws://{host}") == 403  # a page's origin is http or https
    assert knock(quiet, f"://{host}") == 403
    assert knock(quiet, None) == 101
    # Same host whatever name the client used for the device.
    assert knock(quiet, "http://stormproof.local", host="stormproof.local") == 101
    assert knock(quiet, "http://stormproof.local", host="192.168.4.1") == 403
    settle(quiet)


def test_two_origin_headers_are_refused(quiet):
    host = f"http://{quiet.host}:{quiet.port}"
    status, _, _ = http(
        quiet, upgrade_request(quiet, extra=f"Origin: {host}\r\nOrigin: {host}\r\n")
    )
    assert status == 403
    settle(quiet)


def test_an_allow_list_and_required_origin(spawn):
    t = spawn(allowed_origins="http://app.example:8000, same", require_origin=1)
    assert knock(t, "http://app.example:8000") == 101
    assert knock(t, "http://app.example:8000/") == 403  # an Origin has no path
    assert knock(t, "http://app.example") == 403
    assert knock(t, f"http://{t.host}:{t.port}") == 101
    assert knock(t, None) == 403
    assert get_stats(t)["refused_origin"] == 3
    settle(t)


def test_anyone_when_configured(spawn):
    t = spawn(allowed_origins="*")
    assert knock(t, "http://evil.example") == 101
    settle(t)


def test_a_bad_allow_list_stops_the_server_with_a_clear_message(spawn):
    with pytest.raises(RuntimeError, match="allowed_origins"):
        spawn(allowed_origins="evil.example")
