"""Credentials inside URLs (a proxy's user:password): masked in output, logs, reports and error
lines; the files holding them (daemon.json, the docker.service drop-in) are written 0600 through
stdin; a converged re-run changes nothing, a changed password changes exactly that file.

Unit tests of deploys/core/redact.py and of the host-side twins (sed, grep) run by this machine's
shell; plan tests through the real pyinfra CLI on @fake hosts (tests/support/leak_probe.py records every
command and its stdin); the rollout report.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deploys.core import operations, paths, redact, settings
from deploys.core.paths import DOCKER_DAEMON_JSON, DOCKER_DROPIN
from deploys.core.settings import SettingsError
from deploys.host_base import render as host_base_render
from deploys.tools import rollout
from facts.docker import DockerDaemonJson, UrlCredentialsDigest
from tests.support import leak_probe
from tests.test_plan import CANARY_KEY, ROOT, changed_ops, run_fleet
from tests.test_plan import hub as hub  # the pytest fixture (a local Hub with the lock)

PASSWORD = "Pr0xyS3cret-canary"
ENV_PASSWORD = "EnvS3cret-canary"
PROXY = f"http://proxyuser:{PASSWORD}@proxy.example:3128"
ENV_PROXY = f"http://envuser:{ENV_PASSWORD}@proxy.example:3128"
WITH_PROXY = {"docker_https_proxy": PROXY, "docker_service_env": {"HTTPS_PROXY": ENV_PROXY}}
DAEMON_OP = "Docker | Docker daemon config /etc/docker/daemon.json (merged) (0600: holds credentials)"
DROPIN_OP = "Docker | docker.service drop-in (environment) (0600: holds credentials)"
RESTART = "Docker | Restart Docker (packages or config changed)"
RELOAD = "Docker | systemd daemon-reload (docker drop-in changed)"


# -- redact ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, masked",
    [
        (PROXY, "http://proxyuser:****@proxy.example:3128"),
        ("https://tok3n@mirror.example/v2", "https://****@mirror.example/v2"),
        ("http://u:p@ss@h:3128/x", "http://u:****@h:3128/x"),  # a raw '@' in the password stays hidden
        ("setting docker_http_proxy='http://u:pw@h:1' is invalid", "setting docker_http_proxy='http://u:****@h:1' is invalid"),
        ('{"a": "http://u:p@h", "b": "http://v:q@i"}', '{"a": "http://u:****@h", "b": "http://v:****@i"}'),
        ("http://proxy.example:3128", "http://proxy.example:3128"),
        ("user@example.com wrote https://h/a@b", "user@example.com wrote https://h/a@b"),
    ],
)
def test_mask(text: str, masked: str) -> None:
    assert redact.mask(text) == masked
    assert redact.mask(masked) == masked  # idempotent: a masked fact compares with masked settings
    assert redact.has_credentials(text) == (text != masked)


def test_mask_tree_unmask_tree_and_what_stays_masked() -> None:
    config = {"proxies": {"https-proxy": PROXY}, "registry-mirrors": ["https://ci:x@m.example", "https://m2.example"]}
    masked = redact.mask_tree(config)
    assert PASSWORD not in json.dumps(masked) and masked["registry-mirrors"][1] == "https://m2.example"
    back = redact.unmask_tree(masked, [PROXY])
    assert back["proxies"]["https-proxy"] == PROXY  # ours, known in clear
    assert redact.still_masked(back) == ["https://ci:****@m.example"]  # someone else's


def test_secret_repr_shows_no_content() -> None:
    secret = redact.Secret(PROXY)
    assert secret == PROXY and str(secret) == PROXY and PASSWORD not in repr(secret) and PASSWORD not in repr({"_stdin": secret})


def test_host_side_masking_and_digest_match_the_controller(tmp_path: Path) -> None:
    # The facts' commands run by this machine's shell on a real file: sed masks exactly as
    # redact.mask does, grep | sort | sha256sum digests exactly as redact.credentials_digest does.
    text = host_base_render.daemon_json(
        host_base_render.merged_daemon_config({"registry-mirrors": ["https://ci:x@p@m.example:5000"]}, _settings(**WITH_PROXY))
    )
    path = tmp_path / "daemon dir" / "daemon.json"
    path.parent.mkdir()
    path.write_text(text)

    def host(command: str) -> list[str]:
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout.splitlines()

    out = host(DockerDaemonJson().command(path=str(path)))
    assert PASSWORD not in "\n".join(out) and "x@p" not in "\n".join(out)
    assert DockerDaemonJson().process(out) == redact.mask_tree(json.loads(text))
    assert UrlCredentialsDigest().process(host(UrlCredentialsDigest().command(str(path)))) == redact.credentials_digest(text)
    assert UrlCredentialsDigest().process(host(UrlCredentialsDigest().command(str(tmp_path / "absent")))) is None
    assert redact.credentials_digest(text) != redact.credentials_digest(text.replace(PASSWORD, "rotated"))


def test_secret_file_command_writes_stdin_0600(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text("{}\n")
    path.chmod(0o644)
    text = host_base_render.daemon_json({"proxies": {"https-proxy": PROXY}})
    subprocess.run(["sh", "-c", operations.stdin_write(str(path))], input=text, text=True, check=True)
    assert path.read_text() == text and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in operations.stdin_write(str(path))


def _settings(**data: object) -> settings.Settings:
    return settings.parse("gpu-01", {"gpu": False, **data})


def test_error_lines_mask_credentials() -> None:
    with pytest.raises(SettingsError) as error:
        settings.parse("gpu-01", {"docker_http_proxy": f"{PROXY} extra"})
    assert "setting docker_http_proxy='http://proxyuser:****@proxy.example:3128 extra' is invalid" in str(error.value)
    assert PASSWORD not in str(error.value)
    with pytest.raises(SettingsError) as error:
        host_base_render.docker_dropin(_settings(docker_service_env={"HTTPS_PROXY": PROXY + "\nx"}))
    assert PASSWORD not in str(error.value)


# -- the deploy on @fake hosts -----------------------------------------------------------------------

FRESH = f'f.host("cpu-debian", {{"gpu": False, **f.SETTINGS, **{WITH_PROXY!r}}}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
CONVERGED = (
    f'f.converged_host("cpu-debian", {{"gpu": False, **f.SETTINGS, **{WITH_PROXY!r}}}, f.DEBIAN_13_RELEASE, None, f.DF_PLENTY, '
    'os.environ["NGC_API_KEY"])'
)
CONVERGED_GPU = (
    f'f.converged_host("gpu-ubuntu", {{"gpu": True, **f.SETTINGS, **{WITH_PROXY!r}}}, f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_PLENTY, '
    'os.environ["NGC_API_KEY"])'
)


def probe(tmp_path: Path, hub, hosts_code: str, *args: str) -> leak_probe.Result:
    """The deploy through tests/support/leak_probe.py (raw commands and stdin recorded)."""
    url, data = hub
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "import json\nimport os\nfrom tests.support import fake_hosts as f\n\n"
        f"f.SETTINGS.update(json.loads({json.dumps(json.dumps(data))}))\nfleet = [\n{hosts_code}\n]\n"
    )
    env = {"NGC_API_KEY": CANARY_KEY, "HF_ENDPOINT": url}
    return leak_probe.run(tmp_path, [*args, str(inventory), "deploys/all.py"], env=env)


def test_fresh_host_gets_the_credential_files_through_stdin_0600(tmp_path, hub) -> None:
    s = settings.parse("@fake/cpu-debian", {"gpu": False, **WITH_PROXY})
    result = probe(tmp_path, hub, FRESH, "--json")
    assert result.rc == 0, result.output[-3000:]
    assert {DAEMON_OP, DROPIN_OP, RESTART, RELOAD} <= set(result.changed_ops())
    # (Triton's restricted-API key is made and copied on the host, not sent: tests/test_triton_restricted.py.)
    key = paths.layout(s).triton_key
    writes = {
        r["command"]: r["stdin"]
        for r in result.records
        if r["kind"] == "command" and "umask 077" in r["command"] and key not in r["command"]
    }
    assert writes == {
        operations.stdin_write(DOCKER_DAEMON_JSON): host_base_render.daemon_json(host_base_render.merged_daemon_config(None, s)),
        operations.stdin_write(DOCKER_DROPIN): host_base_render.docker_dropin(s),
    }
    assert PASSWORD in writes[operations.stdin_write(DOCKER_DAEMON_JSON)]  # what Docker reads, unmasked
    assert ENV_PASSWORD in writes[operations.stdin_write(DOCKER_DROPIN)]
    assert not [r for r in result.records if r["kind"] == "put" and r["dest"] in (DOCKER_DAEMON_JSON, DOCKER_DROPIN)]
    assert not [c for c in result.commands() if PASSWORD in c or ENV_PASSWORD in c]  # never on a command line


FLAGS = ["-v", "-vv", "-vvv", "--debug", "--debug-facts", "--debug-operations", "--diff", "--dry"]


@pytest.mark.parametrize("flag", FLAGS)
def test_no_flag_prints_the_proxy_password(tmp_path, hub, flag) -> None:
    # A fresh host (the files are written) and a converged one (daemon.json is read back).
    result = run_fleet(tmp_path, hub, FRESH + ",\n" + CONVERGED.replace('"cpu-debian"', '"cpu-conv"'), flag)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert PASSWORD not in out and ENV_PASSWORD not in out
    if flag in ("-vvv", "--debug-operations"):
        assert "proxyuser:****@proxy.example" in out or "<secret, " in out  # the masked forms, not silence


def test_converged_hosts_with_credential_files_plan_zero_changes(tmp_path, hub) -> None:
    result = run_fleet(tmp_path, hub, CONVERGED + ",\n" + CONVERGED_GPU)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not changed_ops(result)
    untouched = {op["name"]: sorted(op["no_change"]) for op in json.loads(result.stdout)["results"]["operations"]}
    assert untouched["Docker | /etc/docker/daemon.json mode 0600 (holds credentials)"] == ["@fake/cpu-debian", "@fake/gpu-ubuntu"]
    assert untouched[f"Docker | {DOCKER_DROPIN} mode 0600 (holds credentials)"] == ["@fake/cpu-debian", "@fake/gpu-ubuntu"]


def test_a_world_readable_credential_file_is_fixed_without_a_restart(tmp_path, hub) -> None:
    # daemon.json left 0644 by an earlier version of the deploy (same content): chmod only.
    drifted = f'f.drifted({CONVERGED}, "test -e {DOCKER_DAEMON_JSON} ||", [f.stat_answer("{DOCKER_DAEMON_JSON}", "file", 644)[1][0]])'
    result = run_fleet(tmp_path, hub, drifted)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(changed_ops(result)) == ["Docker | /etc/docker/daemon.json mode 0600 (holds credentials)"]


def test_a_rotated_proxy_password_rewrites_only_that_file(tmp_path, hub) -> None:
    # Masked, the old and the new daemon.json look the same: the credentials' digest tells them apart.
    rotated = PROXY.replace(PASSWORD, "R0tated-canary")
    result = run_fleet(tmp_path, hub, CONVERGED, "--data", f"docker_https_proxy={rotated}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(changed_ops(result)) == sorted([DAEMON_OP, RESTART])
    assert "R0tated-canary" not in result.stdout + result.stderr


def test_credentials_the_deploy_did_not_write_are_not_rewritten(tmp_path, hub) -> None:
    # Someone put a mirror with credentials in daemon.json by hand; the deploy sees it masked, so a
    # change of its own keys would destroy it: one line, nothing changed.
    theirs = '["__FACT_FILE_PRESENT__", "{", "\\"registry-mirrors\\": [\\"https://ci:****@mirror.example\\"]", "}"]'
    bare = f'f.host("cpu-debian", {{"gpu": False, **f.SETTINGS}}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY, {{"\' {DOCKER_DAEMON_JSON}; fi": {theirs}}}))'
    result = run_fleet(tmp_path, hub, bare)
    assert result.returncode != 0
    assert (
        f"host @fake/cpu-debian: {DOCKER_DAEMON_JSON} holds credentials this deploy did not write (https://ci:****@mirror.example); "
        "it reads them only masked and will not rewrite the file" in result.stderr
    ), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "--> Beginning operation run" not in result.stderr


# -- reports -------------------------------------------------------------------------------------------


def test_rollout_report_and_log_mask_credentials(tmp_path, hub) -> None:
    url, data = hub
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "import json\nimport os\nfrom tests.support import fake_hosts as f\n\n"
        f"f.SETTINGS.update(json.loads({json.dumps(json.dumps(data))}))\nfleet = [\n{CONVERGED}\n]\n"
    )
    env = {**os.environ, "NGC_API_KEY": CANARY_KEY, "HF_ENDPOINT": url, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploys.rollout",
            str(inventory),
            "--report-dir",
            str(tmp_path / "reports"),
            "--data",
            f"docker_https_proxy={PROXY}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [report] = (tmp_path / "reports/rollouts").glob("*.json")
    assert PASSWORD not in report.read_text() + proc.stdout + proc.stderr
    assert json.loads(report.read_text())["data"] == ["docker_https_proxy=http://proxyuser:****@proxy.example:3128"]
    assert "--data docker_https_proxy=http://proxyuser:****@proxy.example:3128" in proc.stderr


def test_rollout_save_masks_every_field(tmp_path: Path) -> None:
    outcome = rollout.Outcome(host="h", message=f"deploy failed: proxy {PROXY} refused")
    path = rollout.save([outcome], str(tmp_path), {"data": [f"docker_http_proxy={PROXY}"]})
    assert PASSWORD not in path.read_text() and "proxyuser:****@" in path.read_text()
