"""The NVIDIA driver step through the real pyinfra CLI on `@fake` hosts (issue 26's matrix).

Bare GPU hosts (the PCI bus shows NVIDIA devices, no driver) on Ubuntu 22.04/24.04 (generic and aws
kernels) and Debian 12/13, NVSwitch hosts, Secure Boot with and without a signed module, a newer
kernel installed than running, a pre-installed driver (≥ 575: left alone; < 575: manage replaces
it), a CPU host, and a converged HGX host (0 changes). The facts' answers are canned in the
layouts the real commands print (tests/support/fake_gpu_hosts.py); the policy, the operations and
the CLI are the real ones. What only a real GPU host can show is listed in docs/driver.md.
"""

from __future__ import annotations

import json
import re

import pytest

from deploys.host_base import driver
from facts.nvidia_host import parse
from tests.support import fake_gpu_hosts as g
from tests.test_plan import changed_ops, hub, run_fleet  # noqa: F401 (hub: the fixture)

UBU22 = "6.8.0-87-generic"  # 22.04's HWE kernel
AWS_RUNNING, AWS_NEWER = "6.8.0-1015-aws", "6.8.0-1018-aws"
DEBIAN12_KERNEL, DEBIAN13_KERNEL = "6.1.0-28-amd64", "6.12.48+deb13-amd64"
INSTALL = "NVIDIA driver | NVIDIA driver 580.95.05 (branch 580)"
HOLD = "NVIDIA driver | Hold the NVIDIA driver packages (apt-mark hold)"
DEBIAN_INSTALL = "NVIDIA driver | NVIDIA driver branch 580 (NVIDIA's CUDA repository, held)"
COMMON = (
    "NVIDIA driver | Keep the NVIDIA driver out of unattended-upgrades",
    "NVIDIA driver | Blacklist nouveau",
    "NVIDIA driver | Rebuild the initramfs (nouveau blacklisted)",
    "NVIDIA driver | nvidia-persistenced enabled",
)
FM = "NVIDIA driver | NVIDIA fabric manager enabled (NVSwitch)"


def fake(name: str) -> str:
    return f"@fake/{name}"


def driver_ops(ops: dict[str, list[str]], host: str) -> list[str]:
    return [name for name, hosts in ops.items() if name.startswith("NVIDIA driver |") and fake(host) in hosts]


def install_args(stderr: str, host: str) -> list[str]:
    """The apt-get install arguments planned for ``host`` (-vv prints the commands)."""
    for line in stderr.splitlines():
        if f"[{fake(host)}]" in line and "apt-get -y" in line and " install " in line and "nvidia" in line:
            return re.findall(r"[\w.+\-]+=[\w.:~+\-]+", line)
    return []


MATRIX = ",\n".join(
    [
        # Ubuntu 22.04, generic kernel, Secure Boot on: Canonical's signed modules exist → installed.
        g.gpu_host("u2204-sb", g.UBUNTU_2204_RELEASE, g.nvidia_host(kernel=UBU22, secure_boot="on"), g.ubuntu_archive((UBU22,))),
        # Ubuntu 24.04 on aws, a newer aws kernel installed than running, nouveau loaded.
        g.gpu_host(
            "u2404-aws",
            g.f.UBUNTU_2404_RELEASE,
            g.nvidia_host(kernel=AWS_RUNNING, kernels=(AWS_RUNNING, AWS_NEWER), nouveau=True, reboot=True),
            g.ubuntu_archive((AWS_RUNNING, AWS_NEWER)),
        ),
        # Ubuntu 24.04 HGX: 8 GPUs, 4 NVSwitches.
        g.gpu_host("u2404-hgx", g.f.UBUNTU_2404_RELEASE, g.nvidia_host(gpus=8, switches=4), g.ubuntu_archive(("6.8.0-87-generic",))),
        # A kernel without precompiled modules, Secure Boot off: DKMS is the fallback.
        g.gpu_host("u2404-dkms", g.f.UBUNTU_2404_RELEASE, g.nvidia_host(kernel="6.8.0-87-custom"), g.ubuntu_archive(())),
        # Debian 12 and 13 (its archive stops at 550): NVIDIA's CUDA repository; 13 on an NVSwitch box.
        g.gpu_host("debian12", g.f.DEBIAN_12_RELEASE, g.nvidia_host(kernel=DEBIAN12_KERNEL, secure_boot="no-efi")),
        g.gpu_host("debian13-hgx", g.f.DEBIAN_13_RELEASE, g.nvidia_host(gpus=8, switches=4, kernel=DEBIAN13_KERNEL)),
        # Pre-installed 575, loaded (someone else's): left alone, the chain goes on.
        g.gpu_host(
            "preinstalled-575",
            g.f.UBUNTU_2404_RELEASE,
            g.nvidia_host(gpus=2, loaded="575.57.08", ko="575.57.08", packages={"nvidia-driver-575-open": ("575.57.08-0ubuntu1", False)}),
            smi=g.f.H100_X2,
        ),
        # An old driver and nvidia_driver: manage: replaced by branch 580.
        g.gpu_host(
            "old-managed",
            g.f.UBUNTU_2404_RELEASE,
            g.nvidia_host(loaded="550.144.03", ko="550.144.03", packages={"nvidia-utils-550-server": ("550.144.03-0ubuntu1", True)}),
            g.ubuntu_archive(("6.8.0-87-generic",)),
            smi=g.f.RTX4090_OLD_DRIVER,
            nvidia_driver="manage",
        ),
        # No NVIDIA device at all.
        'f.host("cpu", {"gpu": "auto", **f.SETTINGS}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))',
    ]
)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """One pyinfra run over the whole matrix (each host plans independently; one run saves minutes)."""
    from tests.support.hub_server import start_with_lock
    from tests.test_plan import MODEL_FILES

    tmp = tmp_path_factory.mktemp("matrix")
    server, data = start_with_lock(tmp, MODEL_FILES)
    try:
        result = run_fleet(tmp, (server.url, data), MATRIX, "-vv")
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-4000:]
    return result, changed_ops(result)


