"""Alertmanager on the monitoring host: its receivers from the vault, checked here, and its config
and flags rendered from templates/monitoring/ (pure functions; the step is deploys/monitoring/step.py).

The vault's optional ``alertmanager`` key (deploys/core/vault.py)::

    alertmanager:
      receivers:                      # each gets the alerts of its severities (default: critical and warning)
        - {name: pager, webhook_url: "https://pager.example.com/hook?token=...", severities: [critical]}
        - {name: chat, slack_webhook_url: "https://hooks.slack.com/services/...", slack_channel: "#alerts"}
        - {name: oncall, email_to: oncall@example.com}
      smtp: {smarthost: "smtp.example.com:587", from: alerts@example.com, username: ..., password: ...}

Each receiver has exactly one of ``webhook_url``, ``slack_webhook_url``, ``email_to`` (``email_to``
needs ``smtp``). URLs are https://, or http:// to a loopback address (a relay on the monitoring host
itself). Every mistake is one :class:`VaultError` line naming the key, never its value.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field

from deploys.core.vault import VaultError

SEVERITIES = ("critical", "warning")  # the alert rules' severity labels (templates/monitoring/prometheus-alerts.yml.j2)
DEFAULT_RECEIVER = "nobody"  # the route's catch-all: what no receiver's severities match goes nowhere
KINDS = ("webhook_url", "slack_webhook_url", "email_to")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")
_SMARTHOST = re.compile(r"[A-Za-z0-9.-]+:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}")


@dataclass(frozen=True)
class Receiver:
    """One receiver: where Alertmanager sends the alerts of ``severities``."""

    name: str
    severities: tuple[str, ...]
    webhook_url: str = field(default="", repr=False)  # secret (a token in the URL)
    slack_webhook_url: str = field(default="", repr=False)  # secret
    slack_channel: str = ""
    email_to: str = ""


@dataclass(frozen=True)
class Smtp:
    smarthost: str
    sender: str
    username: str = ""
    password: str = field(default="", repr=False)  # secret
    require_tls: bool = True


@dataclass(frozen=True)
class Receivers:
    """The checked receivers (none: Alertmanager runs and tells no one; the step says so)."""

    receivers: tuple[Receiver, ...] = ()
    smtp: Smtp | None = None


def _url(vault: str, key: str, value: object) -> str:
    fix = f"fix it with `sops edit {vault}`"
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise VaultError(f"vault {vault}: {key} must be a URL without spaces; {fix}")
    parts = urllib.parse.urlsplit(value)
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not host or parts.scheme not in ("https", "http") or (parts.scheme == "http" and not loopback):
        raise VaultError(f"vault {vault}: {key} must be an https:// URL (http:// only to a loopback address); {fix}")
    return value


def _text(vault: str, key: str, value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise VaultError(f"vault {vault}: {key} must be {what}; fix it with `sops edit {vault}`")
    return value


def _smtp(vault: str, value: object) -> Smtp | None:
    if value is None:
        return None
    fix = f"fix it with `sops edit {vault}`"
    allowed = {"smarthost", "from", "username", "password", "require_tls"}
    if not isinstance(value, dict) or not {"smarthost", "from"} <= set(value) <= allowed:
        raise VaultError(f"vault {vault}: alertmanager.smtp needs smarthost and from (optionally username, password, require_tls); {fix}")
    if ("username" in value) != ("password" in value):
        raise VaultError(f"vault {vault}: alertmanager.smtp needs username and password together, or neither; {fix}")
    username, password = value.get("username", ""), value.get("password", "")
    if not isinstance(username, str) or not isinstance(password, str) or ("username" in value and not (username and password)):
        raise VaultError(f"vault {vault}: alertmanager.smtp.username and password must be non-empty strings; {fix}")
    tls = value.get("require_tls", True)
    if not isinstance(tls, bool):
        raise VaultError(f"vault {vault}: alertmanager.smtp.require_tls must be true or false; {fix}")
    return Smtp(
        smarthost=_text(vault, "alertmanager.smtp.smarthost", value["smarthost"], _SMARTHOST, "host:port (e.g. smtp.example.com:587)"),
        sender=_text(vault, "alertmanager.smtp.from", value["from"], _EMAIL, "an email address"),
        username=username,
        password=password,
        require_tls=tls,
    )


def receivers(vault: str, value: object) -> Receivers:
    """The vault's ``alertmanager`` (``value``, None when absent) checked: one line naming the key when wrong."""
    if value is None:
        return Receivers()
    fix = f"fix it with `sops edit {vault}`"
    if not isinstance(value, dict) or not set(value) <= {"receivers", "smtp"}:
        raise VaultError(f"vault {vault}: alertmanager may hold receivers and smtp only; {fix}")
    smtp = _smtp(vault, value.get("smtp"))
    entries = value.get("receivers") or []
    if not isinstance(entries, list):
        raise VaultError(f"vault {vault}: alertmanager.receivers must be a list; {fix}")
    found: list[Receiver] = []
    for index, entry in enumerate(entries):
        key = f"alertmanager.receivers[{index}]"
        if not isinstance(entry, dict):
            raise VaultError(f"vault {vault}: {key} must be a mapping with name and one of {', '.join(KINDS)}; {fix}")
        unknown = sorted(set(entry) - {"name", "severities", "slack_channel", *KINDS})
        if unknown:
            raise VaultError(
                f"vault {vault}: {key} has unknown key {unknown[0]!r} (allowed: name, severities, {', '.join(KINDS)}, slack_channel); {fix}"
            )
        name = _text(vault, f"{key}.name", entry.get("name"), _NAME, "a name of letters, digits, _ and - (at most 64)")
        if name == DEFAULT_RECEIVER:
            raise VaultError(f"vault {vault}: {key}.name {name!r} is reserved (the route's catch-all); pick another; {fix}")
        if any(r.name == name for r in found):
            raise VaultError(f"vault {vault}: {key}.name {name!r} is used twice; {fix}")
        kinds = [k for k in KINDS if k in entry]
        if len(kinds) != 1:
            raise VaultError(f"vault {vault}: {key} ({name}) needs exactly one of {', '.join(KINDS)}; {fix}")
        severities = entry.get("severities", list(SEVERITIES))
        if (
            not isinstance(severities, list)
            or not severities
            or not set(severities) <= set(SEVERITIES)
            or len(set(severities)) != len(severities)
        ):
            raise VaultError(f"vault {vault}: {key}.severities must be a list of {' and/or '.join(SEVERITIES)}; {fix}")
        channel = entry.get("slack_channel", "")
        if channel and (
            kinds[0] != "slack_webhook_url" or not isinstance(channel, str) or not re.fullmatch(r"[#@][^\s\"']{1,80}", channel)
        ):
            raise VaultError(f"vault {vault}: {key}.slack_channel goes with slack_webhook_url and reads #channel or @user; {fix}")
        kind = kinds[0]
        if kind == "email_to":
            if smtp is None:
                raise VaultError(f"vault {vault}: {key} ({name}) sends email: add alertmanager.smtp (smarthost, from); {fix}")
            target = _text(vault, f"{key}.email_to", entry[kind], _EMAIL, "an email address")
        else:
            target = _url(vault, f"{key}.{kind}", entry[kind])
        found.append(
            Receiver(name=name, severities=tuple(s for s in SEVERITIES if s in severities), slack_channel=channel, **{kind: target})
        )
    return Receivers(tuple(found), smtp)
