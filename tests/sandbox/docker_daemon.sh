#!/usr/bin/env bash
# Makes sure a Docker daemon answers on this machine (the sandbox fleet's containers run in it).
# CI machines have no systemd as PID 1: install docker.io from Debian's packages when dockerd is
# missing, then start dockerd in the background when none answers. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
LOG=${DOCKERD_LOG:-/var/log/dockerd-sandbox.log}

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "docker_daemon: run as root or install: ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then echo "docker_daemon: no Docker daemon answers; start one or run as root" >&2; exit 1; fi
# setsid: the daemon outlives this script and the make/pytest process that called it.
setsid nohup dockerd >>"$LOG" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "docker_daemon: dockerd started (log: $LOG)"; exit 0; fi
  sleep 1
done
echo "docker_daemon: dockerd did not answer within 60 s; see $LOG" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
