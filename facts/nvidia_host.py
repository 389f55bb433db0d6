"""NvidiaHost (the NVIDIA driver's state, one command reading many things), AptVersions.

A host is a GPU host when its PCI bus shows an NVIDIA device (vendor 0x10de in /sys), not only when
nvidia-smi works: a bare server has no driver yet. One shell command reads everything the driver
step, preflight and deploys/reboot.py decide from (one SSH round trip), each part after a ``@@name``
line; every read is guarded, so a missing file is an empty section, never a failure:

- ``pci``: NVIDIA PCI functions from /sys/bus/pci/devices: slot, class, device id. Class 0x03xxxx is
  a display controller (a GPU), 0x0680xx a bridge, which NVIDIA uses for NVSwitch.
- ``module``: the loaded kernel module's version (/sys/module/nvidia/version); ``nouveau``;
- ``kernel``: ``uname -r``; ``kernels``: /lib/modules entries (installed kernels);
- ``ko``: the nvidia module's version for the running kernel (``modinfo``), or ``present`` when the
  file exists but modinfo is missing;
- ``secureboot``: the SecureBoot EFI variable's bytes (``od``), ``no-efi`` on a BIOS boot;
- ``reboot``: /var/run/reboot-required; ``packages``: dpkg's status abbreviation, name, version of
  the NVIDIA driver packages (``hi`` = held); ``services``: persistenced's and fabric manager's
  ``is-active``/``is-enabled``; ``nvswitch``: entries of /proc/driver/nvidia-nvswitch/devices.
"""

from __future__ import annotations

import re
from typing import TypedDict

from pyinfra.api import FactBase

from facts._shell import quote

NVIDIA_VENDOR = "0x10de"
EFI_SECUREBOOT = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
# dpkg-query patterns: the driver, its utilities and libraries, Canonical's precompiled modules,
# NVIDIA's repository metapackages, fabric manager and NSCQ.
PACKAGE_PATTERNS = ("nvidia-*", "libnvidia-*", "linux-modules-nvidia-*", "cuda-drivers*", "nvidia-fabricmanager*", "libnvidia-nscq*")
SERVICES = ("nvidia-persistenced", "nvidia-fabricmanager")

COMMAND = "; ".join(
    [
        "echo @@pci",
        f'for d in /sys/bus/pci/devices/*; do [ "$(cat "$d/vendor" 2>/dev/null)" = {NVIDIA_VENDOR} ] && '
        'echo "${d##*/} $(cat "$d/class") $(cat "$d/device")"; done',
        "echo @@module",
        "cat /sys/module/nvidia/version 2>/dev/null",
        "echo @@nouveau",
        "[ -d /sys/module/nouveau ] && echo loaded",
        "echo @@kernel",
        "uname -r",
        "echo @@kernels",
        "ls -1 /lib/modules 2>/dev/null",
        "echo @@ko",
        "{ modinfo -F version nvidia 2>/dev/null || "
        '{ find "/lib/modules/$(uname -r)" -name "nvidia.ko*" 2>/dev/null | grep -q . && echo present; }; }',
        "echo @@secureboot",
        f"if [ -d /sys/firmware/efi ]; then od -An -tu1 {EFI_SECUREBOOT} 2>/dev/null; else echo no-efi; fi",
        "echo @@reboot",
        "[ -e /var/run/reboot-required ] && echo required",
        "echo @@packages",
        "dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\\n' " + " ".join(quote(p) for p in PACKAGE_PATTERNS) + " 2>/dev/null",
        "echo @@services",
        "for u in "
        + " ".join(SERVICES)
        + '; do echo "$u active=$(systemctl is-active "$u" 2>/dev/null) enabled=$(systemctl is-enabled "$u" 2>/dev/null)"; done',
        "echo @@nvswitch",
        "ls /proc/driver/nvidia-nvswitch/devices 2>/dev/null",
        "true",
    ]
)


class PciDevice(TypedDict):
    slot: str
    cls: str  # 0x030200
    device: str  # 0x2330


class Package(TypedDict):
    version: str
    held: bool


class NvidiaHostState(TypedDict):
    gpus: list[PciDevice]  # display controllers (class 0x03xxxx)
    nvswitches: list[PciDevice]  # bridges (class 0x0680xx)
    loaded: str | None  # the loaded module's version
    nouveau: bool
    kernel: str  # running kernel release
    flavour: str  # generic, aws, azure, gcp, lowlatency (Ubuntu); amd64, cloud-amd64 (Debian)
    kernels: list[str]  # installed kernels (/lib/modules)
    module_for_kernel: str | None  # the nvidia module's version for the running kernel ("present": unknown)
    secure_boot: str  # "on", "off", "no-efi" (BIOS), "unknown" (EFI without the variable)
    reboot_required: bool
    packages: dict[str, Package]  # installed (dpkg ii/hi) NVIDIA driver packages
    services: dict[str, dict[str, str]]  # unit -> {"active": …, "enabled": …}
    nvswitch_devices: int  # /proc/driver/nvidia-nvswitch/devices entries (the driver sees NVSwitch)


