#!/usr/bin/env bash
# Make sure a headless-capable Chromium is at /usr/bin/chromium (Debian's package).
# Idempotent and quiet: does nothing when it is already there; otherwise installs it with
# apt-get (needs root, or sudo without a password). Output is shown only on failure.
# Used by the test setup (tests/browser.py skips the browser tests until this has run).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    echo "ensure_chromium.sh: $CHROMIUM is missing and we are not root (and no sudo); install the 'chromium' package" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium.sh: $CHROMIUM is missing and apt-get is not available; install Chromium by hand" >&2
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq \
       && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure_chromium.sh: apt-get could not install chromium" >&2
    exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
    cat "$log" >&2
    echo "ensure_chromium.sh: chromium installed but $CHROMIUM is missing" >&2
    exit 1
fi
