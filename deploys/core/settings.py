"""Every tunable of the deploy, composed from the roles' declarations.

Each setting is declared once, in its role's settings class (deploys/<role>/settings.py; the
machinery is deploys/core/tunables.py); this module composes them into :class:`Settings`, the typed
settings of one host. Values come from pyinfra host data (inventory, ``group_data/``, ``--data``).
The README's tunables table is generated from the declarations (``make readme``).

``load(host)`` returns a validated, typed :class:`Settings` for one host. ``validate_fleet`` checks
every active host before any operation runs, so a typo ends the run before any host changes.
"""

from __future__ import annotations

import difflib
import ipaddress
import sys
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from typing import Any

from deploys.core.tunables import KIND_TYPES, OWNED_NAMES, OWNED_PREFIXES, Setting, SettingsError, _bool, _text, declared  # noqa: F401 (re-exported)
from deploys.deploy_lock.settings import DeployLockSettings
from deploys.front_door.settings import FrontDoorSettings
from deploys.gateway.settings import GatewaySettings
from deploys.host_base.settings import DOCKER_KEY_FINGERPRINT, NVIDIA_TOOLKIT_KEY_FINGERPRINT, HostBaseSettings  # noqa: F401 (re-exported)
from deploys.model.settings import ModelSettings
from deploys.monitoring.settings import MonitoringSettings
from deploys.registry_cache.settings import RegistryCacheSettings
from deploys.triton.settings import TritonSettings

# Settings that hold repository or endpoint URLs: plain http:// is refused in them unless
# allow_plain_http is true (the values are checked together, in _check_together).
URL_SETTINGS = (
    "docker_ce_apt_url",
    "nvidia_toolkit_apt_url",
    "verify_pip_index_url",
    "model_mirror",
    "model_token_endpoints",
    "registry_cache_upstream_url",
)


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class CoreSettings:
    """Settings every role reads."""

    # -- package sources --
    allow_plain_http = Setting(False, "Accept plain http:// in docker_ce_apt_url, nvidia_toolkit_apt_url, verify_pip_index_url, model_mirror, model_token_endpoints and registry_cache_upstream_url (refused by default; pinned key fingerprints and hashed locks still apply).", "bool", _bool)
    secrets_file = Setting("inventories/group_data/secrets.sops.yaml", "SOPS-encrypted YAML with ngc_api_key (and hf_token), relative to the repository root.", "str", _text(r"\S+", "a file path"))
# fmt: on


# The roles' declarations, in the README table's order.
ROLES: tuple[type, ...] = (
    CoreSettings,
    HostBaseSettings,
    RegistryCacheSettings,
    ModelSettings,
    TritonSettings,
    DeployLockSettings,
    GatewaySettings,
    FrontDoorSettings,
    MonitoringSettings,
)
SETTINGS: tuple[Setting[Any], ...] = tuple(s for role in ROLES for s in declared(role))
BY_NAME = {s.name: s for s in SETTINGS}
if len(BY_NAME) != len(SETTINGS):
    raise TypeError(f"a setting is declared twice: {sorted(n for n in BY_NAME if [s.name for s in SETTINGS].count(n) > 1)}")


class Settings(*ROLES):  # type: ignore[misc]
    """Validated settings of one host: one typed attribute per declaration (the role classes'
    :class:`Setting` attributes), so editors and type checkers see them; immutable."""

    host: str

    def __init__(self, host: str, values: Mapping[str, Any]) -> None:
        """``values``: exactly one value per setting, already validated (see :func:`parse`)."""
        if set(values) != set(BY_NAME):
            raise TypeError(
                f"Settings needs exactly the settings of SETTINGS; got extra {sorted(set(values) - set(BY_NAME))}, missing {sorted(set(BY_NAME) - set(values))}"
            )
        object.__setattr__(self, "host", host)
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and (self.host, self.values) == (other.host, other.values)

    __hash__ = None  # type: ignore[assignment]  # the values hold lists

    def __repr__(self) -> str:
        return f"Settings(host={self.host!r})"

    @property
    def values(self) -> dict[str, Any]:
        """Setting name → value."""
        return {name: getattr(self, name) for name in BY_NAME}

    @property
    def triton_image_ref(self) -> str:
        """The image as compose and docker pull see it: tag, plus digest when pinned."""
        return f"{self.triton_image}@{self.triton_image_digest}" if self.triton_image_digest else self.triton_image


