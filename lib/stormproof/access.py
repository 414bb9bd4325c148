"""The optional access limits: a shared token, and a rate of new connections
per client address. Loaded only when one of them is configured (token,
handshake_rate): a server without them carries none of this code.

Who is knocking is kept in a small table of client addresses, fixed in size
and allocated at start: a token bucket each, and failed token attempts.

An address not yet in the table takes a row that has nothing left to
remember (bucket full again, no recent failure). When no row
is like that, every newcomer shares one overflow row, bucket included. So a
client with many addresses cannot push its own row out to start again with
a full bucket: a row is reused only once it would have refilled anyway.

Every value is a small int (or the address key, which accept() already
made), so nothing here allocates per connection.
"""

import time

import micropython
from micropython import const

from . import handshake
from .server import address_key

_FREE_FAILS = const(3)  # failed token attempts before an address has to wait
_PENALTY_MAX = const(60000)  # the longest wait, in ms: it doubles per failure
_FORGET = const(60000)  # failures are forgotten this long after the wait ended (or the last one)

# Columns of a row.
_TOKENS = const(0)  # thousandths of a connection
_STAMP = const(1)  # ticks of the last refill
_FAILS = const(2)  # failed token attempts in a row
_UNTIL = const(3)  # ticks until which it waits after failures (or of the last failure)
_COLS = const(4)


class Access:
    """What Server consults, at accept (too_many) and at the upgrade (token)."""

    def __init__(self, cfg, stats):
        self.stats = stats
        self.peers = Peers(cfg.peer_table, cfg.handshake_burst, cfg.handshake_rate)
        self.token = cfg.token.encode()
        self.protocol = ("token." + cfg.token).encode() if cfg.token else b""

    @micropython.native  # per connection: no heap frame
    def too_many(self, addr, now):
        """Is this address over its handshake rate, or waiting after failed
        tokens? Counted; the caller answers 429."""
        peers = self.peers
        row = peers.find(address_key(addr), now)
        if peers.waiting(row, now):
            self.stats.refused_auth += 1
            return True
        if not peers.admit(row, now):
            self.stats.refused_rate += 1
            return True
        return False

    @micropython.native
    def check_token(self, req, addr, now):
        """401 unless the client presented the token; where it did (1 the
        query, 2 the subprotocol), 0 when no token is configured. After a
        few failures the address gets 429 at accept for a while."""
        if not self.token:
            return 0
        given = token_given(req, self.token, self.protocol)
        row = self.peers.find(address_key(addr), now)
        if given:
            self.peers.passed(row)
            return given
        self.peers.failed(row, now)
        raise handshake.HandshakeError(401, "a valid token is required", b"", "refused_auth")


class Peers:
    def __init__(self, size, burst, rate):
        self.keys = [None] * (size + 1)  # the last row is the shared overflow row
        self.rows = [0] * (_COLS * (size + 1))
        self.cap = burst * 1000
        self.rate = rate  # connections per second = thousandths per ms
        now = time.ticks_ms()
        for i in range(size + 1):
            self._reset(i, now)

    def _reset(self, i, now):
        r = self.rows
        b = i * _COLS
        r[b + _TOKENS] = self.cap
        r[b + _STAMP] = now
        r[b + _FAILS] = 0
        r[b + _UNTIL] = now

    @micropython.native
    def find(self, key, now):
        """The row of the address `key` (server.address_key); taken now if
        it had none."""
        keys = self.keys
        last = len(keys) - 1
        spare = -1
        i = 0
        while i < last:
            k = keys[i]
            if k == key:
                return i
            if spare < 0 and (k is None or self._forgettable(i, now)):
                spare = i
            i += 1
        if spare < 0:
            return last
        keys[spare] = key
        self._reset(spare, now)
        return spare

    @micropython.native
    def _forgettable(self, i, now):
        r = self.rows
        b = i * _COLS
        # Recent failures: within _FORGET after the wait (or the last
        # failure), or during the wait, which is never more than _PENALTY_MAX
        # ahead (further off, the failure was half the ticks period ago,
        # 6.2 days on a board, and ticks_diff wrapped).
        if r[b + _FAILS] and -_PENALTY_MAX <= time.ticks_diff(now, r[b + _UNTIL]) < _FORGET:
            return False
        self._refill(b, now)
        return r[b + _TOKENS] >= self.cap

    @micropython.native
    def _refill(self, b, now):
        r = self.rows
        elapsed = time.ticks_diff(now, r[b + _STAMP])
        if elapsed < 0 or elapsed > self.cap:  # (the clock wrapped, or long enough to fill it)
            elapsed = self.cap
        r[b + _STAMP] = now
        t = r[b + _TOKENS] + elapsed * self.rate
        r[b + _TOKENS] = t if t < self.cap else self.cap

    @micropython.native
    def admit(self, i, now):
        """May row i open one more connection now? Takes one from its bucket
        (always yes when the rate is 0: no limit)."""
        if not self.rate:
            return True
        b = i * _COLS
        self._refill(b, now)
        r = self.rows
        if r[b + _TOKENS] < 1000:
            return False
        r[b + _TOKENS] -= 1000
        return True

    def waiting(self, i, now):
        """Has row i failed the token too often to be heard now?"""
        b = i * _COLS
        r = self.rows
        # No wait is longer than _PENALTY_MAX: a longer one is a wait that
        # ended half the ticks period ago (6.2 days on a board), wrapped.
        wait = time.ticks_diff(r[b + _UNTIL], now)
        return r[b + _FAILS] >= _FREE_FAILS and 0 < wait <= _PENALTY_MAX

    def failed(self, i, now):
        """A wrong or missing token from row i: after a few, each failure
        doubles the wait before it is heard again."""
        b = i * _COLS
        r = self.rows
        r[b + _FAILS] += 1
        n = r[b + _FAILS] - _FREE_FAILS
        # _UNTIL: when the failures stop being recent is counted from (the
        # end of the wait, or this failure when there is none yet).
        r[b + _UNTIL] = time.ticks_add(now, min(1000 << min(n, 6), _PENALTY_MAX)) if n >= 0 else now

    def passed(self, i):
        self.rows[i * _COLS + _FAILS] = 0


@micropython.native
def token_given(req, secret, protocol):
    """Where the client presented the shared secret: 1 in the query
    (`token=<secret>`), 2 as the subprotocol `protocol` ("token.<secret>",
    bytes), 0 nowhere. Constant-time comparisons."""
    buf = req.buf
    start = handshake.skip_empty_lines(buf, req.end)
    eol = buf.find(b"\n", start, req.end)
    sp1 = buf.find(b" ", start, eol)
    sp2 = buf.find(b" ", sp1 + 1, eol)
    q = buf.find(b"?", sp1 + 1, sp2)
    while q >= 0:
        a = q + 1
        q = buf.find(b"&", a, sp2)
        e = sp2 if q < 0 else q
        if handshake._same(buf, a, min(a + 6, e), b"token=", False) and handshake.secret_equal(
            buf, a + 6, e, secret
        ):
            return 1
    if req.has_token(b"sec-websocket-protocol", protocol, handshake.SECRET):
        return 2
    return 0
