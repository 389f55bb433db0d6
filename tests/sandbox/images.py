"""The sandbox's images, built from debootstrap + Debian packages + PyPI (no Docker Hub here).

Each image is tagged with a hash of its recipe (suite, packages, files, pinned wheels), so ``up``
reuses what was built before and rebuilds only when the recipe changes. Every image is one layer
(``docker import`` of a root filesystem): hosts store images with the vfs driver, which copies a
full layer per layer.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.sandbox.dockercli import LABEL, SandboxError, docker, exists

ROOT = Path(__file__).resolve().parents[2]
RECIPES = Path(__file__).resolve().parent / "recipes"
CONTROLLER_CA = Path("/etc/ssl/certs/ca-certificates.crt")
MIRROR = "http://deb.debian.org/debian"
PYTRITON = "nvidia-pytriton==0.7.0"
# The python-based onnxruntime backend (stand-in for libtriton_onnxruntime.so), shared with the verify tests.
ORT_STANDIN = ROOT / "tests" / "standin" / "onnxruntime" / "model.py"

# Bump an image's entry when its build steps below change (its tag changes, so `up` rebuilds it).
BUILD_STEPS_VERSION = {"host": "2", "registry": "1", "triton": "1"}
HOST_PACKAGES = ("systemd", "systemd-sysv", "openssh-server", "sudo", "ca-certificates", "curl", "gnupg", "iproute2", "python3")
REGISTRY_PACKAGES = ("docker-registry", "apache2-utils", "ca-certificates")
TRITON_PACKAGES = ("python3", "libpython3.11", "curl", "ca-certificates")


@dataclass(frozen=True)
class Recipe:
    """What an image is made of; its hash names the tag."""

    name: str
    suite: str
    packages: tuple[str, ...]
    files: tuple[Path, ...]
    extra: str = ""  # anything else that changes the result (wheel pins)

    def tag(self) -> str:
        """``sandbox-NAME:<hash of the recipe>``."""
        digest = hashlib.sha256()
        digest.update(f"{self.name}|{self.suite}|{','.join(self.packages)}|{self.extra}|v1".encode())
        for path in self.files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes() if path.exists() else b"<missing>")
        digest.update(BUILD_STEPS_VERSION[self.name].encode())
        return f"sandbox-{self.name}:{digest.hexdigest()[:12]}"


def host_recipe() -> Recipe:
    """Debian 13 minbase with systemd and sshd; the controller's CA bundle stands in for a corporate CA."""
    return Recipe(
        "host", "trixie", HOST_PACKAGES, (CONTROLLER_CA, RECIPES / "host" / "sshd-sandbox.conf", RECIPES / "host" / "ssh-host-keys.service")
    )


def registry_recipe() -> Recipe:
    """Debian 12 minbase with the distribution registry (stands in for nvcr.io)."""
    return Recipe("registry", "bookworm", REGISTRY_PACKAGES, ())


def _wheel_pins() -> tuple[str, ...]:
    """Wheels for the Triton stand-in: the controller's onnxruntime and numpy, so parity is exact."""
    pins = [PYTRITON]
    for dist in ("onnxruntime", "numpy"):
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            raise SandboxError(f"{dist} is not installed in this venv; run: .venv/bin/pip install -e '.[dev]'") from None
    return tuple(pins)


def triton_recipe() -> Recipe:
    """Debian 12 (python 3.11 for the pytriton stub) + tritonserver from nvidia-pytriton + ORT stand-in."""
    return Recipe("triton", "bookworm", TRITON_PACKAGES, (ORT_STANDIN, RECIPES / "triton" / "tritonserver.sh"), ",".join(_wheel_pins()))


def _log(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SandboxError(f"{what} failed: {' | '.join(tail)}")


def _debootstrap(recipe: Recipe, rootfs: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is missing; run: bash tests/sandbox/docker_daemon.sh (installs it)")
    _log(f"debootstrap {recipe.suite} for {recipe.name} (about a minute)")
    _run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}", recipe.suite, str(rootfs), MIRROR],
        f"debootstrap {recipe.suite}",
    )


