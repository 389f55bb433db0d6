"""Fewer round trips per host: facts read once until something changes the host, and read together.

pyinfra 3 runs one command per ``host.get_fact`` call, however often the same fact is asked: the
model files' sha256 three times per run, the package list five. Over SSH each is a round trip, and a
no-op run is nothing but facts. Installed by deploys/all.py, two things, for the facts in
:data:`STABLE` only (files, packages, images: state that only a deploy's commands change):

- a memo per host: a fact asked again with the same arguments is answered from the last read, until
  any other command, upload or download runs on that host (it may have changed anything), which
  clears the host's memo;
- a batch over SSH: the facts a host was asked in its previous run (recorded on the controller, in
  .cache/fact-prefetch/, with the stage that asked them: pyinfra's prepare or execute) are read in
  ONE command at the first stable fact of each stage, each fact's own command and parser, so a
  no-op run costs a handful of round trips, not dozens. A file the run uploaded whose stat it read
  also records that file's sha1 (what files.put reads once the file is there), so the first no-op
  after a converge reads the files the converge wrote in the batch too.
  A fact whose part of the batch failed is not kept: it is read alone, as before.

Facts that poll or act (the deploy lock, Triton's health, the parity run, a container's state) are
never cached: they are read each time they are asked.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import importlib
import json
import threading
import weakref
from pathlib import Path
from typing import Any

from pyinfra.api import StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.api.host import Host
from pyinfra.connectors.ssh import SSHConnector

from deploys.core.repo import REPO_ROOT

PREFETCH_DIR = REPO_ROOT / ".cache" / "fact-prefetch"
MARK = "__FACT_BATCH__"

# Facts whose answer changes only when a command changes the host (never by time passing).
STABLE = frozenset(
    {
        "pyinfra.facts.files.Sha256File",
        "pyinfra.facts.files.Sha1File",
        "pyinfra.facts.files.File",
        "pyinfra.facts.files.Directory",
        "pyinfra.facts.files.Link",
        "pyinfra.facts.files.FindInFile",
        "pyinfra.facts.deb.DebPackages",
        "pyinfra.facts.deb.DebArch",
        "pyinfra.facts.server.LinuxDistribution",
        "pyinfra.facts.server.Os",
        "pyinfra.facts.server.Users",
        "pyinfra.facts.server.Groups",
        "pyinfra.facts.files.FindFiles",
        "pyinfra.facts.files.FindLinks",
        "pyinfra.facts.apt.AptSources",
        "pyinfra.facts.systemd.SystemdEnabled",
        "facts.apt.AptKeyFingerprints",
        "facts.disk.FreeDiskBytes",  # moves with other writers, but the preflight takes one snapshot per run
        "facts.docker.DockerImageId",
        "facts.docker.DockerImages",
        "facts.docker.DockerDaemonJson",
        "facts.docker.DockerRuntimes",
        "facts.docker.DockerRegistryAuth",
        "facts.docker.UrlCredentialsDigest",
        "facts.gpu.NvidiaGpus",
        "facts.triton.TritonReleases",
        "facts.triton.TritonModelLinks",
        "facts.triton.TritonReleaseImages",
        "facts.triton.TritonReleaseOwnSettings",
    }
)


# Facts whose command acts on the host (takes the deploy lock, runs the parity check): like any
# other command, they clear the host's memo.
ACTS = frozenset({"facts.deploy_lock.DeployLock", "facts.verify.ParityRun"})


def fact_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def key_of(name: str, kwargs: dict[str, Any]) -> str:
    """One string per fact and arguments (tuples and lists alike: the prefetch file is JSON)."""
    return json.dumps([name, kwargs], sort_keys=True, default=str)


class _HostCache:
    def __init__(self) -> None:
        self.memo: dict[str, Any] = {}
        self.asked: dict[str, list[Any]] = {}  # key -> [fact, kwargs, [stages]], this run
        self.in_fact = 0
        self.prefetched: set[str] = set()  # the stages whose batch was read
        self.uploaded: set[str] = set()  # remote paths this run uploaded to


_active: weakref.WeakSet = weakref.WeakSet()  # the States that installed the cache
_hosts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Host -> _HostCache
_lock = threading.Lock()
_patched = False


def _cache(host: Host) -> _HostCache | None:
    if getattr(host, "state", None) not in _active:
        return None
    with _lock:
        cache = _hosts.get(host)
        if cache is None:
            cache = _hosts[host] = _HostCache()
        return cache


def _batches(host: Host) -> bool:
    """Batch reads only over SSH, where each command is a round trip (the @fake connector answers
    each command from canned outputs and cannot answer a batch)."""
    return isinstance(getattr(host, "connector", None), SSHConnector)


def prefetch_file(host_name: str) -> Path:
    return PREFETCH_DIR / f"{hashlib.sha256(host_name.encode()).hexdigest()[:16]}.json"


def batch_command(entries: list[tuple[type, dict[str, Any]]]) -> tuple[str, list[Any]]:
    """Shell: each fact's own command in a subshell, between markers with its exit status (always
    exits 0); and the fact objects, which parse their part (a fact keeps what its command was given)."""
    parts, facts = [], []
    for index, (cls, kwargs) in enumerate(entries):
        fact = cls()
        if fact.shell_executable:
            raise ValueError(f"{fact_name(cls)} runs in its own shell")
        command = fact.command(**kwargs) if callable(fact.command) else fact.command
        text = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
        requires = fact.requires_command(**kwargs) if callable(fact.requires_command) else fact.requires_command
        guard = f"command -v {requires} >/dev/null 2>&1 && " if requires else ""
        parts.append(f"echo {MARK}{index}; {guard}( {text} ) 2>/dev/null; echo {MARK}rc=$?")
        facts.append(fact)
    return "; ".join(parts) + "; true", facts


def parse_batch(facts: list[Any], lines: list[str]) -> dict[int, Any]:
    """index -> the fact's value, for the parts whose command exited 0 and whose output parsed."""
    values: dict[int, Any] = {}
    index, body = None, []
    for line in lines:
        if line.startswith(MARK + "rc="):
            if index is not None and line == MARK + "rc=0":
                fact = facts[index]
                try:
                    values[index] = fact.process(body) if body else fact.default()
                except Exception:  # read alone, as pyinfra would, to report it its way
                    pass
            index, body = None, []
        elif line.startswith(MARK) and line[len(MARK) :].isdigit():
            index, body = int(line[len(MARK) :]), []
        elif index is not None:
            body.append(line)
    return values


