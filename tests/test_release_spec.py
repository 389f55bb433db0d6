"""The release spec is built once per host per run: config.pbtxt is rendered once per host.

The real pyinfra CLI plans the whole chain on two fresh `@fake` hosts in a child process whose
``deploys.lib.render.render`` counts the templates it renders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deploys.lib import paths, release, settings
from tests.test_plan import CANARY_KEY, FRESH_CPU, FRESH_GPU, ROOT, hub  # noqa: F401 (fixture)

COUNTING_CLI = """
import atexit, collections, json, sys
out = sys.argv.pop()
from deploys.lib import render
counts = collections.Counter()
original = render.render
def counting(template_name, **context):
    counts[template_name] += 1
    return original(template_name, **context)
render.render = counting
atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
from pyinfra_cli.main import main
sys.argv[0] = "pyinfra"
sys.exit(main())
"""


def test_config_is_rendered_once_per_host_per_run(tmp_path: Path, hub) -> None:
    url, data = hub
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "import json\nfrom tests import fake_hosts as f\n\n"
        f"f.SETTINGS.update(json.loads({json.dumps(json.dumps(data))}))\n"
        "fleet = [\n" + FRESH_GPU + ",\n" + FRESH_CPU + "\n]\n"
    )
    counts_file = tmp_path / "counts.json"
    env = {**os.environ, "NGC_API_KEY": CANARY_KEY, "HF_ENDPOINT": url, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", COUNTING_CLI, str(inventory), "deploys/all.py", "-y", "--json", str(counts_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = {op["name"]: sorted(op["success"]) for op in json.loads(proc.stdout)["results"]["operations"]}
    assert planned["Triton | Triton model config (config.pbtxt)"] == ["@fake/cpu-debian", "@fake/gpu-ubuntu"]
    counts = json.loads(counts_file.read_text())
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
