"""NVIDIA Container Toolkit: its pinned packages, NVIDIA's apt source line, and whether Docker
already knows the nvidia runtime (the nvidia_toolkit step routes through these)."""

from __future__ import annotations

from pyinfra import host

from deploys.core.paths import NVIDIA_TOOLKIT_KEYRING
from deploys.core.settings import Settings
from facts.docker import DockerDaemonJson, DockerRuntimes

# nvidia-container-toolkit's own packages move together: pin them all to one version.
TOOLKIT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)


def pinned_packages(s: Settings) -> list[str]:
    return [f"{name}={s.nvidia_toolkit_version}" for name in TOOLKIT_PACKAGES]


def repo_source(s: Settings) -> str:
    """The apt source line; apt expands $(ARCH) itself, as in NVIDIA's own .list file."""
    return f"deb [signed-by={NVIDIA_TOOLKIT_KEYRING}] {s.nvidia_toolkit_apt_url}/stable/deb/$(ARCH) /"


def has_nvidia_runtime() -> bool:
    """True when Docker already knows the nvidia runtime (running daemon or its config file)."""
    config = host.get_fact(DockerDaemonJson) or {}
    return "nvidia" in host.get_fact(DockerRuntimes) or "nvidia" in (config.get("runtimes") or {})
