"""Debian package versions: what is installed and what the configured repositories offer.

pyinfra's own ``deb.DebPackage`` parses ``dpkg -s``, which still prints a Version for a package
that was removed with its config files left behind (state ``rc``); a version pin check needs
"installed and configured", so these facts read dpkg's status too.
"""

from __future__ import annotations

from pyinfra.api import FactBase

from facts._shell import quote, when_present


class AptPackageVersion(FactBase[str | None]):
    """Installed version of a Debian package (``1.17.8-1``), None unless fully installed."""

    def command(self, package: str) -> str:
        query = f"dpkg-query -W -f='${{db:Status-Abbrev}}|${{Version}}\\n' {quote(package)}"
        return when_present("dpkg-query", f"{query} 2>/dev/null || true")

    def process(self, output: list[str]) -> str | None:
        for line in output:
            status, sep, version = line.partition("|")
            # Status-Abbrev is want/state/error flags: "ii " installed, "rc " removed + conffiles,
            # "iU " unpacked only, "hi " held and installed.
            if sep and len(status) >= 2 and status[1] == "i" and version.strip():
                return version.strip()
        return None


class AptAvailableVersions(FactBase[list[str]]):
    """Versions the configured apt sources offer, newest first (``apt-cache madison``)."""

    def command(self, package: str) -> str:
        return when_present("apt-cache", f"apt-cache madison {quote(package)} 2>/dev/null || true")

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        versions: list[str] = []
        for line in output:
            fields = [field.strip() for field in line.split("|")]
            if len(fields) == 3 and fields[1] and fields[1] not in versions:
                versions.append(fields[1])
        return versions
