"""Controller-side paths of this repository (host paths live in deploys/lib/paths.py)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES_DIR = REPO_ROOT / "templates"
VERIFY_SRC = REPO_ROOT / "verify"  # the host program, uploaded by the verify step
MODEL_LOCK = REPO_ROOT / "deploys" / "model.lock.json"
README = REPO_ROOT / "README.md"
