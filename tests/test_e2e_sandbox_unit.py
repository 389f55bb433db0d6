"""Fast checks of the sandbox tooling (no Docker needed): inventory without a sandbox, image cache keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox import fleet, images

ROOT = Path(__file__).resolve().parents[1]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")


def test_inventory_without_sandbox_says_how_to_start_one() -> None:
    env = {**os.environ, "SANDBOX_NAME": "no-such-sandbox-for-tests"}
    proc = subprocess.run(
        [PYINFRA, "inventories/sandbox.py", "exec", "-y", "--", "true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "run make sandbox / python -m tests.sandbox up" in line]
    assert len(lines) == 1 and "no-such-sandbox-for-tests" in lines[0]


def test_image_tag_follows_the_recipe(tmp_path: Path) -> None:
    extra = tmp_path / "file.conf"
    extra.write_text("one")
    recipe = images.Recipe("host", "trixie", ("systemd",), (extra,))
    first = recipe.tag()
    assert first == recipe.tag(), "the same recipe must give the same tag (images are reused)"
    extra.write_text("two")
    assert recipe.tag() != first, "a changed recipe file must give a new tag (image rebuilt)"
    assert images.Recipe("host", "trixie", ("systemd", "sudo"), (extra,)).tag() != recipe.tag()
    assert recipe.tag().startswith("sandbox-host:")


@pytest.mark.parametrize("recipe", [images.host_recipe, images.registry_recipe])
def test_recipes_name_their_packages(recipe) -> None:
    r = recipe()
    assert r.suite in ("trixie", "bookworm") and r.packages


def test_blob_bytes_served_counts_blob_bodies_only() -> None:
    # The anonymous upstream's access log during one cache warm (captured from docker logs), plus a
    # 404 line: /v2/, manifests, HEADs and the 404 count nothing; the two GETs of the small config
    # blob and the cut and the full GET of the layer all count.
    log = (ROOT / "tests/data/registry/upstream-access.log").read_text()
    assert fleet.blob_bytes_served(log) == 1050 + 1050 + 775720 + 185061486
    assert fleet.blob_bytes_served("") == 0
