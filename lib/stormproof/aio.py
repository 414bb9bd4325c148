"""Scheduling glue: waiting on raw sockets, and millisecond deadlines.

This is the only place that reaches into MicroPython's asyncio internals.
Waiting on a raw socket through the scheduler's poller is what asyncio's own
Stream does; doing it directly lets reads land in preallocated buffers
(readinto) and lets a write be tried before any wait is set up. install()
also makes asyncio's own I/O queue stop allocating per wait and per turn of
its loop.
"""

import asyncio
import time

import micropython

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

_core = asyncio.core  # pyright: ignore[reportAttributeAccessIssue]


@micropython.native
def arm_read(sock):
    """Register the running task to be woken when sock is readable; the
    caller then yields (returns None from __next__) to park it."""
    _core._io_queue.queue_read(sock)


@micropython.native
def try_acquire(lock):
    """Take an asyncio.Lock if it is free, without awaiting; True if taken.
    What `await lock.acquire()` does on a free lock, minus the coroutine."""
    if lock.state:  # pyright: ignore[reportAttributeAccessIssue]
        return False
    lock.state = 1  # pyright: ignore[reportAttributeAccessIssue]
    return True


@micropython.native
def forget(sock):
    """Scrub the scheduler's memory of a closed socket.

    The socket map is a dict; deleting a key leaves the old value in the
    table slot, where the (conservative) collector still sees it. That value
    names the last task that waited on the socket, so a finished
    connection's task and frame would stay alive until the slot is reused.
    Storing None under the same key lands in that same slot; deleting it
    again leaves nothing behind.
    """
    q = _core._io_queue
    q.poller.unregister(sock)  # sockets stay registered between waits (see _dequeue)
    m = q.map
    k = id(sock)
    if k not in m:
        m[k] = None
        del m[k]


@micropython.native
def install(n):
    """Make asyncio's I/O queue allocate nothing per wait or per turn of the
    loop, sized for n sockets waited on at once, and grow its socket map and
    poller to n now.

    Stock asyncio makes a 3-item list for each socket it waits on and frees
    it after, and its wait_io_event() has a frame too big for the C stack
    (MicroPython puts a bytecode function's frame on the heap when its
    locals and stack pass 11 words): 144 bytes at every turn of the loop,
    measured on the unix port. The queue's own methods are replaced on the
    instance by the functions below, which keep the same data (the map and
    the poller), so every other asyncio user keeps working.

    The map and the poller grow on demand and never shrink. Left alone,
    they would grow during the first storm, in the middle of the free heap,
    and split it for good; grown at start they sit below the slot tables.
    """
    import select
    import socket

    q = _core._io_queue
    if q.wait_io_event is not _wait_io_event:
        for _ in range(n):
            _spare.append([None, None, None])
        q._enqueue = _enqueue
        q._dequeue = _dequeue
        q.wait_io_event = _wait_io_event
    for i in range(n):
        q.map[-1 - i] = None  # socket ids are positive: these keys never clash
    for i in range(n):
        del q.map[-1 - i]
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.socket())
    except OSError:
        pass  # out of sockets (ESP32 has 10 in all): presize what we could
    for s in socks:
        q.poller.register(s, select.POLLIN)
    for s in socks:
        q.poller.unregister(s)
        s.close()


_spare = []  # map entries [reader, writer, socket] kept for reuse


@micropython.native
def _enqueue(s, idx):
    q = _core._io_queue
    task = _core.cur_task
    sm = q.map.get(id(s))
    if sm is None:
        sm = _spare.pop() if _spare else [None, None, None]
        sm[idx] = task
        sm[2] = s
        q.map[id(s)] = sm
        q.poller.register(s, 1 if idx == 0 else 4)  # POLLIN, POLLOUT
    else:
        sm[idx] = task
        q.poller.modify(s, 5)  # both
    task.data = q  # so Task.cancel() takes it out of the queue


@micropython.native
def _dequeue(s):
    q = _core._io_queue
    sm = q.map.pop(id(s))
    sm[0] = sm[1] = sm[2] = None
    _spare.append(sm)  # returns to the pool it came from: no growth
    # Left registered, waiting for nothing: registering a socket allocates the
    # poller's entry for it (32 B), updating one that is there allocates
    # nothing. forget() unregisters it when it closes.
    q.poller.modify(s, 0)


@micropython.native
def _wait_io_event(dt):
    it = _core._io_queue.poller.ipoll(dt)
    while True:
        ev = next(it, None)
        if ev is None:
            return
        _ready(ev[0], ev[1])


@micropython.native
def _ready(s, ev):
    sm = _core._io_queue.map.get(id(s))
    if sm is None:
        # Hang-up or error on a socket nobody waits on (poll reports those
        # whatever the mask): drop it from the poller, or it would wake the
        # loop at every turn. A later wait registers it again.
        _core._io_queue.poller.unregister(s)
        return
    if ev & ~4 and sm[0] is not None:  # POLLIN, or an error
        _core._task_queue.push(sm[0])
        sm[0] = None
    if ev & ~1 and sm[1] is not None:  # POLLOUT, or an error
        _core._task_queue.push(sm[1])
        sm[1] = None
    if sm[0] is None and sm[1] is None:
        _dequeue(s)
    else:
        _core._io_queue.poller.modify(s, 4 if sm[0] is None else 1)


class _Yield:
    """Awaited, hands control back to the scheduler once, then completes.

    Whoever arms it has already put the task where it will be woken from
    (the I/O queue, or a worker's job); the scheduler re-queues nothing
    by itself, so the task sleeps until then. One object serves every
    wait: it is armed and consumed before any other task runs. (What
    asyncio's sleep_ms does with its SingletonGenerator; a generator per
    wait would be a small allocation every time.)"""

    @micropython.native
    def __init__(self):
        self.armed = False
        self.done = StopIteration()

    def __iter__(self):
        return self

    @micropython.native  # machine code: no traceback entry added to `done` when raised
    def __next__(self):
        if self.armed:
            self.armed = False
            return None
        raise self.done


_YIELD = _Yield()


if TYPE_CHECKING:

    async def wait_readable(sock) -> None: ...

    async def wait_writable(sock) -> None: ...

    async def park() -> None: ...

else:

    @micropython.native
    def wait_readable(sock):
        _core._io_queue.queue_read(sock)
        _YIELD.armed = True
        return _YIELD

    @micropython.native
    def wait_writable(sock):
        _core._io_queue.queue_write(sock)
        _YIELD.armed = True
        return _YIELD

    @micropython.native
    def park():
        """Sleep until wake(task): how an idle worker waits for its next job."""
        _YIELD.armed = True
        return _YIELD


@micropython.native
def wake(task):
    """Make a parked task run (once: it must not be queued already)."""
    _core._task_queue.push(task)


# Awaited, an exhausted iterator completes at once and allocates nothing
# (a coroutine object would be made and thrown away): what a call that has
# already done its work returns.
if TYPE_CHECKING:
    from collections.abc import Awaitable

    DONE: Awaitable[None]
else:
    DONE = iter(())


@micropython.native
def now() -> int:
    """time.ticks_ms(), never 0: a deadline field holding 0 means "not started"."""
    return time.ticks_ms() | 1  # pyright: ignore[reportOperatorIssue]
