"""The NVIDIA driver policy: what the driver step does on a host, decided from facts only (pure).

Detect, don't fight: a driver that is loaded and new enough (``nvidia_min_driver``, or an accepted
forward-compatibility branch on a data-centre GPU) is left alone whoever installed it. Otherwise,
with ``nvidia_driver: install`` (the default) on a host where no NVIDIA driver package is installed,
or ``nvidia_driver: manage`` on any GPU host, the pinned branch (``nvidia_driver_branch``, open
modules unless ``nvidia_driver_open`` is false) is installed:

- Ubuntu: Canonical's signed, precompiled modules for every installed kernel of the running
  kernel's flavour (``linux-modules-nvidia-<br>-server-open-<kernel>``) and the flavour's
  metapackage, with ``nvidia-headless-no-dkms-<br>-server-open`` and ``nvidia-utils-<br>-server``,
  all at one driver version. No precompiled module for the running kernel: DKMS
  (``nvidia-dkms-<br>-server-open``), only with Secure Boot off.
- Debian: its archive stops at 550, below 575: NVIDIA's CUDA repository (key pinned by
  fingerprint), ``nvidia-driver-cuda`` + ``nvidia-kernel-open-dkms`` (NVIDIA's compute-only
  install), DKMS built, so Secure Boot must be off.
- NVSwitch on the PCI bus: fabric manager and NSCQ at the driver's exact upstream version.
- Every driver package held (``apt-mark hold``) and kept from unattended-upgrades; a branch change
  (with ``manage``) is the only way they move.

Anything the policy cannot do safely is a :class:`DriverRefusal`: one line naming the host, the
problem and the way out; nothing changes on that host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploys.core import paths
from deploys.core.settings import Settings
from facts.gpu import GpuInventory, is_datacenter_gpu
from facts.nvidia_host import NvidiaHostState

CUDA_REPO_KEY_NAME = "3bf863cc.pub"  # the key file NVIDIA's CUDA repositories serve (cuda-keyring ships the same key)


class DriverRefusal(Exception):
    """A host on which the driver step changes nothing: one line, why and the way out."""


@dataclass(frozen=True)
class DriverPlan:
    """What the driver step does on one host."""

    action: str  # "skip" (no GPU / nvidia_driver: never), "keep" (a good driver is there), "install"
    why: str = ""  # one line for the log
    distro: str = ""  # "ubuntu" or "debian" (install)
    install: tuple[str, ...] = ()  # apt arguments: name=version
    hold: tuple[str, ...] = ()  # package names to hold
    dkms: bool = False
    fabric_manager: bool = False
    version: str = ""  # the driver's upstream version being installed (580.95.05)
    reboot: tuple[str, ...] = ()  # why the host needs a reboot (before this step's changes)
    pending: bool = False  # the pinned driver is installed but not loaded: the host waits for its reboot
    replaces_held: bool = False  # held NVIDIA packages are installed (a branch change): apt may move them

    @property
    def changes(self) -> bool:
        return self.action == "install"


@dataclass
class Candidates:
    """apt's versions per package (facts.nvidia_host.AptVersions), best first."""

    versions: dict[str, list[str]] = field(default_factory=dict)

    def branch(self, name: str, branch: int) -> str | None:
        """The best version of ``name`` on driver ``branch`` (580.x); None when apt has none."""
        return next((v for v in self.versions.get(name, []) if upstream(v).split(".")[0] == str(branch)), None)

    def exact(self, name: str, version: str) -> str | None:
        """The version of ``name`` whose upstream version is exactly ``version``."""
        return next((v for v in self.versions.get(name, []) if upstream(v) == version), None)

    def best(self, name: str) -> str | None:
        return next(iter(self.versions.get(name, [])), None)


def upstream(version: str) -> str:
    """``580.95.05-0ubuntu0.24.04.2`` → ``580.95.05`` (epoch and Debian revision dropped)."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def major(version: str | None) -> int:
    try:
        return int((version or "").split(".")[0])
    except ValueError:
        return 0


def has_gpu(state: NvidiaHostState, smi: GpuInventory) -> bool:
    """The PCI bus shows an NVIDIA GPU, or nvidia-smi lists one."""
    return bool(state["gpus"] or smi["gpus"])


def loaded_version(state: NvidiaHostState, smi: GpuInventory) -> str | None:
    """The loaded driver's version: /sys/module/nvidia/version, else what nvidia-smi reports."""
    if state["loaded"]:
        return state["loaded"]
    return smi["gpus"][0]["driver_version"] if smi["gpus"] else None


