# Freeze Stormproof into ESP32 firmware: its bytecode then runs from flash and
# needs no RAM to compile or load (about 25 KB of heap saved against .mpy
# files), and its native code runs from flash instead of needing IRAM.
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/abs/path/to/firmware/manifest.py
# main.py is not frozen: a frozen main.py runs instead of the board's file.
# With the package frozen, deploy only boot.py, main.py, www/ and
# settings.json (a /lib/stormproof left on the board comes after .frozen on
# sys.path and is never imported; remove it anyway).
include("$(PORT_DIR)/boards/manifest.py")
package("stormproof", base_path="../lib")
