#!/usr/bin/env bash
# Debian packages the test suite needs on the controller (CI machine: Debian, root, no systemd).
# Idempotent: installs only what is missing. Called by `make test` before pytest.
set -euo pipefail
PACKAGES=(
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "system_deps: run as root or install: ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
