"""Render the files written on hosts from the jinja2 templates in templates/.

Every renderer is a pure function of validated :class:`~deploys.lib.settings.Settings`, so the deploy
steps and the tests render exactly the same text. The Triton model config is parsed with Triton's
own ModelConfig protobuf before anything is uploaded: a broken config fails on the controller.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import shlex
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import jinja2
import yaml
from google.protobuf import text_format
from pyinfra.api.exceptions import PyinfraError
from tritonclient.grpc import model_config_pb2

from deploys.lib import paths, registry_cache
from deploys.lib.paths import MODELS_MOUNT, TRT_CACHE_MOUNT, onnx_filename
from deploys.lib.repo import TEMPLATES_DIR
from deploys.lib.settings import Settings, SettingsError
from embeddinggemma import TRITON_KEY_HEADER

COMPOSE_PROJECT = "triton-embeddinggemma"
LABEL_PREFIX = "io.triton-embeddinggemma"
# Set by the triton step: a digest of what the container depends on beyond the compose file.
DEPLOY_HASH_LABEL = f"{LABEL_PREFIX}.deploy-hash"
# Triton's restricted APIs (deploys/lib/triton_api.py): which, and the key file's sha256 label
# compose fills in from the environment of `docker compose up`.
TRITON_RESTRICTED_APIS = ("model-repository", "model-config", "logging", "trace", "shared-memory")
TRITON_KEY_LABEL = f"{LABEL_PREFIX}.api-key-sha256"
TRITON_KEY_SHA256_ENV = "TRITON_API_KEY_SHA256"
# The host's own addresses the container's ports publish on ("8000=127.0.0.1 …"): not part of the
# release (deploys/lib/release.py), but a change of them recreates the container (a label changes).
BINDINGS_LABEL = f"{LABEL_PREFIX}.host-bindings"
# The files the deploy writes from a parsed template are written in canonical form (below), so a
# template's comments and layout never reach a host; this line says where they come from.
MANAGED_HEADER = "# Managed by the triton-embeddinggemma pyinfra deploy: edits here are overwritten.\n"


class RenderError(PyinfraError):
    """A template rendered into something its consumer would reject (printed as one line)."""


def container_name(s: Settings) -> str:
    """The Triton container's name (``docker logs`` target for the triton and verify steps)."""
    return f"triton-{s.model_name}"


