"""The registry cache role: its config (the distribution registry in proxy mode: Debian's
``docker-registry`` 2.8), the check of that config on the controller, the images it warms, and the
commands the cache step runs. Which host is the cache (inventory group ``registry_cache``) and where
the Triton hosts reach it is deploys/core/registry.py's: every pull asks it.

The cache proxies one upstream, the cache host's ``registry_host`` (``registry_cache_upstream_url``,
default ``https://{registry_host}``), with that registry's credential from the vault: the NGC key
then lives on the cache host only. Triton hosts pull ``<cache>/<path>`` anonymously
(deploys/core/registry.py:pull_ref; finding the cache, its endpoint and CA: deploys/core/registry.py:find).

What the distribution registry 2.8 does and does not do (read in its source, tag v2.8.2):

- no check mode (no ``-c``), and its YAML parser ignores unknown keys (yaml.v2 ``Unmarshal``): a
  misspelt ``remoteurl`` would silently run a plain registry. So :func:`check_config` parses the
  rendered YAML on the controller and refuses any key outside the ones written here, and after a
  restart the step waits for ``/v2/`` and puts the previous config back when it does not answer;
- at start it asks the upstream's ``/v2/`` for its token realm and exits when the upstream cannot
  be reached (``panic``): the unit's drop-in restarts it (``Restart=on-failure``);
- it authenticates to the upstream only through a bearer token realm (nvcr.io, Docker Hub); an
  upstream with htpasswd (basic) auth gets no credential from it;
- no size limit: what it cached is removed 7 days after it was fetched (a fixed TTL), so
  ``registry_cache_max_gb`` is a warning on each run, not a limit it enforces;
- a blob it does not hold yet is fetched from the upstream twice (once stored, once streamed to the
  client), and once more for each concurrent client while the first fetch runs.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from deploys.core import paths, registry, roles, settings, vault
from deploys.core.registry import _host_part
from deploys.core.roles import is_triton_host
from deploys.core.settings import Settings, SettingsError

SERVICE = "docker-registry"  # Debian's unit (User=docker-registry, ExecStart=... serve CONFIG)
USER = "docker-registry"  # the package's system user, which the unit runs as
CONFIG = paths.REGISTRY_CACHE_CONFIG  # host paths: deploys/core/paths.py
TLS_PEM = paths.REGISTRY_CACHE_TLS_PEM
DROPIN = paths.REGISTRY_CACHE_DROPIN
WARM_SCRIPT = paths.REGISTRY_CACHE_WARM_SCRIPT
WARM_TIMEOUT_S = 3600  # one image fetched from the upstream into the cache


def upstream_url(s: Settings) -> str:
    """The URL the cache proxies."""
    return s.registry_cache_upstream_url or f"https://{s.registry_host}"


def tls_pem(s: Settings) -> str:
    """The cache's certificate chain and key as one PEM (Go's TLS reads both from it); '' without TLS."""
    if not s.registry_cache_tls:
        return ""
    return vault.tls_pem(
        s.secrets_file,
        s.host,
        "registry_cache_tls",
        "cert, key: PEM; optional ca",
        "set registry_cache_insecure: true on a private network",
    )


def probe_url(s: Settings) -> str:
    """The cache's /v2/ as the cache host itself reaches it."""
    address = s.registry_cache_listen_address
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        address = "::1" if ip.version == 6 else "127.0.0.1"
    return f"{'https' if s.registry_cache_tls else 'http'}://{_host_part(address)}:{s.registry_cache_port}/v2/"


# -- the config and its check -----------------------------------------------------------------------

# The keys the template writes, as the registry 2.8 names them (configuration/configuration.go):
# a mapping is checked key by key, None is a leaf. Anything else in the rendered file is refused,
# because the registry would ignore it silently.
CONFIG_KEYS: Mapping[str, Any] = {
    "version": None,
    "log": {"accesslog": {"disabled": None}, "level": None, "fields": {"service": None}},
    "storage": {"filesystem": {"rootdirectory": None}, "cache": {"blobdescriptor": None}},
    "http": {"addr": None, "headers": {"X-Content-Type-Options": None}, "tls": {"certificate": None, "key": None, "minimumtls": None}},
    "health": {"storagedriver": {"enabled": None, "interval": None, "threshold": None}},
    "proxy": {"remoteurl": None, "username": None, "password": None},
}
REQUIRED = (("version",), ("storage", "filesystem", "rootdirectory"), ("http", "addr"), ("proxy", "remoteurl"))


class ConfigError(SettingsError):
    """The rendered cache config would not do what it says (one line; names keys, never values)."""