def good_enough(s: Settings, version: str | None, smi: GpuInventory) -> bool:
    """≥ nvidia_min_driver, or a forward-compatibility branch on data-centre GPUs only."""
    branch = major(version)
    if branch >= s.nvidia_min_driver:
        return True
    names = [gpu["name"] for gpu in smi["gpus"]]
    return bool(names) and branch in s.nvidia_datacenter_compat_branches and all(is_datacenter_gpu(n) for n in names)


def reboot_reasons(state: NvidiaHostState, expected: str | None = None) -> list[str]:
    """Why this host needs a reboot now (deploys/reboot.py reads the same). ``expected``: the
    driver version the installed packages carry, when known."""
    reasons = []
    loaded, on_disk = state["loaded"], state["module_for_kernel"]
    if state["reboot_required"]:
        reasons.append(f"{paths.REBOOT_REQUIRED} exists")
    if state["nouveau"] and (on_disk or expected):
        reasons.append("nouveau is loaded")
    if loaded and on_disk and on_disk != "present" and on_disk != loaded:
        reasons.append(f"driver {loaded} loaded, {on_disk} installed")
    elif loaded and expected and upstream(expected) != loaded:
        reasons.append(f"driver {loaded} loaded, {upstream(expected)} installed")
    if state["gpus"] and not loaded and (on_disk or expected):
        reasons.append("the NVIDIA module is installed but not loaded")
    if loaded and not on_disk and state["kernels"] and state["kernel"] and state["gpus"]:
        reasons.append(f"no NVIDIA module for the running kernel {state['kernel']}")
    return reasons


def installed_driver(state: NvidiaHostState) -> str | None:
    """The upstream version of an installed NVIDIA driver package (any source), or None."""
    for name, package in sorted(state["packages"].items()):
        if name.startswith(("nvidia-utils-", "nvidia-driver", "nvidia-headless", "nvidia-kernel", "nvidia-dkms", "libnvidia-compute")):
            return upstream(package["version"])
    return None


def ubuntu_names(s: Settings, flavour_or_kernel: str) -> str:
    suffix = "-server-open" if s.nvidia_driver_open else "-server"
    return f"linux-modules-nvidia-{s.nvidia_driver_branch}{suffix}-{flavour_or_kernel}"


def wanted_names(s: Settings, distro: str, state: NvidiaHostState) -> list[str]:
    """Every package whose apt versions the plan needs (the AptVersions fact's argument)."""
    br = s.nvidia_driver_branch
    fm = [f"nvidia-fabricmanager-{br}", "nvidia-fabricmanager", f"libnvidia-nscq-{br}", "libnvidia-nscq"] if state["nvswitches"] else []
    if distro == "ubuntu":
        suffix = "-server-open" if s.nvidia_driver_open else "-server"
        kernels = [k for k in state["kernels"] if k.endswith("-" + state["flavour"])] or [state["kernel"]]
        return [
            f"nvidia-headless-no-dkms-{br}{suffix}",
            f"nvidia-headless-{br}{suffix}",
            f"nvidia-dkms-{br}{suffix}",
            f"nvidia-utils-{br}-server",
            ubuntu_names(s, state["flavour"]),
            *sorted({ubuntu_names(s, k) for k in kernels}),
            *fm,
        ]
    return ["nvidia-driver-cuda", "nvidia-kernel-open-dkms" if s.nvidia_driver_open else "nvidia-kernel-dkms", *fm]


