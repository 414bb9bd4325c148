# Freeze Stormproof into ESP32 firmware: its bytecode then runs from flash and
# needs no RAM to compile or load (about 25 KB of heap saved against .mpy files).
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/abs/path/to/firmware/manifest.py
include("$(PORT_DIR)/boards/manifest.py")
package("stormproof", base_path="../lib")
module("main.py", base_path="..")
