"""The release spec is built once per host per run: config.pbtxt is rendered once per host.

The real pyinfra CLI plans the whole chain on two fresh `@fake` hosts in a child process whose
``deploys.core.render.render`` counts the templates it renders.
"""

from __future__ import annotations

from pathlib import Path

from deploys.core import paths, settings
from deploys.triton import release
from tests.support.counting_cli import plan_counting
from tests.test_plan import hub  # noqa: F401 (fixture)


def test_config_is_rendered_once_per_host_per_run(tmp_path: Path, hub) -> None:
    result, counts = plan_counting(tmp_path, hub, "deploys.core.render:render")
    planned = {op["name"]: sorted(op["success"]) for op in result["results"]["operations"]}
    assert planned["Triton | Triton model config (config.pbtxt)"] == ["@fake/cpu-debian", "@fake/gpu-ubuntu"]
    assert counts["config.pbtxt.j2"] == 2, counts  # two hosts, once each


def test_spec_parts_agree() -> None:
    s = settings.parse("h", {"gpu": False})
    weights = {"model.onnx": "a" * 64, "model.onnx_data": "b" * 64}
    spec = release.build(s, False, weights)
    assert spec.id == release.release_id(s, False, weights)
    assert spec.paths == paths.layout(s).release(spec.id)
    assert spec.compose == release.release_compose_file(s, False, spec.paths)
    assert spec.labels == release.release_labels(s, False, spec.id)
    assert spec.labels["io.triton-embeddinggemma.deploy-hash"] == spec.id
