"""The controller's attention-window repair on a graph of the real model's size (``make bench``).

Writes tests/support/gemma_shaped.py's graph (EmbeddingGemma-300m's shapes, ~1.2 GB of seeded random
weights) into a scratch directory, then runs ``python -m deploys.core.attention_window`` on it in a
child process: its wall time (load, repair, the guards' two ONNX Runtime sessions at 257 and 1,025
tokens) and its peak resident memory (``wait4``'s ru_maxrss of that child alone).

    python -m tests.support.repair_bench      # one JSON line
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def figures(scratch: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="repair-bench-", dir=scratch) as work:
        subprocess.run([sys.executable, "-m", "tests.support.gemma_shaped", work], check=True, stdout=subprocess.DEVNULL)
        graph = Path(work, "model.onnx")
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "deploys.core.attention_window", str(graph), "--json"], stdout=subprocess.PIPE)
        out = child.stdout.read() if child.stdout else b""
        _, _status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        outcome = json.loads(out)
        return {
            "repair_s": round(seconds, 1),
            "repair_peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux: kilobytes
            "repair_weights_bytes": Path(work, "model.onnx_data").stat().st_size,
            "repair_served": outcome["served"],
            "repair_inside_max_diff": outcome["inside_max_diff"],
            "repair_beyond_max_diff": outcome["beyond_max_diff"],
        }


if __name__ == "__main__":
    print(json.dumps(figures()))
