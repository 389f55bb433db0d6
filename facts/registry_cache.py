"""The registry cache host: whether its storage already holds an image (the warm script's check)."""

from __future__ import annotations

from pyinfra.api import FactBase

from facts._shell import quote


class RegistryCacheWarm(FactBase[str | None]):
    """
    ``"warm"`` when the registry cache's storage (``storage``) holds image ``repo`` at ``ref`` (a
    tag or a digest) for every platform of ``platforms``, ``"cold: <what is missing>"`` otherwise;
    None when the check cannot run yet (no python3, or the warm script deploys/registry_cache/registry_warm.py
    not uploaded to ``script``). Reads the storage's files only.
    """

    def command(self, script: str, storage: str, repo: str, ref: str, platforms: tuple[str, ...] = ("linux/amd64",)) -> str:
        flags = " ".join(f"--platform {quote(p)}" for p in platforms)
        return (
            f"if [ -f {quote(script)} ] && command -v python3 >/dev/null 2>&1; then "
            f"python3 -I {quote(script)} check --storage {quote(storage)} --repo {quote(repo)} --ref {quote(ref)} {flags} 2>&1 || true; fi"
        )

    def process(self, output: list[str]) -> str | None:
        for line in output:
            line = line.strip()
            if line == "warm" or line.startswith("cold: "):
                return line
        return None