def decide(s: Settings, distro: str, state: NvidiaHostState, smi: GpuInventory, apt: dict[str, list[str]] | None) -> DriverPlan:
    """The driver step's plan for one host (``apt``: AptVersions of :func:`wanted_names`, or None
    when not read yet). Raises :class:`DriverRefusal` for what it must not do."""
    if s.nvidia_driver == "never" or not has_gpu(state, smi):
        return DriverPlan("skip", "no NVIDIA GPU on the PCI bus" if s.nvidia_driver != "never" else "nvidia_driver: never")
    loaded = loaded_version(state, smi)
    installed = installed_driver(state)
    if loaded and good_enough(s, loaded, smi) and (s.nvidia_driver != "manage" or major(loaded) == s.nvidia_driver_branch):
        return DriverPlan(
            "keep", f"driver {loaded} loaded (≥ {s.nvidia_min_driver} or accepted): left alone", reboot=tuple(reboot_reasons(state))
        )
    if s.nvidia_driver != "manage" and (installed or loaded):
        if not loaded and major(installed) == s.nvidia_driver_branch:
            # The pinned branch installed (by this step), waiting for its reboot: nothing to add.
            return DriverPlan(
                "keep", f"driver {installed} installed, not loaded yet", reboot=tuple(reboot_reasons(state, installed)), pending=True
            )
        # Someone else's driver: detect, don't fight; preflight judges it (too old: one line).
        return DriverPlan(
            "keep",
            f"driver {loaded or installed} {'loaded' if loaded else 'installed'}: not the deploy's to change (nvidia_driver: install)",
        )
    if apt is None:
        apt = {}
    c = Candidates(apt)
    br = s.nvidia_driver_branch
    secure = state["secure_boot"] in ("on", "unknown")
    if distro == "ubuntu":
        return _ubuntu(s, state, c, br, secure)
    if distro == "debian":
        return _debian(s, state, c, br, secure)
    raise DriverRefusal(f"no driver policy for distribution {distro}; install the driver yourself or set nvidia_driver: never")


def _fabric(state: NvidiaHostState, c: Candidates, br: int, version: str) -> tuple[list[str], list[str]]:
    """Fabric manager and NSCQ at exactly ``version`` (NVSwitch hosts); (install args, names)."""
    if not state["nvswitches"]:
        return [], []
    args, names = [], []
    for base in ("nvidia-fabricmanager", "libnvidia-nscq"):
        for name in (f"{base}-{br}", base):
            found = c.exact(name, version)
            if found:
                args.append(f"{name}={found}")
                names.append(name)
                break
        else:
            raise DriverRefusal(
                f"NVSwitch on the PCI bus but apt has no {base}-{br} at the driver's version {version} "
                "(fabric manager must match the driver exactly); run apt-get update or pick a branch that has both"
            )
    return args, names


def _ubuntu(s: Settings, state: NvidiaHostState, c: Candidates, br: int, secure: bool) -> DriverPlan:
    suffix = "-server-open" if s.nvidia_driver_open else "-server"
    utils = f"nvidia-utils-{br}-server"
    version = c.branch(utils, br)
    if not version:
        raise DriverRefusal(
            f"apt has no {utils} (branch {br}); enable the restricted component and run apt-get update, or pick another nvidia_driver_branch"
        )
    up = upstream(version)
    running = ubuntu_names(s, state["kernel"])
    flavour_meta = ubuntu_names(s, state["flavour"])
    kernels = sorted({ubuntu_names(s, k) for k in state["kernels"] if k.endswith("-" + state["flavour"])} | {running})
    modules = [name for name in kernels if c.best(name)]
    dkms = running not in modules
    if dkms and secure:
        raise DriverRefusal(
            f"Secure Boot is {state['secure_boot']} and Ubuntu has no signed NVIDIA {br} module for kernel {state['kernel']} "
            f"({running}); boot a kernel of a flavour that has one (generic, aws, azure, gcp…) or enrol a MOK for DKMS modules at the console, then re-run"
        )
    install: list[str] = []
    if dkms:
        headless = c.exact(f"nvidia-headless-{br}{suffix}", up)
        dkms_pkg = c.exact(f"nvidia-dkms-{br}{suffix}", up)
        if not (headless and dkms_pkg):
            raise DriverRefusal(
                f"no precompiled module for kernel {state['kernel']} and apt has no nvidia-dkms-{br}{suffix} {up}; run apt-get update"
            )
        install += [f"nvidia-headless-{br}{suffix}={headless}", f"nvidia-dkms-{br}{suffix}={dkms_pkg}"]
    else:
        headless = c.exact(f"nvidia-headless-no-dkms-{br}{suffix}", up)
        if not headless:
            raise DriverRefusal(f"apt has no nvidia-headless-no-dkms-{br}{suffix} {up} to match {utils}; run apt-get update")
        install.append(f"nvidia-headless-no-dkms-{br}{suffix}={headless}")
        install += [f"{name}={c.best(name)}" for name in modules]
        if c.best(flavour_meta) and flavour_meta not in modules:
            install.append(f"{flavour_meta}={c.best(flavour_meta)}")
    install.append(f"{utils}={version}")
    fm_args, _ = _fabric(state, c, br, up)
    install += fm_args
    why = f"installing branch {br} ({up}) from Ubuntu's archive: " + (
        "DKMS (no precompiled module for this kernel)" if dkms else "signed precompiled modules"
    )
    return DriverPlan(
        "install",
        why,
        "ubuntu",
        tuple(install),
        tuple(a.split("=", 1)[0] for a in install),
        dkms,
        bool(state["nvswitches"]),
        up,
        tuple(reboot_reasons(state)),
        replaces_held=any(p["held"] for p in state["packages"].values()),
    )


