"""Byte kernels: client-to-server unmasking (RFC 6455 section 5.3) and plain
copies, never a per-byte Python loop and never a temporary object."""

import micropython

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False


@micropython.viper
def _unmask_copy(dst: ptr8, doff: int, src: ptr8, soff: int, n: int, key: ptr8, phase: int) -> int:
    """dst[doff:doff+n] = src[soff:soff+n] XOR the 4-byte key, starting at key
    byte `phase`. Returns the phase for the next byte of the same frame.
    dst and src may be the same buffer at the same offset (in place).

    Called directly, without a Python wrapper, and with as few arguments as
    will do: MicroPython allocates a bytecode function's frame on the heap
    when its arguments, locals and stack pass 11 words.
    """
    i = 0
    while i < n:
        dst[doff + i] = src[soff + i] ^ key[(phase + i) & 3]
        i += 1
    return (phase + n) & 3


@micropython.viper
def _copy(dst: ptr8, doff: int, src: ptr8, soff: int, n: int):
    """dst[doff:doff+n] = src[soff:soff+n], for any buffer, str included,
    without the slice objects and copies a Python slice makes."""
    i = 0
    while i < n:
        dst[doff + i] = src[soff + i]
        i += 1


@micropython.viper
def _set_view(view, off: int, n: int, index: int):
    """Point a memoryview at view[off:off + n] of its own buffer, in place:
    its `len` field (32-bit word `index` of the object) and its offset (the
    bits above the typecode's 8, two words before). Used only once
    startup.view_len_index() has checked it works on this build."""
    p = ptr32(id(view))  # noqa: F821 (a viper built-in)
    p[index - 2] = (off << 8) | (p[index - 2] & 0xFF)
    p[index] = n


if TYPE_CHECKING:
    # What callers pass: any buffer. (Viper's ptr8 takes all of them.)
    def unmask_copy(
        dst: bytearray, doff: int, src, soff: int, n: int, key: bytearray, phase: int
    ) -> int: ...

    def copy(dst: bytearray, doff: int, src, soff: int, n: int) -> None: ...

    def set_view(view: memoryview, off: int, n: int, index: int) -> None: ...

else:
    unmask_copy = _unmask_copy
    copy = _copy
    set_view = _set_view
