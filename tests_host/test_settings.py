"""The board's settings file (settings.json), read by the device's own loader
under MicroPython: missing, partial and broken files boot with defaults and a
message naming what was wrong; the server section reaches the server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import BUILD, ServerProcess, mp_driver
from wsutil import get_stats

DRIVER = Path(__file__).parent / "mp" / "settings_driver.py"
DEFAULTS = {
    "ssid": "",
    "key": "",
    "hostname": "stormproof",
    "ap_key": "",
    "wifi_timeout": 20000,
    "watchdog": 30000,
    "profile": "",
    "server": {},
}


@pytest.fixture(scope="module")
def mp():
    with mp_driver(DRIVER) as ask:
        yield ask


def load(mp, tmp_path: Path, text: str | None) -> tuple[dict, list[str]]:
    path = tmp_path / "settings.json"
    if text is not None:
        path.write_text(text)
    got = mp({"load": str(path)})
    return got["settings"], got["problems"]


def test_missing_file_gives_defaults(mp, tmp_path):
    values, problems = load(mp, tmp_path, None)
    assert values == DEFAULTS
    assert len(problems) == 1 and "missing" in problems[0]


def test_a_complete_file_is_taken_as_it_is(mp, tmp_path):
    mine = {
        "ssid": "home",
        "key": "correct horse",
        "hostname": "kitchen-1",
        "ap_key": "setup-pass",
        "wifi_timeout": 5000,
        "watchdog": 0,
        "profile": "test",
        "server": {"max_clients": 3, "host": "0.0.0.0"},
    }
    values, problems = load(mp, tmp_path, json.dumps(mine))
    assert (values, problems) == (mine, [])


def test_a_partial_file_keeps_the_defaults_it_leaves_out(mp, tmp_path):
    values, problems = load(mp, tmp_path, '{"ssid": "home", "key": "12345678"}')
    assert problems == []
    assert values == dict(DEFAULTS, ssid="home", key="12345678")


@pytest.mark.parametrize(
    "text", ['{"ssid": "home",', "", "null", '["ssid"]', '{"ssid": "a"} trailing']
)
def test_a_broken_file_boots_with_defaults_and_says_why(mp, tmp_path, text):
    values, problems = load(mp, tmp_path, text)
    assert values == DEFAULTS
    assert len(problems) == 1
    assert "settings.json" in problems[0] and "defaults used" in problems[0], problems


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("ssid", 42, "must be text"),
        ("ssid", "x" * 33, "at most 32 bytes"),
        ("key", "short", "8 to 63 characters"),
        ("ap_key", "k" * 64, "8 to 63 characters"),
        ("hostname", "-bad", "letters, digits or '-'"),
        ("hostname", "has space", "letters, digits or '-'"),
        ("hostname", "", "letters, digits or '-'"),
        ("wifi_timeout", 10, "1000 to 120000 ms"),
        ("wifi_timeout", "20000", "must be int"),
        ("watchdog", 100, "0 (off) or 5000 to 600000 ms"),
        ("watchdog", True, "must be int"),
        ("profile", "fast", "one of"),
        ("server", {"max_clients": "3"}, "max_clients must be a number"),
        ("server", [1], "must be dict"),
    ],
)
def test_a_bad_field_is_named_and_only_it_is_defaulted(mp, tmp_path, field, value, why):
    values, problems = load(mp, tmp_path, json.dumps({"ssid": "home", field: value}))
    assert len(problems) == 1, problems
    assert problems[0].startswith(field + ": ") and why in problems[0], problems
    assert values[field] == DEFAULTS[field]
    if field != "ssid":
        assert values["ssid"] == "home"  # the good fields stay


def test_unknown_fields_are_reported_and_ignored(mp, tmp_path):
    values, problems = load(mp, tmp_path, '{"ssid": "home", "pasword": "x"}')
    assert problems == ["pasword: unknown field, ignored"]
    assert "pasword" not in values and values["ssid"] == "home"


def test_save_writes_what_load_reads_back(mp, tmp_path):
    path = tmp_path / "settings.json"
    assert mp(
        {"save": {"ssid": "home", "key": "12345678", "hostname": "stormproof"}, "path": str(path)}
    ) == {"saved": True}
    # Defaults are left out of the file; nothing half-written is left behind.
    assert json.loads(path.read_text()) == {"ssid": "home", "key": "12345678"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]
    assert mp({"load": str(path)})["settings"]["ssid"] == "home"


def test_save_refuses_a_bad_value_and_keeps_the_old_file(mp, tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"ssid": "old"}')
    got = mp({"save": {"ssid": "new", "hostname": "no_underscores"}, "path": str(path)})
    assert got["error"].startswith("hostname: ")
    assert json.loads(path.read_text()) == {"ssid": "old"}


@pytest.fixture
def local(device_url):
    if device_url:
        pytest.skip("starts its own server processes")


def run_with_settings(tmp_path: Path, text: str) -> ServerProcess:
    tree = tmp_path / "board"
    shutil.copytree(BUILD, tree)
    (tree / "settings.json").write_text(text)
    return ServerProcess(cwd=tree)


def test_the_server_section_configures_the_server(local, tmp_path):
    p = run_with_settings(tmp_path, '{"server": {"max_clients": 3}}')
    try:
        assert get_stats(p.target)["slots_total"] == 3
    finally:
        p.stop()


def test_a_broken_settings_file_still_serves_with_defaults(local, tmp_path):
    p = run_with_settings(tmp_path, '{"server": {"max_clients": "3"}}')
    try:
        assert get_stats(p.target)["slots_total"] == 4
        assert any("server: max_clients must be a number" in ln for ln in p.lines), p.output()
    finally:
        p.stop()
