"""NVIDIA Container Toolkit on GPU hosts: NVIDIA's apt repo (signed-by keyring), a pinned version, the
nvidia runtime registered with Docker only when missing, Docker restarted only on change."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from deploys import settings
from deploys.preflight import is_gpu_host
from deploys.settings import Settings
from facts.docker import DockerDaemonJson, DockerRuntimes

KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
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
    return f"deb [signed-by={KEYRING}] {s.nvidia_toolkit_apt_url}/stable/deb/$(ARCH) /"


def has_nvidia_runtime() -> bool:
    """True when Docker already knows the nvidia runtime (running daemon or its config file)."""
    config = host.get_fact(DockerDaemonJson) or {}
    return "nvidia" in host.get_fact(DockerRuntimes) or "nvidia" in (config.get("runtimes") or {})


@deploy("NVIDIA Container Toolkit")
def nvidia_toolkit() -> None:
    """Install and register the NVIDIA container runtime (GPU hosts only)."""
    s = settings.load(host)
    if not is_gpu_host(s):
        logger.info(f"{host.print_prefix}CPU host: NVIDIA Container Toolkit skipped")
        return
    files.directory(name="apt keyrings directory", path="/etc/apt/keyrings", mode="755")
    keyring = files.download(name="NVIDIA toolkit apt key (signed-by keyring)", src=f"{s.nvidia_toolkit_apt_url}/gpgkey", dest=KEYRING, mode="644")
    repo = apt.repo(
        name="NVIDIA toolkit apt repository",
        src=repo_source(s),
        filename="nvidia-container-toolkit",
    )
    installed = host.get_fact(DebPackages) or {}
    wanted = pinned_packages(s)
    if keyring.will_change or repo.will_change or any(
        s.nvidia_toolkit_version not in installed.get(name, []) for name in TOOLKIT_PACKAGES
    ):
        apt.update(name="Refresh apt index (toolkit repository or packages changed)")
    packages = apt.packages(name="NVIDIA Container Toolkit packages (pinned)", packages=wanted)
    if not has_nvidia_runtime():
        configure = server.shell(name="Register the nvidia runtime with Docker (nvidia-ctk)", commands=["nvidia-ctk runtime configure --runtime=docker"])
        systemd.service(name="Restart Docker (nvidia runtime added)", service="docker", restarted=True, _if=any_changed(configure, packages))
