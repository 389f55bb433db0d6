"""Every path the deploy uses on a host, spelled once; every step, fact and renderer asks this module.

Under ``{triton_dir}`` (:func:`layout`)::

    models/{model_name}/1/<model files>              the model store (the model step keeps it)
    tokenizer/                                        tokenizer.json & co. (the verify step reads it)
    trt-cache/                                        TensorRT engines (GPU hosts with triton_tensorrt)
    triton-api/key                                    Triton's restricted-API key (0700 dir, 0600 file, root;
                                                      generated on the host, mounted read-only into Triton)
    releases/<id>/docker-compose.yml                  mounts releases/<id>/models read-only
    releases/<id>/models/{model_name}/config.pbtxt
    releases/<id>/models/{model_name}/1/<files>       hard links of the store's files (no extra space)
    current  -> releases/<id>                         the live release
    previous -> releases/<id>                         the one before (deploys/rollback.py goes back to it)
    verify/venv, verify/verify, ...                   the verify runtime (:class:`VerifyPaths`)
    gateway/venv, gateway/embeddings_gateway, ...     the embeddings gateway (:class:`GatewayPaths`)
    wheels/                                           both runtimes' wheels, from the controller
    uv/uv-<version>, uv/cache/                        the runtimes' installer and its cache (shared: a wheel unpacked once)

System files the deploy manages (Docker, apt) are the module constants below. A new host path (a
new role's directory under ``{triton_dir}``, a lock file) is a new attribute here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from deploys.core.model_lock import VARIANT_ONNX
from deploys.core.settings import Settings

# -- system files --
APT_KEYRINGS_DIR = "/etc/apt/keyrings"
DOCKER_CE_KEYRING = f"{APT_KEYRINGS_DIR}/docker.asc"
NVIDIA_TOOLKIT_KEYRING = f"{APT_KEYRINGS_DIR}/nvidia-container-toolkit.asc"
NVIDIA_CUDA_KEYRING = f"{APT_KEYRINGS_DIR}/nvidia-cuda.asc"  # Debian GPU hosts' driver (NVIDIA's CUDA repository)
NOUVEAU_BLACKLIST = "/etc/modprobe.d/blacklist-nouveau-triton-deploy.conf"
UNATTENDED_UPGRADES_NVIDIA = "/etc/apt/apt.conf.d/51triton-deploy-nvidia-driver"  # keeps the driver out of unattended-upgrades
REBOOT_REQUIRED = "/var/run/reboot-required"  # Debian/Ubuntu packages ask for a reboot here (tmpfs: a reboot clears it)
DOCKER_CONFIG_DIR = "/etc/docker"
DOCKER_DAEMON_JSON = f"{DOCKER_CONFIG_DIR}/daemon.json"
DOCKER_DROPIN_DIR = "/etc/systemd/system/docker.service.d"
DOCKER_DROPIN = f"{DOCKER_DROPIN_DIR}/10-triton-deploy.conf"
DOCKER_DATA_ROOT = "/var/lib/docker"
DOCKER_CLIENT_CONFIG = "/root/.docker/config.json"  # where `docker login` (as root) stores credentials
GATEWAY_UNIT = "embeddings-gateway.service"
GATEWAY_UNIT_FILE = f"/etc/systemd/system/{GATEWAY_UNIT}"
HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"  # the front door's live config (Debian's haproxy.service reads it)
HAPROXY_ADMIN_SOCKET = "/run/haproxy/admin.sock"  # the front door's runtime API (level admin, root only)
HAPROXY_BACKEND = "gateways"  # the HAProxy backend of every Triton host's gateway (one server per host)
HAPROXY_FALLBACK_BACKEND = "gateways_fallback"  # the same servers unchecked: used only when no server of HAPROXY_BACKEND is UP
HAPROXY_TLS_PEM = "/etc/haproxy/certs/front-door.pem"  # certificate chain + key from the vault, 0600
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"  # the monitoring host's scrape config (Debian's prometheus package)
PROMETHEUS_RULES = "/etc/prometheus/rules/triton-embeddinggemma.yml"  # the alert rules the config names
PROMETHEUS_DEFAULTS = "/etc/default/prometheus"  # ARGS of Debian's prometheus.service: listen address, retention
PROMETHEUS_DATA_DIR = "/var/lib/prometheus/metrics2"  # the TSDB (Debian's default storage path)
ALERTMANAGER_CONFIG = (
    "/etc/prometheus/alertmanager.yml"  # Debian's prometheus-alertmanager reads it; holds the receivers' secrets: 0600, its service user's
)
ALERTMANAGER_DEFAULTS = (
    "/etc/default/prometheus-alertmanager"  # ARGS of Debian's prometheus-alertmanager.service: listen address, no cluster
)
ALERTMANAGER_DATA_DIR = "/var/lib/prometheus/alertmanager"  # silences and the notification log (Debian's default storage path)
ALERTMANAGER_USER = "prometheus"  # the user Debian's prometheus-alertmanager.service runs as
NODE_EXPORTER_DEFAULTS = "/etc/default/prometheus-node-exporter"  # ARGS of Debian's prometheus-node-exporter.service
GRAFANA_EXPORT_DIR = "/etc/prometheus/grafana"  # on the monitoring host: provisioning files + dashboard for a user's Grafana
# The deploy lock (deploys/deploy_lock/logic.py), on every host of the inventory, whatever its role.
# Under /run/lock (tmpfs): a reboot clears it. ``held/`` exists while a run holds the lock (mkdir is
# the atomic test-and-set), ``held/record`` names the holder, ``last-run`` the run that released last.
DEPLOY_LOCK_DIR = "/run/lock/triton-embeddinggemma-deploy"
DEPLOY_LOCK_HELD = f"{DEPLOY_LOCK_DIR}/held"
DEPLOY_LOCK_RECORD = f"{DEPLOY_LOCK_HELD}/record"
DEPLOY_LOCK_LAST_RUN = f"{DEPLOY_LOCK_DIR}/last-run"
# On a Triton host: a roll drained it and has not put it back yet (deploys/core/rolling.py). A run
# killed mid-roll leaves it, so the next run finishes that roll even when none of the host's files
# change. Not under /run: the front doors keep the host drained across its reboot.
ROLL_PENDING = "/var/lib/triton-embeddinggemma-deploy/roll-pending"
GRAFANA_DASHBOARDS_DIR = "/var/lib/grafana/dashboards/triton-embeddinggemma"  # on the user's Grafana: the provider's path
# The registry cache (deploys/registry_cache/): Debian's docker-registry package serves REGISTRY_CACHE_CONFIG.
REGISTRY_CACHE_CONFIG = "/etc/docker/registry/config.yml"
REGISTRY_CACHE_TLS_PEM = "/etc/docker/registry/cache-tls.pem"  # certificate chain + key from the vault, 0600 docker-registry
REGISTRY_CACHE_DROPIN = "/etc/systemd/system/docker-registry.service.d/10-triton-deploy.conf"
REGISTRY_CACHE_WARM_SCRIPT = "/usr/local/lib/triton-embeddinggemma/registry_warm.py"  # deploys/registry_cache/registry_warm.py, uploaded
DOCKER_CERTS_DIR = "/etc/docker/certs.d"  # on Triton hosts: <endpoint>/ca.crt, the CA Docker trusts the cache by

# -- names relative to {triton_dir} (shell commands run there: ``cd {triton_dir} && ...``) --
RELEASES = "releases"
CURRENT = "current"
PREVIOUS = "previous"

# -- inside the Triton container: the compose file mounts the host directories here --
MODELS_MOUNT = "/models"
TRT_CACHE_MOUNT = "/trt-cache"
TRITON_KEY_MOUNT = "/run/triton-api"  # the host's triton-api/ directory, read-only
TRITON_KEY_NAME = "key"  # the key file's name in that directory (host and container)


def onnx_filename(variant: str) -> str:
    """The variant's graph file name inside ``1/`` (config.pbtxt ``default_model_filename``)."""
    return PurePosixPath(VARIANT_ONNX[variant]).name


