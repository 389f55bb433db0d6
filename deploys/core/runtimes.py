"""The pinned Python runtimes on a host (the verify runtime, the embeddings gateway): one set of
settings (``verify_wheels_dir``, ``verify_pip_index_url``, ``verify_pip_timeout_s``) for both, turned
into the arguments of the one operation that installs them (deploys/core/operations.py:pinned_venv).
Their wheels come from the controller (fetched once for the hosts' platform: deploys/core/wheels.py)
into one directory on the host both venvs install from: a file both locks pin is sent once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploys.core.settings import Settings, SettingsError


def venv_args(s: Settings, paths_of: Any, lock: Path, step: str, what: str, wheels: Path | None) -> dict[str, Any]:
    """deploys/core/operations.py:pinned_venv's arguments for a runtime (the verify runtime's, the
    gateway's: one operation): ``lock`` installed in ``paths_of.venv`` with ``--require-hashes --no-index``
    from ``paths_of.wheels``, filled from ``verify_wheels_dir`` if set, else with the wheels the controller
    fetched from ``verify_pip_index_url`` (empty: pip's default index); pip bounded by verify_pip_timeout_s."""
    return {
        "venv": paths_of.venv,
        "lock": str(lock),
        "requirements": paths_of.requirements,
        "installed": paths_of.installed,
        "timeout_s": s.verify_pip_timeout_s,
        "step": step,
        "host_name": s.host,
        "what": f"the install of {what}",
        "index_url": s.verify_pip_index_url,
        "wheels_src": str(wheels) if wheels is not None else "",
        "wheels_dir": paths_of.wheels,
        "uv_dir": paths_of.uv,
    }


def check_wheels_dir(s: Settings) -> Path | None:
    """The controller's wheel directory, checked; None when pip uses a package index."""
    if not s.verify_wheels_dir:
        return None
    path = Path(s.verify_wheels_dir)
    if not path.is_dir() or not any(path.glob("*.whl")):
        raise SettingsError(
            f"host {s.host}: setting verify_wheels_dir={s.verify_wheels_dir!r} has no wheels; fill it with "
            f"`pip download --only-binary=:all: --python-version 3.13 -r verify/requirements-cpu.txt -d {s.verify_wheels_dir}` "
            "(the hosts' Python; gpu: requirements-gpu.txt; with the gateway on also embeddings_gateway/requirements.txt) "
            "or set it to '' (the controller then fetches them itself)"
        )
    return path
