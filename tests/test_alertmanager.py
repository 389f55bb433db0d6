"""Alertmanager on the monitoring host (issue 28): the receivers from the vault checked (one line
naming the key, never its value), the rendered config judged by Alertmanager's own ``amtool
check-config``, and the real Alertmanager (Debian's prometheus-alertmanager) run on the rendered
flags and config here: it notifies a webhook sink on loopback once per alert and host (grouped),
HostDown inhibits that host's service alerts, a silence keeps an alert from the sink.
"""

from __future__ import annotations

import datetime
import json
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from deploys.core import fleet_status, rolling, settings, silences
from deploys.core.rolling import RollPlan
from deploys.core.vault import VaultError
from deploys.monitoring import alerting
from deploys.monitoring import logic as monitoring
from deploys.monitoring import render as monitoring_render
from facts.alertmanager import AlertmanagerState
from tests.support.net import free_port
from tests.support.webhook_sink import WebhookSink

AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool is not installed (tests/system_deps.sh installs prometheus-alertmanager)")

TOKEN = "whk-CANARY-" + "x9" * 10
SLACK = "SLACK-CANARY-" + "k3" * 10
SMTP_PASSWORD = "smtp-CANARY-" + "p7" * 10
CANARIES = (TOKEN, SLACK, SMTP_PASSWORD)
VAULT = "inventories/group_data/secrets.sops.yaml"

RECEIVERS: dict[str, Any] = {
    "receivers": [
        {"name": "pager", "webhook_url": f"https://pager.example.com/hook?token={TOKEN}", "severities": ["critical"]},
        {"name": "chat", "slack_webhook_url": f"https://hooks.slack.com/services/{SLACK}", "slack_channel": "#alerts"},
        {"name": "oncall", "email_to": "oncall@example.com", "severities": ["warning"]},
    ],
    "smtp": {"smarthost": "smtp.example.com:587", "from": "alerts@example.com", "username": "alerts", "password": SMTP_PASSWORD},
}


def mon(**data: Any) -> settings.Settings:
    return settings.parse("mon1", data)


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(AMTOOL), *args], capture_output=True, text=True, timeout=60)


