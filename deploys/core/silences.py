"""Alertmanager silences for planned work (issue 28), used by the drain/undrain machinery
(deploys/core/rolling.py), so every caller (Triton roll, gateway roll, a reboot, deploys/drain.py)
silences a host it takes out of the pool without knowing about it.

- A drain silences the host's alerts (``instance="<host>"``, and the front doors'
  FrontDoorBackendDown and FrontDoorBackendDrained for its server) for a bounded time: the drain's own bounds plus
  ``monitoring_silence_margin_s`` (by hand: ``monitoring_maintenance_silence_s``). A controller
  killed mid-roll leaves a host drained: its silence ends by that bound and its alerts page.
- Putting the host back in the pool ends every silence this deploy made for it (found by author
  and comment in Alertmanager, so a later run cleans up what a killed one left) after a short grace
  (two scrape intervals and 5 s: an alert that fired in the silence resolves instead of paging).
- A failed roll expires them too and sends RollFailed (severity critical) for the host: the failure pages.

Everything runs ``amtool`` on the monitoring host (Alertmanager listens on its loopback or a private
address), bounded; with no monitoring host nothing is done. Alertmanager not answering never stops a
roll: one warning says the host's alerts are not silenced.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shlex
from collections.abc import Callable
from typing import Any

from deploys.core import settings
from deploys.core.render import url_host
from deploys.core.roles import is_monitoring

AUTHOR = "triton-embeddinggemma-deploy"  # createdBy of every silence this deploy makes
ROLL_FAILED = "RollFailed"  # the alert a failed roll sends
AMTOOL_TIMEOUT_S = 10

# (target host, shell command, timeout) -> (ok, stdout lines, stderr lines): rolling.py's _shell.
Shell = Callable[[Any, str, int], tuple[bool, list[str], list[str]]]


def alertmanager_url(s: Any) -> str:
    """Alertmanager's API as the monitoring host ``s`` (its settings) reaches it itself."""
    address = s.monitoring_alertmanager_listen_address
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        address = "::1" if ip.version == 6 else "127.0.0.1"
    return f"http://{url_host(address)}:{s.monitoring_alertmanager_port}"


def monitoring_host(inventory: Any) -> Any | None:
    """The first monitoring host of the inventory (None: no Alertmanager, nothing to silence)."""
    return next((h for h in inventory if is_monitoring(h)), None)


def _amtool(s: Any, *args: str) -> str:
    q = shlex.quote
    return f"amtool --alertmanager.url={q(alertmanager_url(s))} --timeout={AMTOOL_TIMEOUT_S}s " + " ".join(q(a) for a in args)


def comment(host_name: str, why: str) -> str:
    """The silence's comment: it names the host, so the put-back finds this deploy's silences for it."""
    return f"planned work on {host_name}: {why}"


def silence_command(s: Any, host_name: str, server: str, seconds: int, why: str) -> str:
    """Shell: two silences (the host's alerts; the front doors' FrontDoorBackendDown/Drained for its server)
    for ``seconds``; prints their ids."""
    common = (f"--duration={int(seconds)}s", f"--author={AUTHOR}", f"--comment={comment(host_name, why)}")
    return " && ".join(
        (
            _amtool(s, "silence", "add", *common, f'instance="{host_name}"'),
            _amtool(s, "silence", "add", *common, 'alertname=~"FrontDoorBackend(Down|Drained)"', f'server="{server}"'),
        )
    )


def query_command(s: Any) -> str:
    """Shell: the active silences, as JSON."""
    return _amtool(s, "silence", "query", "-o", "json")


def ours(silences: list[dict[str, Any]], host_name: str) -> list[str]:
    """Ids of the active silences this deploy made for ``host_name`` (amtool's JSON)."""
    prefix = comment(host_name, "")
    return [
        x["id"]
        for x in silences
        if x.get("createdBy") == AUTHOR and str(x.get("comment", "")).startswith(prefix) and x.get("status", {}).get("state") != "expired"
    ]


