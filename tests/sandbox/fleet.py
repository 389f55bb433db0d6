"""Bring the sandbox fleet up, down, and report on it. State lives in ``.sandbox/<name>/``.

A sandbox is: a Docker network, a registry container (alias ``sandbox-registry`` on that network,
htpasswd auth, the stand-in Triton image pushed under the NGC path and tag), and N host containers
(systemd + sshd, SSH on 127.0.0.1 ports, a per-sandbox key). With ``up --registry-cache``: the host
``cache1`` and an anonymous, read-only view of the registry's storage (alias ``sandbox-upstream``,
recipes/registry/upstream.yml) that the cache proxies. Every container, network and volume
carries the label ``triton-embeddinggemma.sandbox=<name>`` and is removed by it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.sandbox import images
from tests.sandbox.dockercli import LABEL, SandboxError, docker, inspect, labelled
from tests.support.webhook_sink import WebhookSink

ROOT = images.ROOT
STATE_ROOT = ROOT / ".sandbox"
NGC_IMAGE_PATH = "nvidia/tritonserver:25.05-py3"  # the pinned NGC image's repository path and tag
REGISTRY_ALIAS = "sandbox-registry"  # how the hosts reach the registry on the sandbox network
REGISTRY_USER = "$oauthtoken"  # NGC's user name for API keys, kept so the login step is unchanged
MODEL_NAME = "embeddinggemma"  # model_name default: the served name clients send as `model`
GATEWAY_PORT = 6080  # the embeddings gateway's port in each host (gateway_listen_port default)
FRONT_DOOR = "front1"  # the front-door host (inventory group front_door), with `up --front-door`
FRONT_DOOR_PORT = 8080  # HAProxy's port on it (front_door_port default)
MONITORING = "mon1"  # the monitoring host (inventory group monitoring), with `up --monitoring`
PROMETHEUS_PORT = 9090  # Prometheus's port on it (monitoring_port default)
ALERTMANAGER_PORT = 9093  # Alertmanager's port on it (monitoring_alertmanager_port default), also published
PAGER_PORT = 19095  # on mon1's loopback: the end of the SSH tunnel to the pager stand-in (a webhook sink on the controller's loopback)
REGISTRY_CACHE = "cache1"  # the registry cache host (inventory group registry_cache), with `up --registry-cache`
REGISTRY_CACHE_PORT = 5000  # docker-registry's port on it (registry_cache_port default)
UPSTREAM_ALIAS = "sandbox-upstream"  # the registry's anonymous, read-only view, which the cache proxies
SOPS = Path(sys.executable).parent / "sops"

# Container flags that run systemd here without --privileged (see the field notes).
HOST_FLAGS = (
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--stop-signal",
    "SIGRTMIN+3",
)


def _log(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def state_dir(name: str) -> Path:
    """``.sandbox/<name>``: keys, vault, registry auth and state.json of one sandbox."""
    return STATE_ROOT / name


def load_state(name: str) -> dict[str, Any] | None:
    """The sandbox's state.json, or None when it is not up."""
    path = state_dir(name) / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _write_private(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)


def _run(cmd: list[str], what: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SandboxError(f"{what} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return proc.stdout


# -- keys and the vault --


def _ensure_keys(sdir: Path) -> None:
    """A per-sandbox SSH key and age key (created once)."""
    sdir.mkdir(parents=True, exist_ok=True)
    if not (sdir / "id_ed25519").exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"sandbox-{sdir.name}", "-f", str(sdir / "id_ed25519")], "ssh-keygen")
    if not (sdir / "age.key").exists():
        if shutil.which("age-keygen") is None:
            raise SandboxError("age-keygen is missing; run: bash tests/system_deps.sh (installs age)")
        _run(["age-keygen", "-o", str(sdir / "age.key")], "age-keygen")
        os.chmod(sdir / "age.key", 0o600)


def _sops_env(sdir: Path) -> dict[str, str]:
    return {**os.environ, "SOPS_AGE_KEY_FILE": str(sdir / "age.key")}


def _read_vault(sdir: Path) -> dict[str, Any]:
    vault = sdir / "secrets.sops.yaml"
    if not vault.exists():
        return {}
    out = _run([str(SOPS), "decrypt", "--output-type", "json", str(vault)], "sops decrypt of the sandbox vault", env=_sops_env(sdir))
    return json.loads(out)


