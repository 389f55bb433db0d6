#!/usr/bin/env bash
# Debian packages the test suite needs on the controller (CI machine: Debian, root, no systemd).
# Idempotent: installs only what is missing. Called by `make test` before pytest.
set -euo pipefail
PACKAGES=(
  debootstrap  # the sandbox's images are built from Debian's archive (no Docker Hub)
  openssh-client  # ssh-keygen: the sandbox's per-sandbox SSH key
  age  # age-keygen: test vaults are encrypted for a throwaway age key (tests/test_vault.py)
  curl  # model_fetch=host/mirror downloads, exercised against tests/support/hub_server.py
  docker-registry  # a real password-protected registry for the docker login/rotation e2e (tests/test_registry_login.py)
  apache2-utils  # htpasswd for that registry
  libpython3.11  # nvidia-pytriton's python backend stub links it (tests/facts/test_triton_live.py)
  python3-venv  # the verify step's own venv, run on this machine by tests/test_verify_deploy.py (@local)
  haproxy  # the front door: rendered configs checked with haproxy -c, and run for real (tests/test_front_door_config.py)
  socat  # HAProxy's runtime API over its admin socket (facts/haproxy.py, the same commands as on the front door)
  prometheus  # promtool check config/rules and test rules on the rendered monitoring files, and prometheus run on them (tests/test_monitoring_config.py)
  prometheus-alertmanager  # amtool check-config on the rendered Alertmanager config, and Alertmanager run on it (tests/test_alertmanager.py)
  prometheus-node-exporter  # its rendered ARGS run for real, the metric names the alerts use (tests/test_monitoring_config.py)
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