@needs_amtool
@pytest.mark.parametrize(
    "vaulted",
    [
        RECEIVERS,
        None,
        {"receivers": [{"name": "m", "email_to": "a@example.com"}], "smtp": {"smarthost": "[fd00::1]:25", "from": "a@b.example"}},
    ],
    ids=["every-kind", "no-receivers", "smtp-without-auth"],
)
def test_amtool_accepts_the_rendered_config(tmp_path: Path, vaulted: Any) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(monitoring_render.alertmanager_config(mon(), alerting.receivers(VAULT, vaulted)))
    checked = amtool("check-config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "1 inhibit rules" in checked.stdout
    parsed = yaml.safe_load(config.read_text())
    route = parsed["route"]
    assert route["group_by"] == ["alertname", "instance"] and route["receiver"] == "nobody"
    names = [r["name"] for r in (vaulted or {}).get("receivers", [])]
    assert [r["receiver"] for r in route.get("routes") or []] == names
    assert [r["name"] for r in parsed["receivers"]] == ["nobody", *names]
    [inhibit] = parsed["inhibit_rules"]
    assert inhibit["source_matchers"] == ['alertname="HostDown"'] and inhibit["equal"] == ["instance"]
    if vaulted is RECEIVERS:
        assert [r["matchers"] for r in route["routes"]] == [
            ['severity=~"critical"'],
            ['severity=~"critical|warning"'],
            ['severity=~"warning"'],
        ]
        assert parsed["receivers"][1]["webhook_configs"][0]["url"].endswith(TOKEN)
        assert parsed["global"]["smtp_auth_password"] == SMTP_PASSWORD


@needs_amtool
@pytest.mark.parametrize(
    "old, new",
    [('receiver: "nobody"', 'receiver: "nobody-else"'), ("group_wait: 30s", "group_wait: thirty")],
    ids=["unknown-receiver", "bad-duration"],
)
def test_the_on_host_check_refuses_a_broken_config_in_one_line_without_its_secrets(tmp_path: Path, old: str, new: str) -> None:
    text = monitoring_render.alertmanager_config(mon(), alerting.receivers(VAULT, RECEIVERS))
    assert old in text
    candidate = tmp_path / "alertmanager.yml.candidate"
    candidate.write_text(text.replace(old, new, 1))
    proc = subprocess.run(["sh", "-c", monitoring.alertmanager_check_command(str(candidate))], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == "" and proc.stderr.strip().splitlines() == [
        "amtool check-config refused the Alertmanager config (its output is withheld: the file holds the receivers' secrets)"
    ]
    candidate.write_text(text)  # the same command passes the unbroken file: the check is what failed above
    assert subprocess.run(["sh", "-c", monitoring.alertmanager_check_command(str(candidate))], timeout=60).returncode == 0


def _receiver(**entry: Any) -> dict[str, Any]:
    return {"receivers": [{"name": "r", **entry}]}


@pytest.mark.parametrize(
    "vaulted, message",
    [
        ([], "alertmanager may hold receivers and smtp only"),
        ({"receivers": [], "pagerduty": {}}, "alertmanager may hold receivers and smtp only"),
        ({"receivers": {"name": "r"}}, "alertmanager.receivers must be a list"),
        (
            _receiver(webhook_url=f"http://pager.example.com/?token={TOKEN}"),
            "alertmanager.receivers[0].webhook_url must be an https:// URL",
        ),
        (_receiver(webhook_url=f"ftp://x/{TOKEN}"), "alertmanager.receivers[0].webhook_url must be an https:// URL"),
        (_receiver(webhook_url=f"https://x/ {TOKEN}"), "alertmanager.receivers[0].webhook_url must be a URL without spaces"),
        (_receiver(slack_webhook_url=f"https:///{SLACK}"), "alertmanager.receivers[0].slack_webhook_url must be an https:// URL"),
        (_receiver(), "alertmanager.receivers[0] (r) needs exactly one of webhook_url, slack_webhook_url, email_to"),
        (_receiver(webhook_url="https://a.example/", email_to="a@b.example"), "needs exactly one of"),
        (_receiver(email_to="a@b.example"), "alertmanager.receivers[0] (r) sends email: add alertmanager.smtp"),
        (_receiver(email_to="not-an-address", **{}), "sends email"),
        (
            {"receivers": [{"name": "m", "email_to": "nope"}], "smtp": {"smarthost": "s:25", "from": "a@b.example"}},
            "alertmanager.receivers[0].email_to must be an email address",
        ),
        (
            _receiver(webhook_url="https://a.example/", severities=["page"]),
            "alertmanager.receivers[0].severities must be a list of critical and/or warning",
        ),
        (_receiver(webhook_url="https://a.example/", severities=[]), "severities must be a list"),
        (_receiver(webhook_url="https://a.example/", token="x"), "alertmanager.receivers[0] has unknown key 'token'"),
        (_receiver(webhook_url="https://a.example/", slack_channel="#x"), "slack_channel goes with slack_webhook_url"),
        (
            {"receivers": [{"name": "bad name", "webhook_url": "https://a.example/"}]},
            "alertmanager.receivers[0].name must be a name of letters",
        ),
        ({"receivers": [{"name": "nobody", "webhook_url": "https://a.example/"}]}, "'nobody' is reserved"),
        ({"receivers": [{"name": "a", "webhook_url": "https://a.example/"}] * 2}, "alertmanager.receivers[1].name 'a' is used twice"),
        ({"smtp": {"smarthost": "smtp.example.com", "from": "a@b.example"}}, "alertmanager.smtp.smarthost must be host:port"),
        ({"smtp": {"smarthost": "s:25", "from": "a@b.example", "username": "u"}}, "username and password together, or neither"),
        ({"smtp": {"smarthost": "s:25", "from": "a@b.example", "username": "u", "password": ""}}, "must be non-empty strings"),
        ({"smtp": {"smarthost": "s:25"}}, "alertmanager.smtp needs smarthost and from"),
        ({"smtp": {"smarthost": "s:25", "from": "a@b.example", "require_tls": "yes"}}, "require_tls must be true or false"),
    ],
)
def test_bad_receivers_are_one_line_naming_the_key_never_the_secret(vaulted: Any, message: str) -> None:
    with pytest.raises(VaultError) as raised:
        alerting.receivers(VAULT, vaulted)
    line = str(raised.value)
    assert message in line and line.startswith(f"vault {VAULT}: ") and "\n" not in line
    assert "sops edit" in line
    assert not any(canary in line for canary in CANARIES)


def test_good_receivers_and_loopback_http() -> None:
    found = alerting.receivers(VAULT, {"receivers": [{"name": "sink", "webhook_url": "http://127.0.0.1:9095/hook?token=x"}]})
    [r] = found.receivers
    assert (r.name, r.severities, r.webhook_url) == ("sink", ("critical", "warning"), "http://127.0.0.1:9095/hook?token=x")
    assert "token" not in repr(found)
    assert alerting.receivers(VAULT, None) == alerting.Receivers()


def test_prometheus_sends_its_alerts_to_the_alertmanager() -> None:
    def target(**data: Any) -> list[str]:
        config = yaml.safe_load(monitoring_render.prometheus_config(mon(**data), []))
        [am] = config["alerting"]["alertmanagers"]
        return am["static_configs"][0]["targets"]

    assert target() == ["127.0.0.1:9093"]
    assert target(monitoring_alertmanager_listen_address="10.0.0.9", monitoring_alertmanager_port=9193) == ["10.0.0.9:9193"]
    assert target(monitoring_alertmanager_listen_address="0.0.0.0") == ["127.0.0.1:9093"]
    assert target(monitoring_alertmanager_listen_address="fd00::9") == ["[fd00::9]:9093"]


def test_defaults_file_listens_where_set_and_turns_clustering_off() -> None:
    text = monitoring_render.alertmanager_defaults(mon(monitoring_alertmanager_listen_address="10.0.0.9"))
    [args] = [line for line in text.splitlines() if line.startswith("ARGS=")]
    assert shlex.split(args[len("ARGS=") :]) == [
        "--config.file=/etc/prometheus/alertmanager.yml --storage.path=/var/lib/prometheus/alertmanager "
        "--web.listen-address=10.0.0.9:9093 --cluster.listen-address="
    ]


# -- the real Alertmanager on the rendered files --


def _args(defaults: str) -> list[str]:
    [line] = [line for line in defaults.splitlines() if line.startswith("ARGS=")]
    return shlex.split(line[len("ARGS=") :])[0].split()  # systemd splits $ARGS on spaces


@pytest.fixture()
def running(tmp_path: Path) -> Iterator[tuple[str, WebhookSink, dict[str, Any]]]:
    """Alertmanager started with its rendered flags and config (a webhook receiver to a sink on loopback)."""
    if AMTOOL is None or not Path(ALERTMANAGER).exists():
        pytest.skip("prometheus-alertmanager is not installed (tests/system_deps.sh)")
    with WebhookSink() as sink:
        data = {"monitoring_alertmanager_port": free_port(), "monitoring_alert_group_wait_s": 1, "monitoring_alert_group_interval_s": 1}
        s = mon(**data)
        vaulted = {"receivers": [{"name": "sink", "webhook_url": sink.url(f"/hook?token={TOKEN}")}]}
        config = tmp_path / "alertmanager.yml"
        config.write_text(monitoring_render.alertmanager_config(s, alerting.receivers(VAULT, vaulted)))
        defaults = monitoring_render.alertmanager_defaults(s, config_file=str(config), data_dir=str(tmp_path / "data"))
        proc = subprocess.Popen([ALERTMANAGER, *_args(defaults)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = monitoring_render.alertmanager_url(s)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=2)
                    break
                except OSError:
                    assert time.monotonic() < deadline and proc.poll() is None, "Alertmanager did not come ready"
                    time.sleep(0.2)
            yield url, sink, data
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def _fire(url: str, *labels: str) -> None:
    done = amtool("--alertmanager.url", url, "alert", "add", *labels, "--annotation=summary=test")
    assert done.returncode == 0, done.stderr


def test_alertmanager_notifies_grouped_inhibits_and_honours_silences(running: tuple[str, WebhookSink, dict[str, Any]]) -> None:
    url, sink, _ = running
    # Two alerts of one name on one host: one group, one notification.
    _fire(url, "alertname=TritonModelNotReady", "instance=host1", "severity=critical", "job=triton")
    _fire(url, "alertname=TritonModelNotReady", "instance=host1", "severity=critical", "job=other")
    assert sink.wait_for(("firing", "TritonModelNotReady", "host1"), 20)
    time.sleep(3)
    groups = [n["body"]["groupLabels"] for n in sink.notifications()]
    assert groups and all(g == {"alertname": "TritonModelNotReady", "instance": "host1"} for g in groups)
    assert len(sink.notifications()[0]["body"]["alerts"]) == 2 and sink.notifications()[0]["path"].endswith(TOKEN)

    # host2 is down: its HostDown pages, its service alert is inhibited.
    _fire(url, "alertname=HostDown", "instance=host2", "severity=critical")
    assert sink.wait_for(("firing", "HostDown", "host2"), 20)
    _fire(url, "alertname=GatewayErrorRatioHigh", "instance=host2", "severity=warning")
    # host3 is silenced (what a drain does: deploys/core/silences.py), host4 is not: host4's reaches the sink.
    added = amtool("--alertmanager.url", url, "silence", "add", "instance=host3", "--duration=5m", "--comment=test", "--author=test")
    assert added.returncode == 0 and added.stdout.strip(), added.stderr
    _fire(url, "alertname=GatewayErrorRatioHigh", "instance=host3", "severity=warning")
    _fire(url, "alertname=GatewayErrorRatioHigh", "instance=host4", "severity=warning")
    assert sink.wait_for(("firing", "GatewayErrorRatioHigh", "host4"), 20)
    time.sleep(3)
    instances = {(name, instance) for _, name, instance in sink.alerts()}
    assert ("GatewayErrorRatioHigh", "host2") not in instances, "HostDown must inhibit host2's service alerts"
    assert ("GatewayErrorRatioHigh", "host3") not in instances, "the silence must keep host3's alert from the sink"


# -- silences for planned work (deploys/core/silences.py, what rolling.py's drain and restore call) --


def _local_shell(target: Any, command: str, timeout_s: int) -> tuple[bool, list[str], list[str]]:
    """rolling.py's _shell, here: the monitoring host is this machine."""
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout_s)
    return proc.returncode == 0, proc.stdout.splitlines(), proc.stderr.splitlines()


def _inventory(data: dict[str, Any]) -> list[Any]:
    mon1 = SimpleNamespace(name="mon1", groups=["monitoring"], data=SimpleNamespace(dict=lambda: data), state=None)
    host1 = SimpleNamespace(name="host1", groups=[], data=SimpleNamespace(dict=dict), state=None)
    return [host1, mon1]


def _ours(url: str) -> list[dict[str, Any]]:
    found = json.loads(amtool("--alertmanager.url", url, "silence", "query", "-o", "json").stdout or "[]")
    return [x for x in found if x["createdBy"] == silences.AUTHOR]


def test_a_drain_silences_the_host_its_put_back_expires_and_a_failure_pages(running: tuple[str, WebhookSink, dict[str, Any]]) -> None:
    url, sink, data = running
    warnings: list[str] = []
    silencer = silences.Silencer(_inventory({**data, "monitoring_roll_failed_alert_s": 60}), _local_shell, warnings.append)
    ids = silencer.silence("host1", "host1", 120, "Triton release abc (drained behind the front door)")
    assert len(ids) == 2 and not warnings
    [host_silence, backend_silence] = sorted(_ours(url), key=lambda x: len(x["matchers"]))
    assert [(m["name"], m["value"]) for m in host_silence["matchers"]] == [("instance", "host1")]
    assert {(m["name"], m["value"]) for m in backend_silence["matchers"]} == {
        ("alertname", "FrontDoorBackend(Down|Drained)"),
        ("server", "host1"),
    }
    ends = datetime.datetime.fromisoformat(host_silence["endsAt"].replace("Z", "+00:00"))
    assert 100 < (ends - datetime.datetime.now(datetime.UTC)).total_seconds() <= 121  # bounded by what the drain asked
    # A person's own silence of host1 is not this deploy's: the put back leaves it.
    human = amtool(
        "--alertmanager.url",
        url,
        "silence",
        "add",
        "instance=host1",
        "alertname=DiskNearlyFull",
        "--duration=1h",
        "--comment=disk",
        "--author=ops",
    )
    assert human.returncode == 0

    _fire(url, "alertname=TritonModelNotReady", "instance=host1", "severity=critical")
    _fire(url, "alertname=FrontDoorBackendDown", "instance=front1", "server=host1", "severity=warning")
    _fire(url, "alertname=FrontDoorBackendDrained", "instance=front1", "server=host1", "severity=warning")
    _fire(url, "alertname=TritonModelNotReady", "instance=host2", "severity=critical")  # not drained: pages
    assert sink.wait_for(("firing", "TritonModelNotReady", "host2"), 20)
    time.sleep(3)
    assert not [a for a in sink.alerts() if a[2] in ("host1", "front1")], "the drained host's alerts must stay silent"

    silencer.expire("host1")  # back in the pool: the silences end after a grace (an alert fired in them resolves first)
    grace = silences.grace_s(silencer.s)
    for left in _ours(url):
        ends = datetime.datetime.fromisoformat(left["endsAt"].replace("Z", "+00:00"))
        assert grace - 3 < (ends - datetime.datetime.now(datetime.UTC)).total_seconds() <= grace + 1
    assert len(_ours(url)) == 2 and not warnings
    silencer.expire("host1", at_once=True)  # a failed roll: at once
    assert _ours(url) == [] and not warnings
    still = json.loads(amtool("--alertmanager.url", url, "silence", "query", "-o", "json").stdout)
    assert [x["createdBy"] for x in still] == ["ops"]
    assert sink.wait_for(("firing", "TritonModelNotReady", "host1"), 20), "once expired, a still-firing alert pages"

    silencer.page("host1", "roll of host1 failed: Triton release abc: start failed: not READY after 60s")
    assert sink.wait_for(("firing", silences.ROLL_FAILED, "host1"), 20)
    [failed] = [a for n in sink.notifications() for a in n["body"]["alerts"] if a["labels"]["alertname"] == silences.ROLL_FAILED]
    assert failed["labels"]["severity"] == "critical" and "not READY" in failed["annotations"]["summary"]


def test_a_silence_ends_by_its_bound_when_nobody_puts_the_host_back(running: tuple[str, WebhookSink, dict[str, Any]]) -> None:
    url, sink, data = running
    silencer = silences.Silencer(_inventory(data), _local_shell, pytest.fail)
    assert len(silencer.silence("host3", "host3", 3, "a run killed mid-roll")) == 2
    _fire(url, "alertname=TritonModelNotReady", "instance=host3", "severity=critical")
    time.sleep(1.5)
    assert ("firing", "TritonModelNotReady", "host3") not in sink.alerts()
    assert sink.wait_for(("firing", "TritonModelNotReady", "host3"), 20), "the silence must end by its bound"


def test_no_alertmanager_is_one_warning_never_a_failed_roll() -> None:
    warnings: list[str] = []
    silencer = silences.Silencer(_inventory({"monitoring_alertmanager_port": free_port()}), _local_shell, warnings.append)
    assert silencer.silence("host1", "host1", 60, "x") == []
    silencer.expire("host1")
    silencer.page("host1", "y")
    assert len(warnings) == 3 and all("Alertmanager on mon1 did not answer" in w for w in warnings), warnings
    assert silences.Silencer([SimpleNamespace(name="host1", groups=[])], _local_shell, pytest.fail).silence("host1", "host1", 60, "x") == []


def test_the_silence_bound_covers_every_bound_of_the_roll() -> None:
    plan = RollPlan(
        what="x",
        doors=("front1", "front2"),
        server="host1",
        start="true",
        start_timeout_s=300,
        check="verify",
        check_timeout_s=120,
        roll_back="back",
        drain_timeout_s=30,
        restore_timeout_s=60,
    )
    assert rolling.silence_bound_s(plan, 2, 300) == 2 * (30 + 60 + 60) + 2 * 300 + 120 + 300


def test_the_silence_bound_counts_no_check_or_roll_back_the_roll_does_not_have() -> None:
    """The gateway's roll (no check, nothing to roll back to) and a Triton roll with verify off
    (check_timeout_s set, no check): the silence ends once the drain, the start and the restore
    could have ended, plus the margin (a killed run's drained host pages that much sooner)."""
    plan = RollPlan(what="x", doors=("front1",), server="host1", start="true", start_timeout_s=125, check_timeout_s=900)
    assert rolling.silence_bound_s(plan, 1, 20) == (30 + 60 + 60) + 125 + 20


def test_fleet_status_reads_alerts_and_silences_per_host(running: tuple[str, WebhookSink, dict[str, Any]]) -> None:
    url, _, data = running
    silences.Silencer(_inventory(data), _local_shell, pytest.fail).silence("host2", "host2", 600, "drained")
    _fire(url, "alertname=TritonModelNotReady", "instance=host1", "severity=critical")
    _fire(url, "alertname=DiskNearlyFull", "instance=host1", "severity=warning")
    _fire(url, "alertname=TritonModelNotReady", "instance=host2", "severity=critical")  # silenced: not shown as firing
    fact = AlertmanagerState()
    proc = subprocess.run(["sh", "-c", fact.command(url=url)], capture_output=True, text=True, timeout=30)
    found = fact.process(proc.stdout.splitlines())
    assert found["answered"] and found["firing"] == {"host1": ["DiskNearlyFull", "TritonModelNotReady"]}
    assert set(found["silenced"]) == {"host2"}
    reports = {
        "host1": ("triton", {"current": "a1b2c3d4e5f6", "model_ready": True}),
        "host2": ("triton", {"current": "a1b2c3d4e5f6", "model_ready": True}),
        "mon1": ("monitoring", {"figures": None, "alerting": found}),
    }
    rows = {line.split()[0]: line.split() for line in fleet_status.table(reports, ["host1", "host2", "mon1"]).splitlines()[1:3]}
    assert rows["host1"][-1] == "-" and rows["host1"][-2] == "DiskNearlyFull,TritonModelNotReady"
    assert rows["host2"][-3] == "-" and rows["host2"][-2] == found["silenced"]["host2"][:10]  # the silence's end: date, time
    # Nothing answered: '-' everywhere, no error.
    assert fact.process(["__ALERTMANAGER__ alerts ", "__ALERTMANAGER__ silences "]) == AlertmanagerState.default()
