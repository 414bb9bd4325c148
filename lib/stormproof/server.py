"""The server: a fixed slot table, its workers, admission at accept, plain HTTP answers.

    accept ──► request buffer: the pool's, else a free slot's ──► WebSocket slot
       │            │  plain HTTP: page, /stats, 404 ...           (buffers for life)
       │            ├ Origin not allowed: 403, no or wrong token: 401
       │            └ every slot busy (or the address has its share): 503 + Retry-After,
       │              or for a browser 101 + close 1013 "retry=<ms>"
       ├ none free: 503 at once
       └ the address over its rate, or failing the token: 429 at once

Everything a connection can hold (buffers, parser, write lock) is allocated
in Server.__init__ and reused; a connection only borrows it. So are the
workers: one long-lived coroutine per slot and per pool carrier, each
serving connection after connection, so a connection costs no task and no
coroutine. A worker's `finally` is the only place a connection's socket is
closed and its slot returned. The sweep (sweep.py) never closes anything
itself: it cancels the worker, whose close path does the rest.
"""

import asyncio
import gc
import socket
import time

import micropython
from micropython import const

from . import aio, codec, handshake, sweep
from .aio import wait_readable, wait_writable
from .config import Config, _startup
from .log import Log
from .stats import ITEMS, Stats
from .websocket import ConnectionClosed, Receiver, WebSocket, message_opcode

_EAGAIN = const(11)
_ACCEPT_BATCH = const(8)
_ACCEPT_HEADROOM = const(512)
_REFUSED_HELD = const(4)
_LINGER_MS = const(1000)
_LINGER_IDLE_MS = const(100)
_LINGER_STEP_MS = const(20)

_REFUSALS = const(3)  # Retry-After delays the 503 takes in turn (startup.build)
_CLOSES = const(1)  # where the matching 1013 close frames start in the same list
_TOO_MANY = const(4)  # ...and the 429
_COLON = const(58)
_STATS_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"


class Slot:
    """One WebSocket connection's worth of memory, allocated once."""

    @micropython.native
    def __init__(self, index, cfg, message):
        self.message = message
        self.receiver = Receiver(self.message)
        self.parser = codec.FrameParser(self.message, cfg.max_message)
        self.rx = bytearray(cfg.rx_chunk)
        self.tx = bytearray(cfg.tx_size)
        self.tx_mv = memoryview(self.tx)
        self.wlock = asyncio.Lock()
        self.reserved = False  # its Pending is reading a request in its buffer
        self.server = None  # the Server whose table it is (set once the table is built)
        self.pending = (
            Pending(self.message, cfg.request_max, self)
            if cfg.max_message >= cfg.request_max
            else None
        )
        self.clear()

    @micropython.native
    def clear(self):
        self.ws: "WebSocket | None" = None
        self.task: "asyncio.Task | None" = None
        self.writer: "asyncio.Task | None" = None  # holds wlock while it waits on the socket
        self.rx_pos = 0
        self.rx_end = 0
        self.last_rx = 0
        self.last_message = 0
        self.ping_sent = 0  # ticks of the unanswered keepalive ping, 0 if none
        self.pong_wait = 0  # how long its pong may take (shorter for a probe)
        self.tx_since = 0  # ticks since a write has been waiting, 0 if none
        self.closing_since = 0
        self.aborted = False
        self.close_kicked = False
        self.abort_code = 0
        self.abort_reason = ""
        self.abort_why = ""
        # The connection's close path (its WebSocket reads and sets these
        # while it owns the slot; kept here so the handle stays small).
        self.sock = None  # the connection's socket, until its close path closes it
        self.is_text = False  # the last message's kind
        self.close_sent = False
        self.peer_closed = False
        self.broken = False  # the socket failed; write nothing more
        self.why = "server_close"  # the close_reasons entry it will count
        # The connection's own (its handle reads them while it owns the slot).
        self.route = None  # (handler, subprotocols, accept, path, subprotocols as bytes)
        self.addr = None  # as accept() gave it: decoded only when asked
        self.query = ""
        self.subprotocol = None
        self.n101 = 0  # the 101's length, prepared in tx
        self.parser.reset()


class Pending:
    """A connection reading its HTTP request.

    The pool's own entries have a request_max buffer each. Every slot also
    carries one that borrows the slot's message buffer, so a burst can read
    as many requests at once as there are free slots plus the pool.
    """

    @micropython.native
    def __init__(self, buf, cap, slot=None):
        self.buf = buf
        self.slot = slot  # the slot whose buffer this borrows, if any
        # Made once, used by every request read here: the view reads go into
        # (at most request_max bytes, whichever buffer it is) and the Request.
        self.view = memoryview(buf)[:cap]
        self.req = handshake.Request(buf)
        self.clear()

    @micropython.native
    def clear(self):
        self.sock: "socket.socket | None" = None
        self.addr = None  # what accept() gave
        self.task: "asyncio.Task | None" = None
        self.started = 0
        self.expired = False
        self.got = 0  # request bytes read so far
        self.answered = False  # a response has begun: linger before closing
        self.rx_extra = 0  # bytes after the request head (early frames)


