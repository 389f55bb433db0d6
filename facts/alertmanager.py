"""Alertmanager read through its HTTP API (v2) on the monitoring host (curl there: it listens on a
private or loopback address the controller may not reach), for the fleet status (deploys/status.py).

:class:`AlertmanagerState` returns, per host (the ``instance`` label), the alerts firing and
notified (neither silenced nor inhibited), and the end of the latest active silence that names it.
The parser is pure; tests/test_alertmanager.py runs it on a real Alertmanager's answers.
"""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import quote, when_present

_MARKER = "__ALERTMANAGER__"


def parse(alerts_answer: str, silences_answer: str) -> dict[str, Any]:
    """``{"answered", "firing": {instance: [alertname…]}, "silenced": {instance: endsAt}}`` from
    ``GET /api/v2/alerts`` and ``GET /api/v2/silences``; answered False when either is not JSON."""
    try:
        alerts, silences = json.loads(alerts_answer), json.loads(silences_answer)
    except ValueError:
        return {"answered": False, "firing": {}, "silenced": {}}
    if not isinstance(alerts, list) or not isinstance(silences, list):
        return {"answered": False, "firing": {}, "silenced": {}}
    firing: dict[str, list[str]] = {}
    for alert in alerts:
        state = (alert.get("status") or {}).get("state")
        labels = alert.get("labels") or {}
        if state == "active" and labels.get("instance"):
            firing.setdefault(labels["instance"], []).append(labels.get("alertname", "?"))
    silenced: dict[str, str] = {}
    for silence in silences:
        if (silence.get("status") or {}).get("state") != "active":
            continue
        for matcher in silence.get("matchers") or []:
            if matcher.get("name") == "instance" and matcher.get("isEqual", True) and not matcher.get("isRegex"):
                host, ends = matcher.get("value", ""), str(silence.get("endsAt", ""))
                silenced[host] = max(silenced.get(host, ""), ends)
    return {"answered": True, "firing": {k: sorted(set(v)) for k, v in firing.items()}, "silenced": silenced}


class AlertmanagerState(FactBase[dict[str, Any]]):
    """
    The Alertmanager at ``url``: the alerts it notifies per host and the active silences per host
    (curl bounded to 5 s each).
    """

    def command(self, url: str) -> str:
        base = url.rstrip("/")
        lines = [
            f"printf '%s alerts ' {_MARKER}; curl -s --max-time 5 {quote(base + '/api/v2/alerts?active=true&silenced=false&inhibited=false')}; echo",
            f"printf '%s silences ' {_MARKER}; curl -s --max-time 5 {quote(base + '/api/v2/silences')}; echo",
        ]
        return when_present("curl", "; ".join(lines))

    @staticmethod
    def default() -> dict[str, Any]:
        return {"answered": False, "firing": {}, "silenced": {}}

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = {}
        for line in output:
            if line.startswith(_MARKER + " "):
                _, name, *answer = line.split(" ", 2)
                parts[name] = answer[0] if answer else ""
        return parse(parts.get("alerts", ""), parts.get("silences", ""))
