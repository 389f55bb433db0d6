"""The host patterns every role repeats, as pyinfra operations in the style of pyinfra's own
(pyinfra/operations/files.py): read facts, then yield commands or say with ``host.noop`` why there
is nothing to do. Their cases (facts in, commands out) are JSON files under tests/operations/<op>/.

- :func:`secret_file`: a file holding a secret, written from stdin (never a command line, never in
  pyinfra's output at any flag), 0600 (or a given owner/mode) from the start, replaced by rename,
  compared by sha256 so the same secret is no change.
- :func:`validated_config`: candidate(s) beside the live file(s), a check command, live (the old file
  kept as ``.previous``), reload, confirm; the old file back (and reloaded) when the confirm fails.
- :func:`pinned_venv`: a venv from a hashed lock (``--require-hashes``, wheels only, ``--no-index``),
  its wheels fetched once on the controller for the host's platform (deploys/core/wheels.py) and sent,
  installed by uv (deploys/core/runtime-installer.txt) through one cache the host's venvs share;
  nothing is sent and nothing installs when the lock is what the venv last installed.
- :func:`wait_ready`: poll a URL until it answers 200, bounded in all and per try
  (deploys/core/bounds.py:ready_poll), the failure line and log tail past the deadline.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationValueError, QuoteString, StringCommand, operation
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files, pip
from pyinfra.operations.util import files as file_utils

from deploys.core import bounds, model_lock, redact, wheels
from deploys.core.repo import PIP_LOCK_FLAGS, RUNTIME_INSTALLER
from facts.python import HostPython, WheelDigests

q = shlex.quote


def as_written(content: str, strip_newline: bool = False) -> str:
    """The file's text once pyinfra has fed ``content`` through stdin (its write_stdin ends the text
    with a newline; ``strip_newline`` removes every newline, for a one-line key)."""
    if strip_newline:
        return content.replace("\n", "")
    return content if content.endswith("\n") else content + "\n"


def digest(content: str, strip_newline: bool = False) -> str:
    """sha256 of the file :func:`secret_file` writes from ``content`` (what Sha256File reads back)."""
    return hashlib.sha256(as_written(content, strip_newline).encode()).hexdigest()


def stdin_write(
    path: str,
    dest: str | None = None,
    mode: str = "600",
    user: str | None = None,
    group: str | None = None,
    strip_newline: bool = False,
    src: str | None = None,
) -> str:
    """Shell: stdin to ``path + '.tmp'`` under umask 077 (never readable by others, even for a
    moment), owner and mode set, then renamed to ``dest`` (default ``path``) in the same directory.
    ``src``: read that host file instead of stdin."""
    dest = dest or path
    tmp = q(f"{path}.tmp")
    owner = f"{user}:{group or user}" if user else (f":{group}" if group else "")
    write = "tr -d '\\n'" if strip_newline else "cat"
    if src:
        write = f"cat {q(src)}"
    chown = f" && chown {q(owner)} {tmp}" if owner else ""
    return (
        f"umask 077; mkdir -p {q(dest.rsplit('/', 1)[0] or '/')} && rm -f {tmp} && {write} > {tmp}{chown} && chmod {mode} {tmp} && "
        f"mv -f {tmp} {q(dest)}"
    )


@operation()
def secret_file(
    path: str,
    content: str | None = None,
    mode: str = "600",
    user: str | None = None,
    group: str | None = None,
    strip_newline: bool = False,
    src_on_host: str | None = None,
):
    """``content`` (a secret) in ``path``, through stdin, atomically; nothing when its sha256 is the file's.

    + path: the file on the host
    + content: the text (pyinfra's stdin ends it with a newline; ``strip_newline``: none at all)
    + src_on_host: instead of ``content``, a copy of this host file (a key made on the host); the
      copy is made when the digests differ or the source is not there yet (an earlier operation of
      the run makes it)
    + mode, user, group: the file's mode (0600 by default) and owner (the connecting user's by default)
    """
    if (content is None) == (src_on_host is None):
        raise OperationValueError("secret_file takes content or src_on_host, one of them")
    if src_on_host is not None:
        source = host.get_fact(Sha256File, path=src_on_host)
        if source is not None and host.get_fact(Sha256File, path=path) == source:
            host.noop(f"{path} is a copy of {src_on_host} already (same sha256)")
            return
        yield StringCommand(stdin_write(path, mode=mode, user=user, group=group, src=src_on_host))
        return
    content = redact.Secret(content)  # repr shows no content, wherever pyinfra prints an argument
    if host.get_fact(Sha256File, path=path) == digest(content, strip_newline):
        host.noop(f"{path} holds this secret already (same sha256)")
        return
    yield StringCommand(stdin_write(path, mode=mode, user=user, group=group, strip_newline=strip_newline), _stdin=content)


def exact_digest(content: str) -> str:
    """sha256 of ``content`` as uploaded (no newline added)."""
    return hashlib.sha256(content.encode()).hexdigest()


def candidate_path(path: str) -> str:
    """Where :func:`validated_config` writes the candidate of ``path``: beside it (same filesystem: mv is atomic)."""
    return f"{path}.candidate"


def go_live(paths: list[str], check: str | None, reload: str | None, confirm: str | None, what: str) -> str:
    """Shell: ``check`` (the candidates stay out of service when it fails), each candidate live with
    the old file kept as ``.previous``, ``reload``, ``confirm``; when the reload or confirm fails,
    every old file back (a first install: the new one removed), ``reload`` again, exit 1. With
    neither, ``.previous`` stays for a later step to restore (the registry cache's restart)."""
    cands = " ".join(q(candidate_path(p)) for p in paths)
    lines = []
    if check:
        failed = q(f"{what}: the check failed; the live config is unchanged")
        lines.append(f"( {check} ) || {{ rc=$?; rm -f {cands}; echo {failed} >&2; exit $rc; }}")
    swap = " && ".join(
        f"rm -f {q(p + '.previous')} && {{ [ ! -f {q(p)} ] || cp -p {q(p)} {q(p + '.previous')}; }} && mv -f {q(candidate_path(p))} {q(p)}"
        for p in paths
    )
    lines.append(f"{{ {swap}; }} || exit 1")
    # The confirm in a subshell: a poll ends with exit (deploys/core/bounds.py:ready_poll).
    then = " && ".join(part for part in (f"{{ {reload}; }}" if reload else "", f"( {confirm} )" if confirm else "") if part)
    if then:
        back = "; ".join(f"if [ -f {q(p + '.previous')} ]; then mv -f {q(p + '.previous')} {q(p)}; else rm -f {q(p)}; fi" for p in paths)
        again = f"; {reload}" if reload else ""
        line = q(f"{what}: the new config did not take; the previous config is back")
        previous = " ".join(q(p + ".previous") for p in paths)
        lines.append(f"if {then}; then rm -f {previous}; else {back}{again}; echo {line} >&2; exit 1; fi")
    return "; ".join(lines)


@operation()
def validated_config(
    path: str,
    content: str,
    check: str | None = None,
    reload: str | None = None,
    confirm: str | None = None,
    companions: Mapping[str, str] | None = None,
    mode: str = "644",
    user: str | None = None,
    group: str | None = None,
    secret: bool = False,
):
    """``content`` live in ``path`` only after ``check`` passed on the candidate, then ``reload`` and
    ``confirm``; the old file back when the confirm fails. Nothing when every file's sha256 matches.

    + path, content: the live file and its text (``check`` reads it at :func:`candidate_path`)
    + check: shell run on the candidate(s) before they go live (``haproxy -c -f …``, ``promtool check …``)
    + reload: shell that makes the service read the new file
    + confirm: shell that exits 0 once the service runs the new file (bounded: :func:`deploys.core.bounds.ready_poll`)
    + companions: more ``{path: content}`` checked and made live with it (Prometheus' rules beside its config)
    + mode, user, group: of every file; secret: the content holds a secret (never printed, 0600 advised)
    """
    wanted = {**(companions or {}), path: content}
    changed = [p for p, text in wanted.items() if host.get_fact(Sha256File, path=p) != (digest(text) if secret else exact_digest(text))]
    if not changed:
        host.noop(f"{path} is live with this content already (same sha256){' with its companions' if companions else ''}")
        return
    for p, text in wanted.items():
        cand = candidate_path(p)
        if secret:  # through stdin, 0600 (or ``mode``) from the start
            yield StringCommand(stdin_write(p, dest=cand, mode=mode, user=user, group=group), _stdin=redact.Secret(text))
            continue
        # Not secret: uploaded as it is, like files.put (the exact bytes the sha256 was computed on).
        yield StringCommand("mkdir", "-p", QuoteString(cand.rsplit("/", 1)[0] or "/"))
        yield FileUploadCommand(StringIO(text), cand, remote_temp_filename=host.get_temp_filename(cand))
        if user or group:
            yield file_utils.chown(cand, user, group)
        yield file_utils.chmod(cand, mode)
    yield StringCommand(go_live(list(wanted), check, reload, confirm, path))


def pip_install(pip: str, requirements: str, wheels_dir: str) -> str:
    """Shell: ``pip`` (the venv's own pip) installs the lock ``requirements`` from the wheels in
    ``wheels_dir`` only (a ``verify_wheels_dir`` without uv's wheel)."""
    # --no-compile: byte-compiling every installed file is most of the install's CPU time; the verify
    # check compiles what it imports once, into its own PYTHONPYCACHEPREFIX (deploys/triton/verify_run.py).
    # --no-index: every file came from the controller (deploys/core/wheels.py); the host needs no package index.
    return (
        f"{pip} install --quiet --disable-pip-version-check --no-compile {PIP_LOCK_FLAGS} "
        f"--no-index --find-links {q(wheels_dir)} -r {q(requirements)}"
    )


def uv_sync(uv: str, venv: str, requirements: str, wheels_dir: str, cache: str) -> str:
    """Shell: ``uv`` makes ``venv`` hold exactly the lock ``requirements`` (what it lacks installed, what
    the lock dropped removed), from the wheels in ``wheels_dir`` only, through the cache ``cache``."""
    # --no-config: no uv.toml or UV_* setting of the host's changes what installs; --offline and
    # --no-index: every file came from the controller. uv compiles no bytecode unless asked (as --no-compile).
    return (
        f"{q(uv)} pip sync --quiet --no-config --offline --cache-dir {q(cache)} --python {q(venv + '/bin/python')} "
        f"{PIP_LOCK_FLAGS} --no-index --find-links {q(wheels_dir)} {q(requirements)}"
    )


def uv_from_wheel(wheel: str, dest: str) -> str:
    """Shell: uv's binary out of its wheel (a zip: ``uv-<version>.data/scripts/uv``) to ``dest``, 0755,
    by rename (a cut-short run leaves no half binary). The wheel's sha256 was checked first (WheelDigests)."""
    extract = (
        "import os, sys, zipfile; w = zipfile.ZipFile(sys.argv[1]); "
        'm = [n for n in w.namelist() if n.endswith(".data/scripts/uv")]; '
        't = sys.argv[2] + ".tmp"; open(t, "wb").write(w.read(m[0])); os.chmod(t, 0o755); os.replace(t, sys.argv[2])'
    )
    return f"mkdir -p {q(dest.rsplit('/', 1)[0])} && python3 -c {q(extract)} {q(wheel)} {q(dest)}"


_DIGESTS: dict[tuple[str, int, int], str] = {}  # controller wheel -> sha256, once per run (by path, size, mtime)


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = model_lock.sha256_file(path)
    return _DIGESTS[key]


def _runtime_wheels(lock: str, index_url: str, wheels_src: str, step: str, host_name: str, what: str) -> tuple[Path, list[str]]:
    """The controller directory and file names of the wheels the host needs for ``lock``."""
    if wheels_src:
        return Path(wheels_src), sorted(p.name for p in Path(wheels_src).glob("*.whl"))
    python = host.get_fact(HostPython)
    if python is None:
        raise wheels.WheelsError(
            f"{step} on host {host_name}: no python3 on the host ({what} needs it); install the distribution's python3"
        )
    try:
        pool, names = wheels.fetch(Path(lock), python, index_url)
        _, installer = wheels.fetch(RUNTIME_INSTALLER, python, index_url)
        return pool, names + installer
    except wheels.WheelsError as e:
        raise wheels.WheelsError(f"{step} on host {host_name}: {what}: {e}") from None


@operation()
def pinned_venv(
    venv: str,
    lock: str,
    requirements: str,
    installed: str,
    timeout_s: int,
    step: str,
    host_name: str,
    what: str,
    wheels_dir: str,
    uv_dir: str,
    index_url: str = "",
    wheels_src: str = "",
    timeout_setting: str = "verify_pip_timeout_s",
):
    """A venv at ``venv`` holding exactly the hashed lock ``lock`` (a controller file), uploaded to
    ``requirements``; only when ``installed`` differs from the lock: the lock's wheels sent to
    ``wheels_dir`` (those it lacks: a directory the host's runtimes share), then uv (``--no-index``,
    bounded by ``timeout_s``); pip when the wheels (``wheels_src``) hold no uv.

    + wheels_dir: the host's wheel directory
    + uv_dir: the host's directory of uv's binary (one per version) and of its cache (``cache``): the
      runtimes share it, so a wheel both locks pin is unpacked once
    + wheels_src: wheels on the controller (all sent); empty: the lock's wheels for the host's
      platform, fetched once on the controller (deploys/core/wheels.py)
    + index_url: the package index the controller fetches from; empty: pip's default
    + step, host_name, what, timeout_setting: the one line printed past the bound
    """
    with open(lock, "rb") as f:
        wanted = hashlib.sha256(f.read()).hexdigest()
    if host.get_fact(Sha256File, path=installed) == wanted:
        host.noop(f"{venv} has {requirements} installed (same sha256 as {installed})")
        return
    src, names = _runtime_wheels(lock, index_url, wheels_src, step, host_name, what)
    present = host.get_fact(WheelDigests, path=wheels_dir) or {}
    missing = [name for name in names if present.get(name) != _sha256(src / name)]
    if missing:
        yield StringCommand(f"mkdir -p {q(wheels_dir)}")
    for name in missing:
        yield FileUploadCommand(
            str(src / name), f"{wheels_dir}/{name}", remote_temp_filename=host.get_temp_filename(f"{wheels_dir}/{name}")
        )
    yield from files.put._inner(src=lock, dest=requirements, mode="644")
    uv_wheel = next((name for name in names if name.startswith("uv-")), "")
    if uv_wheel:
        # A venv made without pip: ensurepip's copy of pip, unpacked and byte-compiled into each venv,
        # cost more CPU than installing the runtime itself (and uv needs none).
        uv = f"{uv_dir}/uv-{uv_wheel.split('-')[1]}"  # its version: a new pin is a new binary
        if not host.get_fact(File, path=uv):
            yield StringCommand(uv_from_wheel(f"{wheels_dir}/{uv_wheel}", uv))
        if not host.get_fact(File, path=f"{venv}/bin/activate"):
            yield StringCommand(f"python3 -m venv --without-pip {q(venv)}")
        install = uv_sync(uv, venv, requirements, wheels_dir, f"{uv_dir}/cache")
    else:  # verify_wheels_dir without uv's wheel: the venv's own pip
        yield from pip.virtualenv._inner(path=venv, python="python3", venv=True)
        install = pip_install(q(venv + "/bin/pip"), requirements, wheels_dir)
    bounded = bounds.bounded(install, timeout_s, step, host_name, what, timeout_setting)
    yield StringCommand(f"{bounded} && cp {q(requirements)} {q(installed)}")


def ready_shell(
    url: str,
    timeout_s: int,
    failure_line: str,
    logs: str = "",
    before: str = "",
    on_failure: str = "",
    on_success: str = "",
    also: str = "",
    insecure: bool = False,
) -> str:
    """Shell: what :func:`wait_ready` runs (also inside other commands: a confirm, a roll plan's step)."""
    failure = f"echo {q(failure_line)} >&2; " + (f"{logs} >&2; " if logs else "") + (f"{on_failure}; " if on_failure else "") + "exit 1"
    poll = bounds.ready_poll(url, timeout_s, failure, also=also, insecure=insecure, success=on_success)
    return f"{before}; {poll}" if before else poll


@operation(is_idempotent=False)
def wait_ready(
    url: str,
    timeout_s: int,
    failure_line: str,
    logs: str = "",
    before: str = "",
    on_failure: str = "",
    on_success: str = "",
    also: str = "",
    insecure: bool = False,
):
    """Poll ``url`` until it answers 200 (and ``also``, a shell test, passes), ``timeout_s`` in all,
    each try bounded; past it ``failure_line`` and ``logs`` on stderr, ``on_failure``, exit 1.

    + before: shell run first (a restart); its failure is the poll's to find
    + on_success, on_failure: shell run once ready / past the deadline (before the exit)
    + insecure: skip certificate checks (a host asking its own listener whether it is up)
    """
    yield StringCommand(ready_shell(url, timeout_s, failure_line, logs, before, on_failure, on_success, also, insecure))
