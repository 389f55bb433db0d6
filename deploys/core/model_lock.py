"""The model lock: sha256 and size of every file the deploy may fetch, per repository and commit.

``deploys/model.lock.json`` is committed with the repository; ``python -m deploys.model_lock``
(deploys/tools/model_lock.py) fills and shows it. Entries the field notes give are
filled; the rest say ``"unknown"`` until the lock command fills them from the Hub's own metadata
(LFS files: sha256 and size from ``paths-info``, no download; the few small non-LFS files are
fetched and hashed)::

    python -m deploys.model_lock refresh                      # model_repo_id / model_revision defaults
    python -m deploys.model_lock refresh --revision <sha> --endpoint https://hf-mirror.example
    python -m deploys.model_lock show

A branch or tag is refused (rebuilds must be reproducible); the command says which commit it points
at. The token comes from HF_TOKEN or the vault, never from the command line.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from huggingface_hub import HfApi, errors, hf_hub_download
from pyinfra.api.exceptions import PyinfraError

from deploys.core.repo import MODEL_LOCK

LOCK_PATH = MODEL_LOCK
UNKNOWN = "unknown"
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")

# The ONNX graph of each served variant; its external data file is the same name + "_data" and that
# name is recorded inside the graph, so neither file is ever renamed.
VARIANT_ONNX = {"fp32": "onnx/model.onnx", "q8": "onnx/model_quantized.onnx", "q4": "onnx/model_q4.onnx"}
# What a fast tokenizer (``tokenizers`` / transformers) loads; the verify step reads them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Non-LFS files are hashed by downloading them; anything bigger than this is expected to be LFS.
SMALL_FILE_LIMIT = 64 * 1024 * 1024


class ModelError(PyinfraError):
    """Model source, lock or checksum problem: one line naming the file and the fix."""


@dataclass(frozen=True)
class LockEntry:
    """Expected digest and size of one repository file; None where the lock says unknown."""

    sha256: str | None
    size: int | None

    @property
    def known(self) -> bool:
        return self.sha256 is not None and self.size is not None

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256 or UNKNOWN, "size": UNKNOWN if self.size is None else self.size}


def variant_files(variant: str) -> list[str]:
    """Repository paths one host needs: the variant's graph and data file, then the tokenizer files."""
    onnx = VARIANT_ONNX[variant]
    return [onnx, onnx + "_data", *TOKENIZER_FILES]


def all_files() -> list[str]:
    """Every path the lock covers (all servable variants, so switching variant stays checked)."""
    paths = [p for v in VARIANT_ONNX for p in variant_files(v)[:2]]
    return paths + list(TOKENIZER_FILES)


def _entry(raw: Any, where: str) -> LockEntry:
    """Parse one lock entry; a malformed one is an error, not "unknown"."""
    if not isinstance(raw, dict) or set(raw) != {"sha256", "size"}:
        raise ModelError(f"model lock {where}: needs exactly sha256 and size; run `python -m deploys.model_lock refresh`")
    sha, size = raw["sha256"], raw["size"]
    if sha != UNKNOWN and not (isinstance(sha, str) and SHA256.fullmatch(sha)):
        raise ModelError(f'model lock {where}: sha256 must be 64 lowercase hex digits or "unknown"')
    if size != UNKNOWN and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ModelError(f'model lock {where}: size must be a byte count or "unknown"')
    return LockEntry(None if sha == UNKNOWN else sha, None if size == UNKNOWN else size)


def read_document(path: Path = LOCK_PATH) -> dict[str, Any]:
    """The whole lock document (``{"models": {repo: {commit: {path: entry}}}}``)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {"models": {}}
    except ValueError as error:
        raise ModelError(f"model lock {path}: not valid JSON ({error}); restore it from git") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ModelError(f'model lock {path}: top level needs a "models" mapping; restore it from git')
    return doc


def read(repo_id: str, revision: str, path: Path = LOCK_PATH) -> dict[str, LockEntry]:
    """Lock entries of ``repo_id`` at ``revision``; paths without an entry are unknown."""
    raw = read_document(path)["models"].get(repo_id, {}).get(revision, {})
    entries = {p: _entry(v, f"{path}: {repo_id}@{revision[:12]} {p}") for p, v in raw.items()}
    return {p: entries.get(p, LockEntry(None, None)) for p in sorted(set(all_files()) | set(entries))}


def write(repo_id: str, revision: str, entries: dict[str, LockEntry], path: Path = LOCK_PATH) -> None:
    """Store ``entries`` for ``repo_id`` at ``revision``, keeping every other lock entry."""
    doc = read_document(path)
    doc["models"].setdefault(repo_id, {})[revision] = {p: entries[p].to_json() for p in sorted(entries)}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def sha256_file(path: Path) -> str:
    """sha256 hex of a local file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# The Hugging Face Hub: the one endpoint that gets the HF token without being named.
HUB_ENDPOINT = "https://huggingface.co"


