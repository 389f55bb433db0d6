"""Time bounds of the remote commands that can hang: a command run under coreutils ``timeout`` on the
host, and past its bound one line on stderr naming the step and the host, then a non-zero exit.

Bounded (tests/test_bounds.py checks every command the deploy plans): ``docker pull``
(``docker_pull_timeout_s``), ``docker compose up`` and the GPU smoke ``docker run``
(``triton_start_timeout_s``), pip installs (``verify_pip_timeout_s``), ``docker login``/``logout``
and ``docker logs`` (fixed below). curl carries ``--max-time`` instead: the READY waits poll with
short tries until a deadline, model downloads on the host get ``model_download_timeout_s`` per
file, apt key downloads a fixed bound.
"""

from __future__ import annotations

import shlex

# After the bound, timeout sends TERM; a command still alive this much later gets KILL (exit 137).
KILL_AFTER_S = 10
# Fixed bounds of short commands (not settings: nobody needs to change them).
REGISTRY_LOGIN_TIMEOUT_S = 120  # docker login / logout: one round trip to the registry
DOCKER_LOGS_TIMEOUT_S = 30  # docker logs --tail, printed when READY does not come
DOCKER_PS_TIMEOUT_S = 30  # docker ps --filter, the prune's check for a container on a release
STATE_READ_TIMEOUT_S = 10  # docker inspect / systemctl show of the verify step's reuse key
# One try of a READY poll: connect within this, answer within READY_TRY_S.
READY_CONNECT_S = 2
READY_TRY_S = 5


def past_bound_line(step: str, host: str, what: str, seconds: int, setting: str | None = None) -> str:
    """The one line printed past a bound: ``Triton on host gpu-01: docker compose up -d did not
    finish within 300s (triton_start_timeout_s)``."""
    limit = f"{seconds}s ({setting})" if setting else f"{seconds}s"
    return f"{step} on host {host}: {what} did not finish within {limit}"


def bounded(command: str, seconds: int, step: str, host: str, what: str, setting: str | None = None, failed: str | None = None) -> str:
    """``command`` (one simple command) under ``timeout``; past ``seconds`` one line naming the step
    and the host, and the shell exits with timeout's status (124, or 137 after KILL). Any other
    failure exits with the command's own status, after the line ``failed`` on stderr when given (a
    pull through the registry cache names the cache). Chains: ``bounded(...) && next`` runs ``next``
    only on success."""
    line = shlex.quote(past_bound_line(step, host, what, seconds, setting))
    other = f" else echo {shlex.quote(failed)} >&2;" if failed else ""
    return (
        f"timeout -k {KILL_AFTER_S} {int(seconds)} {command} || "
        f"{{ rc=$?; if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo {line} >&2;{other} fi; exit $rc; }}"
    )


def ready_poll(url: str, seconds: int, failure: str, also: str = "", insecure: bool = False, success: str = "") -> str:
    """Poll ``url`` until it answers HTTP 200 (exit 0), ``seconds`` in all: each curl try is bounded
    by what is left (at most READY_TRY_S), so a server that accepts and never answers cannot stretch
    the wait. Past the deadline it runs ``failure`` (shell: the one line, a log tail, ``exit 1``).
    ``also``: a shell test that must pass too (bound its own commands); ``insecure``: curl -k (a host
    asking its own listener); ``success``: shell run once ready, before the exit."""
    url_q = shlex.quote(url)
    k = "-k " if insecure else ""
    extra = f" && {also}" if also else ""
    done = f"{{ {success}; exit 0; }}" if success else "exit 0"
    return (
        f"end=$(( $(date +%s) + {int(seconds)} )); "
        f"while left=$(( end - $(date +%s) )); [ $left -gt 0 ]; do "
        f"[ $left -gt {READY_TRY_S} ] && left={READY_TRY_S}; "
        f"[ \"$(curl -s {k}--connect-timeout {READY_CONNECT_S} --max-time $left -o /dev/null -w '%{{http_code}}' {url_q})\" = 200 ]{extra} && {done}; "
        f"sleep 1; done; {failure}"
    )
