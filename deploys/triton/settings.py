"""Triton's settings: image, config, ports, releases and their images' prune; rollouts (python -m deploys.rollout) and the verify step. Each setting is declared once, here (deploys/core/tunables.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploys.core.tunables import (
    IMAGE_REF,
    Setting,
    _batch_sizes,
    _bool,
    _choice,
    _float,
    _host_dir,
    _int,
    _ip,
    _ip_or_empty,
    _subnet,
    _text,
)
from verify import options


def _verify(option: str, kind: str, check: Callable[[Any], Any]) -> Setting[Any]:
    """A setting that is an option of the host program: name, default and doc from verify/options.py."""
    o = options.BY_NAME[option]
    return Setting(o.default, o.doc, kind, check, name=o.setting)


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class TritonSettings:
    # -- Triton --
    triton_image = Setting("nvcr.io/nvidia/tritonserver:25.05-py3", "Triton image, pinned by tag.", "str", _text(IMAGE_REF, "registry/repository:tag"))
    triton_image_digest = Setting("", "Optional sha256 digest pin for triton_image.", "str", _text(r"(sha256:[0-9a-f]{64})?", "sha256:<64 hex> or empty"))
    triton_dir = Setting("/opt/triton-embeddinggemma", "Host directory for the model repository and compose file (absolute, no '..').", "str", _host_dir)
    triton_max_batch_size = Setting(8, "config.pbtxt max_batch_size.", "int", _int(1, 1024))
    triton_preferred_batch_sizes = Setting([4, 8], "dynamic_batching preferred_batch_size (each ≤ triton_max_batch_size).", "list[int]", _batch_sizes)
    triton_max_queue_delay_us = Setting(100, "dynamic_batching max_queue_delay_microseconds.", "int", _int(0, 10_000_000))
    triton_instance_count = Setting(1, "instance_group count (per GPU on GPU hosts).", "int", _int(1, 64))
    triton_intra_op_thread_count = Setting(0, "onnxruntime intra_op_thread_count (0: ONNX Runtime's default).", "int", _int(0, 1024))
    triton_tensorrt = Setting(False, "Use the TensorRT execution accelerator (FP32, cached engines) on GPU hosts.", "bool", _bool)
    triton_tensorrt_opt_seq_len = Setting(512, "TensorRT profile: optimal sequence length.", "int", _int(1, 2048))
    triton_tensorrt_max_seq_len = Setting(2048, "TensorRT profile: maximum sequence length.", "int", _int(1, 2048))
    triton_bind_address = Setting("127.0.0.1", "Host address the HTTP and gRPC ports bind to (and metrics, unless triton_metrics_address); beyond loopback (0.0.0.0, a private address) needs triton_bind_beyond_loopback: true.", "str", _ip)
    triton_bind_beyond_loopback = Setting(False, "Allow a triton_bind_address beyond loopback: Triton's inference API then answers anyone who reaches that address (its control APIs still need the host's key header; see README \"Triton's restricted APIs\").", "bool", _bool)
    triton_http_port = Setting(6000, "Host port for HTTP (container 8000).", "int", _int(1, 65535))
    triton_grpc_port = Setting(6001, "Host port for gRPC (container 8001).", "int", _int(1, 65535))
    triton_metrics_port = Setting(6002, "Host port for metrics (container 8002).", "int", _int(1, 65535))
    triton_metrics_address = Setting("", "Host address the metrics port alone binds to (a private address for the monitoring host's Prometheus, so HTTP/gRPC can stay on loopback); empty: triton_bind_address.", "str", _ip_or_empty)
    triton_subnet = Setting("10.57.0.0/24", "Subnet of the compose network (pick one that no VPN uses).", "str", _subnet)
    triton_shm_size = Setting("1g", "Container shm size.", "str", _text(r"[0-9]+[kmg]", "a size such as 1g"))
    triton_ulimit_memlock = Setting(-1, "Container memlock ulimit in bytes (-1: unlimited, as NVIDIA recommends; lower it where raising it is not permitted, e.g. hosts that are containers without CAP_SYS_RESOURCE).", "int", _int(-1, 2**62))
    triton_ready_timeout_s = Setting(600, "Seconds to wait for the model READY after a start (in all: each HTTP try is bounded too).", "int", _int(10, 7200))
    triton_start_timeout_s = Setting(300, "Seconds `docker compose up -d` and the GPU smoke run (`docker run … nvidia-smi -L`) may each take; past it the host fails with one line.", "int", _int(10, 3600))
    triton_log_verbose = Setting(0, "tritonserver --log-verbose level.", "int", _int(0, 3))
    triton_releases_keep = Setting(3, "Releases kept under {triton_dir}/releases (current and previous are never pruned).", "int", _int(2, 100))
    registry_image_prune = Setting(True, "After a successful deploy, remove the images of the Triton image's repositories that no kept release's compose file names (docker image rm).", "bool", _bool)
    triton_config_template = Setting("config.pbtxt.j2", "Template under templates/ rendered as config.pbtxt (a site-specific config; checked against Triton's schema).", "str", _text(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*\.j2", "a .j2 file name under templates/"))
    # -- rollouts (python -m deploys.rollout; the canary host's values are used) --
    rollout_canary = Setting("", "Canary of a rollout: an inventory group or host name; empty: the first host.", "str", _text(r"[A-Za-z0-9_.@/\-]*", "a group or host name, or empty"))
    rollout_batch_size = Setting(1, "Hosts deployed at once after the canary, each batch verified before the next.", "int", _int(1, 10_000))
    rollout_max_failures = Setting(0, "Failed hosts tolerated after the canary before the rollout stops (a failed canary always stops it).", "int", _int(0, 10_000))
    rollout_child_timeout_s = Setting(3600, "Seconds each pyinfra run of python -m deploys.rollout (a wave's deploy, a state read, a rollback) may take; past it the run is terminated, its hosts are reported `timed out` and those whose release moved are rolled back.", "int", _int(30, 86_400))
    rollout_max_unavailable = Setting(1, "With a front door: Triton hosts taken out of its pool at once while a new release goes live (drain, switch, READY, verify, back in the pool), by deploys/all.py and the rollout alike.", "int", _int(1, 10_000))
    rollout_drain_timeout_s = Setting(30, "With a front door: seconds to wait for a drained host's requests in flight to end before its Triton restarts (then it restarts anyway: the front door retries those requests elsewhere).", "int", _int(0, 3600))
    rollout_restore_timeout_s = Setting(60, "With a front door: seconds to wait for a restored host to pass the front door's health checks (UP) before the next host is drained.", "int", _int(1, 3600))
    # -- verification --
    verify_enabled = Setting(True, "Run the Triton-vs-ONNX-Runtime parity check after the deploy.", "bool", _bool)
    verify_min_cosine = _verify("min_cosine", "float", _float(0.0, 1.0))
    verify_max_abs_diff = _verify("max_abs_diff", "float", _float(0.0, 10.0))
    verify_norm_tolerance = _verify("norm_tolerance", "float", _float(0.0, 1.0))
    verify_device = _verify("device", "str", _choice(*options.BY_NAME["device"].choices or ()))
    verify_max_length = _verify("max_length", "int", _int(16, 2048))
    verify_latency_iterations = _verify("latency_iterations", "int", _int(1, 10_000))
    verify_timeout_s = _verify("timeout", "int", _int(1, 3600))
    verify_reuse_s = Setting(3600, "A run that changed nothing on a host reuses the host's last passing parity check, when it is younger than this many seconds and Triton's container, the gateway's process, the served files and the check's settings are all what it checked (else the check runs); 0: the check runs on every run.", "int", _int(0, 604_800))
    verify_wheels_dir = Setting("", "Controller directory of wheels for the verify and gateway venvs (sent; the install uses no index; with uv's wheel among them uv installs, else the venv's pip). Empty: the controller fetches the locks' wheels for the hosts' platform into .cache/runtime-wheels/.", "str", _text(r"\S*", "a directory path or empty"))
    verify_pip_index_url = Setting("", "Package index (a mirror) the controller fetches the verify and gateway venvs' wheels from; hosts need none. Empty: pip's default.", "str", _text(r"(https?://\S+)?", "an http(s) URL or empty"))
    verify_pip_timeout_s = Setting(1800, "Seconds each install of a runtime (the verify runtime, the gateway runtime: uv, or pip for a verify_wheels_dir without uv) may take; past it the host fails with one line.", "int", _int(60, 14_400))
    verify_report_dir = Setting("reports", "Controller directory for the JSON reports: <dir>/<run>/<host>.json.", "str", _text(r"\S+", "a directory path"))
# fmt: on
