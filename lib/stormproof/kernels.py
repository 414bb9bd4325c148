"""Byte kernels: client-to-server unmasking (RFC 6455 section 5.3), plain
copies and the opening handshake's SHA-1, never a per-byte Python loop and
never a temporary object."""

from array import array

import micropython


@micropython.viper
def unmask_copy(dst: ptr8, doff: int, src: ptr8, soff: int, n: int, key: ptr8, phase: int) -> int:
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
def copy(dst: ptr8, doff: int, src: ptr8, soff: int, n: int):
    """dst[doff:doff+n] = src[soff:soff+n], for any buffer, str included,
    without the slice objects and copies a Python slice makes."""
    i = 0
    while i < n:
        dst[doff + i] = src[soff + i]
        i += 1


@micropython.viper
def set_view(view, off: int, n: int, index: int):
    """Point a memoryview at view[off:off + n] of its own buffer, in place:
    its `len` field (32-bit word `index` of the object) and its offset (the
    bits above the typecode's 8, two words before). Used only once
    startup.view_len_index() has checked it works on this build."""
    p = ptr32(id(view))
    p[index - 2] = (off << 8) | (p[index - 2] & 0xFF)
    p[index] = n


# SHA-1's round constants K0..K3 and initial state H0..H4 (FIPS 180-4), then
# its work: the 16-word message schedule, one word through which a sum is
# cut to 32 bits, and the state. One table, because a viper literal above
# 2**30 is not a machine word on every port.
_SHA1 = array("I", (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6,
                    0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0) + (0,) * 22)  # fmt: skip


@micropython.viper
def sha1(out: ptr8, msg: ptr8, n: int):
    """out[0:20] = SHA-1 of msg[0:n] (FIPS 180-4), padding included, with no
    object made: hashlib makes a hash object and a digest at every
    handshake. out may be msg.

    Written for 32-bit words on 32- and 64-bit ports alike: a sum is cut to
    32 bits by a store to a 32-bit word before anything shifts it right, and
    the higher bits a 64-bit port carries elsewhere are never shifted down
    into the result. startup checks the kernel against RFC 6455's own
    example and falls back to hashlib if a build disagrees."""
    k = ptr32(_SHA1)
    w = ptr32(int(k) + 36)
    i = 0
    while i < 5:
        w[17 + i] = k[4 + i]
        i += 1
    end = (((n + 8) >> 6) + 1) << 6  # the padded length: 0x80, zeros, 64-bit bit count
    p = 0
    while p < end:
        a = uint(w[17])
        b = uint(w[18])
        c = uint(w[19])
        d = uint(w[20])
        e = uint(w[21])
        t = 0
        while t < 80:
            j = t & 15
            if t < 16:
                q = p + t * 4
                x = uint(0)
                while q < p + t * 4 + 4:
                    if q < n:
                        v = msg[q]
                    elif q == n:
                        v = 0x80
                    elif q >= end - 4:  # the bit count's low 32 bits
                        v = (n << 3) >> ((end - 1 - q) << 3)
                    else:
                        v = 0
                    x = (x << 8) | uint(v & 0xFF)
                    q += 1
                w[j] = x
            else:
                w[16] = (
                    uint(w[(t - 3) & 15])
                    ^ uint(w[(t - 8) & 15])
                    ^ uint(w[(t - 14) & 15])
                    ^ uint(w[j])
                )
                x = uint(w[16])
                w[j] = (x << 1) | (x >> 31)
            if t < 20:
                f = (d ^ (b & (c ^ d))) + uint(k[0])
            elif t < 40:
                f = (b ^ c ^ d) + uint(k[1])
            elif t < 60:
                f = ((b & c) | (d & (b | c))) + uint(k[2])
            else:
                f = (b ^ c ^ d) + uint(k[3])
            w[16] = ((a << 5) | (a >> 27)) + f + e + uint(w[j])
            e = d
            d = c
            c = (b << 30) | (b >> 2)
            b = a
            a = uint(w[16])  # the sum, cut to 32 bits
            t += 1
        w[17] = uint(w[17]) + a
        w[18] = uint(w[18]) + b
        w[19] = uint(w[19]) + c
        w[20] = uint(w[20]) + d
        w[21] = uint(w[21]) + e
        p += 64
    i = 0
    while i < 5:
        x = uint(w[17 + i])
        out[i * 4] = x >> 24
        out[i * 4 + 1] = x >> 16
        out[i * 4 + 2] = x >> 8
        out[i * 4 + 3] = x
        i += 1
