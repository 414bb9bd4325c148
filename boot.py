# Runs first on a board. Keep it tiny: main.py starts the server.
import gc

gc.collect()
