"""A bad configuration stops the server at start with a clear error, before it listens."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import BUILD, ServerProcess, micropython


@pytest.fixture(autouse=True)
def _local_only(device_url):
    if device_url:
        pytest.skip("starts its own server processes")


def start_with(**overrides) -> tuple[int, str]:
    env = dict(os.environ)
    env.update({"STORMPROOF_" + k.upper(): str(v) for k, v in overrides.items()})
    env.setdefault("STORMPROOF_PORT", "1")  # never reached: it must fail first
    p = subprocess.run(
        [micropython(), "-X", "heapsize=110k", "main.py"],
        cwd=BUILD,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_message": 20000}, "max_message must be 1..16384 bytes"),
        ({"tx_size": 32768}, "tx_size must be 1..16384 bytes"),
        ({"max_clients": 0}, "max_clients and handshakes must be >= 1"),
        ({"max_clients": 9}, "> socket_budget 10"),
        ({"socket_budget": 40, "max_clients": 12}, "free heap; lower max_clients or max_message"),
        ({"sweep_interval": 0}, "sweep_interval must be 10..5000 ms"),
        ({"close_timeout": 0}, "close_timeout must be > 0 ms"),
    ],
)
def test_bad_config_fails_at_start(overrides, message):
    code, out = start_with(**overrides)
    assert code != 0
    assert "ConfigError" in out and message in out, out
    assert "listening on" not in out


def test_budget_is_printed_at_start():
    p = ServerProcess()
    try:
        line = next(ln for ln in p.lines if "memory:" in ln)
        assert "4 slots x" in line and "handshake pool" in line
    finally:
        p.stop()
