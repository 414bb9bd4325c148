"""Client-to-server unmasking (RFC 6455 section 5.3), never a per-byte Python loop."""

import micropython


@micropython.viper
def _unmask_copy(dst: ptr8, doff: int, src: ptr8, soff: int, n: int, key: ptr8, koff: int, phase: int) -> int:
    i = 0
    while i < n:
        dst[doff + i] = src[soff + i] ^ key[koff + ((phase + i) & 3)]
        i += 1
    return (phase + n) & 3


def unmask_copy(dst, doff, src, soff, n, key, koff, phase):
    """dst[doff:doff+n] = src[soff:soff+n] XOR the 4-byte key at key[koff:], starting
    at key byte `phase`. Returns the phase for the next byte of the same frame.
    dst and src may be the same buffer at the same offset (in-place)."""
    return int(_unmask_copy(dst, doff, src, soff, n, key, koff, phase))
