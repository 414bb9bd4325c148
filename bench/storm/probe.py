"""The server's own view: /stats fetched over plain HTTP, as a time series."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter

SERIES_KEYS = (
    "mem_free",
    "largest_free",
    "slots_in_use",
    "sockets_open",
    "accepted",
    "refused_full",
    "memory_errors",
)
BODY_MAX = 256 * 1024


class StatsError(Exception):
    pass


class Probe:
    """Fetches /stats; remembers every answer as a sample of the series."""

    def __init__(self, host: str, port: int, path: str = "/stats", timeout: float = 5.0):
        self.host, self.port, self.path, self.timeout = host, port, path, timeout
        self.t0 = time.monotonic()
        self.series: list[dict] = []
        self.failures: Counter = Counter()
        self.latest: dict | None = None
        self.phase = "warmup"
        self.broken: list[dict] = []  # bodies of 200 answers that were not JSON

    async def _get(self) -> dict:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            data = await reader.read(BODY_MAX)
            for _ in range(64):  # the server streams its JSON in pieces, then closes
                more = await reader.read(BODY_MAX)
                if not more:
                    break
                data += more
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/") else b"?"
        if status != b"200":
            raise StatsError(f"HTTP {status.decode(errors='replace')}")
        try:
            return json.loads(body)
        except ValueError:
            # A 200 with broken JSON means the server gave up mid-answer: keep
            # the evidence (how far it got) for the report.
            if len(self.broken) < 10:
                self.broken.append({"t": round(time.monotonic() - self.t0, 3),
                                    "bytes": len(body), "tail": body[-120:].decode(errors="replace")})  # fmt: skip
            raise StatsError("truncated JSON") from None

    async def fetch(self) -> dict:
        """One /stats answer, recorded; raises StatsError (counted) on any failure."""
        try:
            st = await asyncio.wait_for(self._get(), self.timeout)
        except (OSError, TimeoutError, IndexError, StatsError) as e:
            # A 503 here is the handshake pool being full: admission, not death.
            why = str(e) if isinstance(e, StatsError) else type(e).__name__
            self.failures[why] += 1
            raise StatsError(why) from None
        self.latest = st
        sample = {"t": round(time.monotonic() - self.t0, 3), "phase": self.phase}
        sample.update({k: st.get(k) for k in SERIES_KEYS})
        self.series.append(sample)
        return st

    async def fetch_retry(self, tries: int = 5, pause: float = 1.0) -> dict | None:
        for i in range(tries):
            try:
                return await self.fetch()
            except StatsError:
                if i < tries - 1:
                    await asyncio.sleep(pause)
        return None

    async def poll(self, stop: asyncio.Event, interval: float = 0.5, limit: int = 100_000):
        """Sample every `interval` until stopped; a failed poll is counted, not fatal."""
        start = time.monotonic()
        for n in range(1, limit + 1):
            with contextlib.suppress(StatsError):
                await self.fetch()
            # Sleep to the next tick of a fixed grid so slow polls do not drift.
            wait = start + n * interval - time.monotonic()
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, wait))
                return
            except TimeoutError:
                pass

    async def settle(self, timeout: float) -> tuple[bool, float]:
        """Wait until no slot is in use; (settled, seconds it took)."""
        start = time.monotonic()
        misses = 0
        for _ in range(int(timeout / 0.25) + 1):
            try:
                if (await self.fetch())["slots_in_use"] == 0:
                    return True, time.monotonic() - start
                misses = 0
            except StatsError:
                misses += 1
                if misses >= 20:  # not answering for seconds: dead, not busy
                    break
            if time.monotonic() - start > timeout:
                break
            await asyncio.sleep(0.25)
        return False, time.monotonic() - start
