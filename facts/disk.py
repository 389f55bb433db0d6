"""Free disk space where the deploy will write (image store, model repository)."""

from __future__ import annotations

import re

from pyinfra.api import FactBase

from facts._shell import quote

# One `df -P` data row: filesystem (may hold spaces), 1-blocks, used, available, capacity, mount.
_DF_ROW = re.compile(
    r"^(?P<fs>.+?)\s+(?P<size>\d+)\s+(?P<used>\d+)\s+(?P<avail>\d+)"
    r"\s+(?P<cap>\d+%|-)\s+(?P<mount>/.*)$"
)


class FreeDiskBytes(FactBase[int | None]):
    """
    Bytes available to unprivileged writers on the filesystem that holds ``path``. The path need
    not exist yet: the command walks up to its nearest existing ancestor (the model repository
    is created later, on the filesystem of its parent). None when ``df`` gives nothing usable.
    """

    def command(self, path: str) -> str:
        return f'p={quote(path)}; while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done; df -PB1 -- "$p" 2>/dev/null || true'

    def process(self, output: list[str]) -> int | None:
        for line in reversed(output):
            match = _DF_ROW.match(line.strip())
            if match:
                return int(match.group("avail"))
        return None


class DirectoryBytes(FactBase[int | None]):
    """
    Bytes the files under ``path`` take on disk (``du -sb``: apparent sizes); None when ``path``
    is not a directory (yet).
    """

    def command(self, path: str) -> str:
        return f"if [ -d {quote(path)} ]; then du -sb -- {quote(path)} 2>/dev/null || true; fi"

    def process(self, output: list[str]) -> int | None:
        for line in output:
            first = line.split("\t", 1)[0].split(" ", 1)[0].strip()
            if first.isdigit():
                return int(first)
        return None
