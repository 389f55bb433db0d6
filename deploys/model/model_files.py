"""How the model files a host needs get there (the model step, deploys/model/step.py, routes through
these). Which files, where each goes and the digest each must have: deploys/core/model_store.py
(preflight and Triton read that list too).

The ``.onnx_data`` name is recorded inside the graph, so files keep their repository names; for
q8/q4 config.pbtxt names the graph with ``default_model_filename`` (paths.onnx_filename).

``model_fetch``:

- ``controller``: huggingface_hub downloads each file once into ``model_cache_dir`` on the
  controller (interrupted transfers resume with HTTP ranges), then each host receives only the
  files whose sha256 differs from the lock.
- ``host``: each host downloads from the Hub itself with curl (token on curl's stdin, resumable).
- ``mirror``: ``model_mirror`` is an HF-compatible URL (hosts download from it) or a controller
  directory holding the repository's files (pushed like ``controller``).

The HF token goes only to the Hub or an endpoint ``model_token_endpoints`` names
(deploys/core/model_store.py:hub_token).

Every file is checked against deploys/model.lock.json; a mismatch refuses the host. Files whose
lock entry is "unknown" are checked against the source's own metadata for the run, and the log says
so (``model_require_lock: true`` refuses them instead).
"""

from __future__ import annotations

import inspect
import json
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import hf_hub_download, hf_hub_url
from tqdm import tqdm

from deploys.core import bounds, context, model_lock
from deploys.core.model_lock import ModelError, sha256_file
from deploys.core.model_store import ModelFile, _say_once, endpoint, human, mirror_directory, token_withheld
from deploys.core.settings import Settings

STEP = "Model files (pinned, checksummed)"  # the model step's name, in the lines printed past a bound


# -- controller side: cache and verification --


def _fetched() -> dict[tuple, dict[str, Path]]:
    """Files fetched to (or checked on) the controller this run (the run context's)."""
    return context.run_cache("model_files.fetched")


def _verified_sha256(path: Path, memo_file: Path) -> str:
    """sha256 of a controller file, remembered by (size, mtime) in ``memo_file`` so re-runs don't
    re-hash gigabytes (kept beside, not inside, huggingface_hub's cache layout)."""
    real = path.resolve()
    stat = real.stat()
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(str(real))
    if entry and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
        return entry[2]
    digest = sha256_file(real)
    memo[str(real)] = [stat.st_size, stat.st_mtime_ns, digest]
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        memo_file.write_text(json.dumps(memo))
    except OSError:
        pass  # a read-only cache directory: hash again next run
    return digest


def _memo_file(s: Settings) -> Path:
    """``<model_cache_dir>.sha256.json``: beside the cache, since huggingface_hub owns its inside."""
    cache = Path(s.model_cache_dir)
    return cache.with_name(cache.name + ".sha256.json")


def _check_local(f: ModelFile, local: Path, source: str, memo_file: Path, remove_bad: bool) -> None:
    """Refuse a controller-side copy whose sha256 differs; drop it from the cache so a re-run re-fetches."""
    got = _verified_sha256(local, memo_file)
    if got == f.sha256:
        return
    if remove_bad:
        local.resolve().unlink(missing_ok=True)
        local.unlink(missing_ok=True)
    what = "the lock" if f.locked else "the source's metadata"
    removed = "; the bad copy was removed from the cache" if remove_bad else ""
    raise ModelError(f"model file {f.repo_path} from {source} has sha256 {got}, {what} says {f.sha256}: refusing to deploy{removed}")


