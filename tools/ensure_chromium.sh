#!/usr/bin/env bash
# Make Debian's Chromium available for tests_host/test_browser.py.
# Idempotent: when a chromium binary is already there this exits at once, so the
# Makefile can call it before every test run. Machines are rebuilt from the
# project's own files, so the browser must be installed by script, not by hand.
set -euo pipefail

have_chromium() {
    [[ -x /usr/bin/chromium ]] || command -v chromium >/dev/null 2>&1
}

if have_chromium; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "ensure_chromium: chromium is missing and installing it needs root" >&2
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Bounded so a stalled mirror fails the build instead of hanging it; the log is
# only shown on failure to keep `make test` output readable.
export DEBIAN_FRONTEND=noninteractive
if ! timeout 300 apt-get update -q >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure_chromium: apt-get update failed or timed out" >&2
    exit 1
fi
if ! timeout 900 apt-get install -y -q --no-install-recommends chromium >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "ensure_chromium: apt-get install chromium failed or timed out" >&2
    exit 1
fi

if ! have_chromium; then
    echo "ensure_chromium: chromium was installed but no binary was found" >&2
    exit 1
fi
echo "ensure_chromium: $(chromium --version 2>/dev/null || echo chromium installed)"
