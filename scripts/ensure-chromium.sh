#!/usr/bin/env bash
# Install Debian's Chromium if it is missing: the browser tests (tests/e2e/test_dashboard.py)
# drive /usr/bin/chromium through Playwright and never download a browser of their own.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing: install the 'chromium' package (the browser tests use /usr/bin/chromium)" >&2
  exit 1
fi
echo "installing Chromium (Debian package)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
