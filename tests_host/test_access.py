"""Who may hold what: a shared token, a fair share of the slots per client
address, and a rate of new connections per address.

Other loopback addresses (127.0.0.2, 127.0.0.3, ...) stand for other
clients: each is a different address to the server.
"""

from __future__ import annotations

import json
import select

import pytest
from conftest import settle
from wsutil import (
    CLOSE,
    IO_TIMEOUT,
    TEXT,
    RawWS,
    Refused,
    close_payload,
    connect,
    frame,
    get,
    get_stats,
    parse_response,
    read_head,
    upgrade_request,
)

A, B, C = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def status_from(t, source: str, path: str = "/ws", extra: str = "") -> int:
    # The head only: a 429 at accept is closed by the next sweep, and the
    # rate tests must not wait for that (the buckets refill meanwhile).
    with connect(t, source=source) as s:
        s.sendall(upgrade_request(t, extra=extra, path=path))
        return parse_response(read_head(s))[0]


# ---- the token ---------------------------------------------------------------


def test_without_the_token_401_and_with_it_in(spawn):
    t = spawn(token="s3cret-Token_1")
    assert status_from(t, A) == 401
    assert status_from(t, A, "/ws?token=wrong") == 401
    assert status_from(t, A, "/ws?token=s3cret-Token_") == 401  # a prefix is not the token
    assert status_from(t, C, "/ws?token=s3cret-Token_12") == 401
    st = get_stats(t)
    assert st["refused_auth"] == 4 and st["ws_opened"] == 0
    # In the query, among other parameters, or as a subprotocol (what a browser can send).
    assert status_from(t, B, "/ws?token=s3cret-Token_1") == 101
    assert status_from(t, B, "/ws?x=1&token=s3cret-Token_1&y=2") == 101
    ws = RawWS(t, source=B, extra="Sec-WebSocket-Protocol: token.s3cret-Token_1\r\n")
    # A browser that offered subprotocols must get one of them back.
    assert b"sec-websocket-protocol: token.s3cret-token_1" in ws.head.lower()
    ws.close()
    ws = RawWS(
        t, source=B, path="/ws?token=s3cret-Token_1", extra="Sec-WebSocket-Protocol: echo\r\n"
    )
    assert b"sec-websocket-protocol: echo" in ws.head.lower()  # the route's own choice stands
    ws.close()
    settle(t)
    # The secret never reaches the log.
    assert "s3cret" not in t.process.output()


def test_config_page_does_not_show_the_token(spawn):
    # /config is open to anyone who reaches the device (a board always
    # serves it): it says a token is set, never what it is. (Two slots: with
    # four and the token's code, the 64-bit port's 110k heap keeps no block
    # for /config's names; it answers 503 then.)
    t = spawn(token="s3cret-Token_1", profile="test", max_clients=2)
    status, _, body = get(t, "/config")
    assert status == 200
    assert b"s3cret" not in body
    config = json.loads(body)
    assert config["token"] == "(hidden)" and config["max_clients"] == 2
    settle(t)


def test_an_address_that_keeps_failing_waits(spawn):
    t = spawn(token="k")
    for _ in range(3):
        assert status_from(t, A, "/ws?token=no") == 401
    # From now on A gets 429 at accept, even with the right token; others are not affected.
    assert status_from(t, A, "/ws?token=k") == 429
    assert status_from(t, B, "/ws?token=k") == 101
    st = get_stats(t)
    assert st["refused_auth"] == 4
    settle(t)


def test_a_token_with_characters_that_do_not_fit_stops_the_server(spawn):
    with pytest.raises(RuntimeError, match="token"):
        spawn(token="a b")


# ---- fair share ---------------------------------------------------------------


def test_alone_an_address_may_use_every_slot(spawn):
    t = spawn(max_clients=3)
    held = [RawWS(t, source=A) for _ in range(3)]
    assert get_stats(t)["slots_in_use"] == 3
    for ws in held:
        ws.close()
    settle(t)


def test_an_address_holding_every_slot_gives_one_back_to_another(spawn):
    t = spawn(max_clients=3, retry_after=1)
    held = [RawWS(t, source=A) for _ in range(3)]
    with pytest.raises(Refused) as refused:
        RawWS(t, source=B)
    assert refused.value.status == 503
    # One of A's connections (its least recently active) is closed with 1013
    # and the delay; the other two are left alone.
    ready, _, _ = select.select([ws.sock for ws in held], [], [], IO_TIMEOUT)
    assert len(ready) == 1, ready
    victim = next(ws for ws in held if ws.sock is ready[0])
    code, reason = victim.expect_close()
    assert code == 1013 and reason == b"retry=1000"
    victim.send(frame(CLOSE, close_payload(1013)))
    victim.expect_eof()
    kept = [ws for ws in held if ws is not victim]
    for ws in kept:
        ws.send(frame(TEXT, b"still here"))
        assert ws.recv_message() == (TEXT, b"still here")
    # While B waits, A may not take the slot back; B's retry gets it.
    with pytest.raises(Refused):
        RawWS(t, source=A)
    b = RawWS(t, source=B)
    st = get_stats(t)
    assert st["slots_in_use"] == 3
    assert st["close_reasons"]["fair_share"] == 1 and st["refused_share"] == 1
    assert st["refused_full"] == 1
    for ws in kept + [b]:
        ws.close()
    settle(t)


def test_share_off_keeps_first_come_first_served(spawn):
    t = spawn(max_clients=2, per_address_slots=0)
    held = [RawWS(t, source=A) for _ in range(2)]
    with pytest.raises(Refused):
        RawWS(t, source=B)
    assert get_stats(t)["close_reasons"]["fair_share"] == 0
    for ws in held:
        ws.close()
    settle(t)


# ---- the rate of new connections ------------------------------------------------


def test_an_address_over_its_rate_gets_429_at_once(spawn):
    # (Every connection counts, /stats included: this test reads it from
    # 127.0.0.1, whose own bucket is untouched until then.)
    t = spawn(handshake_rate=1, handshake_burst=3)
    got = [status_from(t, A) for _ in range(5)]
    assert got[:3] == [101, 101, 101] and got[3:] == [429, 429], got
    assert status_from(t, B) == 101  # its own bucket
    st = get_stats(t)
    assert st["refused_rate"] == 2 and st["ws_opened"] == 4


def test_many_addresses_cannot_reset_their_own_bucket(spawn):
    # A table of 2 rows: C drains its bucket, then 8 other addresses knock.
    # C's row holds a bucket that is not full, so none of them can take it:
    # they share the overflow row, and C is still held to its rate.
    t = spawn(handshake_rate=1, handshake_burst=2, peer_table=2)
    assert [status_from(t, C) for _ in range(3)] == [101, 101, 429]
    others = [status_from(t, f"127.0.1.{i + 1}") for i in range(8)]
    assert status_from(t, C) == 429
    # The first newcomer got the free row; the rest share one bucket of 2.
    assert others[:3] == [101, 101, 101] and set(others[3:]) == {429}, others
