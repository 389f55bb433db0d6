"""The driver step's host-side commands run for real (no GPU here: what can run, runs).

- The NvidiaHost fact's command in this machine's shell: it exits 0, reads the running kernel and
  finds no NVIDIA device (this machine has none: the answer is checked against /sys and uname).
- Debian's install command (deploys/host_base/driver.py:debian_install_command: versions resolved
  on the host, held) with real apt and dpkg in the sandbox host image (Debian 13), against a local
  apt repository standing in for NVIDIA's CUDA repository: empty packages with the repository's
  names and versions (the real one is out of reach here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploys.host_base.driver import DriverPlan, debian_install_command
from facts.nvidia_host import COMMAND, parse
from tests.sandbox import images


def test_nvidia_host_command_reads_this_machine() -> None:
    proc = subprocess.run(["bash", "-c", COMMAND], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    state = parse(proc.stdout.splitlines())
    assert state["kernel"] == os.uname().release
    vendors = [p.read_text().strip() for p in Path("/sys/bus/pci/devices").glob("*/vendor")]
    assert len(state["gpus"]) + len(state["nvswitches"]) == vendors.count("0x10de") == 0
    assert state["loaded"] is None and state["packages"] == {}


# The stand-in repository: branch 590 (newer), 580 (two releases), fabric manager under its
# branch-suffixed name, NSCQ unsuffixed (NVIDIA's repositories have carried both spellings).
PACKAGES = {
    "nvidia-driver-cuda": ["590.44.01-1", "580.95.05-1", "580.82.07-1"],
    "nvidia-kernel-open-dkms": ["590.44.01-1", "580.95.05-1", "580.82.07-1"],
    "nvidia-fabricmanager-580": ["580.95.05-1", "580.82.07-1"],
    "libnvidia-nscq": ["590.44.01-1", "580.95.05-1"],
}


def _build_repository(root: Path, packages: dict[str, list[str]]) -> None:
    for name, versions in packages.items():
        for version in versions:
            pkg = root / "build" / f"{name}_{version}"
            (pkg / "DEBIAN").mkdir(parents=True)
            (pkg / "DEBIAN" / "control").write_text(
                f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: test <test@example.invalid>\nDescription: stand-in\n"
            )
            subprocess.run(
                ["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(root / f"{name}_{version}_all.deb")],
                check=True,
                capture_output=True,
            )
    shutil.rmtree(root / "build")
    listing = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=root, check=True, capture_output=True, text=True).stdout
    (root / "Packages").write_text(listing)


def _install_in_debian(repo: Path, command: str) -> subprocess.CompletedProcess[str]:
    image = images.ensure(images.host_recipe())  # built once per recipe (minutes the first time)
    script = (
        "rm -f /etc/apt/sources.list.d/* /etc/apt/sources.list; "
        "echo 'deb [trusted=yes] file:/repo ./' > /etc/apt/sources.list.d/local.list; "
        "apt-get update -qq >/dev/null 2>&1 || exit 3; "
        f"( {command} ) >&2 || exit $?; "
        "dpkg-query -W -f='${Package} ${Version}\\n' 'nvidia-*' 'libnvidia-*'; echo HOLDS; apt-mark showhold"
    )
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{repo}:/repo:ro", "--entrypoint", "bash", image, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def docker_ok() -> None:
    if shutil.which("dpkg-deb") is None or shutil.which("dpkg-scanpackages") is None:
        pytest.skip("dpkg-deb/dpkg-scanpackages missing (tests/system_deps.sh)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon (bash tests/sandbox/docker_daemon.sh)")


PLAN = DriverPlan(
    "install", distro="debian", hold=("nvidia-driver-cuda", "nvidia-kernel-open-dkms", "nvidia-fabricmanager", "libnvidia-nscq")
)


def test_debian_install_takes_the_newest_of_the_branch_at_one_version_and_holds_it(tmp_path: Path, docker_ok: None) -> None:
    _build_repository(tmp_path, PACKAGES)
    proc = _install_in_debian(tmp_path, debian_install_command(PLAN, 580))
    assert proc.returncode == 0, proc.stderr[-2000:]
    installed, _, held = proc.stdout.partition("HOLDS")
    assert sorted(installed.split("\n")) == sorted(
        [
            "",
            "nvidia-driver-cuda 580.95.05-1",
            "nvidia-kernel-open-dkms 580.95.05-1",
            "nvidia-fabricmanager-580 580.95.05-1",
            "libnvidia-nscq 580.95.05-1",
        ]
    ), installed
    assert sorted(held.split()) == ["libnvidia-nscq", "nvidia-driver-cuda", "nvidia-fabricmanager-580", "nvidia-kernel-open-dkms"]


def test_debian_install_without_fabric_manager_at_the_drivers_version_changes_nothing(tmp_path: Path, docker_ok: None) -> None:
    _build_repository(tmp_path, {**PACKAGES, "nvidia-fabricmanager-580": ["580.82.07-1"]})
    proc = _install_in_debian(tmp_path, debian_install_command(PLAN, 580))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NVIDIA's CUDA repository has no nvidia-fabricmanager at the driver's version 580.95.05" in proc.stderr
    assert "HOLDS" not in proc.stdout


def test_debian_install_of_a_branch_the_repository_lacks_is_one_line(tmp_path: Path, docker_ok: None) -> None:
    _build_repository(tmp_path, PACKAGES)
    proc = _install_in_debian(tmp_path, debian_install_command(PLAN, 570))
    assert proc.returncode == 1
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "NVIDIA's CUDA repository has no nvidia-driver-cuda on branch 570; pick another nvidia_driver_branch"
    )
