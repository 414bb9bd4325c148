# Run on the board by `make deploy` (mpremote run): the next boot is in safe
# mode (no server, no watchdog), so copying files cannot be cut short by a
# watchdog armed by the running application; stale .py sources, which
# MicroPython would import instead of the new .mpy files, are removed.
import os

open("safe_mode", "w").close()
try:
    for name in os.listdir("lib/stormproof"):
        if name.endswith(".py"):
            os.remove("lib/stormproof/" + name)
            print("removed stale lib/stormproof/" + name)
except OSError:
    pass  # nothing deployed yet
print("safe mode set for the next boot")
