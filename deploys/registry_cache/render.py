"""The registry cache's rendering: docker-registry's config.yml (checked on the controller).

Rendered from templates/registry_cache/ by deploys/core/render.py's ``render``; pure functions of validated settings."""

from __future__ import annotations

from deploys.core.render import RenderError, render, url_host
from deploys.core.settings import Settings
from deploys.registry_cache import logic as registry_cache


def registry_cache_config(s: Settings, username: str, password: str, tls_pem_path: str) -> str:
    """The cache host's /etc/docker/registry/config.yml (templates/registry_cache/registry-cache.yml.j2) for its
    settings ``s``: proxy mode for ``registry_cache_upstream_url`` with the upstream's ``username`` /
    ``password`` ('' for an anonymous upstream), TLS from ``tls_pem_path`` when ``registry_cache_tls``.
    Checked before it is returned (deploys/registry_cache/logic.py:check_config); the text holds the
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
    registry_cache.check_config(text, source=f"host {s.host}: templates/registry_cache/registry-cache.yml.j2")
    return text
