"""The WebSocket a handler receives, and the one close path every connection ends through.

A handler is `async def handler(ws)`: it reads with `await ws.receive()` or
`async for msg in ws`, writes with `await ws.send(...)`, and may
`await ws.close(code, reason)`. Reading drives the protocol: pings are
answered and the peer's close is echoed inside receive(), so a handler
should keep reading (push data from other tasks with ws.send or
Server.broadcast).

All buffers belong to the connection's slot and were allocated at server
start; this object is the only thing created per connection, so a handler
that keeps a reference after close holds a dead handle, never someone
else's slot.
"""

import asyncio

import micropython
from micropython import const

from . import aio, codec, utf8

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
from .aio import wait_readable, wait_writable
from .kernels import copy, set_view
from .stats import ITEMS

_OPEN = const(0)
_CLOSING = const(1)  # our close frame is out; waiting for the peer's
_CLOSED = const(2)  # socket closed, counters updated

_DISCARD_READS = const(8)  # reads spent emptying the socket before close()


class ConnectionClosed(Exception):
    """Raised by receive()/send() once the connection is closed; .code, .reason.

    ConnectionClosed(code, reason). Both are read from the exception's args:
    attributes set on it would give each one a table of its own, and one is
    raised at every connection's end."""

    @property
    def code(self):
        return self.args[0] if self.args else codec.CLOSE_ABNORMAL

    @property
    def reason(self):
        return self.args[1] if len(self.args) > 1 else ""