def _write_vault(sdir: Path, values: dict[str, str]) -> None:
    """Encrypt ``values`` with the sandbox's age key; the plaintext goes through stdin only."""
    recipient = _run(["age-keygen", "-y", str(sdir / "age.key")], "age-keygen -y").strip()
    out = _run(
        [
            str(SOPS),
            "encrypt",
            "--age",
            recipient,
            "--input-type",
            "json",
            "--output-type",
            "yaml",
            "--filename-override",
            "secrets.sops.yaml",
            "/dev/stdin",
        ],
        "sops encrypt of the sandbox vault",
        stdin=json.dumps(values),
        env=_sops_env(sdir),
    )
    _write_private(sdir / "secrets.sops.yaml", out)


def registry_password(sdir: Path) -> str:
    """The sandbox's NGC key: NGC_API_KEY when set, else the vault's, else a new one (vaulted).

    The vault also holds one gateway API key (kept once made); a copy for clients is ``api_key``
    (0600) in the sandbox directory, the file ``status --json`` names."""
    vaulted = _read_vault(sdir)
    key = os.environ.get("NGC_API_KEY") or vaulted.get("ngc_api_key") or secrets.token_urlsafe(32)
    api_keys = vaulted.get("gateway_api_keys") or ["sandbox-" + secrets.token_hex(20)]
    # The deploy's vault (deploys/core/vault.py) looks a registry other than nvcr.io up in `registries`.
    login = {f"{REGISTRY_ALIAS}:5000": {"username": REGISTRY_USER, "password": key}}
    # Alertmanager's receiver (mon1): the pager stand-in through the tunnel, a token in its URL like a real pager's.
    alerting = vaulted.get("alertmanager") or {
        "receivers": [{"name": "sandbox-pager", "webhook_url": f"http://127.0.0.1:{PAGER_PORT}/hook?token=pager-{secrets.token_hex(12)}"}]
    }
    stale = (
        vaulted.get("ngc_api_key") != key
        or vaulted.get("registries") != login
        or vaulted.get("gateway_api_keys") != api_keys
        or vaulted.get("alertmanager") != alerting
    )
    if stale or ("hf_token" in vaulted and not vaulted["hf_token"]):
        values: dict[str, Any] = {"ngc_api_key": key, "registries": login, "gateway_api_keys": api_keys, "alertmanager": alerting}
        if vaulted.get("hf_token"):
            values["hf_token"] = vaulted["hf_token"]
        _write_vault(sdir, values)
    _write_private(api_key_file(sdir.name), api_keys[0])
    return key


def rotate_api_key(name: str) -> str:
    """Replace the sandbox's gateway API key with a new one (vault and ``api_key``); returns it."""
    sdir = state_dir(name)
    values = _read_vault(sdir)
    values["gateway_api_keys"] = ["sandbox-" + secrets.token_hex(20)]
    _write_vault(sdir, values)
    _write_private(api_key_file(name), values["gateway_api_keys"][0])
    return values["gateway_api_keys"][0]


def api_key_file(name: str) -> Path:
    """The file holding the sandbox's gateway API key (for curl, the openai SDK and the tests)."""
    return state_dir(name) / "api_key"


# -- network and registry --


def _ensure_network(name: str) -> str:
    net = f"{name}-net"
    if inspect("network", net) is None:
        docker("network", "create", "--label", f"{LABEL}={name}", net)
    return net


def _htpasswd_ok(image: str, auth_dir: Path, password: str) -> bool:
    if not (auth_dir / "htpasswd").exists():
        return False
    proc = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "-v",
            f"{auth_dir}:/auth:ro",
            image,
            "htpasswd",
            "-vi",
            "/auth/htpasswd",
            REGISTRY_USER,
        ],
        input=password,
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


