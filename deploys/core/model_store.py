"""The model store's file list: which files a host's model needs, where each goes on the host, and the
digest each must have (the lock's, else the source's metadata for this run), with the HF token rule.

Core, not the model role's, because three roles read the same list: the model step puts the files
there (deploys/model/model_files.py fetches and installs them), the preflight step counts the bytes
they add before it checks free disk (deploys/host_base/host.py), and Triton's release hard-links them
and its verify run checks them (deploys/triton/release.py, verify_run.py). Passing the list in from
the caller would not help: each of those is a @deploy step that pyinfra calls with no arguments, so
each must compute it from the host's settings the same way; one function does.

On the host (deploys/core/paths.py)::

    {triton_dir}/models/{model_name}/1/<variant>.onnx + <variant>.onnx_data   (names as in the repo)
    {triton_dir}/tokenizer/tokenizer.json, tokenizer_config.json, ...       (for the verify step)

The HF token goes only to the Hub, https://huggingface.co, or to an endpoint that
``model_token_endpoints`` names (deploys/core/model_lock.py:token_allowed): an ``HF_ENDPOINT`` or a
mirror URL that is neither gets no token (the vault is not even read for it), and the log says so once.

Every file is checked against deploys/model.lock.json; files whose lock entry is "unknown" are
checked against the source's own metadata for the run, and the log says so
(``model_require_lock: true`` refuses them instead).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import constants
from pyinfra import logger

from deploys.core import attention_window, context, model_lock, paths, vault
from deploys.core.model_lock import HUB_ENDPOINT, LockEntry, ModelError, sha256_file, token_allowed
from deploys.core.settings import Settings


@dataclass(frozen=True)
class ModelFile:
    """One file a host needs: where it comes from, where it goes, what it must hash to."""

    repo_path: str
    dest: str
    sha256: str
    size: int
    locked: bool  # False: the digest comes from the source's metadata for this run only
    source: str = ""  # a controller file sent instead of the repository's (the served graph: attention_window)


def destination(s: Settings, repo_path: str) -> str:
    """Host path of a repository file: graph and data in the version directory, the rest in tokenizer/."""
    name = PurePosixPath(repo_path).name
    host_paths = paths.layout(s)
    return f"{host_paths.version_dir}/{name}" if repo_path.startswith("onnx/") else f"{host_paths.tokenizer_dir}/{name}"


def human(size: int) -> str:
    """Byte count for the log: 1.2 GB, 35 B."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def mirror_directory(s: Settings) -> Path | None:
    """The controller directory of model_fetch=mirror; None for the other modes and mirror URLs."""
    if s.model_fetch == "mirror" and not s.model_mirror.startswith(("http://", "https://")):
        return Path(s.model_mirror)
    return None


def endpoint(s: Settings) -> str:
    """Where files come from over HTTP: the mirror URL, else the Hub (HF_ENDPOINT or huggingface.co)."""
    if s.model_fetch == "mirror" and mirror_directory(s) is None:
        return s.model_mirror.rstrip("/")
    return constants.ENDPOINT.rstrip("/")


def token_withheld(s: Settings) -> bool:
    """True when this host's files come over HTTP from an endpoint that may not have the token."""
    return mirror_directory(s) is None and not token_allowed(endpoint(s), s.model_token_endpoints)


def hub_token(s: Settings) -> str | None:
    """The HF token (HF_TOKEN or the vault), for the Hub or an endpoint model_token_endpoints
    names; None for any other endpoint (said once in the log) and for a mirror directory."""
    if mirror_directory(s) is not None:
        return None
    if token_withheld(s):
        _say_once(
            f"model: {endpoint(s)} is not the Hub ({HUB_ENDPOINT}) nor listed in model_token_endpoints: "
            "no HF token is sent to it (list it there to send one)"
        )
        return None
    secrets = vault.load(s.secrets_file)
    if secrets.warning:
        _say_once(secrets.warning, logger.warning)
    return secrets.hf_token.unmask() if secrets.hf_token else None


def _say_once(message: str, log: Callable[[str], Any] = logger.info) -> None:
    """Log a run-wide message once, not once per host (the run context keeps what was said)."""
    said = context.run_cache("model_files.said")
    if message not in said:
        said[message] = True
        log(message)


