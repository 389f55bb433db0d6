"""The registry cache role and pulling through it, without a fleet: the cache config (rendered,
parsed back as YAML, checked key by key), the cache host's settings, the image reference a Triton
host pulls (pull_ref), daemon.json's insecure registries, the vault's registry_cache_tls, the image
prune choice, and the host commands run for real in a shell with stand-ins for systemctl, curl,
journalctl and docker (the registry itself is not started here)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from deploys.core import operations, registry, render, settings
from deploys.core.settings import SettingsError
from deploys.registry_cache import logic as registry_cache
from deploys.registry_cache import render as registry_cache_render
from deploys.triton import image_prune, release
from tests.support.operation_runner import run as run_operation
from tests.support.operation_runner import shell_of

PASSWORD = "nvapi-CACHECANARY-" + "x7" * 10
DIGEST = "sha256:" + "5b" * 32


def cache_settings(**data: object) -> settings.Settings:
    return settings.parse("cache1", {"registry_cache_listen_address": "10.0.0.7", "registry_cache_insecure": True, **data})


def fake_host(name: str, groups: list[str], **data: object) -> SimpleNamespace:
    """What deploys/core/roles.py and settings.load read of a pyinfra host: name, groups, data."""
    return SimpleNamespace(name=name, groups=groups, data=SimpleNamespace(dict=lambda: dict(data)))


CACHE = fake_host("cache1", ["registry_cache"], registry_cache_listen_address="10.0.0.7", registry_cache_insecure=True)
TRITON = fake_host("gpu1", ["gpu_servers"])


# -- the config ---------------------------------------------------------------------------------------


def test_rendered_config_is_yaml_in_proxy_mode() -> None:
    s = cache_settings()
    text = registry_cache_render.registry_cache_config(s, "$oauthtoken", PASSWORD, "")
    data = yaml.safe_load(text)
    assert data["version"] == 0.1
    assert data["proxy"] == {"remoteurl": "https://nvcr.io", "username": "$oauthtoken", "password": PASSWORD}
    assert data["http"]["addr"] == "10.0.0.7:5000"
    assert "tls" not in data["http"]
    assert data["storage"]["filesystem"]["rootdirectory"] == "/var/lib/docker-registry"
    assert registry_cache.check_config(text) == data


def test_tls_upstream_url_storage_and_anonymous_upstream() -> None:
    s = cache_settings(
        registry_cache_insecure=False,
        registry_cache_tls=True,
        registry_cache_listen_address="fd00::7",
        registry_cache_port=5443,
        registry_cache_upstream_url="http://sandbox-registry:5000",
        allow_plain_http=True,
        registry_cache_storage_dir="/srv/cache",
    )
    data = yaml.safe_load(registry_cache_render.registry_cache_config(s, "", "", registry_cache.TLS_PEM))
    assert data["http"]["addr"] == "[fd00::7]:5443"
    assert data["http"]["tls"] == {"certificate": registry_cache.TLS_PEM, "key": registry_cache.TLS_PEM, "minimumtls": "tls1.2"}
    assert data["proxy"] == {"remoteurl": "http://sandbox-registry:5000"}  # no credential: no username/password keys
    assert data["storage"]["filesystem"]["rootdirectory"] == "/srv/cache"
    with pytest.raises(render.RenderError, match="no certificate path"):
        registry_cache_render.registry_cache_config(s, "", "", "")


def test_a_password_that_looks_like_yaml_stays_one_string() -> None:
    tricky = 'a: b\n"quoted" # not a comment\n- item'
    data = yaml.safe_load(registry_cache_render.registry_cache_config(cache_settings(), "$oauthtoken", tricky, ""))
    assert data["proxy"]["password"] == tricky


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("  remoteurl:", "  remoteURL:"), "unknown key proxy.remoteURL (the registry would ignore it silently)"),
        (lambda t: t.replace("proxy:", "proxi:"), "unknown key proxi"),
        (lambda t: t.replace("  remoteurl: ", "  # remoteurl: "), "proxy.remoteurl is missing"),
        (lambda t: t.replace('  addr: "10.0.0.7:5000"', '  addr: "10.0.0.7"'), "http.addr must be HOST:PORT"),
        (lambda t: t.replace("version: 0.1", "version: 0.2"), "version must be 0.1"),
        (lambda t: t.replace("  username:", "  # username:"), "proxy.username and proxy.password go together"),
        (lambda t: t.replace("storage:\n", "storage: [\n"), "not valid YAML at line"),
        (lambda t: t.replace('rootdirectory: "/var/lib/docker-registry"', 'rootdirectory: "var/lib"'), "rootdirectory must be absolute"),
    ],
    ids=["typo", "section-typo", "no-remoteurl", "addr", "version", "half-credential", "bad-yaml", "relative-storage"],
)
def test_check_refuses_what_the_registry_would_ignore_or_reject_without_quoting_the_password(edit, message) -> None:
    text = registry_cache_render.registry_cache_config(cache_settings(), "$oauthtoken", PASSWORD, "")
    with pytest.raises(registry_cache.ConfigError) as info:
        registry_cache.check_config(edit(text))
    assert message in str(info.value)
    assert PASSWORD not in str(info.value) and "\n" not in str(info.value)


def test_every_key_the_template_writes_is_one_the_check_knows() -> None:
    # TLS on and a credential: the fullest config the template writes passes its own check.
    s = cache_settings(registry_cache_insecure=False, registry_cache_tls=True)
    registry_cache.check_config(registry_cache_render.registry_cache_config(s, "$oauthtoken", PASSWORD, registry_cache.TLS_PEM))


# -- the cache host's settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        ({"registry_cache_port": 0}, "setting registry_cache_port=0 is invalid (allowed: an integer from 1 to 65535)"),
        (
            {"registry_cache_listen_address": "cache.local"},
            "setting registry_cache_listen_address='cache.local' is invalid (allowed: an IP address",
        ),
        ({"registry_cache_hostname": "bad_name"}, "setting registry_cache_hostname='bad_name' is invalid (allowed: a DNS name or empty)"),
        (
            {"registry_cache_upstream_url": "nvcr.io"},
            "setting registry_cache_upstream_url='nvcr.io' is invalid (allowed: an http(s)://host[:port] URL",
        ),
        (
            {"registry_cache_upstream_url": "http://sandbox-registry:5000"},
            "setting registry_cache_upstream_url='http://sandbox-registry:5000' is invalid (plain http:// is refused; use https://, "
            "or set allow_plain_http: true",
        ),
        ({"registry_cache_max_gb": 0}, "setting registry_cache_max_gb=0 is invalid (allowed: an integer from 1 to 1000000)"),
        ({"registry_cache_storage_dir": "cache"}, "setting registry_cache_storage_dir='cache' is invalid (allowed: an absolute path)"),
        ({"registry_cache_tls": True, "registry_cache_insecure": True}, "registry_cache_tls is on; pick one of TLS or plain HTTP"),
        ({"registry_image_prune": "yes"}, "setting registry_image_prune='yes' is invalid (allowed: true or false)"),
    ],
)
def test_bad_settings_are_one_line(data: dict, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings.parse("h", data)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"registry_cache_listen_address": ""}, "setting registry_cache_listen_address is empty"),
        ({"registry_cache_listen_address": "127.0.0.1"}, "is loopback, so no Triton host can pull from the cache"),
        ({"registry_cache_listen_address": "0.0.0.0"}, "listens everywhere but names no address to pull from; set registry_cache_hostname"),
        (
            {"registry_cache_insecure": False},
            "needs registry_cache_tls: true (certificate from the vault) or, on a private network, registry_cache_insecure: true",
        ),
    ],
)
def test_a_cache_host_without_a_reachable_address_or_transport_is_one_line(data: dict, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        registry.check_host(cache_settings(**data))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_cache_listening_everywhere_is_pulled_from_by_its_name() -> None:
    s = cache_settings(registry_cache_listen_address="0.0.0.0", registry_cache_hostname="cache.example.internal")
    registry.check_host(s)
    assert registry.endpoint(s) == "cache.example.internal:5000"
    assert registry_cache.probe_url(s) == "http://127.0.0.1:5000/v2/"


# -- what a Triton host pulls -------------------------------------------------------------------------


def test_without_a_cache_nothing_changes() -> None:
    s = settings.parse("gpu1", {"triton_image_digest": DIGEST})
    assert registry.pull_ref(s, [TRITON]) == s.triton_image_ref == f"nvcr.io/nvidia/tritonserver:25.05-py3@{DIGEST}"
    assert registry.insecure_registries(s, [TRITON]) == []
    assert registry.find([TRITON]) is None


def test_release_ids_without_a_cache_are_those_from_before_the_cache() -> None:
    # Pinned from the commit before the registry cache: a fleet without one keeps its releases.
    # Re-pinned with Triton's restricted APIs (README "Triton's restricted APIs"): that change gave the
    # compose file a new command and key mount, so a new release on purpose; the cache still changes nothing.
    # Re-pinned again for release ids from meaning (issue 22: canonical config.pbtxt and compose file,
    # host bindings out): a one-time new id on every host; the cache still changes nothing.
    s = settings.parse("h", {"gpu": False})
    weights = {"model.onnx": "a" * 64, "model.onnx_data": "b" * 64}
    assert release.release_id(s, False, weights) == "babd99f3a1da"
    assert release.release_id(s, True, weights) == "96eb68aa67e8"
    assert release.build(s, False, weights).image == s.triton_image_ref


def test_with_a_cache_the_registry_is_replaced_and_the_digest_pin_kept() -> None:
    s = settings.parse("gpu1", {"triton_image_digest": DIGEST})
    inventory = [CACHE, TRITON]
    assert registry.pull_ref(s, inventory) == f"10.0.0.7:5000/nvidia/tritonserver:25.05-py3@{DIGEST}"
    assert (
        registry.pull_ref(s, inventory, s.monitoring_dcgm_exporter_image)
        == "10.0.0.7:5000/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04"
    )
    assert registry.pull_ref(s, inventory, "10.0.0.7:5000/nvidia/tritonserver:25.05-py3") == "10.0.0.7:5000/nvidia/tritonserver:25.05-py3"
    assert registry.insecure_registries(s, inventory) == ["10.0.0.7:5000"]
    # The release (compose file, id) follows the image: a cache is a new release, pinned by digest.
    spec = release.build(s, False, {"model.onnx": "a" * 64}, image=registry.pull_ref(s, inventory))
    assert yaml.safe_load(spec.compose)["services"]["triton"]["image"] == f"10.0.0.7:5000/nvidia/tritonserver:25.05-py3@{DIGEST}"
    assert spec.id != release.build(s, False, {"model.onnx": "a" * 64}).id


def test_tls_cache_by_name_is_not_insecure_and_ipv6_is_bracketed() -> None:
    tls = fake_host(
        "c", ["registry_cache"], registry_cache_listen_address="10.0.0.7", registry_cache_tls=True, registry_cache_hostname="cache.internal"
    )
    s = settings.parse("gpu1", {"docker_insecure_registries": ["mirror:5000"]})
    assert registry.pull_ref(s, [tls, TRITON]).startswith("cache.internal:5000/nvidia/tritonserver:")
    assert registry.insecure_registries(s, [tls, TRITON]) == ["mirror:5000"]
    v6 = fake_host("c", ["registry_cache"], registry_cache_listen_address="fd00::7", registry_cache_insecure=True)
    assert registry.pull_ref(s, [v6]).startswith("[fd00::7]:5000/nvidia/tritonserver:")


def test_an_image_from_another_registry_or_two_caches_are_one_line() -> None:
    s = settings.parse("gpu1", {"triton_image": "registry.example.com/nvidia/tritonserver:25.05-py3"})
    with pytest.raises(SettingsError, match="is not from nvcr.io, the registry the cache cache1 proxies"):
        registry.pull_ref(s, [CACHE, TRITON])
    other = fake_host("cache2", ["registry_cache"], registry_cache_listen_address="10.0.0.8", registry_cache_insecure=True)
    with pytest.raises(SettingsError, match=r"the inventory has 2 registry caches \(cache1, cache2\)"):
        registry.pull_ref(s, [CACHE, other, TRITON])


def test_roles_a_cache_is_no_triton_host() -> None:
    from deploys.core import roles
    from deploys.monitoring import logic as monitoring

    assert roles.is_registry_cache(CACHE) and not roles.is_triton_host(CACHE)
    assert roles.is_triton_host(TRITON) and not roles.is_registry_cache(TRITON)
    assert monitoring.role(CACHE) == "registry_cache"
    door = fake_host("front1", ["front_door", "registry_cache"])
    assert roles.is_front_door(door) and not roles.is_registry_cache(door)


def test_repository_of_a_reference() -> None:
    assert image_prune.repository(f"nvcr.io/nvidia/tritonserver:25.05-py3@{DIGEST}") == "nvcr.io/nvidia/tritonserver"
    assert image_prune.repository("10.0.0.7:5000/nvidia/tritonserver") == "10.0.0.7:5000/nvidia/tritonserver"
    assert image_prune.repository("10.0.0.7:5000/nvidia/tritonserver:1") == "10.0.0.7:5000/nvidia/tritonserver"


def test_images_to_prune_keeps_every_id_a_kept_release_has() -> None:
    rows = [
        {"repository": "nvcr.io/nvidia/tritonserver", "tag": "25.05-py3", "digest": DIGEST, "id": "sha256:kept"},
        {"repository": "nvcr.io/nvidia/tritonserver", "tag": "25.04-py3", "digest": "<none>", "id": "sha256:old"},
        {"repository": "nvcr.io/nvidia/tritonserver", "tag": "<none>", "digest": "sha256:" + "0d" * 32, "id": "sha256:older"},
        {"repository": "nvcr.io/nvidia/tritonserver", "tag": "<none>", "digest": "<none>", "id": "sha256:dangling"},
    ]
    assert image_prune.images_to_prune(rows, {"sha256:kept"}) == [
        "nvcr.io/nvidia/tritonserver:25.04-py3",
        "nvcr.io/nvidia/tritonserver@sha256:" + "0d" * 32,
        "sha256:dangling",
    ]
    assert image_prune.images_to_prune(rows[:1], {"sha256:kept"}) == []


def test_images_to_prune_untags_a_tag_no_kept_release_names_on_a_kept_image() -> None:
    # Releases of one image under two tags: the pruned release's tag goes, the image stays (its id is kept).
    rows = [
        {"repository": "10.0.0.7:5000/nvidia/tritonserver", "tag": "25.05-py3", "digest": "<none>", "id": "sha256:same"},
        {"repository": "10.0.0.7:5000/nvidia/tritonserver", "tag": "25.05-py3-b", "digest": "<none>", "id": "sha256:same"},
        {"repository": "10.0.0.7:5000/nvidia/tritonserver", "tag": "<none>", "digest": DIGEST, "id": "sha256:same"},
    ]
    kept = {"10.0.0.7:5000/nvidia/tritonserver:25.05-py3-b"}
    assert image_prune.images_to_prune(rows, {"sha256:same"}, kept) == ["10.0.0.7:5000/nvidia/tritonserver:25.05-py3"]
    # A kept release named by tag and digest keeps that tag.
    pinned = {f"10.0.0.7:5000/nvidia/tritonserver:25.05-py3@{DIGEST}", "10.0.0.7:5000/nvidia/tritonserver:25.05-py3-b"}
    assert image_prune.images_to_prune(rows, {"sha256:same"}, pinned) == []


def test_usage_warning_only_past_the_limit() -> None:
    s = cache_settings(registry_cache_max_gb=10)
    assert registry_cache.usage_warning(s, None) is None
    assert registry_cache.usage_warning(s, 10 * 2**30) is None
    line = registry_cache.usage_warning(s, 12 * 2**30)
    assert line and "holds 12.0 GiB, over registry_cache_max_gb=10" in line and "\n" not in line


# -- the vault's registry_cache_tls -------------------------------------------------------------------

needs_age = pytest.mark.skipif(shutil.which("age-keygen") is None, reason="needs age-keygen")
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"


def _indent(pem: str) -> str:
    return pem.replace("\n", "\n    ")


@needs_age
def test_vault_registry_cache_tls_with_its_ca(tmp_path: Path) -> None:
    from deploys.core import vault
    from tests.test_vault import encrypt, make_key

    key = tmp_path / "keys.txt"
    plain = f"registry_cache_tls:\n  cert: |\n    {_indent(CERT)}\n  key: |\n    {_indent(KEY)}\n  ca: |\n    {_indent(CERT)}\n"
    public = make_key(key)
    path = encrypt(plain, public, tmp_path / "s.sops.yaml")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "SOPS_AGE_KEY_FILE": str(key)}
    secrets = vault.load(str(path), env=env)
    assert secrets.registry_cache_tls is not None and secrets.registry_cache_tls.unmask() == f"{CERT}\n{KEY}\n"
    assert secrets.registry_cache_ca == f"{CERT}\n"
    assert "MIIE" not in repr(secrets)
    bad = encrypt(
        f"registry_cache_tls:\n  cert: |\n    {_indent(CERT)}\n  key: x\n  ca: |\n    {_indent(KEY)}\n", public, tmp_path / "b.sops.yaml"
    )
    with pytest.raises(vault.VaultError, match="registry_cache_tls.key is not a PEM private key"):
        vault.load(str(bad), env=env)
    bad_ca = encrypt(
        f"registry_cache_tls:\n  cert: |\n    {_indent(CERT)}\n  key: |\n    {_indent(KEY)}\n  ca: |\n    {_indent(CERT + chr(10) + KEY)}\n",
        public,
        tmp_path / "c.sops.yaml",
    )
    with pytest.raises(vault.VaultError, match=r"registry_cache_tls.ca must be PEM certificates only \(no key\)"):
        vault.load(str(bad_ca), env=env)


# -- the host commands, in a real shell with stand-ins --------------------------------------------------


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _sh(command: str, bin_dir: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, text=True, env=env, timeout=60)


def test_config_goes_in_0600_from_stdin_keeping_the_previous(tmp_path: Path) -> None:
    live = tmp_path / "registry" / "config.yml"
    live.parent.mkdir()
    live.write_text("old\n")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    text = f"proxy:\n  password: {PASSWORD}\n"
    # What the step's validated_config yields (the config to its candidate on stdin, then live).
    commands, _ = run_operation(
        operations.validated_config, {"files.Sha256File": {}}, str(live), text, mode="600", user=user, group=user, secret=True
    )
    for command in commands:
        shell, stdin = (command["command"], command["_stdin"]) if isinstance(command, dict) else (command, "")
        assert PASSWORD not in shell
        result = _sh(shell, tmp_path, stdin=stdin)
        assert result.returncode == 0, result.stderr
    assert live.read_text() == f"proxy:\n  password: {PASSWORD}\n"
    assert stat.S_IMODE(live.stat().st_mode) == 0o600
    assert (tmp_path / "registry" / "config.yml.previous").read_text() == "old\n"
    assert not (tmp_path / "registry" / "config.yml.candidate").exists()


def test_a_cache_that_does_not_answer_gets_its_previous_config_back(tmp_path: Path) -> None:
    live = tmp_path / "config.yml"
    live.write_text("new, broken\n")
    (tmp_path / "config.yml.previous").write_text("old, working\n")
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "systemctl", f'echo "systemctl $*" >> {log}\n')
    _stub(bin_dir, "journalctl", 'echo "panic: Get https://nvcr.io/v2/: dial tcp: i/o timeout"\n')
    _stub(bin_dir, "curl", "printf 000; exit 7\n")
    _stub(bin_dir, "sleep", "exit 0\n")
    result = _sh(shell_of(operations.wait_ready, **registry_cache.restart_wait(cache_settings(), live=str(live), timeout_s=2)), bin_dir)
    assert result.returncode == 1
    assert "registry cache: http://10.0.0.7:5000/v2/ did not answer 200 within 2s" in result.stderr
    assert "panic: Get https://nvcr.io/v2/" in result.stderr and "the previous config is back" in result.stderr
    assert live.read_text() == "old, working\n"
    assert log.read_text().splitlines() == ["systemctl restart docker-registry", "systemctl restart docker-registry"]


def test_a_cache_that_answers_keeps_its_new_config(tmp_path: Path) -> None:
    live = tmp_path / "config.yml"
    live.write_text("new\n")
    (tmp_path / "config.yml.previous").write_text("old\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "systemctl", "exit 0\n")
    _stub(bin_dir, "curl", 'case "$*" in *https://10.0.0.7:5000/v2/*) printf 200;; *) printf 404;; esac\n')
    s = cache_settings(registry_cache_insecure=False, registry_cache_tls=True)
    result = _sh(shell_of(operations.wait_ready, **registry_cache.restart_wait(s, live=str(live), timeout_s=2)), bin_dir)
    assert result.returncode == 0, result.stderr
    assert live.read_text() == "new\n" and not (tmp_path / "config.yml.previous").exists()


def test_image_rm_removes_what_is_there_and_survives_a_refusal(tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(
        bin_dir,
        "docker",
        f'echo "$*" >> {log}\n'
        'case "$*" in\n'
        '  "image inspect gone:1") exit 1;;\n'
        '  "image inspect"*) exit 0;;\n'
        '  "image rm used:1") echo "conflict: container abc is using its referenced image" >&2; exit 1;;\n'
        "esac\n",
    )
    result = _sh(image_prune.image_rm_command(["old:1", "gone:1", "used:1"]), bin_dir)
    assert result.returncode == 0
    assert "image prune: docker image rm used:1 refused; left in place" in result.stderr
    calls = log.read_text().splitlines()
    assert "image rm old:1" in calls and "image rm used:1" in calls and "image rm gone:1" not in calls


def test_pull_through_the_cache_names_it_when_it_fails(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "docker", 'echo "Error response from daemon: Get http://10.0.0.7:5000/v2/: connection refused" >&2; exit 1\n')
    cache = registry.find([CACHE])
    s = settings.parse("gpu1", {"gpu": False})
    command = registry.pull_command(s, "10.0.0.7:5000/nvidia/tritonserver:25.05-py3", cache)
    assert command.startswith(f"timeout -k 10 {s.docker_pull_timeout_s} docker pull ")  # bounded like every pull
    result = _sh(command, bin_dir)
    assert result.returncode == 1
    assert (
        "pull of 10.0.0.7:5000/nvidia/tritonserver:25.05-py3 through the registry cache 10.0.0.7:5000 (host cache1) failed" in result.stderr
    )
    assert "did not finish within" not in result.stderr


def test_pull_through_the_cache_past_its_bound_prints_the_bound_line_and_tags_only_on_success(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    _stub(bin_dir, "docker", f'echo "$*" >> {log}\ncase "$1" in pull) exec sleep 30;; esac\n')
    cache = registry.find([CACHE])
    s = SimpleNamespace(host="gpu1", docker_pull_timeout_s=1, triton_image_ref="unused")  # the bound a setting cannot go down to
    ref = "10.0.0.7:5000/nvidia/tritonserver:25.05-py3"
    result = _sh(registry.pull_command(s, ref, cache, tag_as="nvcr.io/nvidia/tritonserver:25.05-py3"), bin_dir)
    assert result.returncode == 124
    assert (
        f"Registry login and image pull on host gpu1: docker pull {ref} did not finish within 1s (docker_pull_timeout_s)" in result.stderr
    )
    assert "through the registry cache" not in result.stderr
    assert "tag" not in log.read_text()


def test_fact_commands_in_a_real_shell(tmp_path: Path) -> None:
    from facts.disk import DirectoryBytes
    from facts.triton import TritonReleaseImages

    root = tmp_path / "triton dir"
    spec = release.build(
        settings.parse("h", {"gpu": False}), False, {"model.onnx": "a" * 64}, image=f"10.0.0.7:5000/nvidia/tritonserver:25.05-py3@{DIGEST}"
    )
    (root / "releases" / spec.id).mkdir(parents=True)
    (root / "releases" / spec.id / "docker-compose.yml").write_text(spec.compose)
    (root / "releases" / "000000000000").mkdir()  # a release without its compose file yet
    fact = TritonReleaseImages()
    out = subprocess.run(["sh", "-c", fact.command(str(root))], capture_output=True, text=True, check=True).stdout.splitlines()
    assert fact.process(out) == {spec.id: f"10.0.0.7:5000/nvidia/tritonserver:25.05-py3@{DIGEST}"}
    assert subprocess.run(["sh", "-c", fact.command(str(tmp_path / "absent"))], capture_output=True, text=True, check=True).stdout == ""
    du = DirectoryBytes()
    out = subprocess.run(["sh", "-c", du.command(str(root))], capture_output=True, text=True, check=True).stdout.splitlines()
    assert du.process(out) >= len(spec.compose)
    assert subprocess.run(["sh", "-c", du.command(str(tmp_path / "absent"))], capture_output=True, text=True, check=True).stdout == ""