def _ensure_registry(name: str, image: str, net: str, password: str) -> int:
    """Run the registry (recreated when its image or password changed); returns its loopback port."""
    sdir = state_dir(name)
    auth_dir = sdir / "registry"
    auth_dir.mkdir(parents=True, exist_ok=True)
    container = f"{name}-registry"
    current = inspect("container", container)
    fresh_auth = not _htpasswd_ok(image, auth_dir, password)
    if fresh_auth:
        # bcrypt hash made inside the registry image; the password goes through stdin.
        hashed = docker("run", "--rm", "-i", "--network", "none", image, "htpasswd", "-niB", REGISTRY_USER, stdin=password)
        _write_private(auth_dir / "htpasswd", hashed)
        os.chmod(auth_dir / "htpasswd", 0o644)  # the registry runs as root in its container; hash only
    stale = current is not None and (fresh_auth or current["Config"]["Image"] != image or not current["State"]["Running"])
    if stale:
        docker("rm", "-f", container)
    if current is None or stale:
        _log(f"starting registry {container}")
        docker(
            "run",
            "-d",
            "--name",
            container,
            "--label",
            f"{LABEL}={name}",
            "--restart",
            "unless-stopped",
            "--network",
            net,
            "--network-alias",
            REGISTRY_ALIAS,
            "-p",
            "127.0.0.1::5000",
            "-v",
            f"{images.RECIPES / 'registry' / 'config.yml'}:/etc/docker/registry/config.yml:ro",
            "-v",
            f"{auth_dir}:/auth:ro",
            "--mount",
            f"type=volume,src={name}-registry-data,dst=/var/lib/docker-registry,volume-label={LABEL}={name}",
            image,
        )
    port = _published_port(container, "5000/tcp")
    _wait_http(port)
    return port


def _ensure_upstream(name: str, image: str, net: str) -> str:
    """The registry's storage served anonymously and read-only (the cache's upstream); its container name.

    A stand-in detail, not a product one: distribution 2.8's proxy sends a credential only to an
    upstream with a bearer token realm (nvcr.io has one), and the sandbox registry has htpasswd auth.
    """
    container = f"{name}-upstream"
    current = inspect("container", container)
    if current is not None and (current["Config"]["Image"] != image or not current["State"]["Running"]):
        docker("rm", "-f", container)
        current = None
    if current is None:
        _log(f"starting the cache's upstream {container}")
        docker(
            "run",
            "-d",
            "--name",
            container,
            "--label",
            f"{LABEL}={name}",
            "--restart",
            "unless-stopped",
            "--network",
            net,
            "--network-alias",
            UPSTREAM_ALIAS,
            "-v",
            f"{images.RECIPES / 'registry' / 'upstream.yml'}:/etc/docker/registry/config.yml:ro",
            "--mount",
            f"type=volume,src={name}-registry-data,dst=/var/lib/docker-registry,readonly,volume-label={LABEL}={name}",
            image,
        )
    return container


def push_tag(name: str, tag: str) -> str:
    """Push the stand-in Triton image again under another tag of the NGC repository; its reference
    as the hosts name it (same layers: the registry stores nothing new)."""
    state = load_state(name)
    if state is None:
        raise SandboxError(f"sandbox {name}: not up")
    port = state["registry"]["port"]
    config = state_dir(name) / "docker-config"
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    repo = NGC_IMAGE_PATH.split(":")[0]
    target = f"127.0.0.1:{port}/{repo}:{tag}"
    docker("tag", state["images"]["triton"], target)
    _run(["docker", "push", "-q", target], f"docker push of the Triton stand-in as {tag}", env=env)
    docker("rmi", target, check=False)
    return f"{REGISTRY_ALIAS}:5000/{repo}:{tag}"


# One access-log line of the distribution registry (combined log format, on its stdout).
_ACCESS_LINE = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) (?P<bytes>\d+|-)'
)


def blob_bytes_served(access_log: str) -> int:
    """Bytes of blob bodies a registry sent (GET .../blobs/sha256:..., 200 or 206), from its access log."""
    total = 0
    for line in access_log.splitlines():
        m = _ACCESS_LINE.match(line.strip())
        if m and m["method"] == "GET" and "/blobs/sha256:" in m["path"] and m["status"] in ("200", "206") and m["bytes"] != "-":
            total += int(m["bytes"])
    return total


def upstream_blob_bytes(name: str) -> int:
    """What the stand-in for nvcr.io (the registry and, with a cache, its anonymous view) served as blobs."""
    total = blob_bytes_served(docker("logs", f"{name}-registry", check=False))
    if inspect("container", f"{name}-upstream") is not None:
        total += blob_bytes_served(docker("logs", f"{name}-upstream", check=False))
    return total


