"""NVIDIA Container Toolkit step on GPU hosts: NVIDIA's apt repo (signed-by keyring), a pinned version,
the nvidia runtime registered with Docker only when missing, Docker restarted only on change."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from deploys.core import settings
from deploys.core.gpu import is_gpu_host
from deploys.core.paths import APT_KEYRINGS_DIR, NVIDIA_TOOLKIT_KEYRING
from deploys.host_base import apt_keys
from deploys.host_base.nvidia import TOOLKIT_PACKAGES, has_nvidia_runtime, pinned_packages, repo_source


@deploy("NVIDIA Container Toolkit")
def nvidia_toolkit() -> None:
    """Install and register the NVIDIA container runtime (GPU hosts only)."""
    s = settings.load(host)
    if not is_gpu_host(s):
        logger.info(f"{host.print_prefix}CPU host: NVIDIA Container Toolkit skipped")
        return
    files.directory(name="apt keyrings directory", path=APT_KEYRINGS_DIR, mode="755")
    keyring = apt_keys.ensure_key(
        "NVIDIA toolkit",
        f"{s.nvidia_toolkit_apt_url}/gpgkey",
        NVIDIA_TOOLKIT_KEYRING,
        s.nvidia_toolkit_key_fingerprint,
        "nvidia_toolkit_key_fingerprint",
        s.allow_plain_http,
    )
    repo = apt.repo(
        name="NVIDIA toolkit apt repository",
        src=repo_source(s),
        filename="nvidia-container-toolkit",
    )
    installed = host.get_fact(DebPackages) or {}
    wanted = pinned_packages(s)
    if keyring is not None or repo.will_change or any(s.nvidia_toolkit_version not in installed.get(name, []) for name in TOOLKIT_PACKAGES):
        apt.update(name="Refresh apt index (toolkit repository or packages changed)")
    packages = apt.packages(name="NVIDIA Container Toolkit packages (pinned)", packages=wanted)
    if not has_nvidia_runtime():
        configure = server.shell(
            name="Register the nvidia runtime with Docker (nvidia-ctk)", commands=["nvidia-ctk runtime configure --runtime=docker"]
        )
        systemd.service(
            name="Restart Docker (nvidia runtime added)", service="docker", restarted=True, _if=any_changed(configure, packages)
        )
