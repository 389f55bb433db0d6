"""Every tunable of the deploy: name, type, default and a one-line doc.

Values come from pyinfra host data (inventory, ``group_data/``, ``--data``). This module is the
single place where defaults live (like an Ansible role's ``defaults/main.yml``); the README's
tunables table is generated from it (``python -m deploys.lib.settings --markdown``).

``load(host)`` returns a validated, typed :class:`Settings` for one host. ``validate_fleet`` checks
every active host before any operation runs, so a typo ends the run before any host changes.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from deploys.lib import redact
from embeddings_gateway import api as gateway_api
from verify import options

# Host-data keys with these prefixes belong to us: an unknown one is a typo, not someone else's data.
OWNED_PREFIXES = (
    "model_",
    "triton_",
    "docker_",
    "nvidia_",
    "registry_",
    "verify_",
    "preflight_",
    "secrets_",
    "rollout_",
    "gateway_",
    "front_door_",
    "monitoring_",
    "deploy_",
)
# Plain names we own as well.
OWNED_NAMES = ("gpu", "allow_plain_http")

# Settings that hold repository or endpoint URLs: plain http:// is refused in them unless
# allow_plain_http is true (the values are checked together, in _check_together).
URL_SETTINGS = (
    "docker_ce_apt_url",
    "nvidia_toolkit_apt_url",
    "verify_pip_index_url",
    "model_mirror",
    "model_token_endpoints",
    "registry_cache_upstream_url",
)

# The apt repositories' signing keys (primary-key fingerprints), as their vendors publish them:
# Docker's "Docker Release (CE deb)" key (docs.docker.com's install pages) and NVIDIA's
# libnvidia-container key (the gpgkey its repository serves; apt names it DDCAE044F796ECB0).
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
NVIDIA_TOOLKIT_KEY_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"

REFUSED_VARIANTS = {
    "fp16": "EmbeddingGemma's activations reach ~8e5, past float16's 65504: fp16 serves NaNs",
    "q4f16": "its float16 activations overflow like fp16 (EmbeddingGemma needs fp32 activations)",
}


class SettingsError(PyinfraError):
    """A user mistake in host data: printed as one line by the pyinfra CLI, no traceback. URL
    credentials in the message (a proxy's user:password) are masked (deploys/lib/redact.py)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(redact.mask(str(message)), *args)


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str
    kind: str  # shown in the README: bool, int, str, list[int], ...
    check: Callable[[Any], Any]  # returns the normalised value or raises ValueError("allowed: ...")


# -- value checkers: each returns the normalised value or raises ValueError with what is allowed --


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("allowed: true or false")


def _gpu(value: Any) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError('allowed: true, false or "auto" (read the GPU fact)')


def _int(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"allowed: an integer from {low} to {high}")
        return value

    return check


def _float(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"allowed: a number from {low} to {high}")
        return float(value)

    return check


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError("allowed: " + ", ".join(choices))
        return value

    return check


def _text(pattern: str, allowed: str) -> Callable[[Any], str]:
    regex = re.compile(pattern)

    def check(value: Any) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise ValueError(f"allowed: {allowed}")
        return value

    return check


def _ip(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise ValueError("allowed: an IP address such as 127.0.0.1 or 0.0.0.0") from None


def _ip_or_empty(value: Any) -> str:
    if value == "":
        return value
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise ValueError("allowed: an IP address such as 10.0.0.5, or empty") from None


def _host_dir(value: Any) -> str:
    """An absolute host directory; ``..`` is refused (the deploy removes and links files under it)."""
    if not isinstance(value, str) or not re.fullmatch(r"/[A-Za-z0-9_./\-]+", value) or ".." in value.split("/"):
        raise ValueError("allowed: an absolute path without '..' components")
    return value


def _subnet(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(value))
    except (ValueError, TypeError):
        raise ValueError("allowed: a CIDR network such as 10.57.0.0/24 (host bits zero)") from None


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("allowed: a list of non-empty strings")
    return list(value)


def _platforms(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) and re.fullmatch(r"[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?", v) for v in value
    ):
        raise ValueError("allowed: a list of OS/architecture[/variant] platforms such as linux/amd64, or []")
    return list(value)


def _fingerprint(value: Any) -> str:
    """An OpenPGP fingerprint as gpg prints it (spaces allowed), normalised to uppercase hex."""
    text = value.replace(" ", "").upper() if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", text):
        raise ValueError("allowed: a 40-hex-digit (v4) or 64-hex-digit (v6) key fingerprint, as `gpg --show-keys` prints it")
    return text


def _url_list(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and re.fullmatch(r"https?://\S+", v) for v in value):
        raise ValueError("allowed: a list of http(s) URLs, e.g. ['https://hf-mirror.example']")
    return [v.rstrip("/") for v in value]


def _batch_sizes(value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ValueError("allowed: a list of positive integers, e.g. [4, 8]")
    return sorted(set(value))


def _env_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("allowed: a mapping of environment variable names to strings")
    return dict(value)


def _model_variant(value: Any) -> str:
    if value in REFUSED_VARIANTS:
        raise ValueError(f"refused: {REFUSED_VARIANTS[value]}; allowed: fp32, q8, q4")
    return _choice("fp32", "q8", "q4")(value)


def _verify(option: str, kind: str, check: Callable[[Any], Any]) -> Setting:
    """A setting that is an option of the host program: name, default and doc from verify/options.py."""
    o = options.BY_NAME[option]
    return Setting(o.setting, o.default, o.doc, kind, check)


def _gateway(key: str, kind: str, doc: str) -> Setting:
    """A setting that is a key of the gateway's config: default and check from embeddings_gateway/api.py,
    so the controller refuses what the host program would refuse."""
    check = gateway_api.CHECKS[key]
    default = gateway_api.DEFAULTS[key]

    def checked(value: Any) -> Any:
        try:
            value = check(list(value) if isinstance(value, tuple) else value)
        except ValueError as error:
            raise ValueError(f"allowed: {error}") from None
        return list(value) if isinstance(value, tuple) else value

    return Setting(f"gateway_{key}", list(default) if isinstance(default, tuple) else default, doc, kind, checked)


_SHA = r"[0-9a-f]{40}"
_IMAGE = r"[a-z0-9.\-]+(:[0-9]+)?(/[a-z0-9._\-]+)+:[A-Za-z0-9._\-]+"

# One row per setting, like the README's table (the formatter leaves it alone).
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # -- host and GPU --
    Setting("gpu", "auto", 'GPU host? true, false or "auto" (auto: true when nvidia-smi lists a GPU).', "bool | auto", _gpu),
    Setting("preflight_min_free_gib", 25, "Free disk (GiB) needed under Docker's data root and triton_dir on GPU hosts that must pull the image (image, model, runtimes).", "int", _int(1, 10_000)),
    Setting("preflight_min_free_gib_cpu", 5, "Free disk (GiB) needed on CPU hosts that must pull the image (smaller images).", "int", _int(1, 10_000)),
    Setting("preflight_margin_gib", 2, "On a host that already has the image: free disk (GiB) needed beyond the model files this run adds (a converged host needs only this).", "int", _int(0, 10_000)),
    Setting("nvidia_min_driver", 575, "Minimum NVIDIA driver branch for the pinned image (Triton 25.05 needs CUDA 12.9: 575).", "int", _int(400, 10_000)),
    Setting("nvidia_datacenter_compat_branches", [470, 525, 535, 545, 560, 565, 570], "Older driver branches accepted on data-centre GPUs via CUDA forward compatibility.", "list[int]", _batch_sizes),
    Setting("nvidia_min_compute_capability", 7.5, "Minimum GPU compute capability (Triton 25.05 needs 7.5).", "float", _float(5.0, 20.0)),
    # -- package sources --
    Setting("allow_plain_http", False, "Accept plain http:// in docker_ce_apt_url, nvidia_toolkit_apt_url, verify_pip_index_url, model_mirror, model_token_endpoints and registry_cache_upstream_url (refused by default; pinned key fingerprints and hashed locks still apply).", "bool", _bool),
    # -- Docker --
    Setting("docker_source", "distro", "Where Docker comes from: distro (docker.io + compose v2 plugin) or docker-ce (Docker's apt repo).", "str", _choice("distro", "docker-ce")),
    Setting("docker_ce_version", "", 'docker-ce version pin for apt (e.g. "5:28.3.3-1~ubuntu.24.04~noble"); empty: latest.', "str", _text(r"[A-Za-z0-9.:~+\-]*", "an apt version string or empty")),
    Setting("docker_ce_apt_url", "https://download.docker.com/linux", "Docker apt repository base URL (override for a mirror); /<distro> is appended.", "str", _text(r"https?://\S+", "an http(s) URL")),
    Setting("docker_ce_key_fingerprint", DOCKER_KEY_FINGERPRINT, "Fingerprint the Docker apt key (<docker_ce_apt_url>/<distro>/gpg) must have; checked on the host before it is installed.", "str", _fingerprint),
    Setting("docker_log_max_size", "10m", "json-file log rotation: size of one log file.", "str", _text(r"[0-9]+[kmg]", "a size such as 10m")),
    Setting("docker_log_max_file", 3, "json-file log rotation: number of files kept.", "int", _int(1, 100)),
    Setting("docker_registry_mirrors", [], "daemon.json registry-mirrors.", "list[str]", _str_list),
    Setting("docker_insecure_registries", [], "daemon.json insecure-registries (host:port).", "list[str]", _str_list),
    Setting("docker_http_proxy", "", "daemon.json proxies.http-proxy for image pulls.", "str", _text(r"(https?://\S+)?", "an http(s) URL or empty")),
    Setting("docker_https_proxy", "", "daemon.json proxies.https-proxy for image pulls.", "str", _text(r"(https?://\S+)?", "an http(s) URL or empty")),
    Setting("docker_no_proxy", "", "daemon.json proxies.no-proxy (comma separated).", "str", _text(r"\S*", "a comma-separated host list or empty")),
    Setting("docker_service_env", {}, "Extra environment for docker.service (systemd drop-in), e.g. for Docker-in-container hosts.", "dict[str, str]", _env_map),
    Setting("docker_pull_timeout_s", 3600, "Seconds `docker pull` of triton_image may take (the GPU image is ~15 GB); past it the registry step fails that host with one line.", "int", _int(60, 86_400)),
    # -- NVIDIA Container Toolkit --
    Setting("nvidia_toolkit_version", "1.17.8-1", "nvidia-container-toolkit apt version pin.", "str", _text(r"[0-9][A-Za-z0-9.:~+\-]*", "an apt version such as 1.17.8-1")),
    Setting("nvidia_toolkit_apt_url", "https://nvidia.github.io/libnvidia-container", "NVIDIA container toolkit apt repository base URL (override for a mirror).", "str", _text(r"https?://\S+", "an http(s) URL")),
    Setting("nvidia_toolkit_key_fingerprint", NVIDIA_TOOLKIT_KEY_FINGERPRINT, "Fingerprint the NVIDIA toolkit apt key (<nvidia_toolkit_apt_url>/gpgkey) must have; checked on the host before it is installed.", "str", _fingerprint),
    # -- registry --
    Setting("registry_host", "nvcr.io", "Registry that serves triton_image; docker login target.", "str", _text(r"[a-z0-9.\-]+(:[0-9]+)?", "a registry host[:port]")),
    Setting("registry_username", "$oauthtoken", "Registry user ($oauthtoken for NGC API keys).", "str", _text(r"\S+", "a non-empty user name")),
    Setting("registry_auth", "vault", "Registry credentials: vault (ngc_api_key, or registries[registry_host] in secrets_file; NGC_API_KEY overrides) or none (anonymous pulls, e.g. a local mirror).", "str", _choice("vault", "none")),
    Setting("registry_logout_after_pull", False, "Log out after the image is pulled: no credential left on disk.", "bool", _bool),
    Setting("registry_image_prune", True, "After a successful deploy, remove the images of the Triton image's repositories that no kept release's compose file names (docker image rm).", "bool", _bool),
    # -- registry cache (hosts of the group registry_cache; Triton hosts read the cache host's values) --
    Setting("registry_cache_listen_address", "", "Address the registry cache listens on (cache hosts): a private address the Triton hosts reach; required there, no default (never 0.0.0.0 or loopback by accident).", "str", _ip_or_empty),
    Setting("registry_cache_port", 5000, "Port of the registry cache.", "int", _int(1, 65535)),
    Setting("registry_cache_hostname", "", "Name the Triton hosts pull from (the name the cache's TLS certificate carries); empty: registry_cache_listen_address.", "str", _text(r"([A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)*)?", "a DNS name or empty")),
    Setting("registry_cache_tls", False, "Serve the cache over HTTPS: certificate and key from the vault's registry_cache_tls (cert, key, optional ca the Triton hosts' Docker trusts).", "bool", _bool),
    Setting("registry_cache_insecure", False, "Serve the cache over plain HTTP, for private networks only: the Triton hosts list it in daemon.json insecure-registries. A cache host needs registry_cache_tls or this.", "bool", _bool),
    Setting("registry_cache_upstream_url", "", "URL the cache proxies (the cache host's registry_host, whose credential from the vault it uses); empty: https://{registry_host}. http:// needs allow_plain_http.", "str", _text(r"(https?://[A-Za-z0-9.\-]+(:[0-9]+)?)?", "an http(s)://host[:port] URL or empty")),
    Setting("registry_cache_storage_dir", "/var/lib/docker-registry", "Where the cache keeps what it pulled (Debian's default; owned by the docker-registry user).", "str", _text(r"/[A-Za-z0-9_./\-]+", "an absolute path")),
    Setting("registry_cache_warm_platforms", ["linux/amd64"], "Platforms of the Triton hosts' images the cache fetches once, before their pulls (the first step of a run); []: no warming (concurrent cold pulls then each cost an upstream fetch).", "list[str]", _platforms),
    Setting("registry_cache_max_gb", 500, "Disk (GiB) the cache may use: the registry has no size limit of its own (it drops what it cached 7 days after fetching it); every run warns when its storage holds more.", "int", _int(1, 1_000_000)),
    Setting("secrets_file", "inventories/group_data/secrets.sops.yaml", "SOPS-encrypted YAML with ngc_api_key (and hf_token), relative to the repository root.", "str", _text(r"\S+", "a file path")),
    # -- model --
    Setting("model_repo_id", "onnx-community/embeddinggemma-300m-ONNX", "Hugging Face repository of the ONNX export.", "str", _text(r"[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+", "owner/name")),
    Setting("model_revision", "5090578d9565bb06545b4552f76e6bc2c93e4a66", "Commit sha of model_repo_id (a branch name is refused: rebuilds must be reproducible).", "str", _text(_SHA, "a 40-character commit sha (not a branch name)")),
    Setting("model_variant", "fp32", "ONNX variant: fp32, q8 or q4 (fp16 and q4f16 are refused: fp16 overflow).", "str", _model_variant),
    Setting("model_name", "embeddinggemma", "Triton model name.", "str", _text(r"[A-Za-z0-9_\-]+", "letters, digits, _ and -")),
    Setting("model_fetch", "controller", "Where the model is downloaded: controller (once, then pushed), host, or mirror.", "str", _choice("controller", "host", "mirror")),
    Setting("model_mirror", "", "For model_fetch=mirror: an HF-compatible endpoint URL or a local directory.", "str", _text(r"\S*", "a URL, a directory or empty")),
    Setting("model_token_endpoints", [], "Endpoints besides https://huggingface.co that may receive the HF token (an HF_ENDPOINT or model_mirror you trust with it); any other endpoint gets no token.", "list[str]", _url_list),
    Setting("model_require_lock", False, "Refuse model files whose sha256 deploys/model.lock.json marks unknown (instead of trusting the Hub's LFS metadata for the run).", "bool", _bool),
    Setting("model_lock_file", "deploys/model.lock.json", "Model lock (sha256 + size per file and commit), relative to the repository root; fill it with `python -m deploys.model_lock refresh`.", "str", _text(r"\S+", "a file path")),
    Setting("model_cache_dir", ".cache/models", "Controller-side download cache (model_fetch=controller).", "str", _text(r"\S+", "a directory path")),
    Setting("model_download_timeout_s", 3600, "Seconds one model file download may take on a host (model_fetch=host, or a mirror URL): curl --max-time.", "int", _int(60, 86_400)),
    # -- Triton --
    Setting("triton_image", "nvcr.io/nvidia/tritonserver:25.05-py3", "Triton image, pinned by tag.", "str", _text(_IMAGE, "registry/repository:tag")),
    Setting("triton_image_digest", "", "Optional sha256 digest pin for triton_image.", "str", _text(r"(sha256:[0-9a-f]{64})?", "sha256:<64 hex> or empty")),
    Setting("triton_dir", "/opt/triton-embeddinggemma", "Host directory for the model repository and compose file (absolute, no '..').", "str", _host_dir),
    Setting("triton_max_batch_size", 8, "config.pbtxt max_batch_size.", "int", _int(1, 1024)),
    Setting("triton_preferred_batch_sizes", [4, 8], "dynamic_batching preferred_batch_size (each ≤ triton_max_batch_size).", "list[int]", _batch_sizes),
    Setting("triton_max_queue_delay_us", 100, "dynamic_batching max_queue_delay_microseconds.", "int", _int(0, 10_000_000)),
    Setting("triton_instance_count", 1, "instance_group count (per GPU on GPU hosts).", "int", _int(1, 64)),
    Setting("triton_intra_op_thread_count", 0, "onnxruntime intra_op_thread_count (0: ONNX Runtime's default).", "int", _int(0, 1024)),
    Setting("triton_tensorrt", False, "Use the TensorRT execution accelerator (FP32, cached engines) on GPU hosts.", "bool", _bool),
    Setting("triton_tensorrt_opt_seq_len", 512, "TensorRT profile: optimal sequence length.", "int", _int(1, 2048)),
    Setting("triton_tensorrt_max_seq_len", 2048, "TensorRT profile: maximum sequence length.", "int", _int(1, 2048)),
    Setting("triton_bind_address", "127.0.0.1", "Host address the HTTP and gRPC ports bind to (and metrics, unless triton_metrics_address); beyond loopback (0.0.0.0, a private address) needs triton_bind_beyond_loopback: true.", "str", _ip),
    Setting("triton_bind_beyond_loopback", False, "Allow a triton_bind_address beyond loopback: Triton's inference API then answers anyone who reaches that address (its control APIs still need the host's key header; see README \"Triton's restricted APIs\").", "bool", _bool),
    Setting("triton_http_port", 6000, "Host port for HTTP (container 8000).", "int", _int(1, 65535)),
    Setting("triton_grpc_port", 6001, "Host port for gRPC (container 8001).", "int", _int(1, 65535)),
    Setting("triton_metrics_port", 6002, "Host port for metrics (container 8002).", "int", _int(1, 65535)),
    Setting("triton_metrics_address", "", "Host address the metrics port alone binds to (a private address for the monitoring host's Prometheus, so HTTP/gRPC can stay on loopback); empty: triton_bind_address.", "str", _ip_or_empty),
    Setting("triton_subnet", "10.57.0.0/24", "Subnet of the compose network (pick one that no VPN uses).", "str", _subnet),
    Setting("triton_shm_size", "1g", "Container shm size.", "str", _text(r"[0-9]+[kmg]", "a size such as 1g")),
    Setting("triton_ulimit_memlock", -1, "Container memlock ulimit in bytes (-1: unlimited, as NVIDIA recommends; lower it where raising it is not permitted, e.g. hosts that are containers without CAP_SYS_RESOURCE).", "int", _int(-1, 2**62)),
    Setting("triton_ready_timeout_s", 600, "Seconds to wait for the model READY after a start (in all: each HTTP try is bounded too).", "int", _int(10, 7200)),
    Setting("triton_start_timeout_s", 300, "Seconds `docker compose up -d` and the GPU smoke run (`docker run … nvidia-smi -L`) may each take; past it the host fails with one line.", "int", _int(10, 3600)),
    Setting("triton_log_verbose", 0, "tritonserver --log-verbose level.", "int", _int(0, 3)),
    Setting("triton_releases_keep", 3, "Releases kept under {triton_dir}/releases (current and previous are never pruned).", "int", _int(2, 100)),
    Setting("triton_config_template", "config.pbtxt.j2", "Template under templates/ rendered as config.pbtxt (a site-specific config; checked against Triton's schema).", "str", _text(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*\.j2", "a .j2 file name under templates/")),
    # -- rollouts (python -m deploys.rollout; the canary host's values are used) --
    Setting("rollout_canary", "", "Canary of a rollout: an inventory group or host name; empty: the first host.", "str", _text(r"[A-Za-z0-9_.@/\-]*", "a group or host name, or empty")),
    Setting("rollout_batch_size", 1, "Hosts deployed at once after the canary, each batch verified before the next.", "int", _int(1, 10_000)),
    Setting("rollout_max_failures", 0, "Failed hosts tolerated after the canary before the rollout stops (a failed canary always stops it).", "int", _int(0, 10_000)),
    Setting("rollout_child_timeout_s", 3600, "Seconds each pyinfra run of python -m deploys.rollout (a wave's deploy, a state read, a rollback) may take; past it the run is terminated, its hosts are reported `timed out` and those whose release moved are rolled back.", "int", _int(30, 86_400)),
    Setting("rollout_max_unavailable", 1, "With a front door: Triton hosts taken out of its pool at once while a new release goes live (drain, switch, READY, verify, back in the pool), by deploys/all.py and the rollout alike.", "int", _int(1, 10_000)),
    Setting("rollout_drain_timeout_s", 30, "With a front door: seconds to wait for a drained host's requests in flight to end before its Triton restarts (then it restarts anyway: the front door retries those requests elsewhere).", "int", _int(0, 3600)),
    Setting("rollout_restore_timeout_s", 60, "With a front door: seconds to wait for a restored host to pass the front door's health checks (UP) before the next host is drained.", "int", _int(1, 3600)),
    # -- the deploy lock (deploys/lib/deploy_lock.py; every host the deploy touches) --
    Setting("deploy_lock_stale_s", 14_400, "Seconds after which another run's deploy lock on a host counts as stale and is taken over with one warning (a lock whose pid is gone from this same controller is taken over at once).", "int", _int(60, 7 * 86_400)),
    # -- verification --
    Setting("verify_enabled", True, "Run the Triton-vs-ONNX-Runtime parity check after the deploy.", "bool", _bool),
    _verify("min_cosine", "float", _float(0.0, 1.0)),
    _verify("max_abs_diff", "float", _float(0.0, 10.0)),
    _verify("norm_tolerance", "float", _float(0.0, 1.0)),
    _verify("device", "str", _choice(*options.BY_NAME["device"].choices or ())),
    _verify("max_length", "int", _int(16, 2048)),
    _verify("latency_iterations", "int", _int(1, 10_000)),
    _verify("timeout", "int", _int(1, 3600)),
    Setting("verify_wheels_dir", "", "Controller directory of wheels for the verify venv (pushed; pip uses no index). Empty: the host's package index.", "str", _text(r"\S*", "a directory path or empty")),
    Setting("verify_pip_index_url", "", "Package index for the verify venv (a mirror); empty: pip's default.", "str", _text(r"(https?://\S+)?", "an http(s) URL or empty")),
    Setting("verify_pip_timeout_s", 1800, "Seconds each pip install (the verify runtime, the gateway runtime) may take; past it the host fails with one line.", "int", _int(60, 14_400)),
    Setting("verify_report_dir", "reports", "Controller directory for the JSON reports: <dir>/<run>/<host>.json.", "str", _text(r"\S+", "a directory path")),
    # -- embeddings gateway (OpenAI /v1/embeddings on every host: embeddings_gateway/app.py) --
    Setting("gateway_enabled", True, "Run the embeddings gateway (a systemd unit) on the host.", "bool", _bool),
    Setting("gateway_listen_address", "127.0.0.1", "Address the gateway listens on; beyond loopback (a private address the front door reaches) needs gateway_api_keys in the vault.", "str", _ip),
    _gateway("listen_port", "int", "Port of the embeddings gateway (OpenAI /v1/embeddings, TEI's /embed, /ready, /metrics)."),
    _gateway("health_port", "int", "Port of the gateway's health responder (GET /ready, /health on a thread of its own, fast while the gateway is saturated); the front door checks it. Same address as gateway_listen_address."),
    _gateway("max_tokens", "int", "Tokens per input, prompt and special tokens included. The export is reported (third party, not measured here) to drift from Gemma 3 past 256 tokens: cosine 0.991 at 512, 0.949 at 2048."),
    _gateway("truncate", "bool", "Truncate inputs over gateway_max_tokens; false: such a request is a 400 naming the input."),
    _gateway("length_buckets", "list[int]", "Pad lengths: inputs are padded to the bucket above them so Triton's batcher can merge callers (the last ≥ gateway_max_tokens)."),
    _gateway("triton_timeout_s", "float", "gRPC deadline of each Triton call (past it: 504)."),
    _gateway("max_inputs", "int", "Inputs per request, OpenAI's 2048 by default (past it: 400; TEI API: 422)."),
    _gateway("max_request_tokens", "int", "Tokens per request after prompts and truncation, OpenAI's 300000 by default (past it: 400 max_tokens_per_request)."),
    _gateway("token_ids_input", "bool", "Accept token-id inputs as EmbeddingGemma ids; false: a 400 saying to send text (LangChain: check_embedding_ctx_length=False)."),
    _gateway("max_body_bytes", "int", "Request body limit in bytes (past it: 413)."),
    _gateway("max_concurrency", "int", "Embedding requests processed at once."),
    _gateway("max_queue", "int", "Requests waiting for a slot; past it: 429 at once."),
    _gateway("queue_timeout_s", "float", "Longest wait for a slot, then 429."),
    _gateway("default_prompt", "str", "Prompt for text inputs that name no input_type or task: none, query or document."),
    _gateway("shutdown_timeout_s", "float", "On stop or restart, seconds in-flight requests get to finish."),
    _gateway("log_level", "str", "Gateway log level: debug, info, warning or error."),
    Setting("gateway_ready_timeout_s", 60, "Seconds to wait for the gateway's /ready after a (re)start.", "int", _int(5, 3600)),
    # -- front door (hosts of the inventory group front_door: HAProxy in front of every host's gateway) --
    Setting("front_door_listen_address", "0.0.0.0", "Address the front door (HAProxy) listens on for applications.", "str", _ip),
    Setting("front_door_port", 8080, "Port of the front door's embeddings API (the gateways' API, balanced).", "int", _int(1, 65535)),
    Setting("front_door_tls", False, "Serve HTTPS with HTTP/2 (ALPN h2, http/1.1); certificate and key from the vault's front_door_tls (cert, key).", "bool", _bool),
    Setting("front_door_maxconn", 4096, "Most client connections HAProxy holds at once (it needs about 2 file descriptors each: raise LimitNOFILE with it).", "int", _int(1, 1_000_000)),
    Setting("front_door_timeout_connect_s", 2, "Seconds to connect to a gateway before trying another.", "int", _int(1, 60)),
    Setting("front_door_timeout_client_s", 60, "Seconds a client connection may stay idle.", "int", _int(1, 3600)),
    Setting("front_door_timeout_server_s", 60, "Seconds to wait for a gateway's answer (above gateway_triton_timeout_s).", "int", _int(1, 3600)),
    Setting("front_door_check_interval_ms", 500, "Health check interval: GET /ready on every gateway's health port (gateway_health_port).", "int", _int(100, 60_000)),
    Setting("front_door_check_timeout_ms", 1000, "A health check's answer may take this long (its connect: at most the interval) before it counts as failed.", "int", _int(100, 60_000)),
    Setting("front_door_server_maxconn", 8, "Requests one gateway gets at once from the front door; the rest wait in the front door's queue.", "int", _int(1, 100_000)),
    Setting("front_door_queue_timeout_ms", 1000, "Longest wait in the front door's queue for a gateway slot; then a 429 with Retry-After.", "int", _int(1, 600_000)),
    Setting("front_door_max_queue", 64, "Requests that may wait in the front door's queue; past it a 429 with Retry-After at once (0: no bound but the queue timeout).", "int", _int(0, 1_000_000)),
    Setting("front_door_retry_after_s", 1, "Retry-After (seconds) of the front door's 429s when every gateway is busy.", "int", _int(1, 3600)),
    Setting("front_door_rise", 2, "Consecutive good checks before a gateway (re)enters the pool.", "int", _int(1, 100)),
    Setting("front_door_fall", 2, "Consecutive failed checks before a gateway leaves the pool (interval × fall: out within that).", "int", _int(1, 100)),
    Setting("front_door_retries", 3, "Retries of a request on a connection failure, an empty answer or a gateway's 503 (on another gateway); never on a timeout or a 429.", "int", _int(0, 10)),
    Setting("front_door_rate_limit_per_s", 0, "Requests per second allowed per client address (averaged over 10 s; past it: 429); 0: no limit.", "int", _int(0, 1_000_000)),
    Setting("front_door_buffer_bytes", 262_144, "HAProxy's buffer (tune.bufsize): a request body up to this size is retried on another gateway when one fails; memory is about 2 buffers per active request.", "int", _int(16_384, 16_777_216)),
    Setting("front_door_metrics_address", "127.0.0.1", "Address of HAProxy's Prometheus endpoint (/metrics): a private address for Prometheus, never 0.0.0.0 by default.", "str", _ip),
    Setting("front_door_metrics_port", 8405, "Port of HAProxy's Prometheus endpoint.", "int", _int(1, 65535)),
    # -- monitoring (Prometheus on the inventory group monitoring; exporters on every host) --
    Setting("monitoring_listen_address", "127.0.0.1", "Address Prometheus's web UI and API listen on (monitoring hosts): a private address for Grafana, never 0.0.0.0 by default.", "str", _ip),
    Setting("monitoring_port", 9090, "Port of Prometheus's web UI and API.", "int", _int(1, 65535)),
    Setting("monitoring_scrape_interval_s", 15, "Seconds between two scrapes of each target; the alert rules are evaluated as often.", "int", _int(1, 3600)),
    Setting("monitoring_rate_window_s", 300, "Window of the rates in the alert rules (at least 4 scrape intervals).", "int", _int(10, 86_400)),
    Setting("monitoring_retention", "15d", "How long Prometheus keeps samples (--storage.tsdb.retention.time).", "str", _text(r"([0-9]+(ms|s|m|h|d|w|y))+", "a Prometheus duration such as 15d or 12h")),
    Setting("monitoring_exporter_address", "127.0.0.1", "Address prometheus-node-exporter (every host) and dcgm-exporter (GPU hosts) listen on: the host's private address for the monitoring host's Prometheus, never 0.0.0.0 by default.", "str", _ip),
    Setting("monitoring_node_exporter_port", 9100, "Port of prometheus-node-exporter.", "int", _int(1, 65535)),
    Setting("monitoring_dcgm_exporter_port", 9400, "Port of dcgm-exporter (GPU hosts).", "int", _int(1, 65535)),
    Setting("monitoring_dcgm_exporter_image", "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04", "dcgm-exporter image (GPU hosts), pinned by tag.", "str", _text(_IMAGE, "registry/repository:tag")),
    Setting("monitoring_model_not_ready_for_s", 60, "Alert TritonModelNotReady: seconds a Triton host's metrics are down or lack the model before it fires.", "int", _int(0, 86_400)),
    Setting("monitoring_backend_down_for_s", 60, "Alerts FrontDoorBackendDown / FrontDoorNoBackend: seconds a gateway is DOWN at a front door (or none is up) before they fire.", "int", _int(0, 86_400)),
    Setting("monitoring_host_down_for_s", 60, "Alert HostDown: seconds a host's node exporter is unreachable before it fires.", "int", _int(0, 86_400)),
    Setting("monitoring_error_ratio", 0.05, "Alert GatewayErrorRatioHigh: share of a gateway's /v1/embeddings answers that are 5xx (over the rate window).", "float", _float(0.0, 1.0)),
    Setting("monitoring_error_ratio_for_s", 300, "Alert GatewayErrorRatioHigh: seconds above the ratio before it fires.", "int", _int(0, 86_400)),
    Setting("monitoring_p95_latency_s", 1.0, "Alert GatewayLatencyP95High: p95 of a gateway's /v1/embeddings latency (seconds, over the rate window).", "float", _float(0.001, 3600.0)),
    Setting("monitoring_p95_latency_for_s", 300, "Alert GatewayLatencyP95High: seconds above the latency before it fires.", "int", _int(0, 86_400)),
    Setting("monitoring_queue_time_ms", 100.0, "Alert TritonQueueTimeHigh: mean time a Triton request waits in the scheduler's queue (milliseconds, over the rate window).", "float", _float(0.001, 3_600_000.0)),
    Setting("monitoring_queue_time_for_s", 300, "Alert TritonQueueTimeHigh: seconds above the queue time before it fires.", "int", _int(0, 86_400)),
    Setting("monitoring_gpu_memory_ratio", 0.9, "Alert GpuMemoryNearlyFull: share of a GPU's framebuffer memory in use (dcgm-exporter).", "float", _float(0.0, 1.0)),
    Setting("monitoring_gpu_memory_for_s", 300, "Alert GpuMemoryNearlyFull: seconds above the share before it fires.", "int", _int(0, 86_400)),
    Setting("monitoring_disk_free_ratio", 0.1, "Alert DiskNearlyFull: share of a filesystem still free below which it fires (node exporter; tmpfs and overlays left out).", "float", _float(0.0, 1.0)),
    Setting("monitoring_disk_free_for_s", 300, "Alert DiskNearlyFull: seconds below the share before it fires.", "int", _int(0, 86_400)),
)
# fmt: on

BY_NAME = {s.name: s for s in SETTINGS}


# How the README's type column reads as a Python type (tests/test_settings.py checks Settings).
KIND_TYPES = {"bool | auto": "bool | str"}


@dataclass(frozen=True, init=False)
class Settings:
    """Validated settings of one host: one typed attribute per row of SETTINGS (same names and
    order; tests/test_settings.py checks the two agree), so editors and type checkers see them."""

    host: str
    gpu: bool | str
    preflight_min_free_gib: int
    preflight_min_free_gib_cpu: int
    preflight_margin_gib: int
    nvidia_min_driver: int
    nvidia_datacenter_compat_branches: list[int]
    nvidia_min_compute_capability: float
    allow_plain_http: bool
    docker_source: str
    docker_ce_version: str
    docker_ce_apt_url: str
    docker_ce_key_fingerprint: str
    docker_log_max_size: str
    docker_log_max_file: int
    docker_registry_mirrors: list[str]
    docker_insecure_registries: list[str]
    docker_http_proxy: str
    docker_https_proxy: str
    docker_no_proxy: str
    docker_service_env: dict[str, str]
    docker_pull_timeout_s: int
    nvidia_toolkit_version: str
    nvidia_toolkit_apt_url: str
    nvidia_toolkit_key_fingerprint: str
    registry_host: str
    registry_username: str
    registry_auth: str
    registry_logout_after_pull: bool
    registry_image_prune: bool
    registry_cache_listen_address: str
    registry_cache_port: int
    registry_cache_hostname: str
    registry_cache_tls: bool
    registry_cache_insecure: bool
    registry_cache_upstream_url: str
    registry_cache_storage_dir: str
    registry_cache_warm_platforms: list[str]
    registry_cache_max_gb: int
    secrets_file: str
    model_repo_id: str
    model_revision: str
    model_variant: str
    model_name: str
    model_fetch: str
    model_mirror: str
    model_token_endpoints: list[str]
    model_require_lock: bool
    model_lock_file: str
    model_cache_dir: str
    model_download_timeout_s: int
    triton_image: str
    triton_image_digest: str
    triton_dir: str
    triton_max_batch_size: int
    triton_preferred_batch_sizes: list[int]
    triton_max_queue_delay_us: int
    triton_instance_count: int
    triton_intra_op_thread_count: int
    triton_tensorrt: bool
    triton_tensorrt_opt_seq_len: int
    triton_tensorrt_max_seq_len: int
    triton_bind_address: str
    triton_bind_beyond_loopback: bool
    triton_http_port: int
    triton_grpc_port: int
    triton_metrics_port: int
    triton_metrics_address: str
    triton_subnet: str
    triton_shm_size: str
    triton_ulimit_memlock: int
    triton_ready_timeout_s: int
    triton_start_timeout_s: int
    triton_log_verbose: int
    triton_releases_keep: int
    triton_config_template: str
    rollout_canary: str
    rollout_batch_size: int
    rollout_max_failures: int
    rollout_child_timeout_s: int
    rollout_max_unavailable: int
    rollout_drain_timeout_s: int
    rollout_restore_timeout_s: int
    deploy_lock_stale_s: int
    verify_enabled: bool
    verify_min_cosine: float
    verify_max_abs_diff: float
    verify_norm_tolerance: float
    verify_device: str
    verify_max_length: int
    verify_latency_iterations: int
    verify_timeout_s: int
    verify_wheels_dir: str
    verify_pip_index_url: str
    verify_pip_timeout_s: int
    verify_report_dir: str
    gateway_enabled: bool
    gateway_listen_address: str
    gateway_listen_port: int
    gateway_health_port: int
    gateway_max_tokens: int
    gateway_truncate: bool
    gateway_length_buckets: list[int]
    gateway_triton_timeout_s: float
    gateway_max_inputs: int
    gateway_max_request_tokens: int
    gateway_token_ids_input: bool
    gateway_max_body_bytes: int
    gateway_max_concurrency: int
    gateway_max_queue: int
    gateway_queue_timeout_s: float
    gateway_default_prompt: str
    gateway_shutdown_timeout_s: float
    gateway_log_level: str
    gateway_ready_timeout_s: int
    front_door_listen_address: str
    front_door_port: int
    front_door_tls: bool
    front_door_maxconn: int
    front_door_timeout_connect_s: int
    front_door_timeout_client_s: int
    front_door_timeout_server_s: int
    front_door_check_interval_ms: int
    front_door_check_timeout_ms: int
    front_door_server_maxconn: int
    front_door_queue_timeout_ms: int
    front_door_max_queue: int
    front_door_retry_after_s: int
    front_door_rise: int
    front_door_fall: int
    front_door_retries: int
    front_door_rate_limit_per_s: int
    front_door_buffer_bytes: int
    front_door_metrics_address: str
    front_door_metrics_port: int
    monitoring_listen_address: str
    monitoring_port: int
    monitoring_scrape_interval_s: int
    monitoring_rate_window_s: int
    monitoring_retention: str
    monitoring_exporter_address: str
    monitoring_node_exporter_port: int
    monitoring_dcgm_exporter_port: int
    monitoring_dcgm_exporter_image: str
    monitoring_model_not_ready_for_s: int
    monitoring_backend_down_for_s: int
    monitoring_host_down_for_s: int
    monitoring_error_ratio: float
    monitoring_error_ratio_for_s: int
    monitoring_p95_latency_s: float
    monitoring_p95_latency_for_s: int
    monitoring_queue_time_ms: float
    monitoring_queue_time_for_s: int
    monitoring_gpu_memory_ratio: float
    monitoring_gpu_memory_for_s: int
    monitoring_disk_free_ratio: float
    monitoring_disk_free_for_s: int

    def __init__(self, host: str, values: Mapping[str, Any]) -> None:
        """``values``: exactly one value per setting, already validated (see :func:`parse`)."""
        if set(values) != set(BY_NAME):
            raise TypeError(
                f"Settings needs exactly the settings of SETTINGS; got extra {sorted(set(values) - set(BY_NAME))}, missing {sorted(set(BY_NAME) - set(values))}"
            )
        object.__setattr__(self, "host", host)
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"Settings(host={self.host!r})"

    @property
    def values(self) -> dict[str, Any]:
        """Setting name → value."""
        return {name: getattr(self, name) for name in BY_NAME}

    @property
    def triton_image_ref(self) -> str:
        """The image as compose and docker pull see it: tag, plus digest when pinned."""
        return f"{self.triton_image}@{self.triton_image_digest}" if self.triton_image_digest else self.triton_image


def _owned(key: str) -> bool:
    return key in OWNED_NAMES or key.startswith(OWNED_PREFIXES)


def _fail(host: str, key: str, value: Any, why: str) -> SettingsError:
    return SettingsError(f"host {host}: setting {key}={value!r} is invalid ({why}); fix it in the inventory, group_data/ or --data")


def parse(host: str, data: dict[str, Any]) -> Settings:
    """Validate the host data ``data`` of ``host`` and return its settings (defaults filled in)."""
    for key in sorted(data):
        if _owned(key) and key not in BY_NAME:
            close = difflib.get_close_matches(key, BY_NAME, n=1)
            hint = f"did you mean {close[0]}?" if close else "see the README's tunables table"
            raise SettingsError(f"host {host}: unknown setting {key!r}; {hint}")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value = data.get(setting.name, setting.default)
        try:
            values[setting.name] = setting.check(value)
        except ValueError as error:
            raise _fail(host, setting.name, value, str(error)) from None
    _check_together(host, values)
    return Settings(host=host, values=values)


def _check_together(host: str, v: dict[str, Any]) -> None:
    """Rules that span several settings."""
    ports = [v["triton_http_port"], v["triton_grpc_port"], v["triton_metrics_port"]]
    if len(set(ports)) != 3:
        raise _fail(host, "triton_http_port", ports, "the HTTP, gRPC and metrics ports must differ")
    if v["gateway_enabled"] and v["gateway_listen_port"] in ports:
        raise _fail(host, "gateway_listen_port", v["gateway_listen_port"], f"Triton's ports {ports} are taken; pick another")
    if v["gateway_enabled"] and v["gateway_health_port"] in [*ports, v["gateway_listen_port"]]:
        raise _fail(
            host, "gateway_health_port", v["gateway_health_port"], f"Triton's ports {ports} and gateway_listen_port are taken; pick another"
        )
    if v["front_door_port"] == v["front_door_metrics_port"] and v["front_door_listen_address"] in (
        v["front_door_metrics_address"],
        "0.0.0.0",
        "::",
    ):
        raise _fail(
            host, "front_door_metrics_port", v["front_door_metrics_port"], "the front door's API and metrics ports clash; pick another"
        )
    if v["monitoring_node_exporter_port"] == v["monitoring_dcgm_exporter_port"]:
        raise _fail(
            host, "monitoring_dcgm_exporter_port", v["monitoring_dcgm_exporter_port"], "the node exporter has that port; pick another"
        )
    if v["monitoring_rate_window_s"] < 4 * v["monitoring_scrape_interval_s"]:
        raise _fail(
            host,
            "monitoring_rate_window_s",
            v["monitoring_rate_window_s"],
            f"must be ≥ 4 × monitoring_scrape_interval_s={v['monitoring_scrape_interval_s']}: a rate needs several samples",
        )
    if v["gateway_length_buckets"][-1] < v["gateway_max_tokens"]:
        raise _fail(
            host, "gateway_length_buckets", v["gateway_length_buckets"], f"the last must be ≥ gateway_max_tokens={v['gateway_max_tokens']}"
        )
    too_big = [b for b in v["triton_preferred_batch_sizes"] if b > v["triton_max_batch_size"]]
    if too_big:
        raise _fail(
            host,
            "triton_preferred_batch_sizes",
            v["triton_preferred_batch_sizes"],
            f"each must be ≤ triton_max_batch_size={v['triton_max_batch_size']}",
        )
    if v["triton_tensorrt_opt_seq_len"] > v["triton_tensorrt_max_seq_len"]:
        raise _fail(host, "triton_tensorrt_opt_seq_len", v["triton_tensorrt_opt_seq_len"], "must be ≤ triton_tensorrt_max_seq_len")
    if v["triton_tensorrt"] and v["gpu"] is False:
        raise _fail(host, "triton_tensorrt", True, "TensorRT needs a GPU host; set gpu: true or triton_tensorrt: false")
    if v["model_fetch"] == "mirror" and not v["model_mirror"]:
        raise _fail(host, "model_mirror", "", "model_fetch=mirror needs a mirror URL or directory")
    if v["registry_cache_tls"] and v["registry_cache_insecure"]:
        raise _fail(host, "registry_cache_insecure", True, "registry_cache_tls is on; pick one of TLS or plain HTTP")
    if not v["allow_plain_http"]:
        for name in URL_SETTINGS:
            value = v[name]
            if any(url.lower().startswith("http://") for url in (value if isinstance(value, list) else [value])):
                raise _fail(host, name, value, "plain http:// is refused; use https://, or set allow_plain_http: true to accept it")
    if not v["triton_bind_beyond_loopback"] and not ipaddress.ip_address(v["triton_bind_address"]).is_loopback:
        raise _fail(
            host,
            "triton_bind_address",
            v["triton_bind_address"],
            "beyond loopback, Triton answers anyone who reaches that address; set triton_bind_beyond_loopback: true to mean it, "
            "or bind 127.0.0.1",
        )
    if v["docker_ce_version"] and v["docker_source"] != "docker-ce":
        raise _fail(host, "docker_ce_version", v["docker_ce_version"], "only used with docker_source: docker-ce")


def load(host: Any) -> Settings:
    """Settings of a pyinfra ``Host`` (validated; raises SettingsError), parsed once per host per
    run: the run context (deploys/lib/context.py) keeps them. A host outside a run (no state) is
    parsed each time."""
    state = getattr(host, "state", None)
    if state is None:
        return parse(host.name, host.data.dict())
    from deploys.lib import context

    ctx = context.of(state)
    with ctx.lock:
        found = ctx.settings.get(host.name)
        if found is None:
            found = ctx.settings[host.name] = parse(host.name, host.data.dict())
            ctx.settings_parsed[host.name] += 1
        return found


def validate_fleet(state: Any) -> None:
    """Validate every host in the inventory once per run, before any operation is planned.

    pyinfra runs the deploy file for all hosts before executing anything, so raising here ends the
    run with nothing changed on any host. What ends the run is also written as an event (the
    rollout driver reads events, not the log).
    """
    from deploys.lib import context, events

    ctx = context.of(state)
    if ctx.fleet_checked:
        return
    targets = [host for host in state.inventory if state.is_host_in_limit(host)]
    try:
        for host in targets:
            load(host)
    except SettingsError as error:
        events.write(state, "run refused", detail=str(error))
        raise
    # pyinfra carries on without hosts it could not connect to; a fleet deploy must not silently
    # skip a box, so the operator decides (fix access, or leave it out with --limit).
    unreachable = sorted(host.name for host in targets if host in state.failed_hosts)
    if unreachable:
        message = (
            f"host {unreachable[0]}: unreachable over SSH ({len(unreachable)} host(s): {', '.join(unreachable)}); "
            "fix SSH access (ssh_hostname, ssh_user, ssh_key) or leave them out with --limit"
        )
        events.write(state, "run refused", detail=message, unreachable=unreachable)
        raise SettingsError(message)
    ctx.fleet_checked = True


def markdown_table() -> str:
    """The README's tunables table."""
    rows = ["| setting | type | default | what it does |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = repr(s.default) if not isinstance(s.default, bool) else str(s.default).lower()
        rows.append(f"| `{s.name}` | {s.kind} | `{default}` | {s.doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(markdown_table())
    else:
        sys.exit("usage: python -m deploys.lib.settings --markdown")
