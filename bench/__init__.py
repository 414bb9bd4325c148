"""Host-side load tools for Stormproof (CPython): `python -m bench.storm`, `python -m bench.soak`."""
