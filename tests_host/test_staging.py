"""What `make deploy` would copy is what was tested: the staging tree that
`make mpy` builds (boot.py, main.py, lib/stormproof/*.mpy, www/,
settings.json), staged again for the unix port by `make stage-check` (its
bytecode-only .mpy files are byte-identical to the board's; only the viper
kernels differ by architecture), booted under MicroPython with a
test-profile settings file, and served.

The heap is 110wk: 110 K machine words, i.e. the ESP32's 110 KB counted in
objects on this 64-bit port (every object is twice its ESP32 size here).
The staged tree is NATIVE=0 (bytecode instead of native code, which on a
board loaded from .mpy needs IRAM): that bytecode lives in the heap, about
4.5 KB more than build/unix's on this port, which 110k (bytes) cannot spare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, ServerProcess
from wsutil import BINARY, RawWS, frame, get, get_stats

HOST_TREE = ROOT / "build" / "host-esp32"
BOARD_TREE = ROOT / "build" / "check" / "esp32-n0"


@pytest.fixture(scope="module")
def staged(tmp_path_factory, device_url):
    if device_url:
        pytest.skip("boots a staging tree here")
    if not HOST_TREE.exists() or not BOARD_TREE.exists():
        pytest.fail("no staging trees: run 'make stage-check' (make test does)")
    tree = tmp_path_factory.mktemp("board") / "fs"
    shutil.copytree(HOST_TREE, tree)
    settings = {"ssid": "home", "key": "12345678", "profile": "test"}
    settings["server"] = json.loads((ROOT / "tools" / "test_profile.json").read_text())
    (tree / "settings.json").write_text(json.dumps(settings))
    p = ServerProcess(cwd=tree, heap="110wk")
    yield p
    alive = p.alive()
    p.stop()
    assert alive, p.output()


def files(tree: Path) -> list[str]:
    return sorted(str(f.relative_to(tree)) for f in tree.rglob("*") if f.is_file())


def test_the_host_tree_holds_the_boards_files():
    assert files(HOST_TREE) == files(BOARD_TREE)
    assert {"boot.py", "main.py", "www/index.html", "lib/stormproof/server.mpy"} <= set(
        files(BOARD_TREE)
    )
    assert not [f for f in files(BOARD_TREE) if f.startswith("lib/") and f.endswith(".py")]


def test_the_staged_tree_serves_its_page(staged):
    status, headers, body = get(staged.target, "/")
    assert status == 200 and b"<html" in body.lower()


def test_the_staged_tree_echoes(staged):
    with RawWS(staged.target) as ws:
        ws.send(frame(BINARY, b"staged"))
        assert ws.recv_message() == (BINARY, b"staged")


def test_the_staged_tree_reports_its_profile(staged):
    status, _, body = get(staged.target, "/config")
    assert status == 200
    cfg = json.loads(body)
    profile = json.loads((ROOT / "tools" / "test_profile.json").read_text())
    assert cfg["profile"] == "test" and {k: cfg[k] for k in profile} == profile
    assert get_stats(staged.target)["slots_total"] == cfg["max_clients"]
