"""Triton's rendering: config.pbtxt (checked with Triton's ModelConfig protobuf) and the compose file, their labels.

Rendered from templates/triton/ by deploys/core/render.py's ``render``; pure functions of validated settings."""

from __future__ import annotations

import hashlib

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from deploys.core import paths
from deploys.core.paths import MODELS_MOUNT, TRT_CACHE_MOUNT, onnx_filename
from deploys.core.render import LABEL_PREFIX, MANAGED_HEADER, RenderError, canonical_yaml, render, url_host
from deploys.core.settings import Settings, SettingsError
from embeddinggemma import TRITON_KEY_HEADER

COMPOSE_PROJECT = "triton-embeddinggemma"


# Set by the triton step: a digest of what the container depends on beyond the compose file.
DEPLOY_HASH_LABEL = f"{LABEL_PREFIX}.deploy-hash"


# Triton's restricted APIs (deploys/triton/triton_api.py): which, and the key file's sha256 label
# compose fills in from the environment of `docker compose up`.
TRITON_RESTRICTED_APIS = ("model-repository", "model-config", "logging", "trace", "shared-memory")


TRITON_KEY_LABEL = f"{LABEL_PREFIX}.api-key-sha256"


TRITON_KEY_SHA256_ENV = "TRITON_API_KEY_SHA256"


# The host's own addresses the container's ports publish on ("8000=127.0.0.1 …"): not part of the
# release (deploys/triton/release.py), but a change of them recreates the container (a label changes).
BINDINGS_LABEL = f"{LABEL_PREFIX}.host-bindings"


def container_name(s: Settings) -> str:
    """The Triton container's name (``docker logs`` target for the triton and verify steps)."""
    return f"triton-{s.model_name}"


def _tensorrt(s: Settings, gpu: bool) -> bool:
    """Whether the TensorRT accelerator is on; asking for it on a CPU host is a user mistake."""
    if s.triton_tensorrt and not gpu:
        raise SettingsError(
            f"host {s.host}: setting triton_tensorrt=True needs a GPU but this host has none; "
            "set triton_tensorrt: false for it (or gpu: true if it does have one)"
        )
    return bool(s.triton_tensorrt)


def parse_model_config(text: str, source: str = "config.pbtxt") -> model_config_pb2.ModelConfig:
    """Parse ``text`` exactly as Triton does; unknown fields or bad values raise RenderError."""
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise RenderError(f"{source} does not parse as Triton's ModelConfig: {error}") from None


def canonical_model_config(text: str, source: str = "config.pbtxt") -> str:
    """``text`` parsed as Triton's ModelConfig and printed back by protobuf's text_format (fields in
    the schema's order, one spelling per value, no comments): the same configuration always gives
    the same text, whatever the template's comments, indentation or field order."""
    return text_format.MessageToString(parse_model_config(text, source))


def model_config(s: Settings, gpu: bool, template_name: str | None = None) -> str:
    """The model's config.pbtxt for a GPU (``gpu=True``) or CPU host, checked against the schema,
    in canonical form (:func:`canonical_model_config`): what a host gets, and what the release id
    and the config-sha256 label digest.

    The template is ``triton_config_template`` unless ``template_name`` names another."""
    template_name = template_name or s.triton_config_template
    text = render(
        template_name,
        s=s,
        gpu=gpu,
        tensorrt=_tensorrt(s, gpu),
        trt_cache_path=TRT_CACHE_MOUNT,
        onnx_filename=onnx_filename(s.model_variant),
    )
    return MANAGED_HEADER + canonical_model_config(text, source=f"template {template_name}")


def compose_labels(s: Settings, gpu: bool, deploy_hash: str | None = None, config: str | None = None) -> dict[str, str]:
    """The Triton container's labels: what it serves, so a running container can be compared
    with the wanted deploy (the triton step does) and recreated by compose when they differ.

    ``config``: the host's config.pbtxt when the caller already rendered it (else rendered here)."""
    if config is None:
        config = model_config(s, gpu)
    labels = {
        f"{LABEL_PREFIX}.deploy": COMPOSE_PROJECT,
        f"{LABEL_PREFIX}.model": s.model_repo_id,
        f"{LABEL_PREFIX}.model-revision": s.model_revision,
        f"{LABEL_PREFIX}.model-variant": s.model_variant,
        f"{LABEL_PREFIX}.config-sha256": hashlib.sha256(config.encode()).hexdigest(),
        BINDINGS_LABEL: host_bindings(s),
    }
    if deploy_hash is not None:
        labels[DEPLOY_HASH_LABEL] = deploy_hash
    return labels


def host_bindings(s: Settings) -> str:
    """The host's own addresses the container's ports publish on, per container port."""
    http = s.triton_bind_address
    return f"8000={http} 8001={http} 8002={s.triton_metrics_address or http}"


def compose_file(
    s: Settings,
    gpu: bool,
    deploy_hash: str | None = None,
    models_dir: str | None = None,
    config: str | None = None,
    image: str | None = None,
    restrict: bool = True,
) -> str:
    """The compose file for a GPU (``gpu=True``) or CPU host.

    ``deploy_hash`` (optional) becomes the DEPLOY_HASH_LABEL label, so the container is recreated
    when something compose cannot see (the model files) changes. ``models_dir`` is the host's
    model repository mounted at /models (default: the layout's; a release passes its own).
    ``config``: the host's config.pbtxt when the caller already rendered it (its sha256 is a label).
    ``image``: the reference the host pulls Triton by (deploys/core/registry.py:pull_ref: the
    registry cache's when the inventory has one); default ``triton_image_ref``. ``restrict``: pass
    Triton the restricted-API options (deploys/triton/triton_api.py:restrict says when not).

    The text is the rendered template parsed and dumped back (:func:`canonical_yaml`): a comment or
    layout edit of the template leaves it, byte for byte, as it was.
    """
    host_paths = paths.layout(s)
    labels = compose_labels(s, gpu, deploy_hash, config=config)
    text = render(
        "docker-compose.yml.j2",
        s=s,
        gpu=gpu,
        tensorrt=_tensorrt(s, gpu),
        project=COMPOSE_PROJECT,
        image=s.triton_image_ref if image is None else image,
        container_name=container_name(s),
        labels=labels,
        bind_host=url_host(s.triton_bind_address),
        metrics_bind_host=url_host(s.triton_metrics_address or s.triton_bind_address),
        models_dir=models_dir or host_paths.models_dir,
        models_mount=MODELS_MOUNT,
        trt_cache_dir=host_paths.trt_cache_dir,
        trt_cache_mount=TRT_CACHE_MOUNT,
        key_dir=host_paths.triton_key_dir,
        key_mount=paths.TRITON_KEY_MOUNT,
        key_name=paths.TRITON_KEY_NAME,
        key_header=TRITON_KEY_HEADER,
        key_label=TRITON_KEY_LABEL,
        key_sha256_env=TRITON_KEY_SHA256_ENV,
        restricted_apis=TRITON_RESTRICTED_APIS,
        restrict=restrict,
    )
    return MANAGED_HEADER + canonical_yaml(text, "template docker-compose.yml.j2")
