"""Broadcast at /chat: nobody waits on the slowest reader; what it misses is counted."""

from __future__ import annotations

import dataclasses
import time

from conftest import settle
from wsutil import RawWS, Target, close_payload, frame, get_stats, reluctant_reader

TEXT, CLOSE = 1, 8


def chat(target: Target) -> Target:
    return dataclasses.replace(target, ws_path="/chat")


def test_every_chat_client_gets_every_message(quiet):
    room = chat(quiet)
    clients = [RawWS(room) for _ in range(3)]
    try:
        for i in range(20):
            clients[i % 3].send(frame(TEXT, b"msg %d" % i))
            for c in clients:
                assert c.recv_message() == (TEXT, b"msg %d" % i)
        # Echo clients at /ws are not part of the room.
        with RawWS(quiet) as other:
            clients[0].send(frame(TEXT, b"room only"))
            for c in clients:
                assert c.recv_message() == (TEXT, b"room only")
            other.send(frame(TEXT, b"ping"))
            assert other.recv_message() == (TEXT, b"ping")
    finally:
        for c in clients:
            c.send(frame(CLOSE, close_payload(1000)))
            c.close()
    settle(quiet)


def test_too_big_to_broadcast_is_refused_politely(quiet):
    limit = get_stats(quiet)["max_message"]
    with RawWS(chat(quiet)) as c:
        c.send(frame(TEXT, b"x" * min(2000, limit)))
        op, data = c.recv_message()
        assert data.startswith(b"error: over ")
        c.send(frame(TEXT, b"small"))
        assert c.recv_message() == (TEXT, b"small")


def test_slow_reader_is_dropped_not_waited_for(robust):
    """One chat client stops reading. The sender and a healthy reader carry on
    at full speed; the slow one misses messages (send_drops) and, once it has
    not read for send_timeout, is closed."""
    t = chat(robust)
    before = get_stats(t)
    slow = reluctant_reader(t)
    healthy = RawWS(t)
    sender = RawWS(t)
    got = []
    n = 0
    deadline = time.monotonic() + 30
    # As big as a broadcast may be (one frame in one tx buffer: tx_size - 10).
    payload = b"p" * (t.config["tx_size"] - 10 - 6)
    while time.monotonic() < deadline and n < 20000:
        sender.send(frame(TEXT, payload + b"%06d" % n))
        n += 1
        # The sender is in the room too: it reads its own copy, so it is never slow.
        sender.recv_data()
        got.append(healthy.recv_data()[1])
        st = get_stats(t) if n % 200 == 0 else None
        if st and st["close_reasons"]["send_timeout"] > before["close_reasons"]["send_timeout"]:
            break
    st = get_stats(t)
    assert st["close_reasons"]["send_timeout"] - before["close_reasons"]["send_timeout"] == 1, st
    assert st["send_drops"] > before["send_drops"], st
    # The healthy reader saw every message, in order: nobody stalled for the slow one.
    assert got == [payload + b"%06d" % i for i in range(n)]
    slow.close()
    for c in (healthy, sender):
        c.send(frame(CLOSE, close_payload(1000)))
        c.close()
    settle(t)