@dataclass(frozen=True)
class Release:
    """Host paths of one release (absolute); ``id`` is the release id, or ``current``."""

    id: str
    dir: str
    compose_file: str
    models_dir: str
    config_file: str
    version_dir: str


@dataclass(frozen=True)
class VerifyPaths:
    """Host paths of the verify runtime."""

    base: str
    venv: str
    code: str
    contract: str  # embeddinggemma.py beside the code (the model's contract, shared with the gateway)
    wheels: str  # the runtimes' wheels ({triton_dir}/wheels, shared with the gateway): the install uses no index
    uv: str  # the runtimes' installer and its cache ({triton_dir}/uv, shared with the gateway)
    requirements: str
    installed: str  # copy of the lock last installed
    report: str
    log: str
    pycache: str  # PYTHONPYCACHEPREFIX of the check: bytecode compiled once, not on every run
    passed_key: str  # what the last passing check saw (Triton's container, the gateway, the files, the flags): a re-run may reuse it


@dataclass(frozen=True)
class GatewayPaths:
    """Host paths of the embeddings gateway (its unit file is GATEWAY_UNIT_FILE)."""

    base: str
    venv: str
    code: str  # the embeddings_gateway package; the unit runs ``python -m embeddings_gateway`` in ``base``
    contract: str  # embeddinggemma.py beside it (the model's contract, shared with verify/)
    old_code: str  # where the code lived before it left verify/ (removed)
    wheels: str  # the runtimes' wheels ({triton_dir}/wheels, shared with verify): the install uses no index
    uv: str  # the runtimes' installer and its cache ({triton_dir}/uv, shared with verify)
    requirements: str
    installed: str  # copy of the lock last installed
    config: str
    api_keys: str  # sha256 of each accepted API key, 0600 for the service user
    verify_key: str  # the verify step's own key, 0600 for root
    triton_key: str  # the gateway's copy of Triton's restricted-API key, 0600 for the service user


