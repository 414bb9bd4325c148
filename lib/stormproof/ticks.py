"""Millisecond timestamps for the slot table's deadline fields."""

import time


def now() -> int:
    """time.ticks_ms(), never 0: a field holding 0 means "not started"."""
    return time.ticks_ms() | 1  # pyright: ignore[reportOperatorIssue]


def since(t: int) -> int:
    """Milliseconds from t until now, correct across the tick counter's wrap."""
    return time.ticks_diff(time.ticks_ms(), t)
