"""The host base's rendering: Docker's merged daemon.json and the docker.service drop-in.

Rendered from templates/host_base/ by deploys/core/render.py's ``render``; pure functions of validated settings."""

from __future__ import annotations

import copy
import json
from typing import Any

from deploys.core.render import render
from deploys.core.settings import Settings, SettingsError


def _union(existing: Any, wanted: list[str]) -> list[str]:
    """``existing`` then the ``wanted`` items it lacks, order kept (a stable, idempotent union)."""
    merged = list(existing) if isinstance(existing, list) else []
    merged.extend(item for item in wanted if item not in merged)
    return merged


def merged_daemon_config(
    existing: dict[str, Any] | None, s: Settings, proxies: bool = True, insecure_registries: list[str] | None = None
) -> dict[str, Any]:
    """``existing`` daemon.json with our keys merged in; every other key is kept as it is.

    Ours: log-driver json-file with log-opts max-size/max-file (other log-opts kept);
    registry-mirrors and insecure-registries as a union with what is there; proxies only when a
    proxy setting is non-empty. ``proxies=False`` leaves them out for Docker < 23, which refuses
    an unknown ``proxies`` key (put them in the docker.service environment instead, see
    :func:`docker_dropin`). The same input always gives the same dict, so a re-run is a no-op.
    ``insecure_registries``: what to list (deploys/core/registry.py:insecure_registries adds a
    plain-HTTP registry cache); default ``docker_insecure_registries``.
    """
    config: dict[str, Any] = copy.deepcopy(existing) if existing else {}
    # max-size/max-file are json-file (or local) options: another driver would refuse them.
    config["log-driver"] = "json-file"
    log_opts = config.get("log-opts") if isinstance(config.get("log-opts"), dict) else {}
    config["log-opts"] = {**log_opts, "max-size": s.docker_log_max_size, "max-file": str(s.docker_log_max_file)}
    insecure = s.docker_insecure_registries if insecure_registries is None else insecure_registries
    for key, wanted in (("registry-mirrors", s.docker_registry_mirrors), ("insecure-registries", insecure)):
        if wanted or key in config:
            config[key] = _union(config.get(key), wanted)
    wanted_proxies = _proxy_settings(s)
    if proxies and wanted_proxies:
        current = config.get("proxies") if isinstance(config.get("proxies"), dict) else {}
        config["proxies"] = {**current, **wanted_proxies}
    return config


def _proxy_settings(s: Settings) -> dict[str, str]:
    """daemon.json ``proxies`` keys for the non-empty proxy settings."""
    pairs = (("http-proxy", s.docker_http_proxy), ("https-proxy", s.docker_https_proxy), ("no-proxy", s.docker_no_proxy))
    return {key: value for key, value in pairs if value}


def daemon_json(config: dict[str, Any]) -> str:
    """daemon.json text for ``config``: sorted keys, 4-space indent (as nvidia-ctk writes it)."""
    text = render("daemon.json.j2", config=config)
    json.loads(text)  # tojson always gives JSON; keep the invariant checked where it is made
    return text


def _systemd_quote(name: str, value: str) -> str:
    """``"NAME=value"`` quoted for a systemd Environment= line (specifiers and quotes escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{name}={escaped}"'


def docker_dropin(s: Settings, proxy_env: bool = False) -> str:
    """The docker.service drop-in with ``Environment=`` lines from docker_service_env.

    ``proxy_env=True`` adds HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the proxy settings, for Docker
    versions that do not read ``proxies`` from daemon.json (< 23).
    """
    env: dict[str, str] = dict(s.docker_service_env)
    if proxy_env:
        names = {"http-proxy": "HTTP_PROXY", "https-proxy": "HTTPS_PROXY", "no-proxy": "NO_PROXY"}
        env.update({names[key]: value for key, value in _proxy_settings(s).items()})
    for name, value in env.items():
        if "\n" in value or "\r" in value:
            raise SettingsError(
                f"host {s.host}: setting docker_service_env[{name!r}] contains a line break; "
                "systemd Environment= values must be one line, fix it in the inventory or group_data/"
            )
    assignments = [_systemd_quote(name, env[name]) for name in sorted(env)]
    return render("docker-service-env.conf.j2", assignments=assignments)