def _unknown_keys(data: Any, allowed: Mapping[str, Any], where: str) -> list[str]:
    if not isinstance(data, dict):
        return [f"{where or 'the top level'} is not a mapping"]
    found = []
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in allowed:
            found.append(f"unknown key {path}")
        elif allowed[key] is not None:
            found.extend(_unknown_keys(value, allowed[key], path))
    return found


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def check_config(text: str, source: str = "registry cache config") -> dict[str, Any]:
    """Parse the rendered config as YAML and check it as the registry 2.8 would need it: only the
    keys of :data:`CONFIG_KEYS`, the required ones present, values of the right shape. Returns the
    parsed config; raises :class:`ConfigError` (which never quotes a value: the password is in it)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    problems = _unknown_keys(data, CONFIG_KEYS, "")
    if problems:
        raise ConfigError(f"{source}: {problems[0]} (the registry would ignore it silently)")
    for path in REQUIRED:
        if _get(data, path) in (None, ""):
            raise ConfigError(f"{source}: {'.'.join(path)} is missing")
    checks = (
        (str(data["version"]) == "0.1", "version must be 0.1"),
        (str(_get(data, ("storage", "filesystem", "rootdirectory"))).startswith("/"), "storage.filesystem.rootdirectory must be absolute"),
        (
            re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]*):[0-9]{1,5}", str(data["http"]["addr"])) is not None,
            "http.addr must be HOST:PORT",
        ),
        (
            re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:[0-9]+)?", str(data["proxy"]["remoteurl"])) is not None,
            "proxy.remoteurl must be an http(s) URL",
        ),
        (("username" in data["proxy"]) == ("password" in data["proxy"]), "proxy.username and proxy.password go together"),
        (
            all(isinstance(data["proxy"].get(k, ""), str) for k in ("username", "password")),
            "proxy.username and proxy.password must be strings",
        ),
    )
    for ok, why in checks:
        if not ok:
            raise ConfigError(f"{source}: {why}")
    tls = _get(data, ("http", "tls"))
    if tls is not None and not (
        isinstance(tls, dict) and str(tls.get("certificate", "")).startswith("/") and str(tls.get("key", "")).startswith("/")
    ):
        raise ConfigError(f"{source}: http.tls needs absolute certificate and key paths")
    return data


# -- commands the cache step runs -----------------------------------------------------------------------


def restart_wait(s: Settings, live: str = CONFIG, timeout_s: int = 30) -> dict[str, Any]:
    """deploys/core/operations.py:wait_ready's arguments: restart the registry and wait until its /v2/
    answers 200 (then the ``.previous`` config that operations.validated_config kept goes); else its
    journal, the previous config back (restarted), exit 1. The probe skips certificate checks: it asks
    this host's own listener whether it is up, it trusts nothing it gets back."""
    q = shlex.quote
    url, previous = probe_url(s), q(live + ".previous")
    return {
        "url": url,
        "timeout_s": timeout_s,
        "insecure": True,
        "before": f"systemctl restart {SERVICE}",
        "on_success": f"rm -f {previous}",
        "failure_line": (
            f"registry cache: {url} did not answer 200 within {timeout_s}s after the restart (docker-registry 2.8 exits at start "
            f"when it cannot reach {upstream_url(s)}); last log lines:"
        ),
        "logs": f"journalctl -u {SERVICE} -n 20 --no-pager",
        "on_failure": (
            f"if [ -f {previous} ]; then mv -f {previous} {q(live)} && systemctl restart {SERVICE}; "
            'echo "registry cache: the previous config is back" >&2; fi'
        ),
    }


def dropin() -> str:
    """The unit's drop-in: restart after an exit (the registry exits when the upstream is unreachable at start)."""
    return (
        "# Managed by the triton-embeddinggemma pyinfra deploy: edits here are overwritten.\n"
        "# docker-registry 2.8 exits at start when it cannot reach the upstream it proxies: try again.\n"
        "[Service]\nRestart=on-failure\nRestartSec=5s\n"
    )


def usage_warning(s: Settings, used_bytes: int | None) -> str | None:
    """One warning line when the cache's storage holds more than ``registry_cache_max_gb``, else None."""
    if used_bytes is None or used_bytes <= s.registry_cache_max_gb * 2**30:
        return None
    return (
        f"registry cache: {s.registry_cache_storage_dir} holds {used_bytes / 2**30:.1f} GiB, over registry_cache_max_gb={s.registry_cache_max_gb}; "
        "the registry drops what it cached 7 days after fetching it; to free space now stop docker-registry, remove "
        f"{s.registry_cache_storage_dir}/docker and start it again (the next pulls fetch from the upstream), or raise the setting"
    )


def split_ref(ref: str) -> tuple[str, str]:
    """(repository path on the cache, tag or digest) of a reference through the cache:
    ``10.0.0.7:5000/nvidia/tritonserver:25.05-py3@sha256:ab…`` → (``nvidia/tritonserver``, ``sha256:ab…``)."""
    name, _, digest = ref.partition("@")
    path = name.split("/", 1)[1]
    slash, colon = path.rfind("/"), path.rfind(":")
    repo, tag = (path[:colon], path[colon + 1 :]) if colon > slash else (path, "latest")
    return repo, digest or tag


def warm_command(s: Settings, repo: str, ref: str, script: str = WARM_SCRIPT, timeout_s: int = WARM_TIMEOUT_S) -> str:
    """Run the warm script on the cache host against its own listener (deploys/registry_cache/registry_warm.py)."""
    q = shlex.quote
    base = probe_url(s).removesuffix("/v2/")
    platforms = " ".join(f"--platform {q(p)}" for p in s.registry_cache_warm_platforms)
    return (
        f"python3 -I {q(script)} warm --url {q(base)} --storage {q(s.registry_cache_storage_dir)} "
        f"--repo {q(repo)} --ref {q(ref)} {platforms} --timeout {int(timeout_s)}"
    )


def cache_images(inventory: Any) -> list[str]:
    """Every image reference the Triton hosts of ``inventory`` pull through its registry cache
    (Triton's, and dcgm-exporter's on GPU hosts of a monitored fleet), each once, in inventory order."""
    if registry.find(inventory) is None:
        return []
    refs: list[str] = []
    for other in inventory:
        if not is_triton_host(other):
            continue
        t = settings.load(other)
        images = [t.triton_image_ref] + ([t.monitoring_dcgm_exporter_image] if roles.runs_dcgm_exporter(t, inventory) else [])
        refs.extend(ref for ref in (registry.pull_ref(t, inventory, image) for image in images) if ref not in refs)
    return refs