def kernel_flavour(release: str) -> str:
    """The flavour of a kernel release: what follows its ABI number.

    ``6.8.0-45-generic`` → generic, ``6.8.0-1015-aws`` → aws, ``6.8.0-1021-azure-fde`` →
    azure-fde, ``6.1.0-18-amd64`` → amd64, ``6.12.12+deb13-cloud-amd64`` → cloud-amd64.
    """
    match = re.match(r"^\d+\.\d+(?:\.\d+)?(?:[-+][0-9.]+|\+deb\d+)*-(?P<flavour>[a-z][a-z0-9\-]*)$", release.strip())
    return match.group("flavour") if match else ""


def _secure_boot(lines: list[str]) -> str:
    text = " ".join(lines).split()
    if not text:
        return "unknown"
    if text == ["no-efi"]:
        return "no-efi"
    # The variable is 4 attribute bytes then 1 value byte.
    return "on" if text[-1] == "1" else "off"


def parse(output: list[str]) -> NvidiaHostState:
    sections: dict[str, list[str]] = {}
    current = None
    for line in output:
        if line.startswith("@@"):
            current = line[2:].strip()
            sections[current] = []
        elif current is not None and line.strip():
            sections[current].append(line.strip())
    gpus: list[PciDevice] = []
    switches: list[PciDevice] = []
    for line in sections.get("pci", []):
        parts = line.split()
        if len(parts) != 3:
            continue
        device: PciDevice = {"slot": parts[0], "cls": parts[1].lower(), "device": parts[2].lower()}
        if device["cls"].startswith("0x03"):
            gpus.append(device)
        elif device["cls"].startswith("0x0680"):
            switches.append(device)
    packages: dict[str, Package] = {}
    for line in sections.get("packages", []):
        parts = line.split()
        # Status-Abbrev is 3 characters ("ii ", "hi "): installed rows only; "un"/"rc" are not.
        if len(parts) == 3 and parts[0][1:2] == "i":
            packages[parts[1]] = {"version": parts[2], "held": parts[0][0] == "h"}
    services: dict[str, dict[str, str]] = {}
    for line in sections.get("services", []):
        parts = line.split()
        if parts:
            fields = dict(part.partition("=")[::2] for part in parts[1:])
            services[parts[0]] = {"active": fields.get("active", ""), "enabled": fields.get("enabled", "")}
    kernel = (sections.get("kernel") or [""])[0]
    module = (sections.get("module") or [None])[0]
    ko = (sections.get("ko") or [None])[0]
    return {
        "gpus": gpus,
        "nvswitches": switches,
        "loaded": module,
        "nouveau": sections.get("nouveau") == ["loaded"],
        "kernel": kernel,
        "flavour": kernel_flavour(kernel),
        "kernels": sorted(sections.get("kernels", [])),
        "module_for_kernel": ko,
        "secure_boot": _secure_boot(sections.get("secureboot", [])),
        "reboot_required": sections.get("reboot") == ["required"],
        "packages": packages,
        "services": services,
        "nvswitch_devices": len(sections.get("nvswitch", [])),
    }


class NvidiaHost(FactBase[NvidiaHostState]):
    """
    The NVIDIA driver's state of a host, read in one command (see the module docstring):

    .. code:: python

        {"gpus": [{"slot": "0000:18:00.0", "cls": "0x030200", "device": "0x2330"}], "nvswitches": [],
         "loaded": "580.95.05", "nouveau": False, "kernel": "6.8.0-45-generic", "flavour": "generic",
         "kernels": ["6.8.0-45-generic"], "module_for_kernel": "580.95.05", "secure_boot": "on",
         "reboot_required": False, "packages": {"nvidia-utils-580-server": {"version": "…", "held": True}},
         "services": {"nvidia-persistenced": {"active": "active", "enabled": "enabled"}}, "nvswitch_devices": 0}
    """

    def command(self) -> str:
        return COMMAND

    @staticmethod
    def default() -> NvidiaHostState:
        return parse([])

    def process(self, output: list[str]) -> NvidiaHostState:
        return parse(output)


class AptVersions(FactBase[dict[str, list[str]]]):
    """
    The versions apt can install of each package named, best first, from ``apt-cache policy``'s
    version table: ``{"nvidia-utils-580-server": ["580.95.05-0ubuntu0.24.04.2", "580.82.07-0ubuntu0.24.04.1"]}``.
    A package apt does not know is absent; one it knows without a version has ``[]``.
    """

    def command(self, packages: list[str]) -> str:
        names = " ".join(quote(p) for p in packages)
        return f"LC_ALL=C apt-cache policy {names} 2>/dev/null; true"

    def process(self, output: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        name = None
        for line in output:
            if line and not line[0].isspace() and line.rstrip().endswith(":"):
                name = line.rstrip()[:-1]
                found[name] = []
                continue
            tokens = line.split()
            if tokens[:1] == ["***"]:
                tokens = tokens[1:]
            # A version row is "VERSION PRIORITY"; a source row "PRIORITY URL …" or "100 /var/lib/dpkg/status".
            if name and len(tokens) == 2 and tokens[1].lstrip("-").isdigit() and not tokens[0].isdigit():
                if tokens[0] not in found[name]:
                    found[name].append(tokens[0])
        return found