@dataclass(frozen=True)
class Layout:
    """Where the deploy puts things on a host (absolute paths, all under ``triton_dir``)."""

    root: str
    model_name: str
    compose_file: str  # before releases (removed by the triton step)
    models_dir: str  # the model store
    model_dir: str
    config_file: str  # before releases (removed by the triton step)
    version_dir: str
    onnx_file: str
    onnx_data_file: str  # name recorded inside the graph: never rename it
    tokenizer_dir: str
    trt_cache_dir: str  # only used when TensorRT is on
    triton_key_dir: str  # mounted read-only into Triton at TRITON_KEY_MOUNT
    triton_key: str  # Triton's restricted-API key (0600 root), generated on the host
    releases_dir: str
    current: str
    previous: str
    verify: VerifyPaths
    gateway: GatewayPaths
    dcgm_exporter_compose: str  # GPU hosts of a fleet with a monitoring host

    def release(self, release_id: str) -> Release:
        """Where release ``release_id`` lives."""
        return _release(release_id, f"{self.releases_dir}/{release_id}", self.model_name)

    @property
    def current_release(self) -> Release:
        """The live release, through the ``current`` link (what Triton serves)."""
        return _release(CURRENT, self.current, self.model_name)


def _release(release_id: str, base: str, model_name: str) -> Release:
    return Release(
        id=release_id,
        dir=base,
        compose_file=f"{base}/docker-compose.yml",
        models_dir=f"{base}/models",
        config_file=f"{base}/models/{model_name}/config.pbtxt",
        version_dir=f"{base}/models/{model_name}/1",
    )


def _verify(root: str) -> VerifyPaths:
    base = f"{root}/verify"
    return VerifyPaths(
        base=base,
        venv=f"{base}/venv",
        code=f"{base}/verify",
        contract=f"{base}/embeddinggemma.py",
        wheels=f"{root}/wheels",
        uv=f"{root}/uv",
        requirements=f"{base}/requirements.txt",
        installed=f"{base}/venv/installed-requirements.txt",
        report=f"{base}/last-report.json",
        log=f"{base}/last-run.log",
        pycache=f"{base}/pycache",
        passed_key=f"{base}/last-pass.key",
    )


def _gateway(root: str) -> GatewayPaths:
    base = f"{root}/gateway"
    return GatewayPaths(
        base=base,
        venv=f"{base}/venv",
        code=f"{base}/embeddings_gateway",
        contract=f"{base}/embeddinggemma.py",
        old_code=f"{base}/verify",
        wheels=f"{root}/wheels",
        uv=f"{root}/uv",
        requirements=f"{base}/requirements.txt",
        installed=f"{base}/venv/installed-requirements.txt",
        config=f"{base}/gateway.json",
        api_keys=f"{base}/api-keys.sha256",
        verify_key=f"{root}/verify/gateway.key",
        triton_key=f"{base}/triton-api.key",
    )


def layout(s: Settings) -> Layout:
    """The host layout for ``s``: made once per run for the same settings (the run context keeps it;
    it depends only on triton_dir, model_name and model_variant)."""
    from deploys.core import context

    key = (s.triton_dir, s.model_name, s.model_variant)
    made = context.run_cache("paths.layout")
    if key not in made:
        made[key] = _layout(s)
    return made[key]


def _layout(s: Settings) -> Layout:
    root = s.triton_dir.rstrip("/") or "/"
    models = f"{root}/models"
    model = f"{models}/{s.model_name}"
    graph = onnx_filename(s.model_variant)
    return Layout(
        root=root,
        model_name=s.model_name,
        compose_file=f"{root}/docker-compose.yml",
        models_dir=models,
        model_dir=model,
        config_file=f"{model}/config.pbtxt",
        version_dir=f"{model}/1",
        onnx_file=f"{model}/1/{graph}",
        onnx_data_file=f"{model}/1/{graph}_data",
        tokenizer_dir=f"{root}/tokenizer",
        trt_cache_dir=f"{root}/trt-cache",
        triton_key_dir=f"{root}/triton-api",
        triton_key=f"{root}/triton-api/{TRITON_KEY_NAME}",
        releases_dir=f"{root}/{RELEASES}",
        current=f"{root}/{CURRENT}",
        previous=f"{root}/{PREVIOUS}",
        verify=_verify(root),
        gateway=_gateway(root),
        dcgm_exporter_compose=f"{root}/dcgm-exporter/docker-compose.yml",
    )
