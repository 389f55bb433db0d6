"""Hosts for pyinfra's `@fake` connector: what real Ubuntu 24.04 GPU and Debian 13 CPU hosts answer.

The fake connector runs nothing; it answers each command with the first canned response whose
matcher is a substring of it (unmatched commands succeed with no output). The outputs below are
shaped exactly like the real commands' (os-release files, `nvidia-smi --format=csv`, `df -PB1`,
`dpkg -l`), so the real facts parse them and the real operations plan against them.

`fresh_*` hosts are bare servers; `converged_*` answer what a host says after a successful deploy,
computed from the same settings and templates the deploy uses.
"""

from __future__ import annotations

UBUNTU_2404_RELEASE = """\
/etc/lsb-release
DISTRIB_ID=Ubuntu
DISTRIB_RELEASE=24.04
DISTRIB_CODENAME=noble
DISTRIB_DESCRIPTION="Ubuntu 24.04.3 LTS"
---
/etc/os-release
PRETTY_NAME="Ubuntu 24.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.3 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
---"""

DEBIAN_13_RELEASE = """\
/etc/os-release
PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
DEBIAN_VERSION_FULL=13.1
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
---"""

DEBIAN_12_RELEASE = DEBIAN_13_RELEASE.replace("13 (trixie)", "12 (bookworm)").replace(
    'VERSION_ID="13"', 'VERSION_ID="12"'
).replace("trixie", "bookworm").replace("13.1", "12.12")

H100_X2 = [
    "0, NVIDIA H100 80GB HBM3, GPU-5d0b4c2e-6a3f-9a1e-8c57-2f0d8e3b1a44, 575.57.08, 81559, 9.0",
    "1, NVIDIA H100 80GB HBM3, GPU-9e1f7a63-0c2d-4b8e-a1f5-7d3c6b2e0f19, 575.57.08, 81559, 9.0",
    "__FACT_RC__=0",
]
RTX4090_OLD_DRIVER = [
    "0, NVIDIA GeForce RTX 4090, GPU-0f6c1f5e-2d8a-4c1b-9b3e-5a7d2c8e4f61, 550.144.03, 24564, 8.9",
    "__FACT_RC__=0",
]
SMI_NO_DRIVER = [
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that "
    "the latest NVIDIA driver is installed and running.",
    "__FACT_RC__=9",
]

DF_PLENTY = [
    "Filesystem      1-blocks         Used    Available Capacity Mounted on",
    "/dev/nvme0n1p2 1967317618688 402653184000 1464579706880      22% /",
]
DF_ALMOST_FULL = [
    "Filesystem      1-blocks         Used    Available Capacity Mounted on",
    "/dev/sda1      107374182400 104857600000   2516582400      98% /",
]


def dpkg_line(package: str, version: str) -> str:
    """One `dpkg -l` row as dpkg prints it."""
    return f"ii  {package:<40} {version:<30} amd64        {package} package"


DPKG_HEADER = [
    "Desired=Unknown/Install/Remove/Purge/Hold",
    "| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend",
    "|/ Err?=(none)/Reinst-required (Conf-files/Unpacked/halF-inst/trig-aWait/Trig-pend)",
    "||/ Name                                     Version                        Architecture Description",
    "+++-========================================-==============================-============-===========",
    dpkg_line("bash", "5.2.21-2ubuntu4"),
    dpkg_line("curl", "8.5.0-2ubuntu10.6"),
    dpkg_line("python3", "3.12.3-0ubuntu2"),
]


def responses(release: str, smi: list[str] | None, df: list[str], extra: dict | None = None) -> dict:
    """fake_responses for one host: specific matchers first (first match wins)."""
    table: dict = dict(extra or {})
    table["ls -pdL *-release"] = release.splitlines()
    table["nvidia-smi --query-gpu"] = smi if smi is not None else []
    table["df -PB1"] = df
    table["dpkg --print-architecture"] = ["amd64"]
    table.setdefault("dpkg -l", DPKG_HEADER)
    return table


def host(name: str, data: dict, table: dict) -> tuple[str, dict]:
    return f"@fake/{name}", {**data, "fake_responses": table, "fake_delay": 0, "fake_delay_jitter": 0}


# Settings every fake host shares; tests/test_plan.py adds the local Hub's model data. The parity
# check needs a real Triton (tests/test_verify_*.py, the sandbox e2e), not a fake connector.
SETTINGS: dict = {"verify_enabled": False}