def test_ubuntu_2204_with_secure_boot_gets_canonicals_signed_modules(matrix):
    result, ops = matrix
    assert INSTALL in driver_ops(ops, "u2204-sb") and HOLD in driver_ops(ops, "u2204-sb")
    args = install_args(result.stderr, "u2204-sb")
    assert f"linux-modules-nvidia-580-server-open-{UBU22}=6.8.0.87-generic+1".split("=")[0] in [a.split("=")[0] for a in args], args
    assert "nvidia-headless-no-dkms-580-server-open=" + g.DEB_VERSION in args and "nvidia-utils-580-server=" + g.DEB_VERSION in args
    assert not [a for a in args if "dkms-580" in a and "no-dkms" not in a], "no DKMS under Secure Boot"
    assert all(op in driver_ops(ops, "u2204-sb") for op in COMMON)
    assert FM not in driver_ops(ops, "u2204-sb")
    # The chain stops for the reboot: nothing else is planned on the host, one line says what next.
    assert "Docker | Docker packages" not in ops or fake("u2204-sb") not in ops["Docker | Docker packages"]
    assert "driver installed; reboot pending on @fake/u2204-sb: run deploys/reboot.py" in result.stderr


def test_ubuntu_aws_flavour_gets_modules_for_the_running_and_the_newer_kernel(matrix):
    result, ops = matrix
    names = [a.split("=")[0] for a in install_args(result.stderr, "u2404-aws")]
    for kernel in (AWS_RUNNING, AWS_NEWER, "aws"):
        assert f"linux-modules-nvidia-580-server-open-{kernel}" in names, names
    assert not [n for n in names if n.endswith("-generic")], "the aws flavour only"
    assert INSTALL in driver_ops(ops, "u2404-aws")


def test_nvswitch_host_gets_fabric_manager_and_nscq_at_the_drivers_exact_version(matrix):
    result, ops = matrix
    args = install_args(result.stderr, "u2404-hgx")
    assert f"nvidia-fabricmanager-580={g.FM_VERSION}" in args and f"libnvidia-nscq-580={g.FM_VERSION}" in args, args
    assert FM in driver_ops(ops, "u2404-hgx")
    assert FM in driver_ops(ops, "debian13-hgx")


def test_a_kernel_without_signed_modules_falls_back_to_dkms_when_secure_boot_is_off(matrix):
    result, _ = matrix
    names = [a.split("=")[0] for a in install_args(result.stderr, "u2404-dkms")]
    assert "nvidia-dkms-580-server-open" in names and "nvidia-headless-580-server-open" in names, names
    assert not [n for n in names if n.startswith("linux-modules-nvidia")]


@pytest.mark.parametrize("host", ["debian12", "debian13-hgx"])
def test_debian_gets_the_driver_from_nvidias_cuda_repository(matrix, host):
    result, ops = matrix
    mine = driver_ops(ops, host)
    assert DEBIAN_INSTALL in mine and "NVIDIA driver | NVIDIA CUDA apt key (signed-by keyring, fingerprint checked)" in mine, mine
    assert "NVIDIA driver | NVIDIA CUDA apt repository" in mine
    major = "12" if host == "debian12" else "13"
    assert f"compute/cuda/repos/debian{major}/x86_64/3bf863cc.pub" in result.stderr
    assert "apt-cache madison nvidia-driver-cuda | awk '$3 ~ /^580\\./" in result.stderr
    # Fabric manager is resolved at the driver's version on the NVSwitch host only (of the two).
    assert result.stderr.count("apt-cache madison nvidia-fabricmanager-580") == 1