# The typed attributes, as run-time annotations from the declarations (typing.get_type_hints reads them).
Settings.__annotations__ = {"host": str, **{s.name: s.type for s in SETTINGS}}


def _owned(key: str) -> bool:
    return key in OWNED_NAMES or key.startswith(OWNED_PREFIXES)


def _fail(host: str, key: str, value: Any, why: str) -> SettingsError:
    return SettingsError(f"host {host}: setting {key}={value!r} is invalid ({why}); fix it in the inventory, group_data/ or --data")


def parse(host: str, data: dict[str, Any]) -> Settings:
    """Validate the host data ``data`` of ``host`` and return its settings (defaults filled in)."""
    for key in sorted(data):
        if _owned(key) and key not in BY_NAME:
            close = difflib.get_close_matches(key, BY_NAME, n=1)
            hint = f"did you mean {close[0]}?" if close else "see the README's tunables table"
            raise SettingsError(f"host {host}: unknown setting {key!r}; {hint}")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value = data.get(setting.name, setting.default)
        try:
            values[setting.name] = setting.check(value)
        except ValueError as error:
            raise _fail(host, setting.name, value, str(error)) from None
    _check_together(host, values)
    return Settings(host=host, values=values)


def _check_together(host: str, v: dict[str, Any]) -> None:
    """Rules that span several settings."""
    ports = [v["triton_http_port"], v["triton_grpc_port"], v["triton_metrics_port"]]
    if len(set(ports)) != 3:
        raise _fail(host, "triton_http_port", ports, "the HTTP, gRPC and metrics ports must differ")
    if v["gateway_enabled"] and v["gateway_listen_port"] in ports:
        raise _fail(host, "gateway_listen_port", v["gateway_listen_port"], f"Triton's ports {ports} are taken; pick another")
    if v["gateway_enabled"] and v["gateway_health_port"] in [*ports, v["gateway_listen_port"]]:
        raise _fail(
            host, "gateway_health_port", v["gateway_health_port"], f"Triton's ports {ports} and gateway_listen_port are taken; pick another"
        )
    if v["front_door_port"] == v["front_door_metrics_port"] and v["front_door_listen_address"] in (
        v["front_door_metrics_address"],
        "0.0.0.0",
        "::",
    ):
        raise _fail(
            host, "front_door_metrics_port", v["front_door_metrics_port"], "the front door's API and metrics ports clash; pick another"
        )
    if v["monitoring_node_exporter_port"] == v["monitoring_dcgm_exporter_port"]:
        raise _fail(
            host, "monitoring_dcgm_exporter_port", v["monitoring_dcgm_exporter_port"], "the node exporter has that port; pick another"
        )
    if v["monitoring_rate_window_s"] < 4 * v["monitoring_scrape_interval_s"]:
        raise _fail(
            host,
            "monitoring_rate_window_s",
            v["monitoring_rate_window_s"],
            f"must be ≥ 4 × monitoring_scrape_interval_s={v['monitoring_scrape_interval_s']}: a rate needs several samples",
        )
    if v["gateway_length_buckets"][-1] < v["gateway_max_tokens"]:
        raise _fail(
            host, "gateway_length_buckets", v["gateway_length_buckets"], f"the last must be ≥ gateway_max_tokens={v['gateway_max_tokens']}"
        )
    too_big = [b for b in v["triton_preferred_batch_sizes"] if b > v["triton_max_batch_size"]]
    if too_big:
        raise _fail(
            host,
            "triton_preferred_batch_sizes",
            v["triton_preferred_batch_sizes"],
            f"each must be ≤ triton_max_batch_size={v['triton_max_batch_size']}",
        )
    if v["triton_tensorrt_opt_seq_len"] > v["triton_tensorrt_max_seq_len"]:
        raise _fail(host, "triton_tensorrt_opt_seq_len", v["triton_tensorrt_opt_seq_len"], "must be ≤ triton_tensorrt_max_seq_len")
    if v["triton_tensorrt"] and v["gpu"] is False:
        raise _fail(host, "triton_tensorrt", True, "TensorRT needs a GPU host; set gpu: true or triton_tensorrt: false")
    if v["model_fetch"] == "mirror" and not v["model_mirror"]:
        raise _fail(host, "model_mirror", "", "model_fetch=mirror needs a mirror URL or directory")
    if v["registry_cache_tls"] and v["registry_cache_insecure"]:
        raise _fail(host, "registry_cache_insecure", True, "registry_cache_tls is on; pick one of TLS or plain HTTP")
    if not v["allow_plain_http"]:
        for name in URL_SETTINGS:
            value = v[name]
            if any(url.lower().startswith("http://") for url in (value if isinstance(value, list) else [value])):
                raise _fail(host, name, value, "plain http:// is refused; use https://, or set allow_plain_http: true to accept it")
    if not v["triton_bind_beyond_loopback"] and not ipaddress.ip_address(v["triton_bind_address"]).is_loopback:
        raise _fail(
            host,
            "triton_bind_address",
            v["triton_bind_address"],
            "beyond loopback, Triton answers anyone who reaches that address; set triton_bind_beyond_loopback: true to mean it, "
            "or bind 127.0.0.1",
        )
    if v["docker_ce_version"] and v["docker_source"] != "docker-ce":
        raise _fail(host, "docker_ce_version", v["docker_ce_version"], "only used with docker_source: docker-ce")