# -- expected digests --


def expected(s: Settings, token: str | None, served: bool = True) -> list[ModelFile]:
    """The host's files with the digest each must have: the lock's, else the source's metadata;
    the graph is the served one (:func:`served_files`) unless ``served`` is false."""
    paths = model_lock.variant_files(s.model_variant)
    key = (
        s.model_repo_id,
        s.model_revision,
        tuple(paths),
        s.model_fetch,
        s.model_mirror,
        s.model_require_lock,
        s.model_lock_file,
        endpoint(s),
    )
    digests = context.run_cache("model_files.digests")  # resolved once per run
    if key not in digests:
        digests[key] = _resolve(s, paths, token)
    files = [ModelFile(p, destination(s, p), e.sha256 or "", e.size or 0, locked=_locked(s, p)) for p, e in digests[key].items()]
    return served_files(s, files) if served else files


# -- the served graph (deploys/core/attention_window.py) --
#
# Core, like the file list: the model step sends the served graph, and Triton's release id and its
# verify run read its digest through expected(). Recorded beside the controller cache, keyed by the
# upstream files' digests and the repair's parameters, so a re-run neither repairs nor fetches again.


def attention_shape(s: Settings) -> attention_window.Shape:
    return attention_window.Shape.every(s.model_attention_layers, 6, s.model_sliding_window)


def _served_paths(s: Settings) -> tuple[Path, Path]:
    cache = Path(s.model_cache_dir)
    return cache.with_name(cache.name + ".served"), cache.with_name(cache.name + ".served.json")


def _served_key(s: Settings, files: list[ModelFile]) -> str | None:
    graph, data = (f for f in files if f.repo_path.startswith("onnx/"))
    shape = attention_shape(s)
    return f"{graph.sha256}:{data.sha256}:{len(shape.layer_types)}:{shape.window}:v{attention_window.REPAIR_VERSION}"


def repairs_here(s: Settings) -> bool:
    """The repair runs on the controller: only when the model files pass through it."""
    return s.model_attention_window == "repaired" and (s.model_fetch == "controller" or mirror_directory(s) is not None)


def served_record(s: Settings, files: list[ModelFile]) -> dict[str, Any] | None:
    """What the controller recorded for these upstream files: the outcome of the repair, or None."""
    record = _served_paths(s)[1]
    try:
        return json.loads(record.read_text()).get(_served_key(s, files))
    except (OSError, ValueError):
        return None


def served_files(s: Settings, files: list[ModelFile]) -> list[ModelFile]:
    """``files`` with the graph replaced by the served (repaired) one when the controller made it."""
    if not repairs_here(s):
        return files
    found = served_record(s, files)
    if not found or found.get("served") != "repaired":
        return files
    graph = next(f for f in files if f.repo_path.startswith("onnx/"))
    served = ModelFile(graph.repo_path, graph.dest, found["served_sha256"], found["size"], locked=graph.locked, source=found["path"])
    if not Path(served.source).is_file():
        return files
    return [served if f is graph else f for f in files]


def prepare_served(s: Settings, files: list[ModelFile], local: dict[str, Path]) -> dict[str, Any]:
    """Repair the upstream graph in ``local`` (controller files), run the guards, record the outcome.

    A failed guard: one warning line and the upstream graph is served (an error with
    model_attention_window_strict). Returns the record."""
    graph = next(f for f in files if f.repo_path.startswith("onnx/"))
    known = served_record(s, files)
    if known is not None and (known.get("served") != "repaired" or Path(known["path"]).is_file()):
        return said(s, graph, known)
    data, outcome = attention_window.prepare(local[graph.repo_path], attention_shape(s))
    directory, record_file = _served_paths(s)
    record: dict[str, Any] = {**dataclasses.asdict(outcome), "line": outcome.line(), "size": len(data), "path": ""}
    if outcome.served == "repaired":
        target = directory / outcome.served_sha256 / PurePosixPath(graph.repo_path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o644)
        record["path"] = str(target.resolve())
        record["line"] += f" ({outcome.seconds:.1f} s on the controller)"
    try:
        everything = json.loads(record_file.read_text())
    except (OSError, ValueError):
        everything = {}
    everything[_served_key(s, files)] = record
    record_file.parent.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(everything, indent=1) + "\n")
    return said(s, graph, record)