def expire_command(s: Any, ids: list[str], grace_s: int = 0, now: datetime.datetime | None = None) -> str:
    """Shell: expire the silences ``ids`` now, or (``grace_s``) end them ``grace_s`` from ``now``."""
    if grace_s <= 0:
        return _amtool(s, "silence", "expire", *ids)
    end = ((now or datetime.datetime.now(datetime.UTC)) + datetime.timedelta(seconds=grace_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _amtool(s, "silence", "update", "-q", f"--end={end}", *ids)


def grace_s(s: Any) -> int:
    """How long a silence outlasts the host's return to the pool: Prometheus must scrape it healthy
    and evaluate its rules once (an alert firing in the silence resolves then, instead of paging)."""
    return 2 * s.monitoring_scrape_interval_s + 5


def alert_command(s: Any, host_name: str, summary: str, seconds: int, now: datetime.datetime | None = None) -> str:
    """Shell: RollFailed for ``host_name`` (severity critical), firing for ``seconds``."""
    now = now or datetime.datetime.now(datetime.UTC)
    end = (now + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _amtool(
        s,
        "alert",
        "add",
        f"alertname={ROLL_FAILED}",
        f"instance={host_name}",
        "severity=critical",
        f"--annotation=summary={summary}",
        f"--end={end}",
    )


class Silencer:
    """What rolling.py asks: silence a host, put it back (expire), page a failure. ``shell`` runs a
    command on an inventory host (rolling.py's ``_shell``); ``warn`` logs one line."""

    def __init__(self, inventory: Any, shell: Shell, warn: Callable[[str], None]) -> None:
        self.mon = monitoring_host(inventory)
        self.shell = shell
        self.warn = warn
        self.s = settings.load(self.mon) if self.mon is not None else None

    def _run(self, command: str, what: str) -> list[str] | None:
        try:
            ok, out, err = self.shell(self.mon, command, AMTOOL_TIMEOUT_S + 5)
        except Exception as error:  # the monitoring host unreachable (rolling.RollError)
            ok, out, err = False, [], [str(error)]
        if not ok:
            self.warn(f"{what}: Alertmanager on {self.mon.name} did not answer ({' '.join(err)[-200:] or 'no output'})")
            return None
        return out

    def margin_s(self) -> int:
        return self.s.monitoring_silence_margin_s if self.s else 0

    def silence(self, host_name: str, server: str, seconds: int, why: str) -> list[str]:
        """Silence ``host_name`` for ``seconds``; the ids (none: no monitoring host, or a warning was logged)."""
        if self.s is None:
            return []
        out = self._run(silence_command(self.s, host_name, server, seconds, why), f"{host_name}'s alerts not silenced")
        return [line.strip() for line in out or [] if line.strip()]

    def expire(self, host_name: str, at_once: bool = False) -> None:
        """End every active silence this deploy made for ``host_name``: after :func:`grace_s` (back
        in the pool), or ``at_once`` (a failure, which must page)."""
        if self.s is None:
            return
        out = self._run(query_command(self.s), f"{host_name}'s silences not expired")
        if out is None:
            return
        try:
            ids = ours(json.loads("\n".join(out) or "[]"), host_name)
        except ValueError:
            self.warn(f"{host_name}'s silences not expired: amtool's answer is not JSON")
            return
        if ids:
            self._run(expire_command(self.s, ids, 0 if at_once else grace_s(self.s)), f"{host_name}'s silences not expired")

    def page(self, host_name: str, summary: str) -> None:
        """RollFailed for ``host_name``, for ``monitoring_roll_failed_alert_s``."""
        if self.s is None:
            return
        self._run(
            alert_command(self.s, host_name, summary[:500], self.s.monitoring_roll_failed_alert_s),
            f"{ROLL_FAILED} for {host_name} not sent",
        )
