"""The runtimes' wheels, fetched once on the controller for the hosts' platform (the verify and gateway
venvs: deploys/core/operations.py:pinned_venv sends them; hosts install with ``--no-index``).

- One pool per host platform (CPython version, machine, glibc) under ``.cache/runtime-wheels/``: the two
  locks share most of their pins (numpy, grpcio, tokenizers…), each file is downloaded once, whatever the
  number of hosts, locks or runs.
- Per lock (by its sha256) a manifest of the pool's files that satisfy it: a lock already fetched costs no
  pip run; a changed lock fetches only what the pool lacks.
- ``pip download --only-binary=:all: --platform … --python-version …`` (the host's platform, not the
  controller's) ``--require-hashes``: the lock's own hashes, so the host's ``--require-hashes`` install
  accepts every file; nothing is ever built.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from deploys.core.repo import REPO_ROOT

CACHE_DIR = REPO_ROOT / ".cache" / "runtime-wheels"
OLDEST_GLIBC_MINOR = 17  # manylinux2014 (manylinux_2_17): the oldest tag a current wheel carries
_LOCKS: dict[str, threading.Lock] = {}  # one pip run per pool at a time (gevent-patched under pyinfra)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")
_NO_WHEEL = re.compile(r"No matching distribution found for ([^\s]+)")


class WheelsError(PyinfraError):
    """A runtime's wheels cannot be had for a host: one line, what and how to fix."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a hashed lock (extras dropped: they add pins, not files)."""
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            found[_canonical(match.group(1))] = match.group(3)
    return found


def platform_tags(python: dict[str, Any]) -> list[str]:
    """The ``--platform`` values pip needs for a host (pip expands only the legacy manylinux names).
    Raises WheelsError for a host whose wheels pip cannot pick (no glibc: musl, or unknown)."""
    machine, libc, version = python["machine"], python["libc"], python["libc_version"]
    match = re.fullmatch(r"2\.(\d+)", version or "")
    if libc != "glibc" or not match:
        runs_on = f"{libc} {version}".strip() or "an unknown C library"
        raise WheelsError(f"the host's python3 ({machine}) runs on {runs_on}: the runtimes' wheels need glibc (Debian, Ubuntu)")
    newest = int(match.group(1))
    return [f"manylinux_2_{minor}_{machine}" for minor in range(newest, OLDEST_GLIBC_MINOR - 1, -1)] + [f"manylinux2014_{machine}"]


def pool_key(python: dict[str, Any]) -> str:
    """The pool's directory name: interpreter, version, machine, glibc (``cp311-x86_64-glibc2.36``)."""
    impl = "cp" if python["implementation"] == "cpython" else python["implementation"]
    return f"{impl}{python['version'].replace('.', '')}-{python['machine']}-glibc{python['libc_version']}"


def download_command(lock: Path, python: dict[str, Any], dest: Path, index_url: str = "") -> list[str]:
    """The controller's pip command fetching ``lock``'s wheels for ``python`` (a HostPython fact) into ``dest``."""
    if python["implementation"] != "cpython":
        raise WheelsError(f"python3 is {python['implementation']}: the runtimes' locks are for CPython")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--require-hashes", "--only-binary=:all:", "--implementation", "cp", "--python-version", python["version"]]
    for tag in platform_tags(python):
        command += ["--platform", tag]
    if index_url:
        command += ["--index-url", index_url]
    return [*command, "--dest", str(dest), "-r", str(lock)]


def _match(pool: Path, wanted: dict[str, str]) -> dict[str, str] | None:
    """``{canonical name: file}`` in ``pool`` for every pin, or None when one is missing."""
    files: dict[str, str] = {}
    for path in pool.glob("*.whl"):
        name, version = path.name.split("-")[:2]
        if wanted.get(_canonical(name)) == version:
            files[_canonical(name)] = path.name
    return files if set(files) == set(wanted) else None


def fetch(lock: Path, python: dict[str, Any], index_url: str = "", cache: Path | None = None) -> tuple[Path, list[str]]:
    """The pool directory and the names of ``lock``'s wheels in it for a host with ``python``,
    downloaded now if this controller has not fetched them yet. Raises WheelsError (one line) when a
    pin has no wheel for that platform or pip fails."""
    pool = (cache or CACHE_DIR) / pool_key(python)
    digest = hashlib.sha256(lock.read_bytes() + index_url.encode()).hexdigest()[:16]
    manifest = pool / f"lock-{digest}.json"
    with _LOCKS.setdefault(str(pool), threading.Lock()):
        if manifest.is_file():
            names = json.loads(manifest.read_text())
            if all((pool / name).is_file() for name in names):
                return pool, names
        pool.mkdir(parents=True, exist_ok=True)
        wanted = pins(lock)
        files = _match(pool, wanted)
        if files is None:
            proc = subprocess.run(download_command(lock, python, pool, index_url), capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                missing = _NO_WHEEL.search(proc.stderr)
                where = f"CPython {python['version']} on {python['machine']} (glibc {python['libc_version']})"
                if missing:
                    raise WheelsError(
                        f"{lock.relative_to(REPO_ROOT) if lock.is_relative_to(REPO_ROOT) else lock} pins {missing.group(1)}, "
                        f"which has no wheel for {where}: pin a version with one in its .in file and run `make locks`"
                    )
                last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise WheelsError(f"pip download of {lock.name}'s wheels for {where} failed: {last}")
            files = _match(pool, wanted)
            if files is None:
                raise WheelsError(f"pip download of {lock.name} left no wheel for some pins in {pool}")
        names = sorted(files.values())
        tmp = manifest.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(names))
        tmp.replace(manifest)
        return pool, names