def _counting_bar() -> tuple[type, list[int]]:
    """A silent tqdm class counting the bytes huggingface_hub receives (resumed parts included)."""
    received = [0]

    class Counter(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # no progress bar in pyinfra's output
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if n and n > 0:
                received[0] += int(n)
            return super().update(n)

    return Counter, received


def fetch_to_controller(s: Settings, wanted: list[ModelFile], token: str | None) -> dict[str, Path]:
    """Download ``wanted`` once per run into the controller cache and verify each file's sha256."""
    url = endpoint(s)
    key = (s.model_repo_id, s.model_revision, url, s.model_cache_dir, tuple(f.repo_path for f in wanted))
    fetched = _fetched()
    if key in fetched:
        return fetched[key]
    bar, received = _counting_bar()
    extra = {"tqdm_class": bar} if "tqdm_class" in inspect.signature(hf_hub_download).parameters else {}
    local: dict[str, Path] = {}
    for f in wanted:
        try:
            path = hf_hub_download(
                s.model_repo_id,
                f.repo_path,
                revision=s.model_revision,
                cache_dir=s.model_cache_dir,
                endpoint=url,
                token=token or False,
                **extra,
            )
        except Exception as error:
            raise model_lock.hub_error(error, s.model_repo_id, s.model_revision, url, bool(token), withheld=token_withheld(s)) from None
        local[f.repo_path] = Path(path)
        _check_local(f, Path(path), url, _memo_file(s), remove_bad=True)
    total = sum(f.size for f in wanted)
    _say_once(
        f"model: {len(wanted)} files ({human(total)}) of {s.model_repo_id}@{s.model_revision[:12]} in the controller cache "
        f"{s.model_cache_dir}; {human(received[0])} came from upstream ({url}) this run"
    )
    fetched[key] = local
    return local


def from_mirror_directory(s: Settings, wanted: list[ModelFile]) -> dict[str, Path]:
    """Files of a mirror directory on the controller, each checked against its expected sha256."""
    directory = mirror_directory(s)
    assert directory is not None
    key = (str(directory), tuple(f.repo_path for f in wanted))
    fetched = _fetched()
    if key not in fetched:
        for f in wanted:
            if not (directory / f.repo_path).is_file():
                raise ModelError(
                    f"model mirror {directory}: {f.repo_path} is missing; copy the repository's files there (hf download --local-dir)"
                )
            _check_local(f, directory / f.repo_path, f"mirror directory {directory}", _memo_file(s), remove_bad=False)
        fetched[key] = {f.repo_path: directory / f.repo_path for f in wanted}
        _say_once(f"model: {len(wanted)} files from mirror directory {directory}; 0 B came from upstream")
    return fetched[key]


# -- host side --
#
# A file in transfer is ``<dest>.partial``, the same name in every run: a download cut by a
# failure or a Ctrl-C resumes from it in the next run (curl -C -). Two runs could otherwise share
# it; the deploy lock (deploys/deploy_lock/logic.py) lets one run at a time change the host, so a
# per-run name would buy nothing and lose the resume.


def install_command(f: ModelFile) -> str:
    """Check the uploaded ``.partial`` against the expected sha256, then move it into place."""
    dest, part = shlex.quote(f.dest), shlex.quote(f.dest + ".partial")
    return (
        f"got=$(sha256sum {part} | cut -d' ' -f1); "
        f'if [ "$got" != {f.sha256} ]; then rm -f {part}; '
        f'echo "model file {f.dest}: sha256 $got differs from the expected {f.sha256}: refusing this host" >&2; exit 1; fi; '
        f"mv -f {part} {dest}"
    )


def download_command(s: Settings, f: ModelFile, url: str, with_token: bool) -> str:
    """curl on the host: resumes a ``.partial`` left by an earlier run, then the sha256 check.

    With a token, one line ``Authorization: Bearer …`` arrives on stdin; ``read`` keeps it in a shell
    variable and ``printf`` (a builtin) hands it to curl's ``-H @-``: it never is an argument of a process.
    Each curl is bounded by model_download_timeout_s (``--max-time``); past it one line names the
    step, the host and the file.
    """
    part = shlex.quote(f.dest + ".partial")
    limit = s.model_download_timeout_s
    curl = f"curl --fail --silent --show-error --location --retry 5 --retry-delay 2 --retry-max-time {limit} --connect-timeout 30 --max-time {limit} -o {part}"
    if with_token:
        head, feed = "IFS= read -r auth_header || true; ", "printf '%s\\n' \"$auth_header\" | "
        curl += " -H @-"
    else:
        head, feed = "", ""
    url_q = shlex.quote(url)
    name = PurePosixPath(f.dest).name
    line = shlex.quote(bounds.past_bound_line(STEP, s.host, f"the download of {name}", limit, "model_download_timeout_s"))
    return (
        "command -v curl >/dev/null || { echo 'model_fetch needs curl on the host' >&2; exit 1; }; "
        f"mkdir -p {shlex.quote(str(PurePosixPath(f.dest).parent))}; {head}"
        f"{{ {feed}{curl} -C - {url_q} || {{ rm -f {part}; {feed}{curl} {url_q}; }}; }}; "
        # curl exits 28 when --max-time ran out.
        f"rc=$?; if [ $rc -ne 0 ]; then [ $rc -eq 28 ] && echo {line} >&2; exit $rc; fi; " + install_command(f)
    )


def file_url(s: Settings, repo_path: str) -> str:
    """Where a host downloads ``repo_path`` from (model_fetch=host, or a mirror URL)."""
    return hf_hub_url(s.model_repo_id, repo_path, revision=s.model_revision, endpoint=endpoint(s))
