"""A release id digests what the release is (deploys/triton/release.py: release_id), not template text:
comment and layout edits of the templates change no id; a changed batch size, image, port, flag or
model file does; the host's own addresses are not part of it, but a change of them still reaches
the host (its compose file and the container's bindings label differ)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploys.core import paths, render, settings
from deploys.core.repo import TEMPLATES_DIR
from deploys.triton import release
from deploys.triton import render as triton_render
from tests.support.template_edits import edit_copy

WEIGHTS = {"model.onnx": "a" * 64, "model.onnx_data": "b" * 64}
DIGEST = "sha256:" + "1" * 64
# Settings that shape the two files differently (CPU and GPU, TensorRT, threads, a pinned image,
# the restricted APIs off for one run).
CASES = [
    ({}, False, True),
    ({}, True, True),
    ({"triton_tensorrt": True}, True, True),
    ({"triton_intra_op_thread_count": 4, "triton_image_digest": DIGEST}, False, True),
    ({}, False, False),
]


def ids() -> list[str]:
    return [release.release_id(settings.parse("h", data), gpu, WEIGHTS, restrict=restrict) for data, gpu, restrict in CASES]


def test_template_comment_and_indent_edits_leave_every_release_id(tmp_path: Path, monkeypatch) -> None:
    before = ids()
    spec = release.build(settings.parse("h", {}), False, WEIGHTS)
    raw = render.render("config.pbtxt.j2", s=settings.parse("h", {}), gpu=False, tensorrt=False, trt_cache_path="/t", onnx_filename="m")
    monkeypatch.setattr(render, "TEMPLATES_DIR", edit_copy(TEMPLATES_DIR, tmp_path / "templates"))
    raw_edited = render.render(
        "config.pbtxt.j2", s=settings.parse("h", {}), gpu=False, tensorrt=False, trt_cache_path="/t", onnx_filename="m"
    )
    assert raw_edited != raw  # the edit did reach the rendered text
    assert ids() == before
    # What a host gets is the same, byte for byte: a deploy after the edit changes no file.
    edited = release.build(settings.parse("h", {}), False, WEIGHTS)
    assert (edited.config, edited.compose, edited.labels) == (spec.config, spec.compose, spec.labels)


@pytest.mark.parametrize(
    "change",
    [
        {"triton_max_batch_size": 16},
        {"triton_image_digest": DIGEST},
        {"triton_image": "nvcr.io/nvidia/tritonserver:25.06-py3"},
        {"triton_http_port": 7000},
        {"triton_metrics_port": 7002},
        {"triton_log_verbose": 1},
        {"triton_preferred_batch_sizes": [2, 4]},
    ],
)
def test_a_changed_setting_gives_a_new_release_id(change: dict) -> None:
    assert release.release_id(settings.parse("h", change), False, WEIGHTS) != release.release_id(settings.parse("h", {}), False, WEIGHTS)


def test_a_changed_model_file_or_flag_gives_a_new_release_id() -> None:
    s = settings.parse("h", {})
    base = release.release_id(s, False, WEIGHTS)
    assert release.release_id(s, False, {**WEIGHTS, "model.onnx": "c" * 64}) != base
    assert release.release_id(s, False, WEIGHTS, restrict=False) != base  # the restricted-API flags
    assert release.release_id(s, False, WEIGHTS, image="cache:5000/tritonserver:25.05-py3") != base


def test_hosts_with_the_same_settings_share_a_release_whatever_their_addresses() -> None:
    host1 = settings.parse("host1", {"triton_metrics_address": "172.19.0.3"})
    host2 = settings.parse("host2", {"triton_metrics_address": "172.19.0.4"})
    one, two = release.build(host1, False, WEIGHTS), release.build(host2, False, WEIGHTS)
    assert one.id == two.id
    # A host whose binding changes keeps its release id, but the change reaches it: its compose file
    # is written again and the bindings label differs, so the triton step recreates the container.
    assert '"172.19.0.3:6002:8002"' not in one.compose and "172.19.0.3:6002:8002" in one.compose
    assert one.compose != two.compose
    assert one.labels[triton_render.BINDINGS_LABEL] != two.labels[triton_render.BINDINGS_LABEL]
    assert {k: v for k, v in one.labels.items() if k != triton_render.BINDINGS_LABEL} == {
        k: v for k, v in two.labels.items() if k != triton_render.BINDINGS_LABEL
    }


def test_the_canonical_compose_file_keeps_what_the_release_own_settings_fact_reads(tmp_path: Path) -> None:
    from facts.triton import parse_release_own_settings

    s = settings.parse("h", {"triton_http_port": 7000, "triton_metrics_address": "::1", "triton_bind_beyond_loopback": True})
    spec = release.build(s, False, WEIGHTS, paths.layout(s))
    lines = [line.strip() for line in spec.compose.splitlines() if line.strip().startswith("- ") and ":800" in line]
    output = [f"{spec.id} port {line[2:]}" for line in lines if line.rstrip("'\"").rsplit(":", 1)[-1] in ("8000", "8001", "8002")]
    output.append(f'{spec.id} model "--load-model={s.model_name}"')
    own = parse_release_own_settings(output)[spec.id]
    assert own["triton_http_port"] == 7000 and own["triton_metrics_port"] == s.triton_metrics_port and own["model_name"] == s.model_name