class WebSocket:
    @micropython.native
    def __init__(self, slot):
        # Only what a closed handle must still answer lives here; the socket,
        # the address, the path and the close path's flags live in the slot
        # (Slot.clear resets them), which this handle owns until its
        # connection's end. Every attribute here is one more entry in a
        # table rebuilt as it grows, at every connection.
        self._slot = slot
        self.close_code = 0  # set once closed: the code we sent or echoed
        self.close_reason = ""
        self._state = _OPEN

    # The connection's particulars, read from its slot while this handle owns
    # it (through the handler's end); a handle kept after that reads None.

    @property
    def path(self):
        """The path it connected to (the route's own string)."""
        return self._slot.route[3] if self._slot.ws is self else None

    @property
    def query(self):
        """The request's query string, without '?' ("" if none)."""
        return self._slot.query if self._slot.ws is self else None

    @property
    def subprotocol(self):
        """The subprotocol chosen in the handshake, or None."""
        return self._slot.subprotocol if self._slot.ws is self else None

    @property
    def is_text(self):
        """Is the message receive_view() returned last text (else binary)?"""
        return self._state != _CLOSED and self._slot.is_text

    @property
    def sock(self):
        return self._slot.sock if self._state != _CLOSED else None

    @property
    def remote(self):
        """(ip, port) of the client; ("?", 0) once the handle is stale."""
        slot = self._slot
        return slot.server.remote_of(slot.addr if slot.ws is self else None)

    @property
    def open(self):
        return self._state == _OPEN

    @property
    def closed(self):
        """The connection has ended (its socket is closed, its slot given back)."""
        return self._state == _CLOSED

    def __repr__(self):
        r = self.remote
        return "<WebSocket %s:%d %s>" % (r[0], r[1], self.path)

    # ---- receiving -------------------------------------------------------

    @micropython.native
    async def receive(self):
        """Next message as str (text) or bytes (binary); ConnectionClosed at the end."""
        mv = await self.receive_view()
        if self.is_text:
            return str(mv, "utf-8")
        return bytes(mv)

    def __aiter__(self):
        return self

    @micropython.native
    async def __anext__(self):
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration

    @micropython.native
    def receive_view(self):
        """Next message as a memoryview into the slot's buffer, without a copy:
        `msg = await ws.receive_view()`.

        Valid until the next receive call (the view is the slot's own, shown
        at each message's length); self.is_text tells text from binary.
        Nothing is allocated per message: this hands back the slot's
        Receiver, which runs the protocol (pings answered, the peer's close
        echoed) as far as the bytes at hand allow and parks the task on the
        socket when it needs more.
        """
        slot = self._slot
        if slot is None or self._state == _CLOSED:
            raise ConnectionClosed(self.close_code or codec.CLOSE_ABNORMAL, self.close_reason)
        if slot.task is not asyncio.current_task():
            raise RuntimeError("receive() belongs to the connection's own task")
        r = slot.receiver
        r.ws = self
        r.sub = None
        return r

    @micropython.native
    def stats_view(self):
        """The server's live numbers (the JSON that GET /stats returns) in this
        connection's message buffer: a view for `await ws.send(v, text=True)`,
        valid until the next receive. Rendered in place: nothing is
        allocated but the largest-free-block probe's own trial blocks.
        ValueError if max_message is too small to hold the report."""
        slot = self._slot
        if slot is None or self._state == _CLOSED:
            raise ConnectionClosed(self.close_code or codec.CLOSE_ABNORMAL, self.close_reason)
        stats = self._slot.server.stats
        stats.probe_next = True
        n = 0
        for item in range(ITEMS):
            n = stats.render(slot.message, n, item)
            if n < 0:
                raise ValueError("max_message too small for the stats report")
        r = slot.receiver
        if r.view_len >= 0:
            set_view(r._view, 0, n, r.view_len)
            return r._view
        return r._view[:n]

    @micropython.native
    def _event(self, ev):
        """A control event or an error from the parser: None when handled at
        once, else the coroutine that finishes it (a pong the socket cannot
        take now, a closing handshake)."""
        parser = self._slot.parser
        if ev == codec.EV_PING:
            if self._state == _OPEN:
                r = self._send(codec.OP_PONG, parser.control, parser.ctl_len)
                return None if r is aio.DONE else r
        elif ev == codec.EV_PONG:
            if self._slot.ping_sent:
                self._slot.ping_sent = 0
                self._slot.server.stats.pongs_received += 1
        elif ev == codec.EV_CLOSE:
            self._slot.peer_closed = True
            if self._state != _OPEN:
                self._finish()  # the answer to our own close frame
            elif self._close_nowait(parser.close_code, ""):
                # Echoed at once, as nearly always: RFC 6455 7.1.1 has
                # the server close TCP first, so nothing is left to wait for.
                self._slot.why = "peer_close"
                self._finish()
            else:
                self._slot.close_sent = False  # not out yet: the waiting path sends it
                self._state = _OPEN
                return self.shutdown(parser.close_code, "", "peer_close")
        else:
            return self.shutdown(parser.error_code, parser.error_reason, "protocol_error")
        return None

    @micropython.native  # per socket read: no heap frame for its try block
    def _fill(self, direct=None):
        """Read into the slot's rx buffer (or, `direct`, a view into the
        message buffer) without waiting: bytes read, None if nothing has
        arrived, 0 at EOF, -1 on a socket error. (Not a coroutine: one
        frame less per connection and per read.)"""
        slot = self._slot
        try:
            n = slot.sock.readinto(slot.rx if direct is None else direct)
        except OSError:
            return -1
        if n:
            if direct is None:
                slot.rx_pos = 0
                slot.rx_end = n
            slot.last_rx = aio.now()
        return n

    # ---- sending ---------------------------------------------------------

    @micropython.native
    def send(self, data, text=None):
        """Send a message: str as text, bytes-like as binary (text=True/False
        overrides). Await it: `await ws.send(msg)`.

        The message leaves as one frame. When the socket takes it at once, as
        it nearly always does, it is written before this returns and the
        await costs nothing (no coroutine, no copy beyond the socket's own).
        Otherwise the await waits while the client is slow to read; a client
        that stops reading for send_timeout is closed (1008) and this raises
        ConnectionClosed. Until the await completes, `data` must not change.
        """
        op = message_opcode(data, text)
        if isinstance(data, str):
            data = data.encode()
        return self._send(op, data, len(data))

    @micropython.native
    def ping(self, payload=b""):
        return self._send(codec.OP_PING, payload, len(payload))

    @micropython.native
    def _send(self, op, data, n):
        slot = self._slot
        if slot is None or self._slot.close_sent or self._state != _OPEN:
            raise ConnectionClosed(self.close_code or codec.CLOSE_ABNORMAL, self.close_reason)
        if op >= codec.OP_CLOSE and n > 125:
            raise ValueError("control frame payload over 125 bytes")
        if not aio.try_acquire(slot.wlock):
            return self._send_queued(op, data, n)  # another write holds the socket
        return self._send_now(op, data, n)

    @micropython.native  # no heap frame, whatever its locals: this runs per message
    def _send_now(self, op, data, n):
        """With the write lock held: write the frame as far as the socket
        takes it now. aio.DONE when all of it went (the lock is released),
        else the coroutine that writes the rest (and then releases it)."""
        slot = self._slot
        tx = slot.tx
        end = codec.write_header(tx, 0, op, n)
        sent = 0  # payload bytes written from data itself
        try:
            if n <= len(tx) - end:  # small: header and payload in one write
                copy(tx, end, data, 0, n)
                end += n
                sent = n
            off = self._try_write(tx, 0, end)
            if off == end and sent < n:
                sent = self._try_write(data, sent, n)
            if off < end or sent < n:
                return self._send_rest(op, off, end, data, sent, n)
        except BaseException as e:  # (native code has no bare re-raise)
            slot.wlock.release()
            raise e
        slot.wlock.release()
        if op < codec.OP_CLOSE:
            self._slot.server.stats.msgs_out += 1
        return aio.DONE

    @micropython.native
    async def _send_queued(self, op, data, n):
        await self._slot.wlock.acquire()
        if self._state != _OPEN:
            self._slot.wlock.release()
            raise ConnectionClosed(self.close_code, self.close_reason)
        await self._send_now(op, data, n)

    @micropython.native
    async def _send_rest(self, op, off, end, data, sent, n):
        # The socket was full: the rest of the frame, tx[off:end] then
        # data[sent:n], waiting as long as send_timeout allows.
        slot = self._slot
        slot.writer = asyncio.current_task()
        try:
            await self._write(slot.tx, off, end)
            await self._write(data, sent, n)
            if op < codec.OP_CLOSE:
                self._slot.server.stats.msgs_out += 1
        except asyncio.CancelledError as e:
            if self._state != _OPEN:  # the close path took the write away
                raise ConnectionClosed(self.close_code, self.close_reason)
            raise e
        finally:
            slot.writer = None
            slot.wlock.release()

    @micropython.native  # per write: no heap frame for its try block
    def _try_write(self, buf, off, end):
        """Write buf[off:end] as far as the socket takes it now; the new offset."""
        try:
            # write(buf, off, len): no memoryview slice per write
            n = self._slot.sock.write(buf, off, end - off)
        except OSError:
            self._slot.broken = True
            self._slot.tx_since = 0
            raise ConnectionClosed(codec.CLOSE_ABNORMAL, "send failed")
        if n:
            self._slot.server.stats.bytes_out += n
            return off + n
        return off

    @micropython.native
    async def _write(self, buf, off, end):
        """Write buf[off:end], waiting while the socket is full; the sweep's
        send deadline (tx_since) bounds how long."""
        slot = self._slot
        while True:
            off = self._try_write(buf, off, end)
            if off >= end:
                break
            if not slot.tx_since:
                slot.tx_since = aio.now()  # 0 means "not waiting"
            await wait_writable(self._slot.sock)
        slot.tx_since = 0

    @micropython.native  # per connection: no heap frame
    def send_nowait(self, op, data, n):
        """Queue one frame without waiting: False if a send is already in flight.

        Used for broadcast and keepalive pings, which must never wait on a
        slow client. The frame is written at once; if the socket takes only
        part of it, a short-lived task finishes the rest while the slot's
        write lock stays held, so nothing can interleave with it.
        """
        slot = self._slot
        if slot is None or self._state != _OPEN or not aio.try_acquire(slot.wlock):
            return False
        tx = slot.tx_mv
        h = codec.write_header(tx, 0, op, n)
        if n:
            tx[h : h + n] = memoryview(data)[:n]
        try:
            done = self._slot.sock.write(tx[: h + n]) or 0
        except OSError:
            slot.wlock.release()
            return False
        self._slot.server.stats.bytes_out += done
        if done == h + n:
            slot.wlock.release()
        else:
            slot.tx_since = aio.now()
            slot.writer = asyncio.create_task(self._finish_write(done, h + n))
        return True

    @micropython.native
    async def _finish_write(self, off, end):
        slot = self._slot
        try:
            await self._write(slot.tx, off, end)
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        finally:
            slot.writer = None
            slot.wlock.release()

    # ---- closing ---------------------------------------------------------

    @micropython.native
    async def close(self, code=1000, reason=""):
        """Start the closing handshake. From the connection's own task this
        also waits (up to close_timeout) for the peer's close and closes TCP;
        from another task it sends the close frame and lets the reader finish."""
        if self._state != _OPEN or self._slot is None:
            return
        if not codec.close_code_valid(code) or code == codec.CLOSE_NO_STATUS:
            raise ValueError("close code %d may not be sent" % code)
        if self._slot.task is asyncio.current_task():
            await self.shutdown(code, reason, "server_close")
        else:
            self._slot.why = "server_close"
            await self._send_close(code, reason)

    @micropython.native  # per connection: no heap frame
    def _close_nowait(self, code, reason):
        """Offer our close frame (the code only; none for 1005) once, if the
        socket takes it right now: the bytes written, 0 if none (write lock
        busy, socket full). Never waits and never allocates: it runs on a
        full heap too."""
        self._slot.close_sent = True
        self._state = _CLOSING
        self.close_code = code
        self.close_reason = reason
        slot = self._slot
        if not aio.try_acquire(slot.wlock):
            return 0
        tx = slot.tx
        n = 0 if code == codec.CLOSE_NO_STATUS else 2
        h = codec.write_header(tx, 0, codec.OP_CLOSE, n)
        if n:
            tx[h] = code >> 8
            tx[h + 1] = code & 0xFF
        try:
            n = self._slot.sock.write(tx, 0, h + n) or 0
            self._slot.server.stats.bytes_out += n
        except OSError:
            n = 0
            self._slot.broken = True
        slot.wlock.release()
        return n

    @micropython.native
    async def _send_close(self, code, reason):
        slot = self._slot
        if slot is None or slot.close_sent:
            return
        self._slot.close_sent = True
        self._state = _CLOSING
        if not slot.closing_since:
            slot.closing_since = aio.now()
        self.close_code = code
        self.close_reason = reason
        writer = slot.writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()  # a stalled data write must not hold the close frame back
        r = b""
        n = 0
        if code != codec.CLOSE_NO_STATUS:
            r = _truncate_utf8(reason.encode(), 123)
            n = 2 + len(r)
        lock = slot.wlock
        if not aio.try_acquire(lock):
            await lock.acquire()
        try:
            tx = slot.tx_mv
            h = codec.write_header(tx, 0, codec.OP_CLOSE, n)
            if n:
                tx[h] = code >> 8
                tx[h + 1] = code & 0xFF
                tx[h + 2 : h + n] = r
            await self._write(tx, 0, h + n)
        except ConnectionClosed:
            pass
        finally:
            lock.release()

    @micropython.native
    async def shutdown(self, code, reason, why):
        """The one close path. Idempotent: sends our close frame when the socket
        can still carry it, waits (bounded by the sweep) for the peer's close,
        empties the socket so close() sends FIN rather than RST, closes it once
        and counts the connection once."""
        if self._state == _CLOSED:
            return
        slot = self._slot
        server = self._slot.server
        if self._slot.broken and why == "server_close":
            why = "peer_reset"  # a write failed: the peer reset or vanished
        if why:
            self._slot.why = why
        if not slot.closing_since:
            slot.closing_since = aio.now()
        try:
            # 1006 means the peer vanished: there is nobody to send a close to.
            vanished = code == codec.CLOSE_ABNORMAL or self._slot.broken
            # A peer that stopped reading, or answering pings, will not read our
            # close frame nor answer it: offer it once, then hang up.
            deaf = slot.aborted and (
                slot.abort_why == "send_timeout" or slot.abort_why == "keepalive"
            )
            if self._slot.close_sent:
                pass
            elif vanished:
                self._slot.close_sent = True
                self.close_code = codec.CLOSE_ABNORMAL
                self.close_reason = reason
            elif deaf:
                self._close_nowait(code, reason)
            else:
                await self._send_close(code, reason)
            if not (
                self._slot.peer_closed or vanished or deaf or self._slot.broken or slot.close_kicked
            ):
                await self._await_peer_close()
        except asyncio.CancelledError:
            pass  # close deadline passed: close TCP now
        except ConnectionClosed:
            pass
        except MemoryError:
            # No room for the handshake's wait: our close frame, if not yet
            # out, goes without its reason and without waiting.
            server.stats.memory_errors += 1
            if not self._slot.close_sent:
                self._close_nowait(code, "")
        finally:
            self._finish()

    @micropython.native
    def abort(self, code, why):
        """Close now, without waiting and without allocating: after a
        MemoryError, or when the task cannot wait any more. Our close frame
        (code only) goes out if the socket takes it at once."""
        if self._state == _CLOSED:
            return
        self._slot.why = why
        if not self._slot.close_sent:
            if code == codec.CLOSE_ABNORMAL or self._slot.broken:
                self._slot.close_sent = True
                self.close_code = codec.CLOSE_ABNORMAL
            else:
                self._close_nowait(code, "")
        self._finish()

    @micropython.native  # per connection: no heap frame
    def _finish(self):
        # The end of both close paths: nothing here allocates or waits.
        slot = self._slot
        server = self._slot.server
        self._state = _CLOSED
        writer = slot.writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
        self._discard_input()
        server._close_socket(slot)
        server.stats.count_close(self.close_code, self._slot.why)
        log = server.log
        if log.level >= 3:  # DEBUG; checked here so no argument tuple is built for nothing
            r = self.remote
            log.debug("closed %s:%d %d %s", r[0], r[1], self.close_code, self._slot.why)

    @micropython.native
    async def _await_peer_close(self):
        slot = self._slot
        parser = slot.parser
        parser.drain_mode()
        # Fed once even with no bytes at hand: a refused frame whose header is
        # all in may be the peer's close itself (a fragmented close frame).
        again = True
        while True:
            if again or slot.rx_pos < slot.rx_end:
                again = False
                ev = parser.feed(slot.rx, slot.rx_pos, slot.rx_end)
                slot.rx_pos = parser.pos
                if ev == codec.EV_CLOSE:
                    self._slot.peer_closed = True
                    return
                if ev == codec.EV_ERROR:
                    return
                continue
            n = self._fill()
            if n is None:
                await wait_readable(self._slot.sock)
            elif n <= 0:
                return

    @micropython.native  # per connection: no heap frame
    def _discard_input(self):
        sock = self._slot.sock
        if sock is None:
            return
        rx = self._slot.rx
        for _ in range(_DISCARD_READS):
            try:
                if not sock.readinto(rx):
                    return
            except OSError:
                return


