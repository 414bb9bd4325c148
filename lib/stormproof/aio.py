"""Scheduling glue: waiting on raw sockets, and millisecond deadlines.

This is the only place that reaches into MicroPython's asyncio internals.
Waiting on a raw socket through the scheduler's poller is what asyncio's own
Stream does; doing it directly lets reads land in preallocated buffers
(readinto) and lets a write be tried before any wait is set up.
"""

import asyncio
import time

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

_core = asyncio.core  # pyright: ignore[reportAttributeAccessIssue]


def _wait_read(sock):
    yield _core._io_queue.queue_read(sock)


def _wait_write(sock):
    yield _core._io_queue.queue_write(sock)


def try_acquire(lock):
    """Take an asyncio.Lock if it is free, without awaiting; True if taken.
    What `await lock.acquire()` does on a free lock, minus the coroutine."""
    if lock.state:  # pyright: ignore[reportAttributeAccessIssue]
        return False
    lock.state = 1  # pyright: ignore[reportAttributeAccessIssue]
    return True


def forget(sock):
    """Scrub the scheduler's memory of a closed socket.

    The socket map is a dict; deleting a key leaves the old value in the
    table slot, where the (conservative) collector still sees it. That value
    names the last task that waited on the socket, so a finished
    connection's task and frame would stay alive until the slot is reused.
    Storing None under the same key lands in that same slot; deleting it
    again leaves nothing behind.
    """
    m = _core._io_queue.map
    k = id(sock)
    if k not in m:
        m[k] = None
        del m[k]


def presize(n):
    """Grow the scheduler's socket map and poller to n sockets now.

    Both grow on demand and never shrink. Left alone, they would grow
    during the first storm, in the middle of the free heap, and split it
    for good; grown at start they sit below the slot tables instead.
    """
    import select
    import socket

    q = _core._io_queue
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


if TYPE_CHECKING:

    async def wait_readable(sock) -> None: ...

    async def wait_writable(sock) -> None: ...

else:
    # Generator functions, awaited like coroutines: one small object per wait.
    wait_readable = _wait_read
    wait_writable = _wait_write


def now() -> int:
    """time.ticks_ms(), never 0: a deadline field holding 0 means "not started"."""
    return time.ticks_ms() | 1  # pyright: ignore[reportOperatorIssue]
