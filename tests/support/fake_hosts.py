"""Hosts for pyinfra's `@fake` connector: what real Ubuntu 24.04 GPU and Debian 13 CPU hosts answer.

The fake connector runs nothing; it answers each command with the first canned response whose
matcher is a substring of it (unmatched commands succeed with no output). The outputs below are
shaped exactly like the real commands' (os-release files, `nvidia-smi --format=csv`, `df -PB1`,
`dpkg -l`), so the real facts parse them and the real operations plan against them.

`responses()` describes a bare server; `converged_responses()` / `converged_host()` what a host
answers after a successful deploy, computed from the same settings parser, renderers, lock and
login digest the deploy uses; `drifted()` changes one of those answers.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path, PurePosixPath

from deploys.core import model_lock, model_store, paths, redact, settings, wheels
from deploys.core.endpoints import probe_endpoint
from deploys.core.paths import DOCKER_DAEMON_JSON as DAEMON_JSON
from deploys.core.paths import DOCKER_DROPIN as DROPIN
from deploys.core.paths import NVIDIA_TOOLKIT_KEYRING as KEYRING
from deploys.core.repo import GATEWAY_SRC, RUNTIME_INSTALLER, VERIFY_SRC
from deploys.deploy_lock.logic import ACQUIRE_LABEL as DEPLOY_LOCK_ACQUIRE
from deploys.deploy_lock.logic import RELEASE_LABEL as DEPLOY_LOCK_RELEASE
from deploys.deploy_lock.logic import STATUS_LABEL as DEPLOY_LOCK_STATUS
from deploys.host_base import render as host_base_render
from deploys.host_base.docker_engine import DISTRO_PACKAGES
from deploys.host_base.nvidia import TOOLKIT_PACKAGES, repo_source
from deploys.registry_cache import logic as registry_cache
from deploys.registry_cache import registry_warm
from deploys.registry_cache import render as registry_cache_render
from deploys.triton import render as triton_render
from deploys.triton.release import build as build_release
from facts.apt import SCRIPT_LABEL
from facts.deploy_lock import STATUS_MARKER as LOCK_MARKER
from facts.docker import registry_auth_digest
from facts.python import parse_host_python

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

DEBIAN_12_RELEASE = (
    DEBIAN_13_RELEASE.replace("13 (trixie)", "12 (bookworm)")
    .replace('VERSION_ID="13"', 'VERSION_ID="12"')
    .replace("trixie", "bookworm")
    .replace("13.1", "12.12")
)

H100_X2 = [
    "0, NVIDIA H100 80GB HBM3, GPU-5d0b4c2e-6a3f-9a1e-8c57-2f0d8e3b1a44, 575.57.08, 81559, 9.0",
    "1, NVIDIA H100 80GB HBM3, GPU-9e1f7a63-0c2d-4b8e-a1f5-7d3c6b2e0f19, 575.57.08, 81559, 9.0",
    "__FACT_RC__=0",
]
RTX4090_OLD_DRIVER = [
    "0, NVIDIA GeForce RTX 4090, GPU-0f6c1f5e-2d8a-4c1b-9b3e-5a7d2c8e4f61, 550.144.03, 24564, 8.9",
    "__FACT_RC__=0",
]
# A vGPU guest: nvidia-smi prints [N/A] for the compute capability.
VGPU_CC_UNKNOWN = [
    "0, GRID H100-40C, GPU-7a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d, 575.57.08, 40960, [N/A]",
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

# Exactly 2 GiB available (the default preflight_margin_gib).
DF_TWO_GIB = [
    "Filesystem      1-blocks         Used    Available Capacity Mounted on",
    "/dev/sda1      107374182400 105226698752   2147483648      98% /",
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
    table["uname -s"] = ["Linux"]  # the Os fact (server.group/user ask it)
    table["command -v useradd"] = ["/usr/sbin/useradd"]  # the Which fact (server.user asks it)
    table.setdefault("dpkg -l", DPKG_HEADER)
    # The deploy lock (deploys/deploy_lock/logic.py): free, then taken and given back by this run.
    table.setdefault(DEPLOY_LOCK_STATUS, [f"{LOCK_MARKER}free", "last="])
    table.setdefault(DEPLOY_LOCK_ACQUIRE, [f"{LOCK_MARKER}acquired"])
    table.setdefault(DEPLOY_LOCK_RELEASE, [f"{LOCK_MARKER}released"])
    # facts/python.py:HostPython (the runtimes' wheels are fetched for it): the distribution's python3.
    table.setdefault("platform.libc_ver()", [HOST_PYTHONS["ubuntu" if "ID=ubuntu" in release else "debian"]])
    return table


# `python3` on the fake hosts (Ubuntu 24.04, Debian 13), as facts/python.py:HostPython's probe prints it.
HOST_PYTHONS = {"ubuntu": "cpython 3.12 x86_64 glibc 2.39", "debian": "cpython 3.13 x86_64 glibc 2.41"}
# A controller cache already holding a stand-in file for every pin of the runtimes' locks for those
# Pythons (deploys/core/wheels.py finds them there and runs no pip: no network in a test).
WHEEL_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "test-runtime-wheels"


def seed_wheel_cache() -> Path:
    """Fill WHEEL_CACHE (idempotent) and point deploys/core/wheels.py at it (this process: the inventory's)."""
    for line in HOST_PYTHONS.values():
        pool = WHEEL_CACHE / wheels.pool_key(parse_host_python([line]) or {})
        pool.mkdir(parents=True, exist_ok=True)
        for lock in (
            VERIFY_SRC / "requirements-cpu.txt",
            VERIFY_SRC / "requirements-gpu.txt",
            GATEWAY_SRC / "requirements.txt",
            RUNTIME_INSTALLER,
        ):
            for name, version in wheels.pins(lock).items():
                wheel = pool / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
                if not wheel.exists():
                    wheel.write_bytes(b"stand-in")
    wheels.CACHE_DIR = WHEEL_CACHE
    return WHEEL_CACHE


seed_wheel_cache()


def host(name: str, data: dict, table: dict) -> tuple[str, dict]:
    return f"@fake/{name}", {**data, "fake_responses": table, "fake_delay": 0, "fake_delay_jitter": 0}


# Settings every fake host shares; tests/test_plan.py adds the local Hub's model data. The parity
# check needs a real Triton (tests/test_verify_*.py, the sandbox e2e), not a fake connector.
# The verify and gateway steps are modelled by the e2e tests (real hosts), not by canned answers.
SETTINGS: dict = {"verify_enabled": False, "gateway_enabled": False}


# -- converged hosts: what a host answers after a successful deploy --------------------------------
#
# Every answer below is computed from the code the deploy itself runs (settings parsing, the
# renderers, the lock the model step checks against, the login digest), so a deploy change that
# would stop a re-run from being a no-op shows up as a change in tests/test_plan.py, not as a
# fixture quietly drifting along. What is hard-coded is only what the host adds on its own: the
# runtime nvidia-ctk registers, image and container ids, systemd's answers.

# What `nvidia-ctk runtime configure --runtime=docker` adds to daemon.json.
NVIDIA_CTK_RUNTIMES = {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}
# `docker info --format '{{json .Runtimes}}'` on a GPU host after the toolkit step (CPU: no nvidia).
DOCKER_INFO_RUNTIMES = {
    "io.containerd.runc.v2": {"path": "runc"},
    "runc": {"path": "runc"},
    "nvidia": {"path": "nvidia-container-runtime"},
}
# Installed versions of what deploys/host_base/docker.py installs (and containerd, runc) per distribution.
DISTRO_DOCKER_VERSIONS = {
    "ubuntu": {
        "docker.io": "27.5.1-0ubuntu3~24.04.2",
        "docker-compose-v2": "2.33.0+ds1-0ubuntu1~24.04.1",
        "apparmor": "4.0.1really4.0.1-0ubuntu0.24.04.4",
        "containerd": "1.7.27-0ubuntu1~24.04.1",
        "runc": "1.2.5-0ubuntu1~24.04.1",
    },
    "debian": {
        "docker.io": "26.1.5+dfsg1-9+b9",
        "docker-cli": "26.1.5+dfsg1-9+b9",
        "docker-compose": "2.32.4-3",
        "containerd": "1.7.24~ds1-6+b4",
        "runc": "1.1.15+ds1-2+b4",
    },
}
TRITON_IMAGE_ID = "sha256:" + "3f1b" * 16
CONTAINER_ID = "9c2e" * 16
STAT_TIME = 1760000000  # atime/mtime/ctime in the stat answers; no operation here compares times


def os_release_key(release: str) -> tuple[str, int]:
    """(ID, major VERSION_ID) from an os-release text, as preflight.distro_key reads them."""
    fields = dict(line.split("=", 1) for line in release.splitlines() if "=" in line)
    return fields["ID"].strip('"').lower(), int(fields["VERSION_ID"].strip('"').split(".")[0])


def _mode_string(kind: str, mode: int) -> str:
    """``stat -c %A`` text for an octal-looking int such as 755: ``drwxr-xr-x``."""
    bits = "".join(
        ("r" if digit & 4 else "-") + ("w" if digit & 2 else "-") + ("x" if digit & 1 else "-") for digit in (int(d) for d in f"{mode:03d}")
    )
    return ("d" if kind == "directory" else "-") + bits


TRITON_KEY_SHA256 = hashlib.sha256(b"0123456789abcdef" * 4).hexdigest()  # a converged host's Triton API key file


def stat_answer(path: str, kind: str, mode: int, size: int = 4096, user: str = "root", mtime: int = STAT_TIME) -> tuple[str, list[str]]:
    """(matcher, output) for pyinfra's File/Directory fact on ``path`` (a GNU ``stat -c`` line)."""
    line = f"user={user} group={user} mode={_mode_string(kind, mode)} atime={mtime} mtime={mtime} ctime={mtime} size={size} '{path}'"
    # The fact's command starts `! (test -e PATH || test -L PATH )`: " ||" right after the path
    # keeps /etc/docker from matching /etc/docker/daemon.json.
    return f"test -e {path} ||", [line]


def hash_answer(tool: str, path: str, digest: str) -> tuple[str, list[str]]:
    """(matcher, output) for pyinfra's Sha1File/Sha256File fact (``sha1sum``/``sha256sum`` line)."""
    return f"{tool} {path} 2>", [f"{digest}  {path}"]


def model_links_answer(weights: dict[str, str], release_inodes: dict[str, int] | None = None) -> list[str]:
    """The TritonModelLinks fact's output: each store file and its release link, one inode each
    (``release_inodes``: name → another inode for a release file that is not the store's)."""
    lines = []
    for i, name in enumerate(sorted(weights)):
        inode = 2146453 + i
        lines += [f"store 65024:{inode} {name}", f"release 65024:{(release_inodes or {}).get(name, inode)} {name}"]
    return lines


def key_fingerprint_answer(path: str, fingerprints: list[str]) -> tuple[str, list[str]]:
    """(matcher, output) for facts.apt.AptKeyFingerprints on ``path``: the keyring's primary keys."""
    return f"{SCRIPT_LABEL} {path}", [",".join(fingerprints) or "none"]


def converged_responses(
    release: str, smi: list[str] | None, df: list[str], data: dict, ngc_key: str, name: str = "converged", cache: str | None = None
) -> dict:
    """fake_responses of a host on which `deploys/all.py` already ran with host data ``data``.

    ``data`` is the host's data as the inventory gives it (SETTINGS, the hub fixture's model keys,
    ``gpu``); ``ngc_key`` the key `docker login` stored. Covers docker_source=distro (the default).
    ``cache``: the ``host:port`` of a plain-HTTP registry cache the fleet pulls through (then
    daemon.json lists it as insecure, the image is the cache's and no login is stored).
    """
    s = settings.parse(f"@fake/{name}", data)
    if s.docker_source != "distro":
        raise ValueError("converged_responses models docker_source=distro only")
    gpu = bool(smi) if s.gpu == "auto" else bool(s.gpu)
    table: dict = {}

    def stat(path: str, kind: str, mode: int, content: bytes | None = None) -> None:
        matcher, answer = stat_answer(path, kind, mode, len(content) if content is not None else 4096)
        table[matcher] = answer
        if content is not None:  # files.put compares sha1 first
            tool_matcher, line = hash_answer("sha1sum", path, hashlib.sha1(content).hexdigest())
            table[tool_matcher] = line

    # Docker step: packages, daemon.json (plus nvidia-ctk's runtime on GPU hosts), service.
    distro = os_release_key(release)
    versions = DISTRO_DOCKER_VERSIONS[distro[0]]
    packages = {name: versions[name] for name in (*DISTRO_PACKAGES[distro], "containerd", "runc")}
    insecure = list(s.docker_insecure_registries) + ([cache] if cache and cache not in s.docker_insecure_registries else [])
    daemon = host_base_render.merged_daemon_config({"runtimes": NVIDIA_CTK_RUNTIMES} if gpu else None, s, insecure_registries=insecure)
    image = f"{cache}/{s.triton_image_ref.split('/', 1)[1]}" if cache else s.triton_image_ref
    daemon_text = host_base_render.daemon_json(daemon)
    # The fact masks URL credentials on the host (sed); their digest comes from another fact.
    table[f"' {DAEMON_JSON}; fi"] = ["__FACT_FILE_PRESENT__", *redact.mask(daemon_text).splitlines()]
    table[f"{DAEMON_JSON} || true; }}"] = [f"{redact.credentials_digest(daemon_text)}  -"]
    stat("/etc/docker", "directory", 755)
    # A file holding credentials is 0600 (written through stdin: only sha256 facts look at it).
    stat(DAEMON_JSON, "file", 600 if redact.has_credentials(daemon_text) else 644, daemon_text.encode())
    if s.docker_service_env:
        dropin = host_base_render.docker_dropin(s)
        stat(DROPIN.rsplit("/", 1)[0], "directory", 755)
        stat(DROPIN, "file", 600 if redact.has_credentials(dropin) else 644, dropin.encode())
        matcher, line = hash_answer("sha256sum", DROPIN, hashlib.sha256(dropin.encode()).hexdigest())
        table[matcher] = line
    table["--property SubState docker.service"] = ["Id=docker.service", "SubState=running"]
    table["--property UnitFileState docker.service"] = ["Id=docker.service", "UnitFileState=enabled"]
    runtimes = DOCKER_INFO_RUNTIMES if gpu else {k: v for k, v in DOCKER_INFO_RUNTIMES.items() if k != "nvidia"}
    table["docker info --format"] = [json.dumps(runtimes)]

    # NVIDIA Container Toolkit step (GPU hosts): keyring, apt source, pinned packages.
    if gpu:
        stat("/etc/apt/keyrings", "directory", 755)
        matcher, answer = key_fingerprint_answer(KEYRING, [s.nvidia_toolkit_key_fingerprint])
        table[matcher] = answer
        source = repo_source(s)
        table["##PYINFRA_FILE"] = ["##PYINFRA_FILE /etc/apt/sources.list.d/nvidia-container-toolkit.list", source, ""]
        packages.update({package: s.nvidia_toolkit_version for package in TOOLKIT_PACKAGES})
    table["dpkg -l"] = DPKG_HEADER + [dpkg_line(p, v) for p, v in packages.items()]

    # Registry step: the image is there and Docker stores this key's login for registry_host.
    table["docker image inspect --format"] = [TRITON_IMAGE_ID]
    if not cache:
        table["python3 -I -c"] = [registry_auth_digest(s.registry_username, ngc_key)]

    # Model step: each file of the variant carries the sha256 the lock pins.
    layout = paths.layout(s)
    lock = model_lock.read(s.model_repo_id, s.model_revision, Path(s.model_lock_file))
    for repo_path in model_lock.variant_files(s.model_variant):
        dest = model_store.destination(s, repo_path)
        matcher, line = hash_answer("sha256sum", dest, lock[repo_path].sha256 or "")
        table[matcher] = line
    for path in (layout.root, layout.models_dir, layout.model_dir, layout.version_dir, layout.tokenizer_dir):
        stat(path, "directory", 755)

    # Triton step: the release of these settings (config, compose file, model files linked from the
    # store) is current, and the container runs it with its labels.
    weights = {
        PurePosixPath(repo_path).name: lock[repo_path].sha256 or ""
        for repo_path in model_lock.variant_files(s.model_variant)
        if repo_path.startswith("onnx/")
    }
    spec = build_release(s, gpu, weights, layout, image=image)
    live = spec.paths
    # Triton's restricted-API key: made on the host before (0600 root, 0700 dir), the gateway's copy
    # the same, and the container carries its sha256.
    stat(layout.triton_key_dir, "directory", 700)
    stat(layout.triton_key, "file", 600)
    for key_file in (layout.triton_key, layout.gateway.triton_key):
        matcher, line = hash_answer("sha256sum", key_file, TRITON_KEY_SHA256)
        table[matcher] = line
    table["readlink current"] = [f"current releases/{live.id}", "previous ", f"release {STAT_TIME} releases/{live.id}/"]
    if s.triton_tensorrt:
        stat(layout.trt_cache_dir, "directory", 755)
    stat(layout.releases_dir, "directory", 755)
    for path in (live.dir, live.config_file.rsplit("/", 1)[0], live.version_dir):
        stat(path, "directory", 755)
    # The release's model files are hard links of the store's: the same device and inode.
    # (Matched on this release's path: a new release's directory has no files yet.)
    table[f"[ -f {live.version_dir}/{sorted(weights)[0]} ] && stat -c 'release"] = model_links_answer(weights)
    stat(live.config_file, "file", 644, spec.config.encode())
    stat(live.compose_file, "file", 644, spec.compose.encode())
    labels = {
        "com.docker.compose.project": triton_render.COMPOSE_PROJECT,
        "com.docker.compose.service": "triton",
        "com.docker.compose.project.config_files": live.compose_file,
        **spec.labels,
        triton_render.TRITON_KEY_LABEL: TRITON_KEY_SHA256,
    }
    container = [
        {
            "Id": CONTAINER_ID,
            "Name": "/" + triton_render.container_name(s),
            "Image": TRITON_IMAGE_ID,
            "RestartCount": 0,
            "State": {"Status": "running", "Running": True, "Health": {"Status": "healthy"}},
            "Config": {"Image": image, "Labels": labels},
        }
    ]
    table[f"docker container inspect {triton_render.container_name(s)}"] = json.dumps(container, indent=4).splitlines()
    # Only the published HTTP port answers: a run that moves the port finds nothing listening there.
    table[f"{probe_endpoint(s, s.triton_http_port)}/v2/health/live"] = ["live 200", "ready 200", "model_ready 200"]
    return responses(release, smi, df, table)


def converged_host(
    name: str, data: dict, release: str, smi: list[str] | None, df: list[str], ngc_key: str, cache: str | None = None
) -> tuple[str, dict]:
    """A fake host on which the deploy already ran with ``data`` (see :func:`converged_responses`)."""
    return host(name, data, converged_responses(release, smi, df, data, ngc_key, name, cache=cache))


# Installed versions of what the registry cache step installs (illustrative: apt.packages compares names).
REGISTRY_CACHE_VERSIONS = {"docker-registry": "2.8.3+ds1-2", "curl": "8.14.1-2", "python3": "3.13.5-1"}


def converged_cache_responses(release: str, df: list[str], data: dict, ngc_key: str, name: str = "cache") -> dict:
    """fake_responses of a registry cache host (group ``registry_cache``) on which the deploy already
    ran with ``data`` (plain HTTP or TLS without a vault here: ``registry_auth`` vault with ``ngc_key``)."""
    s = settings.parse(f"@fake/{name}", data)
    table: dict = {}

    def stat(path: str, kind: str, mode: int, content: bytes | None = None, user: str = "root", mtime: int = STAT_TIME) -> None:
        matcher, answer = stat_answer(path, kind, mode, len(content) if content is not None else 4096, user, mtime)
        table[matcher] = answer
        if content is not None:
            tool_matcher, line = hash_answer("sha1sum", path, hashlib.sha1(content).hexdigest())
            table[tool_matcher] = line

    table["dpkg -l"] = DPKG_HEADER + [dpkg_line(p, v) for p, v in REGISTRY_CACHE_VERSIONS.items()]
    stat("/var/lib/apt/periodic/update-success-stamp", "file", 644, mtime=int(time.time()))  # apt ran within cache_time
    stat(s.registry_cache_storage_dir, "directory", 750, user=registry_cache.USER)
    stat(registry_cache.DROPIN.rsplit("/", 1)[0], "directory", 755)
    stat(registry_cache.DROPIN, "file", 644, registry_cache.dropin().encode())
    config = registry_cache_render.registry_cache_config(s, s.registry_username, ngc_key, "")
    matcher, line = hash_answer("sha256sum", registry_cache.CONFIG, hashlib.sha256(config.encode()).hexdigest())
    table[matcher] = line
    stat(registry_cache.WARM_SCRIPT.rsplit("/", 1)[0], "directory", 755)
    stat(registry_cache.WARM_SCRIPT, "file", 644, Path(registry_warm.__file__).read_bytes())
    table["registry_warm.py check"] = ["warm"]  # the cache's storage holds every image the fleet pulls
    unit = f"{registry_cache.SERVICE}.service"
    table[f"--property SubState {unit}"] = [f"Id={unit}", "SubState=running"]
    table[f"--property UnitFileState {unit}"] = [f"Id={unit}", "UnitFileState=enabled"]
    return responses(release, None, df, table)


def answering(fake_host: tuple[str, dict], answers: dict) -> tuple[str, dict]:
    """``fake_host`` with ``answers`` (matcher → output) before its other canned answers (first match wins)."""
    name, data = fake_host
    return name, {**data, "fake_responses": {**answers, **data["fake_responses"]}}


def drifted(fake_host: tuple[str, dict], matcher_part: str, answer: list[str]) -> tuple[str, dict]:
    """``fake_host`` with one canned answer replaced: the one whose matcher contains ``matcher_part``."""
    name, data = fake_host
    table = dict(data["fake_responses"])
    keys = [key for key in table if isinstance(key, str) and matcher_part in key]
    if len(keys) != 1:
        raise ValueError(f"{matcher_part!r} picks {len(keys)} canned answers, not one")
    table[keys[0]] = answer
    return name, {**data, "fake_responses": table}
