"""Incremental UTF-8 validation (RFC 3629), for text frames split anywhere.

A DFA in the style of Hoehrmann's decoder: 256 byte classes, then a
transition row per state. It rejects overlongs, surrogates (U+D800-DFFF)
and code points above U+10FFFF, which MicroPython's own decoder accepts.
The state survives between calls, so a message can be checked fragment by
fragment and fails on the first invalid byte (RFC 6455 section 8.1).
"""

import micropython
from micropython import const

ACCEPT = const(0)  # between characters: a message may end here
REJECT = const(1)  # sticky: the input is not UTF-8

# The other states count the continuation bytes still owed.
_NEED1 = const(2)
_NEED2 = const(3)
_NEED3 = const(4)
_E0 = const(5)  # after E0: A0-BF, else the character is overlong
_ED = const(6)  # after ED: 80-9F, else it is a surrogate
_F0 = const(7)  # after F0: 90-BF, else overlong
_F4 = const(8)  # after F4: 80-8F, else above U+10FFFF
_STATES = const(9)
_CLASSES = const(12)


def _build():
    # Byte classes: 0 ASCII, 1 80-8F, 2 90-9F, 3 A0-BF, 4 never valid,
    # 5 C2-DF, 6 E0, 7 E1-EC/EE-EF, 8 ED, 9 F0, 10 F1-F3, 11 F4.
    t = bytearray(256 + _STATES * _CLASSES)
    for b in range(256):
        if b < 0x80:
            c = 0
        elif b < 0x90:
            c = 1
        elif b < 0xA0:
            c = 2
        elif b < 0xC0:
            c = 3
        elif b < 0xC2 or b > 0xF4:
            c = 4
        elif b < 0xE0:
            c = 5
        elif b == 0xE0:
            c = 6
        elif b == 0xED:
            c = 8
        elif b < 0xF0:
            c = 7
        elif b == 0xF0:
            c = 9
        elif b < 0xF4:
            c = 10
        else:
            c = 11
        t[b] = c
    for i in range(256, len(t)):
        t[i] = REJECT

    def go(state, classes, to):
        for c in classes:
            t[256 + state * _CLASSES + c] = to

    go(ACCEPT, (0,), ACCEPT)
    go(ACCEPT, (5,), _NEED1)
    go(ACCEPT, (6,), _E0)
    go(ACCEPT, (7,), _NEED2)
    go(ACCEPT, (8,), _ED)
    go(ACCEPT, (9,), _F0)
    go(ACCEPT, (10,), _NEED3)
    go(ACCEPT, (11,), _F4)
    go(_NEED1, (1, 2, 3), ACCEPT)
    go(_NEED2, (1, 2, 3), _NEED1)
    go(_NEED3, (1, 2, 3), _NEED2)
    go(_E0, (3,), _NEED1)
    go(_ED, (1, 2), _NEED1)
    go(_F0, (2, 3), _NEED2)
    go(_F4, (1,), _NEED2)
    return bytes(t)


_TABLE = _build()
del _build  # needed once: its code leaves RAM


@micropython.viper
def _scan(buf: ptr8, start: int, end: int, state: int, table: ptr8) -> int:
    i = start
    while i < end:
        state = table[256 + state * 12 + table[buf[i]]]
        if state == 1:
            return 1
        i += 1
    return state


@micropython.native
def scan(buf, start, end, state):
    """Advance `state` over buf[start:end]; REJECT as soon as a byte is invalid."""
    return int(_scan(buf, start, end, state, _TABLE))  # pyright: ignore[reportArgumentType]
