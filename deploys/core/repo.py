"""Controller-side paths of this repository (host paths live in deploys/core/paths.py)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES_DIR = REPO_ROOT / "templates"
VERIFY_SRC = REPO_ROOT / "verify"  # the host program, uploaded by the verify step
GATEWAY_SRC = REPO_ROOT / "embeddings_gateway"  # the gateway's package, uploaded by the gateway step
CONTRACT_SRC = REPO_ROOT / "embeddinggemma.py"  # the model's contract both host programs import: shipped with each
MODEL_LOCK = REPO_ROOT / "deploys" / "model.lock.json"
README = REPO_ROOT / "README.md"

# verify/requirements-{cpu,gpu}.txt and embeddings_gateway/requirements.txt are hashed locks (`make locks`, deploys/tools/locks.py):
# the verify and gateway steps install them with these flags (uv's and pip's), so the installer takes only the locked files.
PIP_LOCK_FLAGS = "--require-hashes --only-binary=:all:"
# uv, which the hosts run to install those locks (fetched and checked like them; deploys/core/operations.py:pinned_venv).
RUNTIME_INSTALLER = REPO_ROOT / "deploys" / "core" / "runtime-installer.txt"