def image_bytes(name: str, reference: str = NGC_IMAGE_PATH) -> int:
    """One copy of the image's compressed blobs (config and layers), from its manifest in the registry."""
    state = load_state(name)
    if state is None:
        raise SandboxError(f"sandbox {name}: not up")
    repo, tag = reference.rsplit(":", 1)
    auth = base64.b64encode(f"{REGISTRY_USER}:{_read_vault(state_dir(name))['ngc_api_key']}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{state['registry']['port']}/v2/{repo}/manifests/{tag}",
        headers={"Authorization": f"Basic {auth}", "Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        manifest = json.load(response)
    return int(manifest["config"]["size"]) + sum(int(layer["size"]) for layer in manifest["layers"])


def _published_port(container: str, port: str) -> int:
    out = docker("port", container, port).split()
    for line in out:
        if line.startswith("127.0.0.1:"):
            return int(line.rsplit(":", 1)[1])
    raise SandboxError(f"{container}: port {port} is not published on 127.0.0.1")


def _wait_http(port: int, timeout: float = 30) -> None:
    """Wait for the registry's HTTP answer (401 counts): docker-proxy accepts TCP before it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # 401: the registry answers and wants its login
        except (OSError, http.client.HTTPException):
            time.sleep(0.3)
    raise SandboxError(f"registry on 127.0.0.1:{port} did not answer within {timeout:.0f} s")


def _push_triton(name: str, image: str, port: int, password: str) -> str:
    """Push the stand-in Triton image as ``<registry>/nvidia/tritonserver:25.05-py3``."""
    config = state_dir(name) / "docker-config"  # the controller's login stays in the sandbox dir
    config.mkdir(exist_ok=True, mode=0o700)
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    local = f"127.0.0.1:{port}"
    _run(
        ["docker", "login", local, "-u", REGISTRY_USER, "--password-stdin"], "docker login to the sandbox registry", stdin=password, env=env
    )
    target = f"{local}/{NGC_IMAGE_PATH}"
    docker("tag", image, target)
    _log(f"pushing {image} as {REGISTRY_ALIAS}:5000/{NGC_IMAGE_PATH}")
    _run(["docker", "push", "-q", target], "docker push of the Triton stand-in", env=env)
    docker("rmi", target, check=False)  # only the tag; the image stays
    return f"{REGISTRY_ALIAS}:5000/{NGC_IMAGE_PATH}"


# -- hosts --


def host_container(name: str, host: str) -> str:
    """Container name of sandbox host ``host`` (e.g. ``host1``)."""
    return f"{name}-{host}"


def service_port(host: str) -> int:
    """The port a sandbox host publishes besides SSH: HAProxy on the front door, Prometheus on the
    monitoring host, else the gateway."""
    return {FRONT_DOOR: FRONT_DOOR_PORT, MONITORING: PROMETHEUS_PORT, REGISTRY_CACHE: REGISTRY_CACHE_PORT}.get(host, GATEWAY_PORT)


# What a host's published service port is called in its state.
_SERVICE_KEY = {FRONT_DOOR: "front_door_port", MONITORING: "prometheus_port", REGISTRY_CACHE: "registry_cache_port"}
ROLE_HOSTS = (FRONT_DOOR, MONITORING, REGISTRY_CACHE)  # hosts with a role of their own, not Triton hosts


def _start_host(name: str, host: str, image: str, net: str) -> None:
    container = host_container(name, host)
    _log(f"starting host {container}")
    docker(
        "run",
        "-d",
        "--name",
        container,
        "--hostname",
        host,
        "--label",
        f"{LABEL}={name}",
        "--label",
        f"{LABEL}.host={host}",
        *HOST_FLAGS,
        "--network",
        net,
        "-p",
        "127.0.0.1::22",
        "-p",
        f"127.0.0.1::{service_port(host)}",
        *(["-p", f"127.0.0.1::{ALERTMANAGER_PORT}"] if host == MONITORING else []),
        # Docker's data root on a volume (not the container's overlay): inner Docker can use overlay2.
        "--mount",
        f"type=volume,src={container}-docker,dst=/var/lib/docker,volume-label={LABEL}={name}",
        image,
    )


def _wait_ssh(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                if conn.recv(16).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SandboxError(f"sshd on 127.0.0.1:{port} did not answer within {timeout:.0f} s")


def _ensure_host(name: str, host: str, image: str, net: str, pubkey: str) -> dict[str, Any]:
    container = host_container(name, host)
    current = inspect("container", container)
    bindings = (current["HostConfig"].get("PortBindings") or {}) if current is not None else {}
    gateway_published = f"{service_port(host)}/tcp" in bindings and (host != MONITORING or f"{ALERTMANAGER_PORT}/tcp" in bindings)
    if current is not None and (current["Config"]["Image"] != image or not current["State"]["Running"] or not gateway_published):
        remove_host(name, host)
        current = None
    if current is None:
        _start_host(name, host, image, net)
    docker("exec", "-i", container, "sh", "-c", "umask 077; cat > /root/.ssh/authorized_keys", stdin=pubkey)
    port = _published_port(container, "22/tcp")
    _wait_ssh(port)
    hostkey = docker("exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
    return {
        "name": host,
        "container": container,
        "ssh_port": port,
        "host_key": f"{hostkey[0]} {hostkey[1]}",
        "memlock_hard": _memlock_hard(container),
        # The host's private address (sandbox network): the gateway listens there, published on loopback.
        "address": _address(container, net),
        _SERVICE_KEY.get(host, "gateway_port"): _published_port(container, f"{service_port(host)}/tcp"),
        **({"alertmanager_port": _published_port(container, f"{ALERTMANAGER_PORT}/tcp")} if host == MONITORING else {}),
    }


def _address(container: str, net: str) -> str:
    """The container's IPv4 address on the sandbox network."""
    info = inspect("container", container) or {}
    address = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(net, {}).get("IPAddress")
    if not address:
        raise SandboxError(f"{container}: no address on network {net}")
    return address


def _memlock_hard(container: str) -> int:
    """The host's hard memlock limit in bytes (-1: unlimited). Without CAP_SYS_RESOURCE nothing in
    the host can raise it, so Triton's container must ask for no more (triton_ulimit_memlock)."""
    for line in docker("exec", container, "cat", "/proc/1/limits").splitlines():
        if line.startswith("Max locked memory"):
            hard = line.split()[4]
            return -1 if hard == "unlimited" else int(hard)
    return -1


def remove_host(name: str, host: str) -> None:
    """Destroy one host: its container and its Docker volume (a rebuild starts from scratch)."""
    container = host_container(name, host)
    docker("rm", "-f", "-v", container, check=False)
    docker("volume", "rm", "-f", f"{container}-docker", check=False)


# -- model mirror --


MODEL_REPO_ID = "sandbox/tiny-embeddinggemma-onnx"  # not a Hub repository: the sandbox model's name in the lock
TINYMODEL = ROOT / "tests" / "support" / "tinymodel.py"  # the tokenizer (both models) and the tiny graph
WINDOW_FIXTURE = ROOT / "tests" / "data" / "attention_window"  # make fixtures: transformers' Gemma 3, exported without its window
GEMMA3_MAX_TOKENS = 512  # the gemma3 model's max length (EmbeddingGemma: 2048): see ensure_model_mirror


@dataclass(frozen=True)
class SandboxModel:
    """One of the sandbox's two models, laid out like the Hub repository (stand-in for the Hub).

    ``gemma3`` (``make sandbox``, tests/test_e2e.py): tests/data/attention_window/eager, an
    EmbeddingGemma-shaped Gemma 3 (12 layers, every 6th full, window ±8) exported WITHOUT its sliding
    window like the real export, so every deploy runs the attention-window repair and its guards and the
    long verify samples cross the window. ``tiny`` (the front door's, the faults' and the bench's fleets):
    tests/support/tinymodel.py's one-attention-layer graph, whose guard fails (not EmbeddingGemma-shaped) so the
    upstream graph is served; it keeps the load tests' figures comparable run to run (the gemma3 model's
    12 layers admitted 2.26 overload requests a second here, the tiny one 45). Both use tinymodel.py's
    tokenizer and EmbeddingGemma's exact I/O contract.
    """

    kind: str

    @property
    def mirror(self) -> Path:
        """The repository's files as the deploy fetches them (model_fetch=mirror)."""
        return STATE_ROOT / f"model-{self.kind}-mirror"

    @property
    def served(self) -> Path:
        """The same files with the graph the deploy serves (the repaired one for gemma3): the e2e tests'
        local ONNX Runtime judge."""
        return self.mirror if self.kind == "tiny" else STATE_ROOT / f"model-{self.kind}-served"

    @property
    def lock(self) -> Path:
        return STATE_ROOT / f"model-{self.kind}.lock.json"

    @property
    def window(self) -> int:
        """Its attention window (model_sliding_window; the verify samples' long lengths follow it)."""
        from verify.samples import WINDOW  # EmbeddingGemma's: the tiny graph has no window to repair

        return int(json.loads((WINDOW_FIXTURE / "fixture.json").read_text())["window"]) if self.kind == "gemma3" else WINDOW

    @property
    def max_tokens(self) -> int:
        from tests.support.openai_checks import MAX_LENGTH

        return GEMMA3_MAX_TOKENS if self.kind == "gemma3" else MAX_LENGTH


SANDBOX_MODELS = ("gemma3", "tiny")


def sandbox_model(state: dict[str, Any]) -> SandboxModel:
    """The model a sandbox's state says it serves."""
    return SandboxModel(state.get("sandbox_model", "tiny"))


def ensure_model_mirror(kind: str = "gemma3") -> dict[str, Any]:
    """Build ``kind``'s mirror (SandboxModel) and its lock, once per recipe; return the inventory's model settings.

    Rebuilt when its sources change (their sha1 is the "revision"); the lock records every file's sha256
    so the sandbox runs with ``model_require_lock: true``.
    """
    import onnx

    from deploys.core import attention_window, model_lock  # the deploy's own lock format and repair

    if kind not in SANDBOX_MODELS:
        raise SandboxError(f"sandbox model {kind!r}: allowed {', '.join(SANDBOX_MODELS)}")
    model = SandboxModel(kind)
    if not TINYMODEL.exists():
        raise SandboxError("tests/support/tinymodel.py is missing (the sandbox's model source)")
    fixture = WINDOW_FIXTURE / "eager"
    meta = json.loads((WINDOW_FIXTURE / "fixture.json").read_text())
    digest = hashlib.sha1(TINYMODEL.read_bytes())
    if kind == "gemma3":
        for part in ("model.onnx", "model.onnx_data"):
            digest.update((fixture / part).read_bytes())
    revision = digest.hexdigest()
    recipe = model.mirror.with_name(model.mirror.name + ".recipe")  # kept outside: the mirror holds the repository's files only
    ready = model.mirror.is_dir() and model.served.is_dir() and model.lock.exists()
    if not (ready and recipe.exists() and recipe.read_text() == revision):
        shutil.rmtree(model.mirror, ignore_errors=True)
        shutil.rmtree(model.served, ignore_errors=True)
        _run([sys.executable, "-m", "tests.support.tinymodel", str(model.mirror)], "python -m tests.support.tinymodel")
        if kind == "gemma3":
            for part in ("model.onnx", "model.onnx_data"):
                shutil.copyfile(fixture / part, model.mirror / "onnx" / part)
                (model.mirror / "onnx" / part).chmod(0o644)
            shutil.copytree(model.mirror, model.served)
            graph = onnx.load(str(model.mirror / "onnx" / "model.onnx"), load_external_data=False)
            shape = attention_window.Shape(tuple(meta["layer_types"]), meta["window"])
            (model.served / "onnx" / "model.onnx").write_bytes(attention_window.graph_bytes(attention_window.repair(graph, shape)))
        paths = model_lock.variant_files("fp32")
        entries = {p: model_lock.LockEntry(model_lock.sha256_file(model.mirror / p), (model.mirror / p).stat().st_size) for p in paths}
        model.lock.unlink(missing_ok=True)
        model_lock.write(MODEL_REPO_ID, revision, entries, model.lock)
        recipe.write_text(revision)
    settings: dict[str, Any] = {
        "model_mirror": str(model.mirror),
        "model_repo_id": MODEL_REPO_ID,
        "model_revision": revision,
        "model_lock_file": str(model.lock.relative_to(ROOT)),
    }
    if kind == "gemma3":
        settings |= {
            "model_attention_layers": len(meta["layer_types"]),
            "model_sliding_window": meta["window"],
            # What the gemma3 model costs on the CPU stand-in, paid by every deploy's parity check (re-runs
            # too): its 12 layers' attention is O(n²), so it reads at most GEMMA3_MAX_TOKENS (64 windows;
            # verify's long samples follow the window: verify/samples.py), and latency, which nothing judges
            # on a CPU stand-in, is timed over 2 requests (docs/models.md, "Long inputs").
            "verify_max_length": GEMMA3_MAX_TOKENS,
            "gateway_max_tokens": GEMMA3_MAX_TOKENS,
            "verify_latency_iterations": 2,
        }
    return settings


# -- the commands --


def up(
    name: str, hosts: int, front_door: bool = False, monitoring: bool = False, registry_cache: bool = False, model: str = "gemma3"
) -> dict[str, Any]:
    """Create or update the sandbox ``name`` with exactly ``hosts`` Triton hosts (and the front-door
    host ``front1`` when ``front_door``, the monitoring host ``mon1`` when ``monitoring``, the
    registry cache ``cache1`` and its upstream when ``registry_cache``), serving the SandboxModel
    ``model``; returns its state."""
    tags = images.ensure_all()
    images.remove_stale()  # images of older recipes (ones still in use by containers stay)
    sdir = state_dir(name)
    _ensure_keys(sdir)
    password = registry_password(sdir)
    net = _ensure_network(name)
    port = _ensure_registry(name, tags["registry"], net, password)
    triton_image = _push_triton(name, tags["triton"], port, password)
    model_settings = ensure_model_mirror(model)
    pubkey = (sdir / "id_ed25519.pub").read_text()
    wanted = (
        [f"host{i}" for i in range(1, hosts + 1)]
        + ([FRONT_DOOR] if front_door else [])
        + ([MONITORING] if monitoring else [])
        + ([REGISTRY_CACHE] if registry_cache else [])
    )
    for container in labelled("container", name):
        host = container[len(name) + 1 :]
        if (host.startswith("host") or host in ROLE_HOSTS) and host not in wanted:
            remove_host(name, host)
    upstream = _ensure_upstream(name, tags["registry"], net) if registry_cache else None
    if not registry_cache:
        docker("rm", "-f", f"{name}-upstream", check=False)
    every = [_ensure_host(name, host, tags["host"], net, pubkey) for host in wanted]
    fleet = [h for h in every if h["name"] not in ROLE_HOSTS]
    (sdir / "known_hosts").write_text("".join(f"[127.0.0.1]:{h['ssh_port']} {h['host_key']}\n" for h in every))
    state = {
        "name": name,
        "network": net,
        "images": tags,
        "registry": {"container": f"{name}-registry", "port": port, "host": f"{REGISTRY_ALIAS}:5000", "user": REGISTRY_USER},
        "triton_image": triton_image,
        "ssh_key": str(sdir / "id_ed25519"),
        "known_hosts": str(sdir / "known_hosts"),
        "age_key": str(sdir / "age.key"),
        "secrets_file": str((sdir / "secrets.sops.yaml").relative_to(ROOT)),
        "sandbox_model": model,  # which SandboxModel: sandbox_model(state)
        "model": model_settings,  # the inventory's model settings
        "api_key_file": str(api_key_file(name)),
        "hosts": fleet,
        "front_door": next((h for h in every if h["name"] == FRONT_DOOR), None),
        "monitoring": next((h for h in every if h["name"] == MONITORING), None),
        "registry_cache": next((h for h in every if h["name"] == REGISTRY_CACHE), None),
        "upstream": {"container": upstream, "url": f"http://{UPSTREAM_ALIAS}:5000"} if upstream else None,
    }
    _write_private(sdir / "state.json", json.dumps(state, indent=2) + "\n")
    return state


def down(name: str | None) -> None:
    """Remove the sandbox ``name`` (or every sandbox when None) by label; images stay for reuse."""
    for container in labelled("container", name):
        docker("rm", "-f", "-v", container, check=False)
    for volume in labelled("volume", name):
        docker("volume", "rm", "-f", volume, check=False)
    for network in labelled("network", name):
        docker("network", "rm", network, check=False)
    targets = [state_dir(name)] if name else [p for p in STATE_ROOT.glob("*") if (p / "state.json").exists() or (p / "age.key").exists()]
    for path in targets:
        shutil.rmtree(path, ignore_errors=True)


def status(name: str) -> str:
    """One line per container of the sandbox: name, state, SSH port."""
    state = load_state(name)
    if state is None:
        return f"sandbox {name}: not up (run make sandbox / python -m tests.sandbox up)"
    lines = [
        f"sandbox {name}: registry 127.0.0.1:{state['registry']['port']} (hosts: {state['registry']['host']}), image {state['triton_image']}"
    ]

    def line(host: dict[str, Any], service: str) -> str:
        info = inspect("container", host["container"])
        running = "running" if info and info["State"]["Running"] else "missing"
        return f"  {host['name']:8} {host['container']:24} {running:8} ssh root@127.0.0.1 -p {host['ssh_port']}  {service}".rstrip()

    for host in state["hosts"]:
        lines.append(line(host, f"gateway {gateway_url(host)}" if "gateway_port" in host else ""))
    door, mon, cache = state.get("front_door"), state.get("monitoring"), state.get("registry_cache")
    if door:
        lines.append(line(door, f"front door {front_door_url(state)}"))
    if mon:
        lines.append(line(mon, f"Prometheus {prometheus_url(state)}"))
    if cache:
        lines.append(line(cache, f"registry cache {cache['address']}:{REGISTRY_CACHE_PORT} (proxies {state['upstream']['url']})"))
    if state["hosts"] and "gateway_port" in state["hosts"][0]:
        lines.append(f"Try it (the OpenAI embeddings API {'through the front door' if door else 'of host1'}):")
        lines.append(curl_example(state))
    return "\n".join(lines)


def gateway_url(host: dict[str, Any]) -> str:
    """A host's embeddings gateway as published on the controller's loopback (OpenAI base_url: + /v1)."""
    return f"http://127.0.0.1:{host['gateway_port']}"


def curl_example(state: dict[str, Any]) -> str:
    """A curl command line that embeds one text through the front door, or else host1's gateway."""
    body = json.dumps({"model": MODEL_NAME, "input": ["How do I rotate an NGC key?"], "input_type": "query", "dimensions": 128})
    base = front_door_url(state) if state.get("front_door") else gateway_url(state["hosts"][0])
    return (
        f'  curl -sS {base}/v1/embeddings -H "Authorization: Bearer $(cat {state["api_key_file"]})" '
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


def status_json(name: str) -> dict[str, Any]:
    """The sandbox's endpoints as one JSON object (``status --json``); later roles add their URLs."""
    state = load_state(name)
    if state is None:
        raise SandboxError(f"sandbox {name}: not up (run make sandbox / python -m tests.sandbox up)")
    return {
        "name": name,
        "api_key_file": state.get("api_key_file"),
        "model": MODEL_NAME,
        "hosts": [
            {
                "name": h["name"],
                "ssh_port": h["ssh_port"],
                "address": h.get("address"),
                "gateway_url": gateway_url(h) if "gateway_port" in h else None,
            }
            for h in state["hosts"]
        ],
        **({"front_door_url": front_door_url(state)} if state.get("front_door") else {}),
        **({"prometheus_url": prometheus_url(state)} if state.get("monitoring") else {}),
        **({"alertmanager_url": alertmanager_url(state)} if state.get("monitoring") else {}),
    }


def alertmanager_url(state: dict[str, Any]) -> str:
    """The monitoring host's Alertmanager (API and UI) as published on the controller's loopback."""
    return f"http://127.0.0.1:{state['monitoring']['alertmanager_port']}"


@contextlib.contextmanager
def pager(name: str) -> Iterator[WebhookSink]:
    """The pager stand-in: a webhook sink on the controller's loopback, and an SSH tunnel from mon1's
    loopback (PAGER_PORT, where the vault's receiver points Alertmanager) to it. Bounded start."""
    state = load_state(name)
    if state is None or not state.get("monitoring"):
        raise SandboxError(f"sandbox {name}: no monitoring host (up --monitoring)")
    mon = state["monitoring"]
    with WebhookSink() as sink:
        ssh = [
            "ssh", "-N", "-i", state["ssh_key"], "-p", str(mon["ssh_port"]),
            "-o", f"UserKnownHostsFile={state['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
            "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-o", "BatchMode=yes",
            "-R", f"127.0.0.1:{PAGER_PORT}:127.0.0.1:{sink.port}", "root@127.0.0.1",
        ]  # fmt: skip
        tunnel = subprocess.Popen(ssh, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            probe = f"curl -s -o /dev/null -w '%{{http_code}}' -X POST -d '{{}}' http://127.0.0.1:{PAGER_PORT}/probe"
            deadline = time.monotonic() + 30
            while docker("exec", mon["container"], "sh", "-c", probe, check=False).strip() != "200":
                if tunnel.poll() is not None or time.monotonic() > deadline:
                    raise SandboxError(
                        f"pager tunnel to {mon['container']} did not come up: {(tunnel.stderr.read() if tunnel.stderr else b'').decode()[-300:]}"
                    )
                time.sleep(0.3)
            yield sink
        finally:
            tunnel.terminate()
            tunnel.wait(timeout=10)


def prometheus_url(state: dict[str, Any]) -> str:
    """The monitoring host's Prometheus (API and UI) as published on the controller's loopback."""
    return f"http://127.0.0.1:{state['monitoring']['prometheus_port']}"


def front_door_url(state: dict[str, Any]) -> str:
    """The front door (HAProxy in front of every gateway) as published on the controller's loopback."""
    return f"http://127.0.0.1:{state['front_door']['front_door_port']}"
