"""The socket layer's own allocation per connection (MicroPython).

Accepts connections and closes them, set up as Stormproof sets up its own
(non-blocking, TCP_NODELAY), and prints the bytes mem_total grew per
accept: what the socket object and accept's address cost, which the
issue's per-cycle bound does not count. argv-free: BENCH_PORT is the port,
BENCH_N the number of connections measured (after 5 of warm-up).
"""

import os
import socket

import micropython

port = int(os.getenv("BENCH_PORT"))
n = int(os.getenv("BENCH_N") or "200")
lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
lsock.listen(8)
print("ready")


def one():
    c, addr = lsock.accept()
    c.setblocking(False)
    c.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (Linux numbers)
    c.close()


for _ in range(5):
    one()
t0 = micropython.mem_total()
t1 = micropython.mem_total()  # what reading it costs
t2 = micropython.mem_total()
for _ in range(n):
    one()
spent = micropython.mem_total() - t2 - (t1 - t0)
print("per_accept", spent / n)