def _slim(rootfs: Path) -> None:
    """Drop apt's caches: they only make every host's copy bigger."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages*", "var/cache/apt/*.bin"):
        for path in rootfs.glob(pattern):
            path.unlink()


def _import(rootfs: Path, tag: str, changes: list[str]) -> None:
    _log(f"importing {tag}")
    args = ["import"]
    for change in [*changes, f"LABEL {LABEL}.image={tag.split(':')[0]}"]:
        args += ["--change", change]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    try:
        proc = subprocess.run(["docker", *args, "-", tag], stdin=tar.stdout, capture_output=True, text=True)
    finally:
        tar.stdout.close()  # type: ignore[union-attr]
        tar.wait()
    if proc.returncode != 0 or tar.returncode != 0:
        raise SandboxError(f"docker import {tag} failed: {proc.stderr.strip()}")


def _finish_host(rootfs: Path) -> None:
    ca_dir = rootfs / "usr/local/share/ca-certificates"
    ca_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CONTROLLER_CA, ca_dir / "sandbox-controller-ca.crt")
    _run(["chroot", str(rootfs), "update-ca-certificates"], "update-ca-certificates in the host image")
    shutil.copyfile(RECIPES / "host" / "sshd-sandbox.conf", rootfs / "etc/ssh/sshd_config.d/sandbox.conf")
    (rootfs / "etc/machine-id").write_text("")  # systemd makes one per container at boot
    # No kernel modules to load in a container: masked so `systemctl is-system-running` says running.
    (rootfs / "etc/systemd/system/systemd-modules-load.service").symlink_to("/dev/null")
    (rootfs / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    # No SSH host key in the image (openssh-server's postinst made some): each container makes its
    # own at first boot (ssh-host-keys.service), so hosts do not share one and known_hosts means something.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    unit = rootfs / "etc/systemd/system/ssh-host-keys.service"
    shutil.copyfile(RECIPES / "host" / "ssh-host-keys.service", unit)
    for target in ("multi-user.target.wants", "ssh.service.wants"):
        (rootfs / "etc/systemd/system" / target).mkdir(parents=True, exist_ok=True)
        (rootfs / "etc/systemd/system" / target / "ssh-host-keys.service").symlink_to("/etc/systemd/system/ssh-host-keys.service")


def _finish_registry(rootfs: Path) -> None:
    (rootfs / "auth").mkdir(exist_ok=True)


def _finish_triton(rootfs: Path) -> None:
    if not ORT_STANDIN.exists():
        raise SandboxError(f"{ORT_STANDIN.relative_to(ROOT)} is missing (the onnxruntime backend stand-in)")
    pins = _wheel_pins()
    site = rootfs / "usr/local/lib/python3.11/dist-packages"
    with tempfile.TemporaryDirectory(prefix="sandbox-wheels-") as wheels:
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        _log("downloading wheels: " + ", ".join(pins))
        _run([*pip, "download", "-d", wheels, "--only-binary=:all:", *pins[1:]], "pip download onnxruntime/numpy")
        _run([*pip, "download", "-d", wheels, "--only-binary=:all:", "--no-deps", pins[0]], "pip download nvidia-pytriton")
        # The controller runs python 3.11 on x86_64 like the image: its wheels fit the image.
        _run([*pip, "install", "--no-index", "--find-links", wheels, "--target", str(site), *pins[1:]], "pip install onnxruntime/numpy")
        _run(
            [*pip, "install", "--no-index", "--find-links", wheels, "--target", str(site), "--no-deps", pins[0]],
            "pip install nvidia-pytriton",
        )
    server = site / "pytriton/tritonserver"
    python_backend = rootfs / "opt/tritonserver/backends/python"
    python_backend.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(server / "backends/python" / name, python_backend / name)
    shutil.copy2(server / "python_backend_stubs/3.11/triton_python_backend_stub", python_backend / "triton_python_backend_stub")
    ort_backend = rootfs / "opt/tritonserver/backends/onnxruntime"
    ort_backend.mkdir(parents=True)
    shutil.copy2(ORT_STANDIN, ort_backend / "model.py")
    shutil.copy2(RECIPES / "triton/tritonserver.sh", rootfs / "usr/local/bin/tritonserver")
    shutil.rmtree(site / "bin", ignore_errors=True)


_FINISH = {"host": _finish_host, "registry": _finish_registry, "triton": _finish_triton}
_CHANGES = {
    "host": ["ENV container=docker", 'CMD ["/sbin/init"]'],  # stop signal: given at docker run
    "registry": ['CMD ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]'],
    "triton": [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "WORKDIR /opt/tritonserver",
        'CMD ["tritonserver", "--help"]',
    ],
}


def ensure(recipe: Recipe) -> str:
    """The image tag for ``recipe``, built now when this machine does not have it yet."""
    tag = recipe.tag()
    if exists("image", tag):
        return tag
    work = Path(tempfile.mkdtemp(prefix=f"sandbox-{recipe.name}-", dir="/var/tmp"))
    try:
        rootfs = work / "rootfs"
        _debootstrap(recipe, rootfs)
        _FINISH[recipe.name](rootfs)
        _slim(rootfs)
        _import(rootfs, tag, _CHANGES[recipe.name])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tag


def ensure_all() -> dict[str, str]:
    """Build (or reuse) the three images; returns their tags by role."""
    return {recipe.name: ensure(recipe) for recipe in (host_recipe(), registry_recipe(), triton_recipe())}


def remove_stale() -> None:
    """Remove sandbox images whose recipe changed (keeps the current ones)."""
    current = {host_recipe().tag(), registry_recipe().tag(), triton_recipe().tag()}
    out = docker("images", "--filter", f"label={LABEL}.image", "--format", "{{.Repository}}:{{.Tag}}")
    for tag in out.split():
        if tag not in current:
            docker("rmi", tag, check=False)