def _debian(s: Settings, state: NvidiaHostState, c: Candidates, br: int, secure: bool) -> DriverPlan:
    if secure:
        raise DriverRefusal(
            f"Secure Boot is {state['secure_boot']}: NVIDIA's Debian packages build unsigned DKMS modules; "
            "enrol a MOK at the console (mokutil --import) or turn Secure Boot off, then re-run"
        )
    # The CUDA repository enters apt's index only when this step adds it, after planning: the
    # versions are resolved on the host (debian_install_command), on the branch, all at one version.
    kernel = "nvidia-kernel-open-dkms" if s.nvidia_driver_open else "nvidia-kernel-dkms"
    names = ["nvidia-driver-cuda", kernel] + (["nvidia-fabricmanager", "libnvidia-nscq"] if state["nvswitches"] else [])
    return DriverPlan(
        "install",
        f"installing branch {br} from NVIDIA's CUDA repository (DKMS, versions resolved on the host after apt-get update)",
        "debian",
        (),
        tuple(names),
        True,
        bool(state["nvswitches"]),
        "",
        tuple(reboot_reasons(state)),
    )


def debian_install_command(plan: DriverPlan, branch: int) -> str:
    """Install ``plan.hold`` on the host: the newest version on ``branch`` of nvidia-driver-cuda,
    every other package at exactly that upstream version (fabric manager and NSCQ under their
    branch-suffixed name when the repository has it); one line and exit 1 when one is missing."""
    lines = [
        "set -e",
        "export DEBIAN_FRONTEND=noninteractive",
        f"v=$(apt-cache madison nvidia-driver-cuda | awk '$3 ~ /^{branch}\\./ {{print $3; exit}}')",
        f'[ -n "$v" ] || {{ echo "NVIDIA\'s CUDA repository has no nvidia-driver-cuda on branch {branch}; pick another nvidia_driver_branch" >&2; exit 1; }}',
        "up=${v#*:}; up=${up%-*}",
        'args="nvidia-driver-cuda=$v"',
    ]
    for name in plan.hold[1:]:
        lines += [
            f'n={name}; m=$(apt-cache madison {name}-{branch} 2>/dev/null | awk -v u="$up" \'{{s=$3; sub(/^[0-9]+:/, "", s); sub(/-[^-]*$/, "", s); if (s == u) {{print $3; exit}}}}\')',
            f'if [ -n "$m" ]; then n={name}-{branch}; else m=$(apt-cache madison {name} | awk -v u="$up" \'{{s=$3; sub(/^[0-9]+:/, "", s); sub(/-[^-]*$/, "", s); if (s == u) {{print $3; exit}}}}\'); fi',
            f'[ -n "$m" ] || {{ echo "NVIDIA\'s CUDA repository has no {name} at the driver\'s version $up" >&2; exit 1; }}',
            'args="$args $n=$m"',
        ]
    lines += [
        "apt-get install -y --no-install-recommends $args",
        "apt-mark hold $(for a in $args; do echo ${a%%=*}; done) >/dev/null",
    ]
    return "\n".join(lines)
