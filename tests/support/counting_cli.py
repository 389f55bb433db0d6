"""The real pyinfra CLI plans deploys/all.py on two fresh ``@fake`` hosts in a child process that
counts the calls of one controller function, by its first argument (a host name, a template name).
Used by tests/test_release_spec.py (templates rendered) and tests/test_run_context.py (settings parsed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.test_plan import CANARY_KEY, FRESH_CPU, FRESH_GPU, ROOT

COUNTING_CLI = """
import atexit, collections, importlib, json, sys
out = sys.argv.pop()
module_name, function_name = sys.argv.pop().split(":")
module = importlib.import_module(module_name)
counts = collections.Counter()
original = getattr(module, function_name)
def counting(key, *args, **kwargs):
    counts[key] += 1
    return original(key, *args, **kwargs)
setattr(module, function_name, counting)
atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
from pyinfra_cli.main import main
sys.argv[0] = "pyinfra"
sys.exit(main())
"""


def plan_counting(tmp_path: Path, hub: tuple[str, dict[str, Any]], target: str, **env: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Plan the chain on two fresh @fake hosts with ``target`` (``module:function``) counted; pyinfra's
    ``--json`` result and the counts by first argument. ``env``: more environment for the run."""
    url, data = hub
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "import json\nfrom tests.support import fake_hosts as f\n\n"
        f"f.SETTINGS.update(json.loads({json.dumps(json.dumps(data))}))\n"
        "fleet = [\n" + FRESH_GPU + ",\n" + FRESH_CPU + "\n]\n"
    )
    counts_file = tmp_path / "counts.json"
    run_env = {
        **os.environ,
        "NGC_API_KEY": CANARY_KEY,
        "HF_ENDPOINT": url,
        "PYINFRA_FAKE_DELAY": "0",
        "PYINFRA_FAKE_DELAY_JITTER": "0",
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", COUNTING_CLI, str(inventory), "deploys/all.py", "-y", "--json", target, str(counts_file)],
        cwd=ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), json.loads(counts_file.read_text())
