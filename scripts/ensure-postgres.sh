#!/usr/bin/env bash
# Install the Debian PostgreSQL server if its binaries are missing (tests start their own
# throw-away cluster from them; nothing is configured system-wide).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL server binaries are missing: install the 'postgresql' package" >&2
  exit 1
fi
echo "installing PostgreSQL (Debian package)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null