class Receiver:
    """What receive_view() hands back: one per slot, made at start and reused
    for every message, so awaiting a message allocates nothing.

    Awaiting it calls __next__, which feeds the bytes at hand to the parser
    and either finishes the await with the message (raising the slot's own
    StopIteration, whose value is the slot's view) or parks the task on the
    socket (returns None) until more bytes arrive. __next__ is machine code:
    a StopIteration raised from bytecode would get a new traceback entry
    (24 B) every time. The rare steps that must wait on a write (a pong the
    socket cannot take now, a closing handshake) run as ordinary coroutines,
    driven from here.
    """

    view_len = -1  # word index of a memoryview's length if setting it works (startup.py)

    @micropython.native
    def __init__(self, message):
        self.ws: "WebSocket | None" = None
        self.sub: "Any" = None  # the coroutine being driven, if any
        self._view = memoryview(message)
        self._done = StopIteration(self._view)

    def __iter__(self):
        return self

    @micropython.native
    def __next__(self):
        ws = self.ws
        if self.sub is not None:
            try:
                return self.sub.send(None)
            except StopIteration:
                self.sub = None
            if ws._state == _CLOSED:  # pyright: ignore[reportOptionalMemberAccess]
                raise ConnectionClosed(ws.close_code, ws.close_reason)  # pyright: ignore[reportOptionalMemberAccess]
        slot = ws._slot  # pyright: ignore[reportOptionalMemberAccess]
        parser = slot.parser
        while True:
            if slot.rx_pos < slot.rx_end:
                ev = parser.feed(slot.rx, slot.rx_pos, slot.rx_end)
                slot.rx_pos = parser.pos
            else:
                # A payload longer than the read chunk is read straight into
                # the message buffer, where it belongs: one read instead of
                # one per chunk, and no copy through the chunk.
                room = parser.direct_room() if self.view_len >= 0 else 0
                if room > len(slot.rx):
                    set_view(self._view, parser.msg_len, room, self.view_len)
                    n = ws._fill(self._view)  # pyright: ignore[reportOptionalMemberAccess]
                else:
                    n = ws._fill()  # pyright: ignore[reportOptionalMemberAccess]
                if n is None:
                    aio.arm_read(slot.sock)  # pyright: ignore[reportOptionalMemberAccess]
                    return None
                if n <= 0:
                    self.sub = ws.shutdown(codec.CLOSE_ABNORMAL, "connection lost", "peer_reset")  # pyright: ignore[reportOptionalMemberAccess]
                    return self.__next__()
                if room <= len(slot.rx):
                    continue  # in the read chunk: fed above
                ev = parser.took(n)
            if ev == codec.EV_NONE:
                continue
            if ev <= codec.EV_BINARY:
                if ws._state != _OPEN:  # pyright: ignore[reportOptionalMemberAccess]
                    continue  # data after our close frame is discarded (7.1.1)
                return self._message(ws, slot, ev)
            sub = ws._event(ev)  # pyright: ignore[reportOptionalMemberAccess]
            if sub is not None:
                self.sub = sub
                return self.__next__()
            if ws._state == _CLOSED:  # pyright: ignore[reportOptionalMemberAccess]
                raise ConnectionClosed(ws.close_code, ws.close_reason)  # pyright: ignore[reportOptionalMemberAccess]

    @micropython.native
    def _message(self, ws, slot, ev):
        n = slot.parser.msg_len
        stats = ws._slot.server.stats
        stats.msgs_in += 1
        stats.bytes_in += n
        slot.last_message = aio.now()
        slot.is_text = ev == codec.EV_TEXT
        if self.view_len >= 0:
            set_view(self._view, 0, n, self.view_len)
            raise self._done
        raise StopIteration(self._view[:n])  # (never shortened: the whole buffer)

    @micropython.native
    def throw(self, exc):
        # A cancellation (close deadline, sweep) while parked: a coroutine
        # being driven gets it, to run its own close path.
        sub = self.sub
        if sub is None:
            raise exc
        try:
            return sub.throw(exc)
        except StopIteration:
            self.sub = None
        ws = self.ws
        if ws is not None and ws._state == _CLOSED:
            raise ConnectionClosed(ws.close_code, ws.close_reason)
        return self.__next__()


@micropython.native
def message_opcode(data, text):
    """Text or binary: str is text unless text=False, bytes-like is binary
    unless text=True, and then it must be UTF-8 (ValueError otherwise: the
    client would have to fail the connection with 1007)."""
    if isinstance(data, str):
        return codec.OP_BINARY if text is False else codec.OP_TEXT
    if not text:
        return codec.OP_BINARY
    if utf8.scan(data, 0, len(data), utf8.ACCEPT) != utf8.ACCEPT:
        raise ValueError("text message is not valid UTF-8")
    return codec.OP_TEXT


@micropython.native
def _truncate_utf8(b, limit):
    """b cut to at most `limit` bytes without splitting a UTF-8 sequence."""
    if len(b) <= limit:
        return b
    end = limit
    while end > 0 and (b[end] & 0xC0) == 0x80:
        end -= 1
    return b[:end]
