"""The host's Python as pip sees it (interpreter, version, machine, C library) and the wheels a
host already holds: what the controller needs to fetch the runtimes' wheels for the host
(deploys/core/wheels.py) and send only the missing ones."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts._shell import quote, when_present

# One line: "cpython 3.11 x86_64 glibc 2.36" (libc_ver gives ('', '') on a non-glibc host).
_PROBE = "import platform, sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2], platform.machine(), *platform.libc_ver())"


class HostPython(FactBase[dict[str, Any] | None]):
    """
    The host's ``python3`` (the one the runtimes' venvs are made from):
    ``{"implementation": "cpython", "version": "3.11", "machine": "x86_64", "libc": "glibc", "libc_version": "2.36"}``;
    None when the host has no python3.
    """

    def command(self) -> str:
        return when_present("python3", f"python3 -c {quote(_PROBE)} 2>/dev/null || true")

    def process(self, output: list[str]) -> dict[str, Any] | None:
        return parse_host_python(output)


def parse_host_python(output: list[str]) -> dict[str, Any] | None:
    """The probe's line as a dict; None when there is none or it is not the probe's."""
    for line in output:
        parts = line.split()
        if len(parts) in (3, 5) and parts[1].count(".") == 1 and parts[1].replace(".", "").isdigit():
            libc, libc_version = (parts[3], parts[4]) if len(parts) == 5 else ("", "")
            return {"implementation": parts[0], "version": parts[1], "machine": parts[2], "libc": libc, "libc_version": libc_version}
    return None


class WheelDigests(FactBase[dict[str, str]]):
    """
    ``{file name: sha256}`` of the wheels in directory ``path`` (empty when there is none).
    """

    def command(self, path: str) -> str:
        return f'cd {quote(path)} 2>/dev/null && for f in *.whl; do [ -f "$f" ] && sha256sum -- "$f"; done; true'

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        return parse_sha256sum(output)


def parse_sha256sum(output: list[str]) -> dict[str, str]:
    """``sha256sum``'s lines (``<hex>  <name>``, ``*`` before the name in binary mode) as a dict."""
    digests: dict[str, str] = {}
    for line in output:
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) == 64 and name:
            digests[name] = digest
    return digests
