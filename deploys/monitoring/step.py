"""Monitoring step (hosts of the inventory group ``monitoring``): Prometheus and Alertmanager from the distribution's
apt (Alertmanager's receivers from the vault, deploys/monitoring/alerting.py), its scrape config generated from the inventory (deploys/monitoring/logic.py) and the alert rules
from templates/; both checked with promtool on the host before they replace the live files, then a
reload (SIGHUP: no restart, no lost data). Its command-line flags (/etc/default/prometheus: listen
address, retention) change only with a restart. The Grafana provisioning files and the dashboard
are left in GRAFANA_EXPORT_DIR for a Grafana the user runs.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import deploy
from pyinfra.operations import apt, files, systemd

from deploys.core import operations, paths, settings, vault
from deploys.monitoring import alerting
from deploys.monitoring import logic as monitoring
from deploys.monitoring import render as monitoring_render


@deploy("Monitoring")
def monitoring_step() -> None:
    """Prometheus installed, scraping every host of the inventory, rules loaded; reloaded only on change."""
    s = settings.load(host)
    targets = monitoring.scrape_targets(s, state.inventory)  # one line if an endpoint is out of reach
    config = monitoring_render.prometheus_config(s, targets)
    rules = monitoring_render.prometheus_alerts(s)
    defaults = monitoring_render.prometheus_defaults(s)
    # The receivers from the vault, checked before anything runs (one line naming the key otherwise).
    secrets = vault.load(s.secrets_file, file_only=True)
    receivers = alerting.receivers(secrets.path, secrets.alertmanager)
    am_config = monitoring_render.alertmanager_config(s, receivers)
    am_defaults = monitoring_render.alertmanager_defaults(s)
    if not receivers.receivers:
        logger.warning(
            f"{host.print_prefix}no alertmanager.receivers in the vault {secrets.path}: alerts reach no one (docs/monitoring.md)"
        )

    # The flags first: the package's first start already listens where it should (dpkg keeps this file).
    args = files.put(
        name=f"Prometheus flags ({paths.PROMETHEUS_DEFAULTS})", src=StringIO(defaults), dest=paths.PROMETHEUS_DEFAULTS, mode="644"
    )
    am_args = files.put(
        name=f"Alertmanager flags ({paths.ALERTMANAGER_DEFAULTS})",
        src=StringIO(am_defaults),
        dest=paths.ALERTMANAGER_DEFAULTS,
        mode="644",
    )
    apt.packages(
        name="Install Prometheus, Alertmanager and curl",
        packages=["prometheus", "prometheus-alertmanager", "curl"],
        no_recommends=True,
        update=True,
        cache_time=3600,
    )
    # Alertmanager's config holds the receivers' secrets: through stdin, 0600 for its service user;
    # amtool checks the candidate, then a reload (SIGHUP) confirmed by Alertmanager's own metrics.
    operations.validated_config(
        name="Check the Alertmanager config with amtool, then make it live",
        path=paths.ALERTMANAGER_CONFIG,
        content=am_config,
        secret=True,
        mode="600",
        user=paths.ALERTMANAGER_USER,
        group=paths.ALERTMANAGER_USER,
        check=monitoring.alertmanager_check_command(operations.candidate_path(paths.ALERTMANAGER_CONFIG)),
        reload="systemctl reload-or-restart prometheus-alertmanager",
        confirm=monitoring.alertmanager_ready_poll(s),
    )
    systemd.service(name="Alertmanager enabled and running", service="prometheus-alertmanager", running=True, enabled=True)
    systemd.service(
        name="Restart Alertmanager (its flags changed)", service="prometheus-alertmanager", restarted=True, _if=am_args.did_change
    )
    operations.wait_ready(name="Alertmanager ready with the new flags", **monitoring.alertmanager_ready_args(s), _if=am_args.did_change)
    config_file, rules_file = paths.PROMETHEUS_CONFIG, paths.PROMETHEUS_RULES
    # The candidates checked with promtool (rules first: the config names them); live, then a reload
    # (SIGHUP, Debian's ExecReload: the TSDB stays open) confirmed by Prometheus itself (the full
    # config check on the live files, then ready with its last reload successful); else the old files back.
    operations.validated_config(
        name="Check the candidates with promtool, then make them live",
        path=config_file,
        content=config,
        companions={rules_file: rules},
        check=monitoring.check_command(operations.candidate_path(config_file), operations.candidate_path(rules_file)),
        reload="systemctl reload-or-restart prometheus",
        confirm=f"promtool check config {shlex.quote(config_file)} && {monitoring.ready_poll(s)}",
    )
    systemd.service(name="Prometheus enabled and running", service="prometheus", running=True, enabled=True)
    systemd.service(name="Restart Prometheus (its flags changed)", service="prometheus", restarted=True, _if=args.did_change)
    # For a Grafana the user runs: copy these into its provisioning/ (README: Monitoring).
    files.directory(name=f"Directory {paths.GRAFANA_EXPORT_DIR}", path=paths.GRAFANA_EXPORT_DIR, mode="755")
    for name, text in (
        ("datasource.yml", monitoring_render.grafana_datasource(s)),
        ("dashboards.yml", monitoring_render.grafana_dashboards_provider()),
        ("triton-embeddinggemma.json", monitoring_render.grafana_dashboard()),
    ):
        files.put(name=f"Grafana file {name}", src=StringIO(text), dest=f"{paths.GRAFANA_EXPORT_DIR}/{name}", mode="644")
    operations.wait_ready(name="Prometheus ready with the new flags", **monitoring.ready_args(s), _if=args.did_change)