def test_a_loaded_driver_of_575_is_left_alone_and_the_chain_goes_on(matrix):
    _, ops = matrix
    assert driver_ops(ops, "preinstalled-575") == []
    assert fake("preinstalled-575") in ops["Docker | Docker packages"]
    assert fake("preinstalled-575") in ops["Triton | Start Triton (docker compose up -d)"]


def test_an_old_driver_is_replaced_only_when_the_deploy_manages_it(matrix):
    result, ops = matrix
    assert INSTALL in driver_ops(ops, "old-managed")
    # Its packages were held: apt may move them (only this host's install line says so).
    assert result.stderr.count("--allow-change-held-packages") == 1
    assert "driver installed; reboot pending on @fake/old-managed" in result.stderr


def test_a_host_without_an_nvidia_device_gets_no_driver_operation(matrix):
    _, ops = matrix
    assert driver_ops(ops, "cpu") == []
    assert fake("cpu") in ops["Docker | Docker packages"]


@pytest.mark.parametrize(
    "host_code,message",
    [
        (
            g.gpu_host(
                "sb-custom", g.f.UBUNTU_2404_RELEASE, g.nvidia_host(kernel="6.8.0-87-custom", secure_boot="on"), g.ubuntu_archive(())
            ),
            "host @fake/sb-custom: NVIDIA driver: Secure Boot is on and Ubuntu has no signed NVIDIA 580 module for kernel 6.8.0-87-custom",
        ),
        (
            g.gpu_host("sb-debian", g.f.DEBIAN_13_RELEASE, g.nvidia_host(kernel=DEBIAN13_KERNEL, secure_boot="on")),
            "host @fake/sb-debian: NVIDIA driver: Secure Boot is on: NVIDIA's Debian packages build unsigned DKMS modules",
        ),
        (
            g.gpu_host(
                "no-fm",
                g.f.UBUNTU_2404_RELEASE,
                g.nvidia_host(gpus=8, switches=4),
                {**g.ubuntu_archive(("6.8.0-87-generic",)), "nvidia-fabricmanager-580": []},
            ),
            "host @fake/no-fm: NVIDIA driver: NVSwitch on the PCI bus but apt has no nvidia-fabricmanager-580 at the driver's version 580.95.05",
        ),
    ],
    ids=["secure-boot-no-signed-module", "secure-boot-debian", "nvswitch-without-fabric-manager-in-apt"],
)
def test_what_the_driver_step_must_not_do_ends_the_run_with_one_line(tmp_path, hub, host_code, message):
    result = run_fleet(tmp_path, hub, host_code)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]
    assert "nothing changed" in result.stderr and "Traceback" not in result.stderr
    assert not json.loads(result.stdout or "{}") or not changed_ops(result)


CONVERGED_HGX_STATE = g.nvidia_host(
    gpus=8,
    switches=4,
    loaded=g.VERSION,
    ko=g.VERSION,
    secure_boot="on",
    packages={
        "linux-modules-nvidia-580-server-open-6.8.0-87-generic": ("6.8.0-87.88+1", True),
        "nvidia-headless-no-dkms-580-server-open": (g.DEB_VERSION, True),
        "nvidia-utils-580-server": (g.DEB_VERSION, True),
        "nvidia-fabricmanager-580": (g.FM_VERSION, True),
        "libnvidia-nscq-580": (g.FM_VERSION, True),
    },
    services={"nvidia-persistenced": "active", "nvidia-fabricmanager": "active"},
)


