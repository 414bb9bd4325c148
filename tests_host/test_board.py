"""board.py (Wi-Fi, setup access point, supervisor, watchdog, reset cause,
safe mode, crash log, heap figures) run by MicroPython with stand-ins for
the ESP32's network, machine and esp32 modules (tests_host/mp/board_standins.py):
no board exists here, so what is checked is board.py's own logic against
the behaviour the stand-ins model, and what it asked of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import mp_driver

DRIVER = Path(__file__).parent / "mp" / "board_driver.py"
SETTINGS = {
    "ssid": "home",
    "key": "12345678",
    "hostname": "stormproof",
    "ap_key": "",
    "wifi_timeout": 60000,
}


@pytest.fixture(scope="module")
def driver():
    with mp_driver(DRIVER) as ask:
        yield ask


@pytest.fixture
def mp(driver, tmp_path):
    """The driver, working in a fresh directory with fresh stand-ins."""
    driver({"dir": str(tmp_path)})

    def ask(req: dict) -> dict:
        got = driver(req)
        assert "error" not in got, got
        return got

    return ask


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "power_on"),
        (2, "hard_reset"),
        (3, "watchdog"),
        (4, "deep_sleep"),
        (5, "soft_reset"),
        (9, "unknown"),
    ],
)
def test_reset_cause_is_named(mp, code, name):
    mp({"board": {"cause": code}})
    assert mp({"call": "reset_cause"})["result"] == name


# ---- Wi-Fi ------------------------------------------------------------------


def test_station_joins_with_the_hostname_set_before_the_interface_starts(mp):
    got = mp({"network": SETTINGS})
    assert got["result"] == ["station", "192.168.1.50", True]
    calls = [c[0] for c in got["calls"]]
    assert calls.index("hostname") < calls.index("sta.active")
    assert ["hostname", "stormproof"] in got["calls"]
    assert ["sta.connect", "home", "12345678"] in got["calls"]
    assert "ap.active" not in calls
    assert any("192.168.1.50" in line and "stormproof.local" in line for line in got["console"])


@pytest.mark.parametrize(
    ("air", "settings"),
    [
        ({}, {"key": "wrong-password"}),  # the driver reports the wrong password
        ({"ssid": "elsewhere"}, {}),  # no such network
        ({"polls": -1}, {"wifi_timeout": 300}),  # it never answers: the timeout
        ({}, {"ssid": ""}),  # nothing to join
    ],
)
def test_no_station_opens_the_setup_access_point(mp, air, settings):
    mp({"air": air})
    got = mp({"network": dict(SETTINGS, **settings)})
    assert got["result"] == ["setup", "192.168.4.1", False]
    ap = next(c[1] for c in got["calls"] if c[0] == "ap.config")
    assert ap["ssid"] == "stormproof-setup-abcd"  # the hostname and the MAC's last bytes
    assert ap["security"] == 3 and len(ap["key"]) >= 8  # WPA2, with a real password
    assert ["sta.active", False] in got["calls"]  # the radio is the access point's alone
    # The password and the page are on the serial console.
    assert any(ap["key"] in line and "/setup" in line for line in got["console"]), got["console"]


def test_the_setup_password_is_made_per_board_and_kept(mp, driver, tmp_path):
    first = mp({"call": "setup_key"})["result"]
    assert len(first) == 12 and first.isalnum()
    assert (tmp_path / "setup_key").read_text() == first
    assert mp({"call": "setup_key"})["result"] == first  # the same after a reboot
    other = tmp_path / "other"
    other.mkdir()
    driver({"dir": str(other)})  # another board
    assert mp({"call": "setup_key"})["result"] != first
    assert mp({"call": "setup_key", "args": ["my-own-key"]})["result"] == "my-own-key"


def test_the_source_holds_no_setup_password():
    src = (Path(__file__).parent.parent / "lib" / "stormproof" / "board.py").read_text()
    assert 'key="' not in src and "key='" not in src


def test_supervisor_reconnects_with_backoff_and_logs_address_changes(mp, tmp_path):
    mp({"network": SETTINGS})  # joined at boot
    mp({"air": {"polls": 1}})  # from now on each connect() is answered at the next look
    down = {"up": False}
    got = mp(
        {
            "supervise": ["home", "12345678", "192.168.1.50"],
            # up; down for 8 looks; back; a new address (seen within 15 looks)
            "air": [{}] + [down] * 8 + [{"up": True}] + [{"ip": "192.168.1.77"}] * 15,
        }
    )
    delays = got["delays"]
    assert delays[0] == 2000
    # Down: a connect() at once, then at 1, 2, 4 ... s, at most 60 s apart.
    assert delays[1:9] == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
    connects = [c for c in got["calls"] if c[0] == "sta.connect"]
    assert len(connects) == 8 and connects[0] == ["sta.connect", "home", "12345678"]
    # Back: the backoff ends; the new address is noticed and logged.
    assert delays[9:] == [2000] * 16
    assert got["ip"] == "192.168.1.77"
    log = (tmp_path / "crash.log").read_text()
    assert "lost 'home'" in log and "address 192.168.1.77" in log


def test_supervisor_leaves_a_connecting_driver_alone(mp):
    mp({"air": {"polls": 100}})
    got = mp({"supervise": ["home", "12345678", "192.168.1.50"], "air": [{"up": False}]})
    assert got["delays"] == [1000]
    got = mp({"supervise": ["home", "12345678", None], "air": [{"up": True}] * 3})
    # Still connecting from the last connect(): nobody calls it again.
    assert got["delays"] == [2000] * 3
    assert not [c for c in got["calls"] if c[0] == "sta.connect"]


def test_the_supervisor_looks_at_the_address_only_now_and_then(mp):
    got = mp({"supervise": ["home", "12345678", "192.168.1.50"], "air": [{}] * 30})
    # ifconfig() builds a tuple of strings: once per 15 looks, not at every one.
    assert [c[0] for c in got["calls"]].count("sta.ifconfig") == 2


# ---- watchdog, crash, safe mode ---------------------------------------------


@pytest.mark.parametrize(
    ("listener", "fail", "fed"),
    [(True, False, 5), (False, False, 0), (True, True, 0)],
    ids=["alive", "accept-loop-gone", "sweep-failing"],
)
def test_the_sweep_feeds_the_watchdog_only_while_the_server_lives(mp, listener, fail, fed):
    got = mp({"sweep": 5, "listener": listener, "fail": fail})
    assert got["passes"] == 5
    assert got["fed"] == fed


def test_a_crash_is_logged_on_flash_then_resets(mp, tmp_path):
    mp({"call": "log_event", "args": ["0 s: boot, reset cause power_on"]})
    got = mp({"crash": "the handler broke"})
    assert got["reset"] is True and got["calls"][-1] == ["machine.reset"]
    log = (tmp_path / "crash.log").read_text().splitlines()
    assert log[0].endswith("boot, reset cause power_on")
    assert "crash: ValueError: the handler broke" in log[1]


def test_the_ring_log_keeps_the_newest_whole_lines(mp, tmp_path):
    for i in range(200):
        mp({"call": "log_event", "args": [f"event {i:03d}", "ring.log", 512]})
    text = (tmp_path / "ring.log").read_text()
    assert 256 <= len(text) <= 512
    lines = text.splitlines()
    assert lines[-1] == "event 199"
    assert all(line.startswith("event ") and len(line) == 9 for line in lines)
    numbers = [int(line[6:]) for line in lines]
    assert numbers == list(range(numbers[0], 200))


def test_safe_mode_by_flag_file(mp, tmp_path):
    (tmp_path / "safe_mode").touch()
    got = mp({"start": 1})
    assert "safe_mode exists" in got["safe"]
    assert not [c for c in got["calls"] if c[0] in ("hostname", "WDT")]  # no Wi-Fi, no watchdog
    assert "boot, reset cause power_on" in (tmp_path / "crash.log").read_text()


def test_safe_mode_by_the_boot_button(mp):
    mp({"board": {"pins": {"0": 0}}})  # GPIO0 held low
    got = mp({"call": "safe_mode", "args": [0, 60000]})
    assert got["result"] == "BOOT button held"
    assert ["Pin", 0, 1, 2] in got["calls"]  # an input with its pull-up


def test_no_safe_mode_when_nothing_asks_for_it(mp, tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({"ssid": "home", "key": "12345678"}))
    assert mp({"call": "safe_mode", "args": [0, 50]})["result"] is None
    mp({"board": {"cause": 3}})
    got = mp({"start": 1})
    # (The real window, 1 s, passed too: start() watches the button before Wi-Fi.)
    assert got == dict(got, mode="station", ip="192.168.1.50", cause="watchdog")
    assert "[I] reset cause: watchdog" in got["console"]


# ---- the setup page ---------------------------------------------------------


def test_setup_page_shows_the_form(mp, tmp_path):
    status, ctype, body = mp({"setup": "", "path": str(tmp_path / "s.json")})["result"]
    assert status == 200 and ctype.startswith("text/html")
    assert "<form action=/setup>" in body and "name=ssid" in body and 'value="stormproof"' in body


def test_setup_page_saves_the_network_and_decodes_the_form(mp, tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"server": {"max_clients": 3}}')
    query = "ssid=my+home%20net&key=p%C3%A4ss+word&hostname=kitchen"
    status, _, body = mp({"setup": query, "path": str(path)})["result"]
    assert status == 200 and "kitchen.local" in body
    saved = json.loads(path.read_text())
    assert saved == {
        "ssid": "my home net",
        "key": "päss word",
        "hostname": "kitchen",
        "server": {"max_clients": 3},
    }


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("ssid=home&key=short", "key: 8 to 63"),
        ("ssid=home&hostname=a_b", "hostname: "),
        ("ssid=%ff%fe", "not UTF-8"),
    ],
)
def test_setup_page_refuses_bad_values_and_keeps_the_file(mp, tmp_path, query, why):
    path = tmp_path / "s.json"
    path.write_text('{"ssid": "old"}')
    status, _, body = mp({"setup": query, "path": str(path)})["result"]
    assert status == 400 and why in body
    assert json.loads(path.read_text()) == {"ssid": "old"}


# ---- server and heap figures --------------------------------------------------


def test_heap_figures_are_read_not_probed(mp):
    rep = mp({"stats": "watchdog"})["report"]
    assert rep["largest_free"] == -1  # no allocation probe on a board
    assert rep["idf_free"] == 42000  # the stand-in's regions: 30,000 + 12,000 free
    assert rep["idf_largest"] == 24000
    assert rep["reset_cause"] == "watchdog"
    assert rep["mem_free"] > 0 and rep["slots_total"] == 2


def test_a_bad_server_section_serves_with_the_defaults(mp, tmp_path):
    got = mp({"server": {"max_clients": 3}})
    assert (got["slots"], got["watchdog"]) == (3, True)
    got = mp({"server": {"max_clients": 0}})
    assert got["slots"] == 4
    assert "max_clients and handshakes must be >= 1" in (tmp_path / "crash.log").read_text()
