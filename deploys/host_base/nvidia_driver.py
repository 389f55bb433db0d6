"""NVIDIA driver step (GPU hosts): the policy of deploys/host_base/driver.py applied with pyinfra
operations. A kept driver plans no operation at all; a refusal ends the run while pyinfra is still
planning, one line, nothing changed; an install leaves the host waiting for its reboot
(deploys/reboot.py), and the rest of its chain is not planned in this run.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import apt, files, server, systemd

from deploys.core import paths, settings
from deploys.core.render import render
from deploys.core.settings import Settings
from deploys.host_base import apt_keys, driver
from deploys.host_base.host import PreflightError, distro_key
from facts.gpu import NvidiaGpus
from facts.nvidia_host import AptVersions, NvidiaHost

# unattended-upgrades' Package-Blacklist entries (regular expressions since u-u 1.x).
UNATTENDED_PATTERNS = ("nvidia-", "libnvidia-", "linux-modules-nvidia-", "cuda-drivers", "nvidia-fabricmanager", "libnvidia-nscq")


def plan_for_host(s: Settings) -> driver.DriverPlan:
    """This host's driver plan from its facts; PreflightError (one line) for a refusal."""
    name, _ = distro_key()
    state = host.get_fact(NvidiaHost)
    smi = host.get_fact(NvidiaGpus)
    if s.gpu is False:
        return driver.DriverPlan("skip", "gpu: false")
    apt_versions = None
    if name == "ubuntu" and driver.has_gpu(state, smi) and s.nvidia_driver != "never":
        apt_versions = host.get_fact(AptVersions, packages=driver.wanted_names(s, name, state)) or {}
    try:
        return driver.decide(s, name, state, smi, apt_versions)
    except driver.DriverRefusal as refusal:
        raise PreflightError(f"host {s.host}: NVIDIA driver: {refusal}; nothing changed") from None


def reboot_pending_line(host_name: str) -> str:
    return f"driver installed; reboot pending on {host_name}: run deploys/reboot.py"


@deploy("NVIDIA driver")
def nvidia_driver() -> bool:
    """Install the pinned driver branch where the policy says so. True when the host's chain may go
    on (no GPU, or a loaded driver kept), False when it waits for a reboot."""
    s = settings.load(host)
    plan = plan_for_host(s)
    if plan.action == "skip":
        logger.debug(f"{host.print_prefix}NVIDIA driver step skipped: {plan.why}")
        return True
    if plan.action == "keep":
        logger.info(f"{host.print_prefix}NVIDIA driver: {plan.why}")
        if plan.pending:
            logger.warning(f"{host.print_prefix}{reboot_pending_line(host.name)} ({'; '.join(plan.reboot)})")
            return False
        return True
    logger.info(f"{host.print_prefix}NVIDIA driver: {plan.why}")
    if plan.distro == "debian":
        _debian_repository(s)
        server.shell(
            name=f"NVIDIA driver branch {s.nvidia_driver_branch} (NVIDIA's CUDA repository, held)",
            commands=[driver.debian_install_command(plan, s.nvidia_driver_branch)],
        )
    else:
        apt.packages(
            name=f"NVIDIA driver {plan.version} (branch {s.nvidia_driver_branch})",
            packages=list(plan.install),
            no_recommends=True,
            # A branch change (nvidia_driver: manage) moves the packages an earlier run held.
            extra_install_args="--allow-change-held-packages" if plan.replaces_held else None,
        )
        server.shell(name="Hold the NVIDIA driver packages (apt-mark hold)", commands=[f"apt-mark hold {' '.join(plan.hold)} >/dev/null"])
    files.put(
        name="Keep the NVIDIA driver out of unattended-upgrades",
        src=StringIO(render("host_base/unattended-upgrades-nvidia.j2", patterns=UNATTENDED_PATTERNS)),
        dest=paths.UNATTENDED_UPGRADES_NVIDIA,
        mode="644",
    )
    blacklist = files.put(
        name="Blacklist nouveau",
        src=StringIO(render("host_base/blacklist-nouveau.conf.j2")),
        dest=paths.NOUVEAU_BLACKLIST,
        mode="644",
    )
    server.shell(name="Rebuild the initramfs (nouveau blacklisted)", commands=["update-initramfs -u"], _if=blacklist.did_change)
    # Enabled now, started by the boot that loads the module (deploys/reboot.py checks them).
    systemd.service(name="nvidia-persistenced enabled", service="nvidia-persistenced", enabled=True)
    if plan.fabric_manager:
        systemd.service(name="NVIDIA fabric manager enabled (NVSwitch)", service="nvidia-fabricmanager", enabled=True)
    logger.warning(f"{host.print_prefix}{reboot_pending_line(host.name)}")
    return False


def _debian_repository(s: Settings) -> None:
    """NVIDIA's CUDA repository for this Debian release, its key pinned by fingerprint."""
    _, major = distro_key()
    base = f"{s.nvidia_cuda_apt_url}/debian{major}/x86_64"
    files.directory(name="apt keyrings directory", path=paths.APT_KEYRINGS_DIR, mode="755")
    apt_keys.ensure_key(
        "NVIDIA CUDA",
        f"{base}/{driver.CUDA_REPO_KEY_NAME}",
        paths.NVIDIA_CUDA_KEYRING,
        s.nvidia_cuda_key_fingerprint,
        "nvidia_cuda_key_fingerprint",
        s.allow_plain_http,
    )
    apt.repo(name="NVIDIA CUDA apt repository", src=f"deb [signed-by={paths.NVIDIA_CUDA_KEYRING}] {base}/ /", filename="nvidia-cuda")
    apt.update(name="Refresh apt index (NVIDIA CUDA repository)")