def test_a_converged_hgx_host_plans_zero_changes(tmp_path, hub):
    result = run_fleet(tmp_path, hub, g.converged_gpu_host("hgx", g.f.UBUNTU_2404_RELEASE, CONVERGED_HGX_STATE, g.smi_rows(8, g.VERSION)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not changed_ops(result), changed_ops(result)
    assert "NVIDIA driver: driver 580.95.05 loaded" in result.stderr
    assert "Triton already READY with this configuration" in result.stderr  # the whole chain was planned


def test_nvswitch_with_the_fabric_manager_stopped_fails_preflight(tmp_path, hub):
    stopped = [line.replace("nvidia-fabricmanager active=active", "nvidia-fabricmanager active=failed") for line in CONVERGED_HGX_STATE]
    result = run_fleet(tmp_path, hub, g.converged_gpu_host("hgx", g.f.UBUNTU_2404_RELEASE, stopped, g.smi_rows(8, g.VERSION)))
    assert result.returncode != 0
    assert "host @fake/hgx: NVSwitch on the PCI bus (4) but nvidia-fabricmanager is not active (CUDA fails with error 802)" in result.stderr


# -- the policy alone (pure), for the reboot reasons deploys/reboot.py reads --


def test_reboot_reasons():
    state = parse(g.nvidia_host(loaded="575.57.08", ko=g.VERSION, reboot=True, nouveau=False))
    assert driver.reboot_reasons(state) == ["/var/run/reboot-required exists", f"driver 575.57.08 loaded, {g.VERSION} installed"]
    assert driver.reboot_reasons(parse(g.nvidia_host(loaded=g.VERSION, ko=g.VERSION))) == []
    assert driver.reboot_reasons(parse(g.nvidia_host(ko=g.VERSION))) == ["the NVIDIA module is installed but not loaded"]


# -- deploys/reboot.py: which hosts it plans to reboot (the roll itself: tests/test_e2e_front_door.py) --

REBOOT_OP = "Reboot behind the front door (1 host(s) out of the pool at a time)"
FRONT_DOOR = 'f.host("front1", dict(f.SETTINGS), f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'


def cpu_host(name: str, reboot: bool) -> str:
    state = g.nvidia_host(gpus=0, kernel=DEBIAN13_KERNEL, reboot=reboot)
    return f"f.host({name!r}, {{**f.SETTINGS, 'gpu': False}}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY, {{'echo @@pci': {state!r}}}))"


def test_reboot_plans_only_the_hosts_that_need_it(tmp_path, hub):
    waiting = g.gpu_host(
        "gpu-waiting",
        g.f.UBUNTU_2404_RELEASE,
        g.nvidia_host(ko=g.VERSION, packages={"nvidia-utils-580-server": (g.DEB_VERSION, True)}),
    )
    hosts = ",\n".join([cpu_host("host1", True), cpu_host("host2", False), waiting])
    result = run_fleet(tmp_path, hub, hosts, deploy="deploys/reboot.py", front_door=FRONT_DOOR)
    payload = json.loads(result.stdout)
    planned = next(op for op in payload["results"]["operations"] if op["name"] == REBOOT_OP)
    # Planned on exactly the two hosts that need it (the fake connector cannot reboot: the first
    # roll fails reading the boot identity, and the roll stops there, not touching the second).
    assert sorted(planned["success"] + planned["error"] + planned["no_change"]) == [fake("gpu-waiting"), fake("host1")], planned
    assert "[@fake/host2]       no reboot needed" in result.stderr
    assert "its boot identity could not be read before the reboot; it stays out of the pool and the roll stops here" in result.stderr
    assert "failed first in this run; not rebooted" in result.stderr  # the roll stopped at the first failure


def test_reboot_without_a_front_door_needs_the_setting(tmp_path, hub):
    result = run_fleet(tmp_path, hub, cpu_host("host1", True), deploy="deploys/reboot.py")
    assert result.returncode != 0
    line = (
        "host @fake/host1 needs a reboot (/var/run/reboot-required exists) but the fleet has no front door: its clients would see it go away; "
        "reboot it in a maintenance window, or set reboot_without_front_door: true"
    )
    assert line in result.stderr and "Traceback" not in result.stderr
    allowed = run_fleet(tmp_path, hub, cpu_host("host1", True), "--data", "reboot_without_front_door=true", deploy="deploys/reboot.py")
    # With the setting the roll is planned (the fake connector then cannot read a boot identity).
    assert f"Starting operation: {REBOOT_OP}" in allowed.stderr, allowed.stderr[-3000:]
    assert "needs a reboot" not in allowed.stderr


@pytest.mark.parametrize(
    "release,flavour",
    [
        ("6.8.0-87-generic", "generic"),
        ("6.8.0-1015-aws", "aws"),
        ("6.8.0-1021-azure-fde", "azure-fde"),
        ("5.15.0-1071-gcp", "gcp"),
        ("6.1.0-28-amd64", "amd64"),
        ("6.12.48+deb13-cloud-amd64", "cloud-amd64"),
        ("6.18.44-fc-v1272", "fc-v1272"),  # this development VM's kernel (captured)
        ("not-a-kernel", ""),
    ],
)
def test_kernel_flavour(release, flavour):
    from facts.nvidia_host import kernel_flavour

    assert kernel_flavour(release) == flavour
