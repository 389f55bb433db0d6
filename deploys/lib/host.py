"""The host profile (distribution, GPU or CPU) and the preflight checks that a host can run the
pinned Triton image. Every function reads facts only; a failing check raises PreflightError while
pyinfra is still planning, so no host is changed.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.facts.server import LinuxDistribution

from deploys.lib.paths import DOCKER_DATA_ROOT
from deploys.lib.settings import Settings, SettingsError
from facts.disk import FreeDiskBytes
from facts.gpu import NvidiaGpus, is_datacenter_gpu

# (distro id, major version) → display name; what the deploy is tested for (a new apt-based
# distribution: add it here and, for docker_source=distro, to deploys/lib/docker_engine.py).
SUPPORTED_DISTROS = {
    ("ubuntu", 22): "Ubuntu 22.04",
    ("ubuntu", 24): "Ubuntu 24.04",
    ("debian", 12): "Debian 12",
    ("debian", 13): "Debian 13",
}
GIB = 1024**3


class PreflightError(SettingsError):
    """A host that cannot run the deploy: one line naming the host, what is wrong and the fix."""


def distro_key() -> tuple[str, int]:
    """(lower-case distro id, major version) of the current host."""
    distro = host.get_fact(LinuxDistribution) or {}
    meta = distro.get("release_meta") or {}
    name = (meta.get("ID") or distro.get("name") or "unknown").lower()
    return name, int(distro.get("major") or 0)


def distro_codename() -> str:
    """Release codename (noble, bookworm, trixie…) for apt sources."""
    meta = (host.get_fact(LinuxDistribution) or {}).get("release_meta") or {}
    return meta.get("VERSION_CODENAME") or meta.get("UBUNTU_CODENAME") or ""


def is_gpu_host(s: Settings) -> bool:
    """Resolve the `gpu` setting: true/false as given, "auto" from the nvidia-smi fact."""
    if s.gpu == "auto":
        # A failing nvidia-smi still means a GPU box: check_gpus then explains the driver problem.
        fact = host.get_fact(NvidiaGpus)
        return bool(fact["gpus"] or fact["error"])
    return bool(s.gpu)


def check_distro(s: Settings) -> None:
    name, major = distro_key()
    if (name, major) not in SUPPORTED_DISTROS:
        supported = ", ".join(SUPPORTED_DISTROS.values())
        raise PreflightError(f"host {s.host}: distribution {name} {major} is not supported; use one of {supported}")


def check_gpus(s: Settings) -> None:
    """GPU present, driver new enough for the image, compute capability high enough."""
    fact = host.get_fact(NvidiaGpus)
    if fact["error"]:
        raise PreflightError(
            f"host {s.host}: gpu=true but nvidia-smi fails ({fact['error'].splitlines()[0]}); "
            "install or reload the NVIDIA driver (README: GPU not visible), or set gpu: false"
        )
    if not fact["gpus"]:
        raise PreflightError(
            f"host {s.host}: gpu=true but no NVIDIA GPU is visible (nvidia-smi missing or lists none); install the driver or set gpu: false"
        )
    for gpu in fact["gpus"]:
        branch = gpu["driver_major"]
        compat = is_datacenter_gpu(gpu["name"]) and branch in s.nvidia_datacenter_compat_branches
        if branch < s.nvidia_min_driver and not compat:
            raise PreflightError(
                f"host {s.host}: setting nvidia_min_driver={s.nvidia_min_driver}: GPU {gpu['index']} ({gpu['name']}) "
                f"runs driver {gpu['driver_version']}; upgrade the driver to ≥ {s.nvidia_min_driver} (README: driver too old)"
            )
        if gpu["compute_capability"] is None:
            # vGPU guests and some MIG setups print [N/A]: unknown, not too low. Triton reports a
            # GPU it cannot use when it loads the model (READY wait, docker logs).
            logger.warning(
                f"{host.print_prefix}GPU {gpu['index']} ({gpu['name']}): nvidia-smi does not report its compute capability; "
                f"nvidia_min_compute_capability={s.nvidia_min_compute_capability} not checked"
            )
        elif gpu["compute_capability"] < s.nvidia_min_compute_capability:
            raise PreflightError(
                f"host {s.host}: GPU {gpu['index']} ({gpu['name']}) has compute capability {gpu['compute_capability']}, "
                f"below nvidia_min_compute_capability={s.nvidia_min_compute_capability}; use a newer GPU or set gpu: false"
            )


def check_disk(s: Settings, gpu: bool) -> None:
    """Enough free space where images (Docker's data root) and the model repository live."""
    need_gib = s.preflight_min_free_gib if gpu else s.preflight_min_free_gib_cpu
    for path in (DOCKER_DATA_ROOT, s.triton_dir):
        free = host.get_fact(FreeDiskBytes, path=path)
        if free is not None and free < need_gib * GIB:
            raise PreflightError(
                f"host {s.host}: {free / GIB:.1f} GiB free for {path}, {need_gib} GiB needed "
                f"(preflight_min_free_gib{'' if gpu else '_cpu'}); free space or lower the setting"
            )
