"""Storm a Stormproof server the way a crowd of browsers and bad peers would.

    .venv/bin/python -m bench.storm --url ws://192.168.4.1/ws --duration 30 --concurrency 8

Scenarios (mix with --scenarios): reload, burst, backoff, abrupt, halfopen,
slowread, hostile. While they run, /stats is sampled every 0.5 s; at the end a
summary table is printed and storm.json and storm.png are written under --out.
The exit status is 1 if the server died, hit a MemoryError, kept a slot, lost
more free heap than --tolerance, or any scenario saw an unexpected failure
(a 503 is admission control working, not a failure).
"""

from .cli import main

__all__ = ["main"]
