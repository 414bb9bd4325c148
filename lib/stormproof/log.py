"""Levelled logging with a rate limit, so a connection storm cannot flood the console.

MicroPython ships no `logging` module; this is the part a server needs.
Arguments are formatted only when a line is actually printed.
"""

import time

import micropython
from micropython import const

ERROR = const(0)
WARN = const(1)
INFO = const(2)
DEBUG = const(3)
_NAMES = ("E", "W", "I", "D")


class Log:
    @micropython.native
    def __init__(self, level=INFO, per_second=20):
        self.level = level
        self.per_second = per_second
        self._window = time.ticks_ms()
        self._count = 0
        self.suppressed = 0  # total lines dropped by the rate limit

    @micropython.native
    def _emit(self, level, msg, args):
        if level > self.level:
            return
        now = time.ticks_ms()
        if time.ticks_diff(now, self._window) >= 1000:
            if self._count > self.per_second:
                print("[W] log: %d lines suppressed" % (self._count - self.per_second))
            self._window = now
            self._count = 0
        self._count += 1
        if self._count > self.per_second:
            self.suppressed += 1
            return
        try:
            print("[%s] %s" % (_NAMES[level], msg % args if args else msg))
        except Exception:  # a bad format string must not take a connection down
            print("[%s] %s %r" % (_NAMES[level], msg, args))

    @micropython.native
    def error(self, msg, *args):
        self._emit(ERROR, msg, args)

    @micropython.native
    def warn(self, msg, *args):
        self._emit(WARN, msg, args)

    @micropython.native
    def info(self, msg, *args):
        self._emit(INFO, msg, args)

    @micropython.native
    def debug(self, msg, *args):
        self._emit(DEBUG, msg, args)