def fidelity(s: Settings) -> dict[str, Any]:
    """The verify report's ``fidelity`` section: which graph is served and the guard figures."""
    if s.model_attention_window == "upstream":
        return {"served": "upstream", "reason": "", "line": "attention window: upstream graph served (model_attention_window: upstream)"}
    if not repairs_here(s):
        reason = f"model_fetch={s.model_fetch}: the repair runs on the controller"
        return {"served": "upstream", "reason": reason, "line": f"attention window NOT repaired: {reason}"}
    found = served_record(s, expected(s, hub_token(s), served=False)) or {}
    keys = ("served", "reason", "line", "upstream_sha256", "served_sha256", "blocks", "inside_max_diff", "beyond_max_diff")
    return {k: found.get(k) for k in keys} if found else {"served": "unknown", "reason": "no record", "line": "attention window: no record"}


def said(s: Settings, graph: ModelFile, record: dict[str, Any]) -> dict[str, Any]:
    """Log the fidelity line once per run; a failed guard is a warning, or an error when strict."""
    if record.get("served") == "repaired":
        _say_once(f"model: {record['line']}")
    elif s.model_attention_window_strict:
        raise ModelError(f"model {graph.repo_path}: {record['line']}; model_attention_window_strict is true: refusing to deploy")
    else:
        _say_once(f"model: {record['line']}; set model_attention_window: upstream to serve it knowingly", logger.warning)
    return record


def _locked(s: Settings, repo_path: str) -> bool:
    return model_lock.read(s.model_repo_id, s.model_revision, Path(s.model_lock_file))[repo_path].sha256 is not None


def refresh_hint(s: Settings) -> str:
    """The exact lock command for this host's model."""
    return f"python -m deploys.model_lock refresh --repo-id {s.model_repo_id} --revision {s.model_revision} --lock {s.model_lock_file}" + (
        f" --endpoint {endpoint(s)}" if s.model_fetch == "mirror" and mirror_directory(s) is None else ""
    )


def _resolve(s: Settings, paths: list[str], token: str | None) -> dict[str, LockEntry]:
    """Lock entries for ``paths``, the unknown ones filled from the source (with a plain warning)."""
    where = f"{s.model_repo_id}@{s.model_revision[:12]}"
    lock = model_lock.read(s.model_repo_id, s.model_revision, Path(s.model_lock_file))
    found = {p: lock[p] for p in paths}
    unknown = [p for p in paths if lock[p].sha256 is None]
    if not unknown:
        return found
    listed = ", ".join(unknown)
    if s.model_require_lock:
        raise ModelError(
            f"host {s.host}: model lock {s.model_lock_file} has no sha256 for {listed} at {where} and model_require_lock is true; "
            f"run `{refresh_hint(s)}` and commit it"
        )
    directory = mirror_directory(s)
    if directory is not None:
        source = f"mirror directory {directory}"
        meta = {p: LockEntry(sha256_file(directory / p), (directory / p).stat().st_size) for p in unknown if (directory / p).is_file()}
    else:
        source = f"{endpoint(s)}'s LFS metadata"
        meta = model_lock.hub_metadata(s.model_repo_id, s.model_revision, unknown, endpoint(s), token, withheld=token_withheld(s))
    for p in unknown:
        if p not in meta:
            raise ModelError(f"model {where}: {p} is not in {source}; check model_variant, model_revision and the source")
        if lock[p].size is not None and meta[p].size != lock[p].size:
            raise ModelError(
                f"model {where}: {p} is {meta[p].size} bytes in {source} but the lock says {lock[p].size}: refusing to deploy; "
                "check the source, then `python -m deploys.model_lock refresh`"
            )
        found[p] = meta[p]
    _say_once(
        f"model lock {s.model_lock_file}: no recorded sha256 for {listed} at {where}; trusting {source} for this run only. "
        f"Pin them: `{refresh_hint(s)}`, then commit it",
        logger.warning,
    )
    return found
