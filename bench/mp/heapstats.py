"""Heap figures for the benchmark's own apps (MicroPython).

snapshot(): what Stormproof's /stats reports, measured the same way: after
gc.collect(), mem_free, mem_alloc, the largest bytearray the heap can hand out
(found by trying) and mem_total (bytes ever allocated; unix port).

mem(): mem_total alone, read first thing. The benchmark takes differences of
it around a workload; unlike snapshot() it allocates the same number of bytes
every time (the largest-block probe allocates more or less depending on the
heap's state), so those differences are exact.
"""

import gc

import micropython


def largest_free_block(cap=65536):
    lo = 0
    hi = min(gc.mem_free(), cap)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            b = bytearray(mid)
            del b
            lo = mid
        except MemoryError:
            hi = mid - 1
    return lo


def snapshot():
    gc.collect()
    largest = largest_free_block()
    gc.collect()
    free = gc.mem_free()
    alloc = gc.mem_alloc()
    total = micropython.mem_total()
    return (
        '{"mem_free": '
        + str(free)
        + ', "mem_alloc": '
        + str(alloc)
        + ', "largest_free": '
        + str(largest)
        + ', "mem_total": '
        + str(total)
        + "}"
    )


def mem():
    total = micropython.mem_total()
    return '{"mem_total": ' + str(total) + "}"
