"""Fleet status: one table of every host (read-only: 0 operations).

    pyinfra inventories/prod.py deploys/status.py -y

Triton hosts: the live release and READY; front doors: each host's state in their pool (UP, DOWN,
DRAIN, MAINT); with a monitoring host: requests/s, p95 latency and GPU memory per host from
Prometheus, and the alerts firing and the active silences per host from Alertmanager (both queried
on the monitoring host). deploys/core/fleet_status.py builds the table.
"""

from pyinfra import host, state

from deploys.core import connection, fleet_status, paths, roles, settings
from deploys.monitoring import render as monitoring_render
from deploys.triton.triton_service import read_state
from facts.alertmanager import AlertmanagerState
from facts.disk import DirectoryBytes
from facts.haproxy import HaproxyServers
from facts.prometheus import PrometheusQueries

connection.install(state)
settings.validate_fleet(state)

s = settings.load(host)
kind = roles.role(host)  # deploys/core/roles.py
if kind == "front_door":
    servers = host.get_fact(HaproxyServers, socket=paths.HAPROXY_ADMIN_SOCKET, backend=paths.HAPROXY_BACKEND)
    fleet_status.record(state, host.name, kind, {"pool": fleet_status.pool_states(servers)})
elif kind == "monitoring":
    answers = host.get_fact(PrometheusQueries, url=monitoring_render.prometheus_url(s), queries=tuple(fleet_status.QUERIES.values()))
    figures = {key: answers[i] if i < len(answers) else {} for i, key in enumerate(fleet_status.QUERIES)}
    alerting = host.get_fact(AlertmanagerState, url=monitoring_render.alertmanager_url(s))
    fleet_status.record(state, host.name, kind, {"figures": figures if answers else None, "alerting": alerting})
elif kind == "registry_cache":
    fleet_status.record(state, host.name, kind, {"used_bytes": host.get_fact(DirectoryBytes, path=s.registry_cache_storage_dir)})
else:
    fleet_status.record(state, host.name, kind, read_state(s))