class Server:
    @micropython.native
    def __init__(self, config=None, log=None):
        cfg = config or Config()
        self.config = cfg
        # The settings are checked and the tables (slots, carriers, prebuilt
        # answers) built by start-up code that leaves RAM again afterwards.
        # The message buffers, the only big blocks, come first, while the heap
        # above the package is still in one piece: garbage collected first,
        # so the small objects made next fill holes below instead of
        # splitting it (start-up code loads after).
        cfg.validate()
        gc.collect()
        bufs = [bytearray(cfg.max_message) for _ in range(cfg.max_clients)]
        # The workers (serve() starts them): enough for every slot and every
        # pool carrier busy at once, which bounds the connections in progress.
        n = cfg.max_clients + cfg.handshakes
        # Their tasks, for the server's life; the carrier each is serving (None: idle).
        self._workers: "list[asyncio.Task | None]" = [None] * n
        self._jobs: "list[Pending | None]" = [None] * n
        self._parked = bytearray(n)  # 1 while it sleeps in park(), to be woken
        self._stopped = False  # serve() has ended: idle workers end too
        self._sweeper: "asyncio.Task | None" = None
        self.log = log or Log(cfg.log_level)
        self.stats = Stats(cfg.max_clients, cfg.handshakes, cfg.max_message)
        self.stats.log = self.log
        self._http_routes = {}
        self._ws_routes = {}
        self._paths = []  # every route's path, the strings requests' paths become
        (self.slots, self.pending, self.carriers, self._refusals, self._timeout_answer,
         self._nodelay, self._origins) = _startup("build")(cfg, self.log, bufs, Slot, Pending, Receiver)  # fmt: skip
        for slot in self.slots:
            slot.server = self
        # The token and the per-address rate: only when configured, so a
        # server without them carries none of their code.
        self._access = None
        if cfg.handshake_rate or cfg.token:
            from .access import Access

            self._access = Access(cfg, self.stats)
        # Slots one address may hold while another waits (-1: all but one).
        share = cfg.per_address_slots
        self._share = max(1, cfg.max_clients - 1) if share < 0 else share
        self._contended = 0  # ticks until which addresses are held to their share; 0: none
        self._waiter = None  # ...for the sake of this one (an address_key), refused a slot
        self.listener = None
        self._serve_task = None
        self._refusal_turn = 0
        self._free_checks = 0  # accepts left before gc.mem_free() is asked again
        self._refused = [None] * _REFUSED_HELD  # answered at accept, closed by the sweep
        self.watchdog = None  # a board's (board.Watchdog): fed by the sweep

    # ---- routes ------------------------------------------------------------

    @micropython.native
    def websocket(self, path, handler=None, subprotocols=None, accept=None):
        """Serve WebSockets at `path` with `async def handler(ws)`.

        subprotocols: the ones this handler speaks, in order of preference;
        accept(request): optional check during the handshake, returning None
        to accept or an HTTP status (e.g. 401, 403) to refuse.
        Usable as a decorator: @server.websocket("/ws").
        """

        def add(fn):
            protocols = tuple(subprotocols or ())
            encoded = tuple(p.encode() for p in protocols)
            self._ws_routes[path] = (fn, protocols, accept, path, encoded)
            self._paths.append(path)
            return fn

        return add(handler) if handler else add

    @micropython.native
    def route(self, path, handler=None):
        """Serve plain HTTP GET/HEAD at `path` with `handler(request)` returning
        (status, content_type, body): body str, bytes, an iterable of pieces
        (streamed through the request buffer), or server.stats."""

        def add(fn):
            self._http_routes[path] = fn
            self._paths.append(path)
            return fn

        return add(handler) if handler else add

    # ---- lifecycle ---------------------------------------------------------

    @micropython.native
    async def serve(self):
        """Listen and serve until cancelled; then close every connection with 1001."""
        cfg = self.config
        ai = socket.getaddrinfo(cfg.host, cfg.port)[0]
        lsock = socket.socket(ai[0], socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(ai[-1])
        lsock.listen(cfg.backlog)
        lsock.setblocking(False)
        self.listener = lsock
        self.log.info("listening on %s:%d", cfg.host, cfg.port)
        self._serve_task = asyncio.current_task()
        self._stopped = False
        self._start_workers()
        try:
            # The accept loop. (It keeps no per-connection object in a local:
            # a dead connection's objects would stay reachable from this
            # frame and sit in the middle of the free heap.)
            while True:
                try:
                    await wait_readable(lsock)
                    # Empty the backlog before waiting again: in a burst a small
                    # listen queue overflows, and the kernel then drops connection
                    # attempts that a browser retries only a second or more later.
                    for _ in range(_ACCEPT_BATCH):
                        got = self._admit(lsock)
                        if got <= 0:
                            break
                    if got < 0:
                        await asyncio.sleep_ms(100)
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit) as e:
                    raise e  # (native code has no bare re-raise)
                except BaseException as e:  # MemoryError included: the loop must survive
                    self._accept_failed(e)
                    e = None
                    await asyncio.sleep_ms(50)
        finally:
            await self._shutdown_all()  # the sweep still enforces close_timeout
            self._sweeper.cancel()  # pyright: ignore[reportOptionalMemberAccess]
            self._serve_task = None
            self._stopped = True
            for i in range(len(self._workers)):  # idle workers wake to see it and end
                if self._parked[i]:
                    self._parked[i] = 0
                    aio.wake(self._workers[i])

    @micropython.native
    def _start_workers(self):
        # (A task made before the event loop runs waits in its queue until it
        # does.) Long-lived, so made at start, next to the tables.
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(sweep.run(self))
        for i in range(len(self._workers)):
            if self._workers[i] is None or self._workers[i].done():  # pyright: ignore[reportOptionalMemberAccess]
                self._parked[i] = 0
                self._workers[i] = asyncio.create_task(self._work(i))

    @micropython.native
    async def stop(self):
        """Stop serving: close the listener, send 1001 to every client and wait
        (at most close_timeout) for their connections to end."""
        task = self._serve_task
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    @micropython.native
    async def _shutdown_all(self):
        if self.listener is not None:
            aio.forget(self.listener)
            self.listener.close()
            self.listener = None
        self.close_refused()
        for p in self.carriers:
            if p.task is not None:
                p.task.cancel()
        for slot in self.slots:
            if slot.task is not None:
                sweep.abort(slot, codec.CLOSE_GOING_AWAY, "server shutting down", "shutdown")
        # Let each connection run its close path, bounded by close_timeout.
        start = aio.now()
        while (
            self.stats.sockets_open
            and time.ticks_diff(time.ticks_ms(), start) < self.config.close_timeout + 500
        ):
            await asyncio.sleep_ms(20)
        self.log.info("stopped; %d sockets still open", self.stats.sockets_open)

    # ---- accept and admission ----------------------------------------------

    @micropython.native  # per connection: no heap frame
    def _admit(self, lsock):
        """Accept one connection and hand it a handshake carrier, or refuse it
        at once. 1 when one was taken, 0 when none was waiting, -1 when
        accept() failed for want of sockets."""
        stats = self.stats
        # accept() allocates the socket object after the kernel has handed
        # over the connection: failing then would lose it, fd and all. With
        # the heap that low, the client waits in the listen backlog instead.
        # gc.mem_free() walks the whole heap's table (8 us at 110k, 130 us
        # at 2M; it was a tenth of the server's instructions per reconnect
        # cycle when asked every few accepts), so it is asked again only
        # after the accepts that what it last said leaves room for above the
        # headroom: a connection keeps under 1 KB alive (socket, handle,
        # handler coroutine: about 400 B on the 64-bit port), and what it
        # leaves as garbage is collected before an allocation can fail.
        if self._free_checks > 0:
            self._free_checks -= 1
        else:
            free = gc.mem_free()
            if free < _ACCEPT_HEADROOM:
                gc.collect()
                free = gc.mem_free()
                if free < _ACCEPT_HEADROOM:
                    return -1
            self._free_checks = min((free - _ACCEPT_HEADROOM) // 1024, 16)
        try:
            sock, addr = lsock.accept()
        except OSError as e:
            if e.errno == _EAGAIN:
                return 0
            # Out of sockets (EMFILE/ENFILE): the caller backs off instead of spinning.
            stats.accept_errors += 1
            self.log.warn("accept failed: %s", e)
            return -1
        stats.accepted += 1
        stats.sockets_open += 1
        sock.setblocking(False)
        if self._nodelay:
            try:
                # TCP_NODELAY: a message longer than the tx buffer leaves as
                # several frames, and Nagle would hold each one back until the
                # client's delayed ACK (40 ms) of the one before.
                sock.setsockopt(self._nodelay[0], self._nodelay[1], 1)
            except OSError:
                pass  # messages still arrive, only later
        now = aio.now()
        if self._access is not None and self._access.too_many(addr, now):
            self._answer_now(sock, self._refusals[_TOO_MANY])
            self._close_later(sock)
            return 1
        w = self._idle_worker()
        pend = self._free_pending() if w >= 0 else None
        if pend is None:
            stats.refused_busy += 1
            sweep.probe_silent(self)
            # No buffer is spent: a prebuilt answer, written without waiting.
            self._answer_now(sock, self._next_refusal())
            self._close_later(sock)
            return 1
        pend.sock = sock
        pend.started = now
        stats.handshakes_in_use += 1
        pend.addr = addr
        pend.task = self._workers[w]
        self._jobs[w] = pend
        if self._parked[w]:
            self._parked[w] = 0
            aio.wake(pend.task)
        return 1

    @micropython.native
    def _idle_worker(self):
        """The index of a worker with no connection, or -1. There is one per
        slot and per pool carrier, so one is always idle when a carrier is
        free; a worker that died (it never should) is replaced here."""
        jobs = self._jobs
        i = 0
        while i < len(jobs):
            if jobs[i] is None:
                if not self._workers[i].done():  # pyright: ignore[reportOptionalMemberAccess]
                    return i
                self._parked[i] = 0
                self._workers[i] = asyncio.create_task(self._work(i))
                return i
            i += 1
        return -1

    @micropython.native
    def _accept_failed(self, e):
        if isinstance(e, MemoryError):
            self.stats.memory_errors += 1
        self._log_failure("accept", e)
        # A carrier given its socket but not its worker would leak both;
        # its client is told to come back (503) rather than reset.
        for p in self.carriers:
            if p.sock is not None and p.task is None:
                self._answer_pend(p, self._refusals[0])
                self._close_socket(p)
                self._release_pending(p)
        gc.collect()

    @micropython.native
    def _close_later(self, sock):
        """Close a socket refused at accept on the next sweep, not now: the
        client's request is usually still on its way, and closing with unread
        input sends an RST that can destroy the 503 before the client reads
        it. The sweep reads what arrived and closes with a FIN. A few places
        only, taken without allocating; when they are all taken, close now."""
        held = self._refused
        for i in range(len(held)):
            if held[i] is None:
                held[i] = sock
                return
        self._close_raw(sock)

    @micropython.native
    def close_refused(self):
        """Close the sockets refused at accept (_close_later); the sweep's
        first step, when their answers have had time to leave."""
        held = self._refused
        for i in range(len(held)):
            sock = held[i]
            if sock is not None:
                held[i] = None
                self._discard(sock)
                self._close_raw(sock)

    @micropython.native
    def _next_refusal(self, close=0):
        """The prebuilt 503 with the next retry delay (or, with
        close=_CLOSES, the 1013 close frame with it): delays take turns, so
        refused clients do not all come back in the same second. The delay
        is written into the one 503 in place; a 503 still being sent is
        told one delay or another, either of them valid."""
        turn = self._refusal_turn = (self._refusal_turn + 1) % _REFUSALS
        if close:
            return self._refusals[close + turn]
        buf = self._refusals[0]
        i = buf.find(b"\r\n", buf.find(b"Retry-After:")) - 1
        v = self.config.retry_after + turn
        digit = True
        while buf[i] != _COLON:  # digits from the right, then spaces
            buf[i] = 48 + v % 10 if digit else 32
            v //= 10
            digit = v > 0
            i -= 1
        return buf

    @micropython.native
    def _close_raw(self, sock):
        aio.forget(sock)  # before close(): the poller must not hold a closed descriptor
        try:
            sock.close()
        except OSError:
            pass
        self.stats.closed += 1
        self.stats.sockets_open -= 1

    @micropython.native
    def _close_socket(self, owner):
        """Close owner.sock exactly once, whoever calls; counts the close."""
        sock = owner.sock
        if sock is not None:
            owner.sock = None
            self._close_raw(sock)

    # ---- the workers: one connection at a time each, from request to close --

    @micropython.native
    async def _work(self, i):
        """Worker i, for the server's life: it sleeps until _admit gives it a
        connection (self._jobs[i], a handshake carrier), serves it from
        request to close, and sleeps again. One coroutine per worker, made
        once: a connection costs no task, no coroutine and no frame of its
        own. Its `finally` is the only place a connection's socket is
        closed and its slot returned."""
        stats = self.stats
        jobs = self._jobs
        while True:
            pend = jobs[i]
            if pend is None:
                if self._stopped:
                    return
                self._parked[i] = 1
                try:
                    await aio.park()
                except asyncio.CancelledError:
                    return
                continue
            stats.tasks += 1
            slot = None
            ws = None
            req = None
            try:
                try:
                    # The request head, read into the carrier's buffer.
                    while True:
                        r = self._read_some(pend)
                        if r is None:
                            await wait_readable(pend.sock)  # pyright: ignore[reportArgumentType]
                        elif r:
                            req = pend.req if r > 0 else None
                            break
                    if req is not None:
                        ws = self._upgrade(pend, req)
                    if ws is not None:
                        slot = ws._slot
                        pend.sock = None  # the WebSocket owns the socket now
                        self._release_pending(pend)
                        pend = None
                        # Counted before the 101 goes out: from here every path
                        # closes it through the WebSocket, which counts ws_closed.
                        stats.ws_opened += 1
                        # The handler's run (here, not in a coroutine of its own:
                        # a native coroutine is some 300 B at every connection).
                        try:
                            # The 101, prepared in the tx buffer: a fresh socket
                            # takes it at once, so the waiting write is rarely needed.
                            r = ws._try_write(slot.tx, 0, slot.n101)
                            if r < slot.n101:
                                await ws._write(slot.tx, r, slot.n101)
                            await slot.route[0](ws)
                            r = 0
                        except ConnectionClosed:
                            r = 0
                        except asyncio.CancelledError:
                            r = 1 if slot.aborted else 2
                        except MemoryError as e:
                            # No closing handshake to wait through: close now,
                            # allocating nothing (the `finally` below).
                            stats.memory_errors += 1
                            ws.abort(codec.CLOSE_TRY_AGAIN, "memory")
                            self._log_failure(slot.route[3], e)
                            r = -1
                        except Exception as e:
                            stats.handler_errors += 1
                            self._log_failure(slot.route[3], e)
                            r = 3
                        if r == 0 and slot.aborted:
                            r = 1
                        if r >= 0 and not ws.closed:  # (after the peer's close: closed already)
                            if r == 0:
                                await ws.shutdown(codec.CLOSE_NORMAL, "", "server_close")
                            elif r == 1:
                                await ws.shutdown(
                                    slot.abort_code, slot.abort_reason, slot.abort_why
                                )
                            elif r == 2:
                                await ws.shutdown(codec.CLOSE_GOING_AWAY, "cancelled", "shutdown")
                            else:
                                await ws.shutdown(
                                    codec.CLOSE_INTERNAL_ERROR, "internal error", "handler_error"
                                )
                    elif req is not None:
                        await self._serve_http(pend, req)
                    req = None
                except handshake.HandshakeError as e:
                    setattr(stats, e.counter, getattr(stats, e.counter) + 1)
                    if e.status == 503:  # every slot busy: the prebuilt answer
                        sweep.probe_silent(self)
                        if pend is not None and pend.answered:  # 101 and close 1013, for a browser
                            # RFC 6455 7.1.1: the server closes TCP first, once
                            # the client's close frame is in (the sweep bounds
                            # this wait by handshake_timeout).
                            await wait_readable(pend.sock)  # pyright: ignore[reportArgumentType]
                        else:
                            await self._write_all(pend, self._next_refusal())
                    else:
                        await self._respond(pend, e.status, e.reason, e.extra)
                except asyncio.CancelledError:
                    if pend is not None and pend.expired:
                        if not pend.answered:  # (else it was refused already, and counted)
                            stats.refused_timeout += 1
                        # A request had begun: say why it ends (a preconnect gets nothing).
                        if pend.got:
                            self._answer_pend(pend, self._timeout_answer)
                    elif ws is not None and slot is not None and slot.aborted:
                        ws.abort(slot.abort_code, slot.abort_why)
                except (ConnectionClosed, OSError):
                    pass  # the peer vanished
                except KeyboardInterrupt as e:
                    # Ctrl-C landed while this worker ran: still say goodbye,
                    # then let it stop the server (main.py runs Server.stop()).
                    if ws is not None:
                        ws.abort(codec.CLOSE_GOING_AWAY, "shutdown")
                    raise e
                if pend is not None and pend.answered:
                    await self._linger(pend.sock)
            except MemoryError as e:
                # Whatever ran out (the request, an answer, a close handshake), the
                # way out below allocates nothing, so it cannot fail the same way.
                stats.memory_errors += 1
                if ws is not None:
                    ws.abort(codec.CLOSE_TRY_AGAIN, "memory")
                elif pend is not None and not pend.answered:
                    self._answer_pend(pend, self._refusals[0])
                self._log_failure("connection", e)
            except asyncio.CancelledError:
                pass  # a deadline landed during the linger: the close path below is all that is left
            except Exception as e:
                self._log_failure("connection", e)
            finally:
                # Nothing here allocates or waits: this must finish on a full heap.
                if ws is not None:
                    ws.abort(codec.CLOSE_ABNORMAL, "peer_reset")  # a no-op once closed
                if pend is not None:
                    self._close_socket(pend)
                    self._release_pending(pend)
                if slot is not None:
                    self._release_slot(slot)
                # The worker lives on: drop what it held, so nothing of this
                # connection stays reachable from its frame.
                ws = slot = pend = req = None
                jobs[i] = None
                stats.tasks -= 1

    @micropython.native  # per read: no heap frame
    def _read_some(self, pend):
        """Read what has arrived of the request head into the carrier's
        buffer: 1 when the head is whole (parsed into pend.req), None to wait
        for more, -1 when the client left first."""
        mv = pend.view
        n = pend.got
        try:
            # (Nearly every request arrives in its first read: no slice for it.)
            r = pend.sock.readinto(mv[n:] if n else mv)  # pyright: ignore[reportOptionalMemberAccess]
        except OSError:
            return -1
        if r is None:
            return None
        if r == 0:
            return -1  # closed before a whole request arrived
        n += r
        pend.got = n
        buf = pend.buf
        end = handshake.find_end(buf, n)
        if end >= 0:
            pend.rx_extra = n - end
            pend.req.parse(end, self._paths)
            return 1
        if n >= len(mv):  # one limit whichever buffer holds the request (a slot's is bigger)
            # 414 while the request line itself has not ended, else 431.
            nl = buf.find(b"\n", handshake.skip_empty_lines(buf, n), n)
            raise handshake.HandshakeError(431 if nl >= 0 else 414, "request head over request_max")
        return None

    @micropython.native
    def _log_failure(self, where, e):
        """Log an error or an out-of-memory; a log line that cannot be built
        is dropped and counted, never raised."""
        try:
            if isinstance(e, MemoryError):  # "... allocating N bytes": the size that failed
                self.log.warn("%s: %s (%d B free)", where, e, gc.mem_free())
            else:
                self.log.error("%s: %r", where, e)
        except MemoryError:
            self.log.suppressed += 1

    @micropython.native  # per connection: no heap frame
    def _upgrade(self, pend, req):
        """Check a WebSocket upgrade and prepare its 101 in the slot's tx buffer.

        Returns None for a plain HTTP request, else the slot's WebSocket
        (with its handler and the 101's length); HandshakeError(503) when
        every slot is busy. A function of its own so the request's
        temporaries are garbage before the handler starts.
        """
        route = self._ws_routes.get(req.path)
        if route is None and req.path in self._http_routes:
            return None  # a page asked for with Upgrade: serve the page (RFC 9110 7.8)
        if not req.is_upgrade():
            return None
        if route is None:
            raise handshake.HandshakeError(404, "no WebSocket at this path")
        accept_key = handshake.check_upgrade(req)
        handshake.check_origin(req, self._origins)
        access = self._access
        now = aio.now()
        given = access.check_token(req, pend.addr, now) if access is not None else 0
        protocols = route[1]
        accept = route[2]
        if accept is not None:
            status = accept(req)
            if status:
                raise handshake.HandshakeError(status, "refused by the application")
        chosen = handshake.choose_subprotocol(req, protocols, route[4]) if protocols else None
        if chosen is None and given == 2:
            # A browser that offered subprotocols must get one of them back.
            chosen = access.protocol.decode()  # pyright: ignore[reportOptionalMemberAccess]
        slot = self._take_slot(pend) if self._within_share(pend.addr, now) else None
        if slot is None:
            if self._free_slot() is None:
                counter = "refused_full"
                self._share_out(pend.addr, now)
            else:
                counter = "refused_share"
            if self.config.browser_refusal and req.header_count(b"origin"):
                # A browser: a page can read a close code, not a 503. The
                # request is parsed, so its buffer holds the answer, which a
                # fresh socket takes whole (pend.answered tells the caller).
                n = handshake.write_accept(pend.buf, accept_key, None)
                n = handshake.copy_into(pend.buf, n, self._next_refusal(_CLOSES))
                self._write_now(pend, pend.buf, 0, n)
            raise handshake.HandshakeError(503, "every slot busy", b"", counter)
        try:
            return self._prepare(slot, pend, req, chosen, route, accept_key)
        except BaseException as e:  # (native code has no bare re-raise)
            self._release_slot(slot)  # taken but never handed over
            raise e

    @micropython.native  # per connection: no heap frame
    def _prepare(self, slot, pend, req, chosen, route, accept_key):
        slot.sock = pend.sock
        slot.addr = pend.addr
        slot.route = route
        slot.query = req.query
        slot.subprotocol = chosen
        ws = WebSocket(slot)
        slot.ws = ws
        slot.last_rx = slot.last_message = aio.now()
        # A view: an oversized answer raises instead of growing the buffer.
        n = handshake.write_accept(slot.tx_mv, accept_key, chosen)
        # Bytes the client sent right behind its request (its first frames)
        # move to the slot before the request buffer is given back.
        extra = pend.rx_extra
        if extra:
            # RFC 6455 4.1 has the client wait for the 101; what fits in the
            # read buffer is kept anyway, more is refused (never grown into).
            if extra > len(slot.rx):
                raise handshake.HandshakeError(400, "frames sent before the handshake was answered")
            slot.rx[0:extra] = pend.buf[req.end : req.end + extra]
            slot.rx_end = extra
        slot.n101 = n
        return ws

    @micropython.native
    def _free_slot(self):
        for slot in self.slots:
            if slot.task is None and not slot.reserved:
                return slot
        return None

    @micropython.native
    def _free_pending(self):
        for p in self.pending:
            if p.sock is None and p.task is None:
                return p
        # The pool is busy: read this request in a free slot's buffer instead.
        slot = self._free_slot()
        if slot is not None and slot.pending is not None:
            slot.reserved = True
            return slot.pending
        return None

    @micropython.native
    def _held_by(self, key):
        """WebSocket slots held by the client address `key`."""
        n = 0
        for slot in self.slots:
            if slot.ws is not None and address_key(slot.addr) == key:
                n += 1
        return n

    @micropython.native
    def _within_share(self, addr, now):
        """May the client at `addr` take one more slot now? Always while no
        other address waits; else only below its share."""
        cap = self._share
        key = address_key(addr)
        if not cap or key == self._waiter or self._held_by(key) < cap:
            return True
        if self._contended and time.ticks_diff(self._contended, now) > 0:
            return False
        self._contended = 0
        return True

    @micropython.native
    def _share_out(self, addr, now):
        """A client was refused a slot. For a while, no address may take
        more than its share; an address holding more than its share (it
        took them while nobody else knocked) gives up its least active
        slot, closed with 1013 and the delay, so the retry finds it free."""
        # Long enough for a refused client to come back (Retry-After + jitter).
        self._contended = time.ticks_add(now, (self.config.retry_after + 3) * 2000) or 1
        key = address_key(addr)
        self._waiter = key
        cap = self._share
        if not cap:
            return
        victim = None
        for slot in self.slots:
            if slot.ws is None or slot.aborted:
                continue
            k = address_key(slot.addr)
            if (
                k != key
                and self._held_by(k) > cap
                and (victim is None or time.ticks_diff(slot.last_message, victim.last_message) < 0)
            ):
                victim = slot
        if victim is not None:
            retry = "retry=%d" % (self.config.retry_after * 1000)
            sweep.abort(victim, codec.CLOSE_TRY_AGAIN, retry, "fair_share")

    @micropython.native
    def _take_slot(self, pend):
        """A slot for pend's connection: the one whose buffer holds its request,
        else any free one. Owned (task set) from this instant, so every path
        out of _connection gives it back. A slot whose buffer holds the request
        stays reserved until the request is done with (_release_pending): if
        the upgrade fails, the refusal is still answered through that buffer."""
        slot = pend.slot
        if slot is None:
            slot = self._free_slot()
            if slot is None:
                return None
        slot.task = pend.task
        stats = self.stats
        stats.slots_in_use += 1
        if stats.slots_in_use > stats.slots_peak:
            stats.slots_peak = stats.slots_in_use
        return slot

    @micropython.native
    def _release_slot(self, slot):
        if slot.task is None:
            return
        slot.clear()
        self.stats.slots_in_use -= 1

    @micropython.native
    def _release_pending(self, pend):
        if pend.task is None and pend.sock is None and pend.addr is None:
            return
        if pend.slot is not None:
            pend.slot.reserved = False
        pend.clear()
        self.stats.handshakes_in_use -= 1

    # ---- plain HTTP --------------------------------------------------------

    @micropython.native
    async def _serve_http(self, pend, req):
        """A plain request: a page, /stats, or the error that fits. Its errors
        count as http_errors, not as refused WebSocket clients (a browser's
        /favicon.ico 404 is no refusal)."""
        method = req.method
        path = req.path
        status = 200
        extra = b""
        try:
            if path in self._ws_routes:
                raise handshake.HandshakeError(
                    426,
                    "this path speaks WebSocket only",
                    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
                )
            route = self._http_routes.get(path)
            if route is None:
                raise handshake.HandshakeError(404, "not found")
            if method not in ("GET", "HEAD"):
                raise handshake.HandshakeError(405, "only GET and HEAD", b"Allow: GET, HEAD\r\n")
            try:
                answer = route(req)
                status, ctype, body = answer[0], answer[1], answer[2]
                if len(answer) > 3:
                    extra = answer[3]
            except (handshake.HandshakeError, MemoryError) as e:
                raise e
            except Exception as e:
                self._log_failure(path, e)
                raise handshake.HandshakeError(500, "the page failed")
        except handshake.HandshakeError as e:
            self.stats.http_errors += 1
            await self._respond(pend, e.status, e.reason, e.extra)
            return
        self.stats.http_served += 1
        await self._respond(pend, status, body, extra, ctype, method == "HEAD")

    @micropython.native
    def stats_page(self, req):
        """Route handler for the live numbers: server.route("/stats", server.stats_page).
        `/stats?probe=0` leaves out the largest-free-block probe (reported as
        -1): its allocations vary with the heap, and a benchmark or test that
        takes differences of mem_total wants a report of constant cost."""
        self.stats.probe_next = req.query != "probe=0"
        return 200, "application/json", self.stats

    @micropython.native
    async def _respond(self, pend, status, body, extra=b"", ctype="text/plain", head_only=False):
        """Answer and let the connection close. `body` is str, bytes, the
        server's Stats (the live report), or an iterable of str/bytes pieces;
        all but bytes are streamed through the request buffer without a
        Content-Length (the close ends them), so a long answer never needs
        one long allocation."""
        if pend.sock is None:
            return
        if body is self.stats:
            await self._respond_stats(pend, head_only)
            return
        if isinstance(body, str):
            body = (body + "\n").encode() if ctype == "text/plain" else body.encode()
        if isinstance(body, (bytes, bytearray)):
            length = "Content-Length: %d\r\n" % len(body)
        else:
            length = ""
        head = (
            handshake.RESPONSE_HEAD
            % (
                status,
                handshake.STATUS.get(status, "Error"),
                ctype,
                length,
                extra.decode()
                if b"Cache-Control:" in extra
                else handshake.NO_STORE + extra.decode(),
            )
        ).encode()
        await self._write_all(pend, head, len(head))
        if head_only:
            return
        if isinstance(body, (bytes, bytearray)):
            await self._write_all(pend, body, len(body))
            return
        buf = pend.buf  # the request is parsed: its buffer is free for the answer
        n = 0
        for piece in body:
            if isinstance(piece, str):
                piece = piece.encode()
            if n + len(piece) > len(buf):
                await self._write_all(pend, buf, n)
                n = 0
                if len(piece) > len(buf):  # never grow the buffer: send it as it is
                    await self._write_all(pend, piece, len(piece))
                    continue
            buf[n : n + len(piece)] = piece
            n += len(piece)
        await self._write_all(pend, buf, n)

    @micropython.native
    async def _respond_stats(self, pend, head_only):
        """The live report, head and body rendered into the request buffer
        (parsed, so free) piece by piece and written as it fills. Nothing
        allocates until the socket is full: on a heap that has run out the
        answer is whole JSON or, before its first byte, a 503."""
        stats = self.stats
        buf = pend.buf
        n = handshake.copy_into(buf, 0, _STATS_HEAD)
        item = 0
        while item < ITEMS and not head_only:
            m = stats.render(buf, n, item)
            if m >= 0:
                n = m
                item += 1
                continue
            off = self._write_now(pend, buf, 0, n)
            if off < n:
                await self._write_all(pend, buf, n, off)
            n = 0
        off = self._write_now(pend, buf, 0, n)
        if off < n:
            await self._write_all(pend, buf, n, off)

    @micropython.native  # per connection: no heap frame
    def _write_now(self, pend, data, off, end):
        """Write data[off:end] as far as the socket takes it now; the new offset."""
        sock = pend.sock
        while off < end:
            n = sock.write(data, off, end - off)
            if not n:
                break
            pend.answered = True
            off += n
        return off

    @micropython.native  # per connection: no heap frame
    def _answer_now(self, sock, data):
        """A prebuilt answer (503, 408) if the socket takes it at once; never
        waits or allocates (it runs after a MemoryError, from a cancelled
        task, and at accept)."""
        self._discard(sock)
        try:
            sock.write(data)
        except OSError:
            pass

    @micropython.native
    def _answer_pend(self, pend, data):
        if pend.sock is not None and not pend.answered:
            pend.answered = True
            self._answer_now(pend.sock, data)

    @micropython.native
    async def _write_all(self, pend, data, end=-1, off=0):
        """Write data[off:end] to pend's socket, waiting while it is full.
        pend.answered from the first byte out: after a failure from then on
        the client has a partial answer, and must not get a second one."""
        sock = pend.sock
        if end < 0:
            end = len(data)
        while off < end:
            n = sock.write(data, off, end - off)  # offsets, not a memoryview slice per write
            if not n:
                await wait_writable(sock)
                continue
            pend.answered = True
            off += n

    @micropython.native  # per connection: no heap frame
    def _discard(self, sock):
        # Unread input makes close() send RST, which can destroy the response
        # in flight; read what has arrived first. True if anything was there.
        got = False
        for _ in range(4):
            try:
                if not sock.readinto(_SCRATCH):
                    return got
            except OSError:
                return got
            got = True
        return got

    @micropython.native
    async def _linger(self, sock):
        """Before closing after a response: if the client is still sending (a
        refused body, an oversized head), read and drop it until it pauses, so
        the response is not destroyed by an RST. Bounded in time and bytes.
        (Polled rather than wait_for: no task, and no extra asyncio module
        loaded in the middle of the heap on first use.)"""
        if sock is None or not self._discard(sock):
            return
        quiet = 0
        for _ in range(_LINGER_MS // _LINGER_STEP_MS):
            await asyncio.sleep_ms(_LINGER_STEP_MS)
            if self._discard(sock):
                quiet = 0
            else:
                quiet += _LINGER_STEP_MS
                if quiet >= _LINGER_IDLE_MS:
                    return

    # ---- application helpers -----------------------------------------------

    @staticmethod
    @micropython.native
    def remote_of(addr):
        """(ip, port) from what accept() returned: ESP32 gives the tuple, the
        unix port a raw sockaddr to decode."""
        if isinstance(addr, tuple):
            return addr
        try:
            fam, ip, port = socket.sockaddr(addr)  # pyright: ignore[reportAttributeAccessIssue]
            return (socket.inet_ntop(fam, ip), port)  # pyright: ignore[reportAttributeAccessIssue]
        except Exception:
            return ("?", 0)

    @property
    def broadcast_max(self):
        """Largest message broadcast() takes: one frame in one tx buffer."""
        return self.config.tx_size - 10

    @micropython.native
    def broadcast(self, data, text=None, path=None):
        """Send one message to every open connection (at `path`, if given)
        without waiting on any of them.

        A connection still busy with an earlier send is skipped and counted
        in stats.send_drops: a slow reader misses messages instead of making
        everyone wait, and one that stops reading altogether is closed by
        send_timeout. Returns (sent, dropped). At most broadcast_max bytes.
        """
        op = message_opcode(data, text)
        if isinstance(data, str):
            data = data.encode()
        n = len(data)
        if n > self.broadcast_max:
            raise ValueError("broadcast message over broadcast_max bytes")
        sent = 0
        dropped = 0
        for slot in self.slots:
            ws = slot.ws
            if ws is None or not ws.open or (path is not None and ws.path != path):
                continue
            if ws.send_nowait(op, data, n):
                sent += 1
            else:
                dropped += 1
        self.stats.msgs_out += sent
        self.stats.send_drops += dropped
        return sent, dropped


_SCRATCH = bytearray(256)  # shared sink for discarded input; its content is never read


@micropython.native
def address_key(addr):
    """A key for the client's address without allocating: the address string
    a board's accept() gives (port dropped), or on the unix port the raw
    sockaddr's IP folded into an int (IPv4 exactly)."""
    if isinstance(addr, tuple):
        return addr[0]
    n = len(addr)
    if n < 8:
        return 0
    if addr[0] == 2 or addr[1] == 2:  # AF_INET (either byte order)
        return (addr[4] << 24) | (addr[5] << 16) | (addr[6] << 8) | addr[7]
    k = 0
    i = 8
    while i < n and i < 24:  # sockaddr_in6: the address is bytes 8..23
        k = ((k << 5) ^ (k >> 25) ^ addr[i]) & 0x3FFFFFFF
        i += 1
    return k
