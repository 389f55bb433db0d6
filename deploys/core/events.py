"""Structured run events: one JSON object per line in the run's directory on the controller.

Every step of a roll behind a front door (drained, live, checked, check skipped, rolled back, back
in the pool, roll failed, not restarted), every deploy-lock event (acquired, taken over, refused,
released), a host pyinfra could not connect to, a run refused before any operation (a bad setting,
an unreachable host), the first operation of the run, and each host's outcome (failed at an
operation, or done) is appended to ``<run dir>/events.jsonl``::

    {"at": "2026-…Z", "run": "<run id>", "event": "drained", "host": "host1", "door": "front1", …}

The run directory is ``$TRITON_RUN_DIR`` when set (the rollout driver names one per pyinfra run
it starts), else ``reports/<run id>`` under the working directory. The human log lines stay as they
are; programs (python -m deploys.rollout) read these events and pyinfra's ``--json`` result, never
pyinfra's log.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyinfra.api import BaseStateCallback

from deploys.core import context, redact
from deploys.core.run import RUN_ID

RUN_DIR_ENV = "TRITON_RUN_DIR"
EVENTS_FILE = "events.jsonl"
_WRITE = threading.Lock()  # one line at a time into the file (greenlets and threads of one process)


def stamp() -> str:
    """UTC now, to the millisecond (``2026-12-06T05:06:42.123Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_dir() -> Path:
    """This run's directory on the controller (see the module's docstring)."""
    return Path(os.environ.get(RUN_DIR_ENV) or Path("reports") / RUN_ID)


def write(state: Any, event: str, host: str | None = None, **fields: Any) -> dict[str, Any]:
    """Append one event (``fields``: JSON values) to the run's events file; the event, as written.
    ``state``: the run's State (its run id is the process's, shared by the events file)."""
    # A detail may quote a setting (a proxy URL's user:password): masked like every other output.
    record = {"at": stamp(), "run": RUN_ID, "event": event, **({"host": host} if host else {}), **redact.mask_tree(fields)}
    path = run_dir() / EVENTS_FILE
    line = json.dumps(record, default=str) + "\n"
    with _WRITE:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(line)
    return record


def state_file(directory: str | Path, host: str) -> Path:
    """Where deploys/releases.py writes ``host``'s state for a program: named by a digest of the
    host name, which may be longer (253 characters) than a file name may (255 bytes with .json)."""
    return Path(directory) / f"{hashlib.sha256(host.encode()).hexdigest()[:32]}.json"


def read(directory: str | Path) -> list[dict[str, Any]]:
    """The events of the run whose directory is ``directory`` (none: [])."""
    path = Path(directory) / EVENTS_FILE
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run
        if isinstance(record, dict) and "event" in record:
            found.append(record)
    return found


class EventCallbacks(BaseStateCallback):
    """pyinfra's callbacks as events: a host it could not connect to, the first operation, a host
    failing an operation (an error the operation ignores is no failure)."""

    @staticmethod
    def host_connect_error(state: Any, host: Any, error: Any) -> None:
        write(state, "unreachable", host.name, detail=str(error.args[0] if getattr(error, "args", None) else error))

    @staticmethod
    def operation_start(state: Any, op_hash: str) -> None:
        ctx = context.of(state)
        with ctx.lock:
            if ctx.began:
                return
            ctx.began = True
        write(state, "run began")

    @staticmethod
    def operation_host_error(state: Any, host: Any, op_hash: str, retry_attempt: int = 0, max_retries: int = 0) -> None:
        try:
            meta = state.get_op_meta(op_hash)
            arguments = state.get_op_data_for_host(host, op_hash).global_arguments
            if arguments.get("_ignore_errors") or arguments.get("_continue_on_error"):
                return
            names = sorted(meta.names) if meta and meta.names else []
        except Exception:  # a callback must not end the run
            names = []
        write(state, "outcome", host.name, result="failed", operation=", ".join(names))


def register(state: Any) -> None:
    """Add :class:`EventCallbacks` to ``state`` once."""
    if not any(isinstance(handler, EventCallbacks) for handler in state.callback_handlers):
        state.add_callback_handler(EventCallbacks())


def register_at_init(state: Any) -> None:
    """config.py runs before pyinfra's ``State.init`` (which makes the callback list) and before it
    connects: :func:`register` right after ``init``, so a host it cannot connect to is an event."""
    from pyinfra.context import ContextObject

    real = state._get_module() if isinstance(state, ContextObject) else state
    init = real.init

    def init_then_register(*args: Any, **kwargs: Any) -> Any:
        result = init(*args, **kwargs)
        register(real)
        return result

    real.init = init_then_register