def connector_arguments(host: Host) -> dict[str, Any]:
    """The connector arguments (``_sudo`` from inventories/group_data/all.py, ...) pyinfra would run a
    fact with at this point (as pyinfra.api.facts does: the current operation's, the host's data, the
    config's), so the batch reads what each fact alone would read."""
    global_arguments, _ = pop_global_arguments(host.state, host, dict(host.current_op_global_arguments or {}))
    return {key: value for key, value in global_arguments.items() if key in CONNECTOR_ARGUMENT_KEYS}


def stage_of(state: Any) -> str:
    return "execute" if state.is_executing else "prepare"


def _prefetch(host: Host, cache: _HostCache, stage: str) -> None:
    cache.prefetched.add(stage)
    entries: list[tuple[type, dict[str, Any]]] = []
    keys: list[str] = []
    for name, kwargs, stages in _rows(prefetch_file(host.name)):
        if stage not in stages or name not in STABLE or key_of(name, kwargs) in cache.memo:
            continue
        module, _, cls_name = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError):
            continue
        entries.append((cls, kwargs))
        keys.append(key_of(name, kwargs))
    if not entries:
        return
    try:
        command, facts = batch_command(entries)
    except Exception:  # a fact whose arguments changed shape: read them one by one
        return
    cache.in_fact += 1
    try:
        status, output = host.run_shell_command(StringCommand(command), print_output=False, print_input=False, **connector_arguments(host))
    finally:
        cache.in_fact -= 1
    if not status:
        return
    for index, value in parse_batch(facts, output.stdout_lines).items():
        cache.memo[keys[index]] = value


def _rows(path: Path) -> list[list[Any]]:
    """The recorded rows ``[fact, kwargs, stages]`` of a prefetch file; none when it is missing or
    written by another version (those facts are then read one by one)."""
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [
        row
        for row in (recorded if isinstance(recorded, list) else [])
        if isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and isinstance(row[1], dict) and isinstance(row[2], list)
    ]