@lru_cache(maxsize=4)
def _environment(directory: str) -> jinja2.Environment:
    """A jinja2 environment for ``directory``: StrictUndefined, so a missing value is an error."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # pbtxt/YAML/JSON/INI, not HTML
    )
    environment.filters["shquote"] = shlex.quote  # a word of a shell command (the compose file's sh -c)
    return environment


def render(template_name: str, **context: Any) -> str:
    """Render ``templates/<template_name>`` with ``context``; undefined names raise RenderError."""
    try:
        text = _environment(str(TEMPLATES_DIR)).get_template(template_name).render(**context)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {template_name}: {type(error).__name__}: {error}") from None
    return text if text.endswith("\n") else text + "\n"


def _tensorrt(s: Settings, gpu: bool) -> bool:
    """Whether the TensorRT accelerator is on; asking for it on a CPU host is a user mistake."""
    if s.triton_tensorrt and not gpu:
        raise SettingsError(
            f"host {s.host}: setting triton_tensorrt=True needs a GPU but this host has none; "
            "set triton_tensorrt: false for it (or gpu: true if it does have one)"
        )
    return bool(s.triton_tensorrt)


def parse_model_config(text: str, source: str = "config.pbtxt") -> model_config_pb2.ModelConfig:
    """Parse ``text`` exactly as Triton does; unknown fields or bad values raise RenderError."""
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise RenderError(f"{source} does not parse as Triton's ModelConfig: {error}") from None


def canonical_model_config(text: str, source: str = "config.pbtxt") -> str:
    """``text`` parsed as Triton's ModelConfig and printed back by protobuf's text_format (fields in
    the schema's order, one spelling per value, no comments): the same configuration always gives
    the same text, whatever the template's comments, indentation or field order."""
    return text_format.MessageToString(parse_model_config(text, source))


def canonical_yaml(text: str, source: str) -> str:
    """``text`` parsed as YAML and dumped back (keys in their order, no comments, one layout)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RenderError(f"{source} does not parse as YAML: {error}") from None
    return yaml.safe_dump(data, sort_keys=False, width=1_000_000, allow_unicode=True)


def model_config(s: Settings, gpu: bool, template_name: str | None = None) -> str:
    """The model's config.pbtxt for a GPU (``gpu=True``) or CPU host, checked against the schema,
    in canonical form (:func:`canonical_model_config`): what a host gets, and what the release id
    and the config-sha256 label digest.

    The template is ``triton_config_template`` unless ``template_name`` names another."""
    template_name = template_name or s.triton_config_template
    text = render(
        template_name,
        s=s,
        gpu=gpu,
        tensorrt=_tensorrt(s, gpu),
        trt_cache_path=TRT_CACHE_MOUNT,
        onnx_filename=onnx_filename(s.model_variant),
    )
    return MANAGED_HEADER + canonical_model_config(text, source=f"template {template_name}")


def url_host(address: str) -> str:
    """An address as the host part of a URL or a compose port mapping: IPv6 addresses need brackets."""
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def compose_labels(s: Settings, gpu: bool, deploy_hash: str | None = None, config: str | None = None) -> dict[str, str]:
    """The Triton container's labels: what it serves, so a running container can be compared
    with the wanted deploy (the triton step does) and recreated by compose when they differ.

    ``config``: the host's config.pbtxt when the caller already rendered it (else rendered here)."""
    if config is None:
        config = model_config(s, gpu)
    labels = {
        f"{LABEL_PREFIX}.deploy": COMPOSE_PROJECT,
        f"{LABEL_PREFIX}.model": s.model_repo_id,
        f"{LABEL_PREFIX}.model-revision": s.model_revision,
        f"{LABEL_PREFIX}.model-variant": s.model_variant,
        f"{LABEL_PREFIX}.config-sha256": hashlib.sha256(config.encode()).hexdigest(),
        BINDINGS_LABEL: host_bindings(s),
    }
    if deploy_hash is not None:
        labels[DEPLOY_HASH_LABEL] = deploy_hash
    return labels


def host_bindings(s: Settings) -> str:
    """The host's own addresses the container's ports publish on, per container port."""
    http = s.triton_bind_address
    return f"8000={http} 8001={http} 8002={s.triton_metrics_address or http}"


def compose_file(
    s: Settings,
    gpu: bool,
    deploy_hash: str | None = None,
    models_dir: str | None = None,
    config: str | None = None,
    image: str | None = None,
    restrict: bool = True,
) -> str:
    """The compose file for a GPU (``gpu=True``) or CPU host.

    ``deploy_hash`` (optional) becomes the DEPLOY_HASH_LABEL label, so the container is recreated
    when something compose cannot see (the model files) changes. ``models_dir`` is the host's
    model repository mounted at /models (default: the layout's; a release passes its own).
    ``config``: the host's config.pbtxt when the caller already rendered it (its sha256 is a label).
    ``image``: the reference the host pulls Triton by (deploys/lib/registry.py:pull_ref: the
    registry cache's when the inventory has one); default ``triton_image_ref``. ``restrict``: pass
    Triton the restricted-API options (deploys/lib/triton_api.py:restrict says when not).

    The text is the rendered template parsed and dumped back (:func:`canonical_yaml`): a comment or
    layout edit of the template leaves it, byte for byte, as it was.
    """
    host_paths = paths.layout(s)
    labels = compose_labels(s, gpu, deploy_hash, config=config)
    text = render(
        "docker-compose.yml.j2",
        s=s,
        gpu=gpu,
        tensorrt=_tensorrt(s, gpu),
        project=COMPOSE_PROJECT,
        image=s.triton_image_ref if image is None else image,
        container_name=container_name(s),
        labels=labels,
        bind_host=url_host(s.triton_bind_address),
        metrics_bind_host=url_host(s.triton_metrics_address or s.triton_bind_address),
        models_dir=models_dir or host_paths.models_dir,
        models_mount=MODELS_MOUNT,
        trt_cache_dir=host_paths.trt_cache_dir,
        trt_cache_mount=TRT_CACHE_MOUNT,
        key_dir=host_paths.triton_key_dir,
        key_mount=paths.TRITON_KEY_MOUNT,
        key_name=paths.TRITON_KEY_NAME,
        key_header=TRITON_KEY_HEADER,
        key_label=TRITON_KEY_LABEL,
        key_sha256_env=TRITON_KEY_SHA256_ENV,
        restricted_apis=TRITON_RESTRICTED_APIS,
        restrict=restrict,
    )
    return MANAGED_HEADER + canonical_yaml(text, "template docker-compose.yml.j2")


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
    ``insecure_registries``: what to list (deploys/lib/registry.py:insecure_registries adds a
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


def gateway_config(s: Settings, triton_grpc_url: str, tokenizer_dir: str, api_key_sha256_file: str, triton_key_file: str = "") -> str:
    """The embeddings gateway's JSON config (templates/gateway.json.j2), parsed back as JSON."""
    text = render(
        "gateway.json.j2",
        s=s,
        triton_grpc_url=triton_grpc_url,
        tokenizer_dir=tokenizer_dir,
        api_key_sha256_file=api_key_sha256_file,
        triton_key_file=triton_key_file,
    )
    json.loads(text)
    return text


def gateway_unit(user: str, venv: str, work_dir: str, config_file: str, stop_timeout_s: int) -> str:
    """The embeddings gateway's systemd unit (templates/embeddings-gateway.service.j2)."""
    return render(
        "embeddings-gateway.service.j2", user=user, venv=venv, work_dir=work_dir, config_file=config_file, stop_timeout_s=stop_timeout_s
    )


class HaproxyBackend(Protocol):
    """What :func:`haproxy_config` reads of a backend (deploys/lib/front_door.py's ``Backend`` has it)."""

    @property
    def name(self) -> str: ...  # HAProxy server name: letters, digits and ``.-_:`` only
    @property
    def address(self) -> str: ...  # an IP address, v4 or v6 (bracketed here)
    @property
    def port(self) -> int: ...
    @property
    def health_port(self) -> int: ...  # the gateway's health responder: what the checks ask


def haproxy_config(s: Settings, backends: Sequence[HaproxyBackend], tls_pem_path: str) -> str:
    """The front door's haproxy.cfg (templates/haproxy.cfg.j2) for the front-door host's settings ``s``.

    ``backends``: every Triton host's gateway, one ``server`` line each in backend ``gateways``;
    ``tls_pem_path``: the host path of the certificate chain + key PEM, read when ``s.front_door_tls``
    (ignored otherwise, may be ''). Nothing is checked here beyond that pairing: ``haproxy -c`` on
    the host (and in tests/test_front_door_config.py) is the judge of the text.
    """
    if s.front_door_tls and not tls_pem_path:
        raise RenderError(f"host {s.host}: front_door_tls is on but no certificate path was given to the HAProxy config")
    return render(
        "haproxy.cfg.j2",
        s=s,
        admin_socket=paths.HAPROXY_ADMIN_SOCKET,
        backend_name=paths.HAPROXY_BACKEND,
        fallback_name=paths.HAPROXY_FALLBACK_BACKEND,
        listen_host=url_host(s.front_door_listen_address),
        metrics_host=url_host(s.front_door_metrics_address),
        tls_pem_path=tls_pem_path,
        backends=[{"name": b.name, "host": url_host(b.address), "port": b.port, "health_port": b.health_port} for b in backends],
    )


# -- monitoring (the monitoring host's Prometheus, every host's node exporter, a user's Grafana) --

# Filesystems DiskNearlyFull leaves out: memory-backed, container layers, read-only images.
IGNORED_FSTYPES = ("tmpfs", "ramfs", "devtmpfs", "overlay", "squashfs", "iso9660", "nsfs", "fuse.lxcfs")
GRAFANA_DATASOURCE_UID = "triton-embeddinggemma-prometheus"
GRAFANA_DASHBOARD = "grafana/triton-embeddinggemma.json"  # under templates/, not a jinja2 template (Grafana's {{legend}})


class ScrapeTarget(Protocol):
    """What :func:`prometheus_config` reads of a target (deploys/lib/monitoring.py's ``ScrapeTarget`` has it)."""

    @property
    def job(self) -> str: ...
    @property
    def instance(self) -> str: ...  # the inventory host name
    @property
    def role(self) -> str: ...
    @property
    def address(self) -> str: ...  # an IP address (bracketed here when v6) or a host name
    @property
    def port(self) -> int: ...


def _scrape_host(address: str) -> str:
    try:
        return url_host(address)
    except ValueError:
        return address  # a host name


def prometheus_config(s: Settings, targets: Sequence[ScrapeTarget], rule_files: Sequence[str] = (paths.PROMETHEUS_RULES,)) -> str:
    """The monitoring host's prometheus.yml (templates/prometheus.yml.j2) for its settings ``s``.

    ``targets``: one per host and endpoint (deploys/lib/monitoring.py:scrape_targets), grouped into
    one job each in the order they first appear; ``rule_files``: the alert rules' paths (the host's
    PROMETHEUS_RULES; a test passes where it rendered them, as ``promtool check config`` opens them).
    """
    jobs: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        jobs.setdefault(t.job, []).append({"address": f"{_scrape_host(t.address)}:{int(t.port)}", "instance": t.instance, "role": t.role})
    return render(
        "prometheus.yml.j2",
        s=s,
        scrape_timeout_s=min(s.monitoring_scrape_interval_s, 10),
        rule_files=list(rule_files),
        jobs=[{"name": name, "targets": found} for name, found in jobs.items()],
    )


def prometheus_alerts(s: Settings) -> str:
    """The alert rules (templates/prometheus-alerts.yml.j2) from the monitoring host's settings ``s``."""
    return render(
        "prometheus-alerts.yml.j2",
        s=s,
        model_name=s.model_name,
        backend=paths.HAPROXY_BACKEND,
        window=f"{s.monitoring_rate_window_s}s",
        ignored_fstypes="|".join(IGNORED_FSTYPES),
    )


def prometheus_defaults(s: Settings, config_file: str = paths.PROMETHEUS_CONFIG, data_dir: str = paths.PROMETHEUS_DATA_DIR) -> str:
    """/etc/default/prometheus (templates/prometheus.default.j2): config, storage, retention, listen address."""
    for value in (config_file, data_dir):
        if not value or any(c.isspace() or c in "\"'\\$" for c in value):
            raise RenderError(f"prometheus_defaults: {value!r} cannot be one word of systemd's $ARGS")
    listen = f"{url_host(s.monitoring_listen_address)}:{s.monitoring_port}"
    return render("prometheus.default.j2", s=s, config_file=config_file, data_dir=data_dir, listen=listen)


def node_exporter_defaults(s: Settings) -> str:
    """/etc/default/prometheus-node-exporter (templates/prometheus-node-exporter.default.j2): the listen address."""
    listen = f"{url_host(s.monitoring_exporter_address)}:{s.monitoring_node_exporter_port}"
    return render("prometheus-node-exporter.default.j2", listen=listen)


def prometheus_url(s: Settings) -> str:
    """Where the monitoring host ``s`` serves Prometheus's API (its inventory name when it listens everywhere)."""
    address = s.monitoring_listen_address
    host = s.host if ipaddress.ip_address(address).is_unspecified else url_host(address)
    return f"http://{host}:{s.monitoring_port}"


def grafana_datasource(s: Settings) -> str:
    """Grafana's datasource provisioning file (templates/grafana/datasource.yml.j2) for the monitoring host ``s``."""
    return render(
        "grafana/datasource.yml.j2", url=prometheus_url(s), uid=GRAFANA_DATASOURCE_UID, scrape_interval_s=s.monitoring_scrape_interval_s
    )


def grafana_dashboards_provider(dashboards_dir: str = paths.GRAFANA_DASHBOARDS_DIR) -> str:
    """Grafana's dashboard provider file (templates/grafana/dashboards.yml.j2): the dashboard JSON is read from ``dashboards_dir``."""
    return render("grafana/dashboards.yml.j2", dashboards_dir=dashboards_dir)


def grafana_dashboard() -> str:
    """The fleet's Grafana dashboard (templates/grafana/triton-embeddinggemma.json), as it is: checked as JSON."""
    text = (TEMPLATES_DIR / GRAFANA_DASHBOARD).read_text(encoding="utf-8")
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise RenderError(f"template {GRAFANA_DASHBOARD} is not JSON: {error}") from None
    return text


DCGM_EXPORTER_PROJECT = "dcgm-exporter"  # compose project and container name on GPU hosts


def dcgm_exporter_compose(s: Settings, image: str | None = None) -> str:
    """The dcgm-exporter compose file (templates/dcgm-exporter.compose.yml.j2) of a GPU host ``s``;
    ``image``: the reference it pulls dcgm-exporter by (default ``monitoring_dcgm_exporter_image``)."""
    return render(
        "dcgm-exporter.compose.yml.j2",
        s=s,
        image=s.monitoring_dcgm_exporter_image if image is None else image,
        project=DCGM_EXPORTER_PROJECT,
        listen_host=url_host(s.monitoring_exporter_address),
    )


# -- the registry cache (hosts of the group registry_cache) --


def registry_cache_config(s: Settings, username: str, password: str, tls_pem_path: str) -> str:
    """The cache host's /etc/docker/registry/config.yml (templates/registry-cache.yml.j2) for its
    settings ``s``: proxy mode for ``registry_cache_upstream_url`` with the upstream's ``username`` /
    ``password`` ('' for an anonymous upstream), TLS from ``tls_pem_path`` when ``registry_cache_tls``.
    Checked before it is returned (deploys/lib/registry_cache.py:check_config); the text holds the
    password, so it only ever reaches the host on stdin."""
    if s.registry_cache_tls and not tls_pem_path:
        raise RenderError(f"host {s.host}: registry_cache_tls is on but no certificate path was given to the registry cache config")
    text = render(
        "registry-cache.yml.j2",
        addr=f"{url_host(s.registry_cache_listen_address)}:{s.registry_cache_port}",
        storage_dir=s.registry_cache_storage_dir,
        tls_pem_path=tls_pem_path if s.registry_cache_tls else "",
        upstream_url=registry_cache.upstream_url(s),
        username=username,
        password=password,
    )
    registry_cache.check_config(text, source=f"host {s.host}: templates/registry-cache.yml.j2")
    return text
