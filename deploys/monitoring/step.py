"""Monitoring step (hosts of the inventory group ``monitoring``): Prometheus from the distribution's
apt, its scrape config generated from the inventory (deploys/monitoring/logic.py) and the alert rules
from templates/; both checked with promtool on the host before they replace the live files, then a
reload (SIGHUP: no restart, no lost data). Its command-line flags (/etc/default/prometheus: listen
address, retention) change only with a restart. The Grafana provisioning files and the dashboard
are left in GRAFANA_EXPORT_DIR for a Grafana the user runs.
"""

from __future__ import annotations

import hashlib
from io import StringIO

from pyinfra import host, state
from pyinfra.api import deploy
from pyinfra.facts.files import Sha256File
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from deploys.core import paths, settings
from deploys.monitoring import logic as monitoring
from deploys.monitoring import render as monitoring_render


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@deploy("Monitoring")
def monitoring_step() -> None:
    """Prometheus installed, scraping every host of the inventory, rules loaded; reloaded only on change."""
    s = settings.load(host)
    targets = monitoring.scrape_targets(s, state.inventory)  # one line if an endpoint is out of reach
    config = monitoring_render.prometheus_config(s, targets)
    rules = monitoring_render.prometheus_alerts(s)
    defaults = monitoring_render.prometheus_defaults(s)

    # The flags first: the package's first start already listens where it should (dpkg keeps this file).
    args = files.put(
        name=f"Prometheus flags ({paths.PROMETHEUS_DEFAULTS})", src=StringIO(defaults), dest=paths.PROMETHEUS_DEFAULTS, mode="644"
    )
    apt.packages(name="Install Prometheus and curl", packages=["prometheus", "curl"], no_recommends=True, update=True, cache_time=3600)
    changed = []
    live = (host.get_fact(Sha256File, path=paths.PROMETHEUS_CONFIG), host.get_fact(Sha256File, path=paths.PROMETHEUS_RULES))
    if live != (_digest(config), _digest(rules)):
        config_candidate, rules_candidate = f"{paths.PROMETHEUS_CONFIG}.candidate", f"{paths.PROMETHEUS_RULES}.candidate"
        files.directory(name="Prometheus rules directory", path=paths.PROMETHEUS_RULES.rsplit("/", 1)[0], mode="755")
        files.put(name="Prometheus config candidate", src=StringIO(config), dest=config_candidate, mode="644")
        files.put(name="Alert rules candidate", src=StringIO(rules), dest=rules_candidate, mode="644")
        changed.append(
            server.shell(
                name="Check the candidates with promtool, then make them live",
                commands=[
                    monitoring.install_config_command(config_candidate, rules_candidate, paths.PROMETHEUS_CONFIG, paths.PROMETHEUS_RULES)
                ],
            )
        )
    systemd.service(name="Prometheus enabled and running", service="prometheus", running=True, enabled=True)
    systemd.service(name="Restart Prometheus (its flags changed)", service="prometheus", restarted=True, _if=args.did_change)
    # Config or rules alone: SIGHUP (Debian's ExecReload) re-reads them; the TSDB stays open.
    systemd.service(name="Reload Prometheus (config or rules changed)", service="prometheus", reloaded=True, _if=any_changed(*changed))
    # For a Grafana the user runs: copy these into its provisioning/ (README: Monitoring).
    files.directory(name=f"Directory {paths.GRAFANA_EXPORT_DIR}", path=paths.GRAFANA_EXPORT_DIR, mode="755")
    for name, text in (
        ("datasource.yml", monitoring_render.grafana_datasource(s)),
        ("dashboards.yml", monitoring_render.grafana_dashboards_provider()),
        ("triton-embeddinggemma.json", monitoring_render.grafana_dashboard()),
    ):
        files.put(name=f"Grafana file {name}", src=StringIO(text), dest=f"{paths.GRAFANA_EXPORT_DIR}/{name}", mode="644")
    server.shell(
        name="Prometheus ready with the new config",
        commands=[monitoring.wait_ready_command(s)],
        _if=any_changed(args, *changed),
    )