def load(host: Any) -> Settings:
    """Settings of a pyinfra ``Host`` (validated; raises SettingsError), parsed once per host per
    run: the run context (deploys/core/context.py) keeps them. A host outside a run (no state) is
    parsed each time."""
    state = getattr(host, "state", None)
    if state is None:
        return parse(host.name, host.data.dict())
    from deploys.core import context

    ctx = context.of(state)
    with ctx.lock:
        found = ctx.settings.get(host.name)
        if found is None:
            found = ctx.settings[host.name] = parse(host.name, host.data.dict())
            ctx.settings_parsed[host.name] += 1
        return found


def validate_fleet(state: Any) -> None:
    """Validate every host in the inventory once per run, before any operation is planned.

    pyinfra runs the deploy file for all hosts before executing anything, so raising here ends the
    run with nothing changed on any host. What ends the run is also written as an event (the
    rollout driver reads events, not the log).
    """
    from deploys.core import context, events

    ctx = context.of(state)
    if ctx.fleet_checked:
        return
    targets = [host for host in state.inventory if state.is_host_in_limit(host)]
    try:
        for host in targets:
            load(host)
    except SettingsError as error:
        events.write(state, "run refused", detail=str(error))
        raise
    # pyinfra carries on without hosts it could not connect to; a fleet deploy must not silently
    # skip a box, so the operator decides (fix access, or leave it out with --limit).
    unreachable = sorted(host.name for host in targets if host in state.failed_hosts)
    if unreachable:
        message = (
            f"host {unreachable[0]}: unreachable over SSH ({len(unreachable)} host(s): {', '.join(unreachable)}); "
            "fix SSH access (ssh_hostname, ssh_user, ssh_key) or leave them out with --limit"
        )
        events.write(state, "run refused", detail=message, unreachable=unreachable)
        raise SettingsError(message)
    ctx.fleet_checked = True


def markdown_table() -> str:
    """The README's tunables table."""
    rows = ["| setting | type | default | what it does |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = repr(s.default) if not isinstance(s.default, bool) else str(s.default).lower()
        rows.append(f"| `{s.name}` | {s.kind} | `{default}` | {s.doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(markdown_table())
    else:
        sys.exit("usage: python -m deploys.core.settings --markdown")
