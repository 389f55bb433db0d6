"""Canned answers of bare and converged GPU hosts for the driver step's plan tests (tests/test_plan_driver.py).

The NvidiaHost fact's answer is built in the layout its command prints (tests/facts/fixtures/
nvidia_host.NvidiaHost/ holds captured and documentation-shaped examples); ``apt-cache policy``'s
in the layout apt prints (tests/facts/fixtures/nvidia_host.AptVersions/). Package versions are
Ubuntu 24.04's shape; nothing here is captured from a GPU host (none is reachable here).
"""

from __future__ import annotations

from tests.support import fake_hosts as f

UBUNTU_2204_RELEASE = (
    f.UBUNTU_2404_RELEASE.replace("24.04.3 LTS (Noble Numbat)", "22.04.5 LTS (Jammy Jellyfish)")
    .replace("24.04.3", "22.04.5")
    .replace("24.04", "22.04")
    .replace("noble", "jammy")
)

H100 = "0x2330"  # H100 SXM5 (3D controller, class 0x030200)
NVSWITCH = "0x22a3"  # third-generation NVSwitch (bridge, class 0x068000)
VERSION = "580.95.05"
DEB_VERSION = "580.95.05-0ubuntu0.24.04.2"
FM_VERSION = "580.95.05-0ubuntu0.24.04.1"  # another Debian revision, the same upstream version


def smi_rows(count: int, version: str) -> list[str]:
    return [f"{i}, NVIDIA H100 80GB HBM3, GPU-5d0b4c2e-6a3f-9a1e-8c57-2f0d8e3b1a{i:02d}, {version}, 81559, 9.0" for i in range(count)] + [
        "__FACT_RC__=0"
    ]


def nvidia_host(
    gpus: int = 1,
    switches: int = 0,
    loaded: str | None = None,
    kernel: str = "6.8.0-87-generic",
    kernels: tuple[str, ...] = (),
    ko: str | None = None,
    secure_boot: str = "off",
    nouveau: bool = False,
    reboot: bool = False,
    packages: dict[str, tuple[str, bool]] | None = None,
    services: dict[str, str] | None = None,
) -> list[str]:
    """The NvidiaHost fact's output (``packages``: name → (version, held); ``services``: unit → active)."""
    lines = ["@@pci"]
    lines += [f"0000:{0x18 + i:02x}:00.0 0x030200 {H100}" for i in range(gpus)]
    lines += [f"0000:{0x05 + i:02x}:00.0 0x068000 {NVSWITCH}" for i in range(switches)]
    lines += ["@@module", *([loaded] if loaded else []), "@@nouveau", *(["loaded"] if nouveau else [])]
    lines += ["@@kernel", kernel, "@@kernels", *(kernels or (kernel,)), "@@ko", *([ko] if ko else [])]
    lines += ["@@secureboot", {"on": "6 0 0 0 1", "off": "6 0 0 0 0", "no-efi": "no-efi"}[secure_boot]]
    lines += ["@@reboot", *(["required"] if reboot else []), "@@packages"]
    lines += [f"{'hi' if held else 'ii'}  {name} {version}" for name, (version, held) in (packages or {}).items()]
    lines += ["@@services"]
    lines += [f"{unit} active={state} enabled=enabled" for unit, state in (services or {}).items()]
    lines += ["@@nvswitch", *[f"0000:{0x05 + i:02x}:00.0" for i in range(switches if loaded else 0)]]
    return lines


def apt_policy(versions: dict[str, list[str]]) -> list[str]:
    """``apt-cache policy`` output for packages apt knows (name → versions, best first)."""
    lines = []
    for name, found in versions.items():
        lines += [f"{name}:", "  Installed: (none)", f"  Candidate: {found[0] if found else '(none)'}", "  Version table:"]
        for version in found:
            lines += [f"     {version} 500", "        500 http://archive.ubuntu.com/ubuntu noble-updates/restricted amd64 Packages"]
    return lines


def ubuntu_archive(kernels: tuple[str, ...], flavours: tuple[str, ...] = ("generic", "aws")) -> dict[str, list[str]]:
    """Ubuntu's archive as apt sees it: branch 580 (and an older 570), modules for ``kernels`` and
    the ``flavours``' metapackages, fabric manager and NSCQ."""
    table = {
        "nvidia-utils-580-server": [DEB_VERSION, "580.82.07-0ubuntu0.24.04.1"],
        "nvidia-headless-no-dkms-580-server-open": [DEB_VERSION],
        "nvidia-headless-580-server-open": [DEB_VERSION],
        "nvidia-dkms-580-server-open": [DEB_VERSION],
        "nvidia-fabricmanager-580": [FM_VERSION],
        "libnvidia-nscq-580": [FM_VERSION],
    }
    for kernel in kernels:
        table[f"linux-modules-nvidia-580-server-open-{kernel}"] = [kernel.rsplit("-", 1)[0].replace("-", ".", 1) + "+1"]
    for flavour in flavours:
        table[f"linux-modules-nvidia-580-server-open-{flavour}"] = ["6.8.0-87.88+1"]
    return table


def gpu_host(
    name: str, release: str, state: list[str], apt: dict[str, list[str]] | None = None, smi: list[str] | None = None, **data
) -> str:
    """Inventory code for one fake GPU host with these answers (a bare one unless ``smi``)."""
    extra = {"echo @@pci": state, "apt-cache policy": apt_policy(apt or {})}
    settings = {"gpu": True, **data}
    return f"f.host({name!r}, {{**f.SETTINGS, **{settings!r}}}, f.responses({release!r}, {smi!r}, f.DF_PLENTY, {extra!r}))"


def converged_gpu_host(name: str, release: str, state: list[str], smi: list[str], ngc_key_expr: str = 'os.environ["NGC_API_KEY"]') -> str:
    """Inventory code for a GPU host on which the whole deploy already ran (driver included)."""
    extra = {"echo @@pci": state}
    return (
        f"f.host({name!r}, {{**f.SETTINGS, 'gpu': True}}, {{**{extra!r}, **f.converged_responses({release!r}, {smi!r}, f.DF_PLENTY, "
        f"{{**f.SETTINGS, 'gpu': True}}, {ngc_key_expr}, {name!r})}})"
    )
