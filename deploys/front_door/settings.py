"""The front door's settings (hosts of the group front_door: HAProxy). Each setting is declared once, here (deploys/core/tunables.py)."""

from __future__ import annotations

from deploys.core.tunables import Setting, _bool, _int, _ip


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class FrontDoorSettings:
    # -- front door (hosts of the inventory group front_door: HAProxy in front of every host's gateway) --
    front_door_listen_address = Setting("0.0.0.0", "Address the front door (HAProxy) listens on for applications.", "str", _ip)
    front_door_port = Setting(8080, "Port of the front door's embeddings API (the gateways' API, balanced).", "int", _int(1, 65535))
    front_door_tls = Setting(False, "Serve HTTPS with HTTP/2 (ALPN h2, http/1.1); certificate and key from the vault's front_door_tls (cert, key).", "bool", _bool)
    front_door_maxconn = Setting(4096, "Most client connections HAProxy holds at once (it needs about 2 file descriptors each: raise LimitNOFILE with it).", "int", _int(1, 1_000_000))
    front_door_timeout_connect_s = Setting(2, "Seconds to connect to a gateway before trying another.", "int", _int(1, 60))
    front_door_timeout_client_s = Setting(60, "Seconds a client connection may stay idle.", "int", _int(1, 3600))
    front_door_timeout_server_s = Setting(60, "Seconds to wait for a gateway's answer (above gateway_triton_timeout_s).", "int", _int(1, 3600))
    front_door_check_interval_ms = Setting(500, "Health check interval: GET /ready on every gateway's health port (gateway_health_port).", "int", _int(100, 60_000))
    front_door_check_timeout_ms = Setting(1000, "A health check's answer may take this long (its connect: at most the interval) before it counts as failed.", "int", _int(100, 60_000))
    front_door_server_maxconn = Setting(8, "Requests one gateway gets at once from the front door; the rest wait in the front door's queue.", "int", _int(1, 100_000))
    front_door_queue_timeout_ms = Setting(1000, "Longest wait in the front door's queue for a gateway slot; then a 429 with Retry-After.", "int", _int(1, 600_000))
    front_door_max_queue = Setting(64, "Requests that may wait in the front door's queue; past it a 429 with Retry-After at once (0: no bound but the queue timeout).", "int", _int(0, 1_000_000))
    front_door_retry_after_s = Setting(1, "Retry-After (seconds) of the front door's 429s when every gateway is busy.", "int", _int(1, 3600))
    front_door_rise = Setting(2, "Consecutive good checks before a gateway (re)enters the pool.", "int", _int(1, 100))
    front_door_fall = Setting(2, "Consecutive failed checks before a gateway leaves the pool (interval × fall: out within that).", "int", _int(1, 100))
    front_door_retries = Setting(3, "Retries of a request on a connection failure, an empty answer or a gateway's 503 (on another gateway); never on a timeout or a 429.", "int", _int(0, 10))
    front_door_rate_limit_per_s = Setting(0, "Requests per second allowed per client address (averaged over 10 s; past it: 429); 0: no limit.", "int", _int(0, 1_000_000))
    front_door_buffer_bytes = Setting(262_144, "HAProxy's buffer (tune.bufsize): a request body up to this size is retried on another gateway when one fails; memory is about 2 buffers per active request.", "int", _int(16_384, 16_777_216))
    front_door_metrics_address = Setting("127.0.0.1", "Address of HAProxy's Prometheus endpoint (/metrics): a private address for Prometheus, never 0.0.0.0 by default.", "str", _ip)
    front_door_metrics_port = Setting(8405, "Port of HAProxy's Prometheus endpoint.", "int", _int(1, 65535))
# fmt: on
