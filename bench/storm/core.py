"""What every scenario shares: the target, the deadline, the rate cap, the tallies."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

LATENCY_SAMPLES = 50_000  # per scenario: enough for p99 of a long soak, bounded memory


@dataclass
class Tally:
    """One scenario's outcomes. `refused` is a 503: admission control doing its
    job. `failed` is anything the server should not have done."""

    attempts: int = 0
    ok: int = 0
    refused: int = 0
    failed: int = 0
    resets: int = 0  # resets the scenario provoked on purpose; counted as ok
    latencies: list[float] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)  # worth knowing, not failures

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))]

    def as_dict(self) -> dict:
        p50, p99 = self.percentile(0.50), self.percentile(0.99)
        return {
            "attempts": self.attempts,
            "ok": self.ok,
            "refused_503": self.refused,
            "failed": self.failed,
            "expected_resets": self.resets,
            "p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "p99_ms": None if p99 is None else round(p99 * 1000, 1),
            "failure_reasons": dict(self.reasons.most_common(20)),
            "notes": dict(self.notes.most_common(20)),
        }


class RateLimiter:
    """Token bucket shared by every worker: at most `rate` new connections a
    second, with up to one second's worth at once so a burst can be a burst."""

    def __init__(self, rate: float):
        self.rate = max(rate, 0.1)
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    async def take(self, deadline: float) -> bool:
        """Wait for one token; False if it would come after the deadline."""
        for _ in range(10_000):
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            wait = (1 - self.tokens) / self.rate
            if now + wait > deadline:
                return False
            # Others may take the token first; the loop re-checks after waking.
            await asyncio.sleep(wait + random.uniform(0, 0.2 / self.rate))
        return False


@dataclass
class Ctx:
    host: str
    port: int
    ws_path: str
    chat_path: str
    deadline: float  # monotonic time when no new cycle may start
    limiter: RateLimiter
    concurrency: int
    io_timeout: float
    hold: float  # longest a halfopen/slowread client stays
    max_message: int = 4096
    slots_total: int = 4
    tallies: dict[str, Tally] = field(default_factory=dict)
    holding: Counter = field(default_factory=Counter)  # scenario -> cycles in flight
    rng: random.Random = field(default_factory=random.Random)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    @property
    def chat_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.chat_path}"

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def tally(self, name: str) -> Tally:
        return self.tallies.setdefault(name, Tally())

    def record(
        self, name: str, outcome: str, t0: float | None = None, why: str = "", latency: float = -1
    ) -> None:
        """outcome: ok (latency since t0, or given), refused (503) or failed (why)."""
        t = self.tally(name)
        t.attempts += 1
        if outcome == "ok":
            t.ok += 1
            if t0 is not None:
                latency = time.monotonic() - t0
            if latency >= 0 and len(t.latencies) < LATENCY_SAMPLES:
                t.latencies.append(latency)
        elif outcome == "refused":
            t.refused += 1
        else:
            t.failed += 1
            t.reasons[why or "unknown"] += 1

    def totals(self) -> tuple[int, int]:
        """(attempts, failed) over every scenario."""
        ts = self.tallies.values()
        return sum(t.attempts for t in ts), sum(t.failed for t in ts)