def _normal_url(url: str) -> str:
    """scheme://host[:port]/path, scheme and host lowercased, default port and trailing / dropped."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port if parts.port and (scheme, parts.port) not in (("https", 443), ("http", 80)) else None
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}{f':{port}' if port else ''}{parts.path.rstrip('/')}"


def token_allowed(url: str, allowed: Iterable[str]) -> bool:
    """May the HF token go to ``url``? Only to the Hub or to an endpoint listed in ``allowed``."""
    try:
        wanted = _normal_url(url)
        return wanted == HUB_ENDPOINT or wanted in {_normal_url(a) for a in allowed}
    except ValueError:  # not a URL (a bad port, say): no token
        return False


def hub_error(error: Exception, repo_id: str, revision: str, endpoint: str, token_given: bool, withheld: bool = False) -> ModelError:
    """Translate a huggingface_hub error into one line with the fix (never includes the token).

    ``withheld``: the endpoint is not one the HF token may go to, so none was sent whatever the vault holds."""
    where = f"model {repo_id}@{revision[:12]} at {endpoint}"
    if withheld and isinstance(error, (errors.GatedRepoError, errors.RepositoryNotFoundError)):
        return ModelError(
            f"{where}: the repository is gated, private or absent there, and no HF token is sent to {endpoint} (not the Hub); "
            "if that endpoint may have it, list it in model_token_endpoints (python -m deploys.model_lock: --token-endpoint)"
        )
    if isinstance(error, errors.GatedRepoError):
        if token_given:
            return ModelError(
                f"{where}: the repository is gated and this HF token has no access; accept its terms on the Hub with the token's account"
            )
        return ModelError(
            f"{where}: the repository is gated and no HF token was given; accept its terms on the Hub, then add hf_token to the vault (sops edit) or export HF_TOKEN"
        )
    if isinstance(error, errors.RevisionNotFoundError):
        return ModelError(f"{where}: revision not found; set model_revision to a commit sha of {repo_id}")
    if isinstance(error, errors.RepositoryNotFoundError):
        hint = "check model_repo_id" if token_given else "check model_repo_id, or give an HF token if it is private"
        return ModelError(f"{where}: repository not found or not accessible; {hint}")
    if isinstance(error, errors.EntryNotFoundError):
        return ModelError(
            f"{where}: a file is missing at this revision ({error.__class__.__name__}); check model_variant and model_revision"
        )
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return ModelError(f"{where}: {type(error).__name__}: {first[:200]}; check the network or the endpoint, or use model_fetch: mirror")


def resolve_commit(repo_id: str, revision: str, endpoint: str, token: str | None, withheld: bool = False) -> str:
    """The commit sha ``revision`` points at on the Hub (``/api/models/{repo}/revision/{rev}``)."""
    try:
        return HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, token=token or False).sha or ""
    except Exception as error:
        raise hub_error(error, repo_id, revision, endpoint, bool(token), withheld) from None


def hub_metadata(
    repo_id: str, revision: str, paths: list[str], endpoint: str, token: str | None, withheld: bool = False
) -> dict[str, LockEntry]:
    """sha256 and size of ``paths`` from the Hub: LFS metadata where the file is in LFS (no download),
    else the small file is fetched into a throwaway cache and hashed. ``withheld``: see :func:`hub_error`."""
    try:
        infos = HfApi(endpoint=endpoint).get_paths_info(repo_id, paths, revision=revision, token=token or False)
    except Exception as error:
        raise hub_error(error, repo_id, revision, endpoint, bool(token), withheld) from None
    found: dict[str, LockEntry] = {}
    with tempfile.TemporaryDirectory(prefix="model-lock-") as scratch:
        for info in infos:
            lfs = getattr(info, "lfs", None)
            if lfs is not None:
                found[info.path] = LockEntry(lfs.sha256, int(lfs.size))
                continue
            size = getattr(info, "size", None)
            if size is None:  # a folder
                continue
            if size > SMALL_FILE_LIMIT:
                raise ModelError(
                    f"model {repo_id}@{revision[:12]}: {info.path} is {size} bytes and not in LFS; the lock command will not download it"
                )
            try:
                local = hf_hub_download(repo_id, info.path, revision=revision, cache_dir=scratch, endpoint=endpoint, token=token or False)
            except Exception as error:
                raise hub_error(error, repo_id, revision, endpoint, bool(token), withheld) from None
            found[info.path] = LockEntry(sha256_file(Path(local)), int(size))
    return found


def refresh(repo_id: str, revision: str, endpoint: str, token: str | None, path: Path = LOCK_PATH, withheld: bool = False) -> list[str]:
    """Fill or refresh the lock for ``repo_id`` at ``revision``; returns one report line per file.
    ``withheld``: the caller sends no token to ``endpoint`` (not the Hub, not named)."""
    if not COMMIT_SHA.fullmatch(revision):
        commit = resolve_commit(repo_id, revision, endpoint, token, withheld)
        raise ModelError(
            f"model_lock: revision {revision!r} is a branch or tag (it points at {commit or 'an unknown commit'} now); "
            "lock and deploy a commit sha so rebuilds are reproducible"
        )
    old = read(repo_id, revision, path)
    new = hub_metadata(repo_id, revision, all_files(), endpoint, token, withheld)
    lines = []
    for repo_path in sorted(old):
        before, after = old[repo_path], new.get(repo_path)
        if after is None:
            lines.append(f"{repo_path}: not in {repo_id}@{revision[:12]} (left {before.to_json()['sha256']})")
            new[repo_path] = before
        elif before.known and before != after:
            lines.append(f"{repo_path}: CHANGED {before.sha256} {before.size} -> {after.sha256} {after.size}")
        else:
            state = "confirmed" if before.known else "filled"
            lines.append(f"{repo_path}: {state} {after.sha256} {after.size}")
    write(repo_id, revision, new, path)
    return lines
