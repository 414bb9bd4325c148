"""A handler that raises, or runs the heap dry, costs its own connection only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import ServerProcess, settle
from wsutil import IO_TIMEOUT, RawWS, Target, close_payload, frame, get, get_stats

TEXT, CLOSE = 1, 8
APP = Path(__file__).parent / "mp" / "hungry_app.py"


@pytest.fixture(scope="module")
def hungry(device_url):
    if device_url:
        pytest.skip("runs its own test application")
    proc = ServerProcess(script=str(APP))
    yield proc.target
    alive = proc.alive()
    proc.stop()
    assert alive, "server process died:\n" + proc.output()


def at(target: Target, path: str) -> Target:
    return Target(target.host, target.port, path, target.local, target.process)


def test_memory_error_in_a_handler_closes_1013_and_the_server_carries_on(hungry):
    before = get_stats(hungry)
    with RawWS(at(hungry, "/hungry")) as ws:
        ws.send(frame(TEXT, b"1000"))
        assert ws.recv_message() == (TEXT, b"got 1000")
        ws.send(frame(TEXT, b"200000"))  # more than the whole 110 KB heap
        code, reason = ws.expect_close()
        assert code == 1013
        ws.send(frame(CLOSE, close_payload(1013)))
        ws.expect_eof()
    st = settle(hungry)
    assert st["memory_errors"] == before["memory_errors"] + 1
    assert st["close_reasons"]["memory"] == before["close_reasons"]["memory"] + 1
    # The heap is whole again and everyone else is served.
    with RawWS(at(hungry, "/ws")) as ws:
        ws.send(frame(TEXT, b"still here"))
        assert ws.recv_message() == (TEXT, b"still here")


def test_exception_in_a_handler_closes_1011(hungry):
    before = get_stats(hungry)
    with RawWS(at(hungry, "/hungry")) as ws:
        ws.send(frame(TEXT, b"not a number"))
        assert ws.expect_close()[0] == 1011
        ws.send(frame(CLOSE, close_payload(1011)))
        ws.expect_eof()
    st = settle(hungry)
    assert st["handler_errors"] == before["handler_errors"] + 1
    assert st["close_reasons"]["handler_error"] == before["close_reasons"]["handler_error"] + 1


def test_repeated_memory_errors_leave_nothing_behind(hungry):
    with RawWS(at(hungry, "/ws")) as ws:  # warm up the echo path first
        ws.send(frame(TEXT, b"warm"))
        ws.recv_message()
    base = settle(hungry)
    for _ in range(20):
        with RawWS(at(hungry, "/hungry")) as ws:
            ws.send(frame(TEXT, b"500000"))
            assert ws.expect_close()[0] == 1013
            ws.send(frame(CLOSE, close_payload(1013)))
            ws.expect_eof()
    st = settle(hungry)
    assert st["memory_errors"] == base["memory_errors"] + 20
    assert st["mem_free"] >= base["mem_free"] - 2560, (base["mem_free"], st["mem_free"])


def test_sending_invalid_utf8_as_text_is_refused_not_sent(hungry):
    with RawWS(at(hungry, "/text")) as ws:
        ws.send(frame(2, "κόσμε".encode()))
        assert ws.recv_message() == (TEXT, "κόσμε".encode())
        ws.send(frame(2, b"\xed\xa0\x80"))  # a surrogate: never valid UTF-8
        op, data = ws.recv_message()
        assert op == TEXT and data.startswith(b"refused: text message is not valid UTF-8")


def test_close_path_after_a_memory_error_allocates_nothing(hungry):
    """The handler fills the heap to the last block and then runs out: the
    connection is still closed 1013 and counted, and no exception escapes
    its task (the close path must not need the memory that just ran out)."""
    proc = hungry.process
    before = get_stats(hungry)
    mark = len(proc.lines)
    with RawWS(at(hungry, "/hoard")) as ws:
        ws.send(frame(TEXT, b"go"))
        assert ws.expect_close()[0] == 1013
        ws.expect_eof()
    # Until the test app gives its hoard back, even /stats is refused: 503.
    deadline = time.monotonic() + IO_TIMEOUT
    while (status := get(hungry, "/stats")[0]) == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200
    st = settle(hungry)
    assert st["memory_errors"] >= before["memory_errors"] + 1
    assert st["close_reasons"]["memory"] == before["close_reasons"]["memory"] + 1
    assert not [ln for ln in proc.lines[mark:] if "Traceback" in ln or "exception" in ln], (
        proc.lines[mark:]
    )
    with RawWS(at(hungry, "/ws")) as ws:
        ws.send(frame(TEXT, b"after"))
        assert ws.recv_message() == (TEXT, b"after")


def test_a_handle_kept_past_its_connection_cannot_reach_the_next_client(hungry):
    """The app keeps the first client's handle; the next client gets the same
    slot. The stale handle reads None for the connection's particulars, keeps
    its own close code, and its send raises instead of reaching the newcomer."""
    settle(hungry)
    with RawWS(at(hungry, "/keep?first=1")) as first:
        first.send(frame(TEXT, b"one"))
        assert first.recv_message() == (TEXT, b"one")
        first.send(frame(CLOSE, close_payload(1000)))
        assert first.expect_close()[0] == 1000
        first.expect_eof()
    settle(hungry)
    with RawWS(at(hungry, "/keep")) as second:
        assert second.recv_message() == (TEXT, b"None None True 1000 ConnectionClosed 1000")
        second.send(frame(TEXT, b"two"))
        assert second.recv_message() == (TEXT, b"two")  # nothing from the stale handle before it
        second.send(frame(CLOSE, close_payload(1000)))
        assert second.expect_close()[0] == 1000
        second.expect_eof()
    settle(hungry)
