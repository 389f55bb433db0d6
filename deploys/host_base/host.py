"""The host profile (distribution, GPU or CPU) and the preflight checks that a host can run the
pinned Triton image. Every function reads facts only; a failing check raises PreflightError while
pyinfra is still planning, so no host is changed.
"""

from __future__ import annotations

import math

from pyinfra import host, logger
from pyinfra.facts.files import Sha256File
from pyinfra.facts.server import LinuxDistribution

from deploys.core import model_store
from deploys.core.gpu import is_gpu_host  # noqa: F401 (re-exported for the host base's steps)
from deploys.core.paths import DOCKER_DATA_ROOT
from deploys.core.settings import Settings, SettingsError
from facts.disk import FreeDiskBytes
from facts.docker import DockerImageId
from facts.gpu import NvidiaGpus, is_datacenter_gpu
from facts.nvidia_host import NvidiaHost

# (distro id, major version) → display name; what the deploy is tested for (a new apt-based
# distribution: add it here and, for docker_source=distro, to deploys/host_base/docker_engine.py).
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
        if branch < s.nvidia_min_driver:
            # Accepted through CUDA forward compatibility: only some branches carry it (NVIDIA's
            # compatibility matrix: R535 ≥ 535.86 yes, R550/R570 no) and only on data-centre GPUs.
            logger.warning(
                f"{host.print_prefix}GPU {gpu['index']} ({gpu['name']}) runs driver {gpu['driver_version']} below {s.nvidia_min_driver}: "
                "the image needs CUDA forward compatibility, which NVIDIA supports only on some branches (R535 ≥ 535.86; not R550, R570); "
                f"check its compatibility matrix, or install branch {s.nvidia_driver_branch} (nvidia_driver: manage)"
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


def check_driver_host(s: Settings) -> None:
    """What nvidia-smi cannot show: NVSwitch without fabric manager (CUDA error 802 "system not yet
    initialized"), no module for the running kernel (the next boot loses the driver), a DKMS
    module under Secure Boot (unsigned: it will not load after a rebuild)."""
    state = host.get_fact(NvidiaHost)
    fabric = state["services"].get("nvidia-fabricmanager", {})
    if state["nvswitches"] and state["loaded"] and fabric.get("active") != "active":
        raise PreflightError(
            f"host {s.host}: NVSwitch on the PCI bus ({len(state['nvswitches'])}) but nvidia-fabricmanager is not active "
            f"(CUDA fails with error 802); install nvidia-fabricmanager-{state['loaded'].split('.')[0]} at exactly driver {state['loaded']} "
            "and enable it, or set nvidia_driver: manage"
        )
    if state["loaded"] and state["kernel"] and state["kernels"] and not state["module_for_kernel"]:
        logger.warning(
            f"{host.print_prefix}no NVIDIA module installed for the running kernel {state['kernel']}: the next boot will have no driver; "
            "install the modules package of this kernel (the driver step does with nvidia_driver: manage)"
        )
    dkms = [name for name in state["packages"] if "-dkms" in name]
    if state["secure_boot"] == "on" and dkms:
        logger.warning(
            f"{host.print_prefix}Secure Boot is on and the NVIDIA module comes from DKMS ({dkms[0]}): unsigned unless a MOK is enrolled; "
            "a rebuilt module will not load (README: driver policy)"
        )


def model_bytes_to_add(s: Settings) -> int:
    """Bytes of the model files this run puts on the host: those whose sha256 differs (the model
    step's own test). A replaced file counts whole: a release's hard link keeps the old one."""
    wanted = model_store.expected(s, model_store.hub_token(s))
    return sum(f.size for f in wanted if host.get_fact(Sha256File, path=f.dest) != f.sha256)


def check_disk(s: Settings, gpu: bool) -> None:
    """Enough free space for what this run adds where images (Docker's data root) and the model
    repository live. A host that must pull the image needs the full threshold on both (image,
    model and runtimes); one that has it needs the model files to add plus preflight_margin_gib, so
    a converged host with little free space still re-runs."""
    if host.get_fact(DockerImageId, ref=s.triton_image_ref) is None:
        setting = "preflight_min_free_gib" if gpu else "preflight_min_free_gib_cpu"
        need_gib = s.preflight_min_free_gib if gpu else s.preflight_min_free_gib_cpu
        why = f"({setting}); the image {s.triton_image_ref} is not on the host yet: free space or lower the setting"
        demands = {DOCKER_DATA_ROOT: (need_gib * GIB, why), s.triton_dir: (need_gib * GIB, why)}
    else:
        margin = s.preflight_margin_gib * GIB
        adds = model_bytes_to_add(s)
        demands = {
            DOCKER_DATA_ROOT: (
                margin,
                f"(preflight_margin_gib={s.preflight_margin_gib}; the image is present); free space or lower the setting",
            ),
            s.triton_dir: (
                adds + margin,
                f"({model_store.human(adds)} of model files to add + preflight_margin_gib={s.preflight_margin_gib}); free space or lower the setting",
            ),
        }
    for path, (need, why) in demands.items():
        free = host.get_fact(FreeDiskBytes, path=path)
        if free is not None and free < need:
            raise PreflightError(f"host {s.host}: {free / GIB:.1f} GiB free for {path}, {_gib(need)} GiB needed {why}")


def _gib(size: int) -> str:
    """A need in GiB: whole ones as such (25), else one decimal rounded up (2 GiB + 18 B: 2.1)."""
    if size % GIB == 0:
        return str(size // GIB)
    return f"{math.ceil(size * 10 / GIB) / 10:.1f}"
