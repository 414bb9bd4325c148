"""The only place that reaches into MicroPython's asyncio internals.

Waiting on a raw socket through the scheduler's poller is what asyncio's own
Stream does; doing it directly lets reads land in preallocated buffers
(readinto) and lets a write be tried before any wait is set up.
"""

import asyncio

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

_core = asyncio.core  # pyright: ignore[reportAttributeAccessIssue]


def _wait_read(sock):
    yield _core._io_queue.queue_read(sock)


def _wait_write(sock):
    yield _core._io_queue.queue_write(sock)


if TYPE_CHECKING:

    async def wait_readable(sock) -> None: ...

    async def wait_writable(sock) -> None: ...

else:
    # Generator functions, awaited like coroutines: one small object per wait.
    wait_readable = _wait_read
    wait_writable = _wait_write