# pyinfra's files.put, files.template and files.sync read a file's stat, and its sha1 only when the
# file is there: a run that uploads the file asks the stat alone, the next run both.
STAT, DIGEST = "pyinfra.facts.files.File", "pyinfra.facts.files.Sha1File"


def _save(host_name: str, asked: dict[str, list[Any]], previous: list[list[Any]], uploaded: frozenset[str] = frozenset()) -> None:
    """This run's facts, and the previous run's that this run did not ask (a converge and the no-op
    after it ask different ones: a file present is read by its digest, a missing one is not), once:
    a fact unasked twice in a row is dropped. A file this run uploaded whose stat it asked adds that
    file's digest, once too: the first no-op after a converge reads the files it wrote in the batch."""
    rows = list(asked.values())
    kept = set(asked)
    for name, kwargs, stages in previous:
        if key_of(name, kwargs) not in kept and "again" not in stages:
            rows.append([name, kwargs, [*stages, "again"]])
            kept.add(key_of(name, kwargs))
    for name, kwargs, stages in list(asked.values()):
        if name == STAT and kwargs.get("path") in uploaded and key_of(DIGEST, kwargs) not in kept:
            rows.append([DIGEST, kwargs, [*stages, "again"]])
            kept.add(key_of(DIGEST, kwargs))
    try:
        PREFETCH_DIR.mkdir(parents=True, exist_ok=True)
        prefetch_file(host_name).write_text(json.dumps(rows, default=str))
    except OSError:
        pass  # a read-only checkout: every run reads its facts one by one


def _save_all() -> None:
    with _lock:
        items = [(host, cache) for host, cache in _hosts.items() if cache.asked and _batches(host)]
    for host, cache in items:
        _save(host.name, cache.asked, _rows(prefetch_file(host.name)), frozenset(cache.uploaded))


def install(state: Any) -> None:
    """Cache stable facts for ``state``'s hosts (deploys/all.py); idempotent."""
    global _patched
    _active.add(state)
    if _patched:
        return
    _patched = True
    get_fact, run, put, get = Host.get_fact, Host.run_shell_command, Host.put_file, Host.get_file

    def cached_get_fact(self, cls, *args, **kwargs):
        cache = _cache(self)
        name = fact_name(cls) if isinstance(cls, type) else ""
        if cache is None or name in ACTS:
            return get_fact(self, cls, *args, **kwargs)  # its command clears the memo (see changes)
        if name not in STABLE or args or any(k.startswith("_") for k in kwargs):
            cache.in_fact += 1  # a read: the memo stays
            try:
                return get_fact(self, cls, *args, **kwargs)
            finally:
                cache.in_fact -= 1
        key = key_of(name, kwargs)
        stage = stage_of(self.state)
        stages = cache.asked.setdefault(key, [name, kwargs, []])[2]
        if stage not in stages:
            stages.append(stage)
        # Connected first (by a fact read alone): the batch never opens the connection itself.
        if key not in cache.memo and stage not in cache.prefetched and self.connected and _batches(self):
            _prefetch(self, cache, stage)
        if key not in cache.memo:
            cache.in_fact += 1
            try:
                cache.memo[key] = get_fact(self, cls, *args, **kwargs)
            finally:
                cache.in_fact -= 1
        return copy.deepcopy(cache.memo[key])  # callers may change what they got

    def changes(method):
        def wrapper(self, *args, **kwargs):
            cache = _cache(self)
            if cache is not None and not cache.in_fact:
                cache.memo.clear()  # this command may change anything the memo holds
            return method(self, *args, **kwargs)

        return wrapper

    def uploads(method):
        def wrapper(self, *args, **kwargs):
            cache = _cache(self)
            remote = args[1] if len(args) > 1 else kwargs.get("remote_filename")
            if cache is not None and isinstance(remote, str):
                cache.uploaded.add(remote)
            return method(self, *args, **kwargs)

        return wrapper

    Host.get_fact = cached_get_fact
    Host.run_shell_command, Host.put_file, Host.get_file = changes(run), uploads(changes(put)), changes(get)
    atexit.register(_save_all)
