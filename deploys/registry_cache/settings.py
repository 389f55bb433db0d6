"""The registry cache's settings (hosts of the group registry_cache; Triton hosts read the cache host's values). Each setting is declared once, here (deploys/core/tunables.py)."""

from __future__ import annotations

from deploys.core.tunables import Setting, _bool, _int, _ip_or_empty, _platforms, _text


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class RegistryCacheSettings:
    # -- registry cache (hosts of the group registry_cache; Triton hosts read the cache host's values) --
    registry_cache_listen_address = Setting("", "Address the registry cache listens on (cache hosts): a private address the Triton hosts reach; required there, no default (never 0.0.0.0 or loopback by accident).", "str", _ip_or_empty)
    registry_cache_port = Setting(5000, "Port of the registry cache.", "int", _int(1, 65535))
    registry_cache_hostname = Setting("", "Name the Triton hosts pull from (the name the cache's TLS certificate carries); empty: registry_cache_listen_address.", "str", _text(r"([A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)*)?", "a DNS name or empty"))
    registry_cache_tls = Setting(False, "Serve the cache over HTTPS: certificate and key from the vault's registry_cache_tls (cert, key, optional ca the Triton hosts' Docker trusts).", "bool", _bool)
    registry_cache_insecure = Setting(False, "Serve the cache over plain HTTP, for private networks only: the Triton hosts list it in daemon.json insecure-registries. A cache host needs registry_cache_tls or this.", "bool", _bool)
    registry_cache_upstream_url = Setting("", "URL the cache proxies (the cache host's registry_host, whose credential from the vault it uses); empty: https://{registry_host}. http:// needs allow_plain_http.", "str", _text(r"(https?://[A-Za-z0-9.\-]+(:[0-9]+)?)?", "an http(s)://host[:port] URL or empty"))
    registry_cache_storage_dir = Setting("/var/lib/docker-registry", "Where the cache keeps what it pulled (Debian's default; owned by the docker-registry user).", "str", _text(r"/[A-Za-z0-9_./\-]+", "an absolute path"))
    registry_cache_warm_platforms = Setting(["linux/amd64"], "Platforms of the Triton hosts' images the cache fetches once, before their pulls (the first step of a run); []: no warming (concurrent cold pulls then each cost an upstream fetch).", "list[str]", _platforms)
    registry_cache_max_gb = Setting(500, "Disk (GiB) the cache may use: the registry has no size limit of its own (it drops what it cached 7 days after fetching it); every run warns when its storage holds more.", "int", _int(1, 1_000_000))
# fmt: on
