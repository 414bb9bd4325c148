# Runs under MicroPython: the handshake's SHA-1 kernel and the accept key it
# makes, against what the test computes with CPython's hashlib.
# stdin, one JSON object a line: {"messages": ["hex", ...], "keys": ["...", ...]}
# stdout: {"digests": [hex of kernels.sha1 of each message],
#          "accept": {"kernel": [...], "hashlib": [...]}: accept_key of each key
#          through the kernel and through startup's hashlib fallback,
#          "kernel_ok": startup's check of the kernel on this build}
import json
import sys

sys.path.insert(0, sys.argv[1])
from stormproof import handshake, kernels, startup  # noqa: E402

for line in sys.stdin:
    req = json.loads(line)
    out = bytearray(20)
    digests = []
    for h in req["messages"]:
        m = bytes.fromhex(h)
        kernels.sha1(out, m, len(m))
        digests.append(bytes(out).hex())
    accept = {}
    for name, fn in (("kernel", kernels.sha1), ("hashlib", startup._hashlib_digest)):
        handshake.digest = fn
        accept[name] = [bytes(handshake.accept_key(k.encode(), 0)).decode() for k in req["keys"]]
    handshake.digest = kernels.sha1
    reply = {"digests": digests, "accept": accept, "kernel_ok": startup.sha1_kernel_ok()}
    print(json.dumps(reply))
