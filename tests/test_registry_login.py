"""Registry login and image pull through the real pyinfra CLI (``@fake`` hosts, recorded commands).

The host side (what ``docker login`` stores, whether the image is there) is scripted with the fake
connector's ``fake_responses``, answering the project's own facts (facts.docker) with the digest a
real config.json would give. The leak test feeds canary secrets through the vault and through the
environment and searches every output and every command pyinfra ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploys.core import bounds, registry
from facts.docker import registry_auth_digest
from tests.support import leak_probe
from tests.support.hub_server import HubServer, Repo
from tests.test_vault import encrypt, make_key

pytestmark = pytest.mark.skipif(not Path("/usr/bin/age-keygen").exists(), reason="needs age-keygen")

KEY = "nvapi-REGCANARY-0a1b2c3d"
ROTATED = "canary-REGCANARY-rotated-9z8y"
IMAGE = "nvcr.io/nvidia/tritonserver:25.05-py3"
LOGIN = "Registry login and image pull | Docker login to nvcr.io (password on stdin)"
PULL = f"Registry login and image pull | Pull image {IMAGE}"
LOGOUT = "Registry login and image pull | Docker logout from nvcr.io (no credential left on disk)"


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NGC_API_KEY", "HF_TOKEN", "SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE")}
    env["HOME"] = str(tmp / "home")
    return env


@pytest.fixture()
def vault_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    key = tmp_path / "keys.txt"
    secrets = encrypt(f"ngc_api_key: {KEY}\n", make_key(key), tmp_path / "secrets.sops.yaml")
    return secrets, {**base_env(tmp_path), "SOPS_AGE_KEY_FILE": str(key)}


def run(tmp: Path, secrets: Path, env: dict[str, str], stored: str | None, image: bool, **data: object) -> leak_probe.Result:
    """One CLI run of the registry step on @fake/h1 whose Docker holds ``stored`` auth and maybe the image."""
    responses: dict[str, object] = {}
    if image:
        responses["docker image inspect"] = "sha256:" + "ab" * 32
    if stored:
        responses["python3 -I -c"] = registry_auth_digest("$oauthtoken", stored)
    host_data = {"secrets_file": str(secrets), "fake_responses": responses, **data}
    (tmp / "inventory.py").write_text(f"hosts = [('@fake/h1', {host_data!r})]\n")
    (tmp / "deploy.py").write_text("from deploys.host_base.registry_login import registry_login\nregistry_login()\n")
    result = leak_probe.run(tmp, ["--json", str(tmp / "inventory.py"), str(tmp / "deploy.py")], env=env)
    assert result.rc == 0, result.output
    return result


def test_first_run_logs_in_by_stdin_and_pulls(tmp_path: Path, vault_file) -> None:
    secrets, env = vault_file
    result = run(tmp_path, secrets, env, stored=None, image=False)
    assert result.changed_ops() == {LOGIN: 1, PULL: 1}
    login = [r for r in result.records if "docker login" in r.get("command", "")]
    command = bounds.bounded(
        "docker login --username '$oauthtoken' --password-stdin nvcr.io", 120, registry.STEP, "@fake/h1", "docker login to nvcr.io"
    )
    assert login == [{"host": "@fake/h1", "kind": "command", "command": command, "stdin": KEY}]
    pull = bounds.bounded(f"docker pull --quiet {IMAGE}", 3600, registry.STEP, "@fake/h1", f"docker pull {IMAGE}", "docker_pull_timeout_s")
    assert pull in result.commands()


def test_same_key_is_zero_changes(tmp_path: Path, vault_file) -> None:
    secrets, env = vault_file
    result = run(tmp_path, secrets, env, stored=KEY, image=True)
    assert result.changed_ops() == {}
    assert not any(verb in c for c in result.commands() for verb in ("docker login", "docker pull", "docker logout"))


def test_rotated_key_changes_exactly_the_login(tmp_path: Path, vault_file) -> None:
    secrets, env = vault_file
    result = run(tmp_path, secrets, {**env, "NGC_API_KEY": ROTATED}, stored=KEY, image=True)
    assert result.changed_ops() == {LOGIN: 1}
    assert result.stdins() == [ROTATED]
    assert "rotated key" in result.output and KEY not in result.output and ROTATED not in result.output


def test_logout_after_pull(tmp_path: Path, vault_file) -> None:
    secrets, env = vault_file
    fresh = run(tmp_path, secrets, env, stored=None, image=False, registry_logout_after_pull=True)
    assert fresh.changed_ops() == {LOGIN: 1, PULL: 1, LOGOUT: 1}
    assert [c for c in fresh.commands() if "docker " in c][-1].startswith("timeout -k 10 120 docker logout nvcr.io || ")
    # A credential left by an earlier run is removed even when nothing needs pulling.
    leftover = run(tmp_path, secrets, env, stored=KEY, image=True, registry_logout_after_pull=True)
    assert leftover.changed_ops() == {LOGOUT: 1}
    clean = run(tmp_path, secrets, env, stored=None, image=True, registry_logout_after_pull=True)
    assert clean.changed_ops() == {}


def test_anonymous_registry_skips_the_vault(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    result = run(
        tmp_path,
        tmp_path / "absent.sops.yaml",
        env,
        stored=None,
        image=False,
        registry_auth="none",
        triton_image="localhost:5000/triton:1",
        triton_image_digest="sha256:" + "c" * 64,
    )
    assert result.changed_ops() == {"Registry login and image pull | Pull image localhost:5000/triton:1@sha256:" + "c" * 64: 1}


def test_other_registry_uses_vault_registries_map(tmp_path: Path) -> None:
    key = tmp_path / "keys.txt"
    secrets = encrypt(
        f"registries:\n  registry.example.com:5000:\n    username: ci\n    password: {KEY}\n", make_key(key), tmp_path / "s.sops.yaml"
    )
    env = {**base_env(tmp_path), "SOPS_AGE_KEY_FILE": str(key)}
    result = run(
        tmp_path,
        secrets,
        env,
        stored=None,
        image=True,
        registry_host="registry.example.com:5000",
        triton_image="registry.example.com:5000/nvidia/tritonserver:25.05-py3",
    )
    assert result.stdins() == [KEY]
    assert any("docker login --username ci --password-stdin registry.example.com:5000 || " in c for c in result.commands())


# -- the leak test --

HF_CANARY = "hf_LEAKCANARY_f00dfeed42"
NGC_CANARY = "nvapi-LEAKCANARY-c0ffee77"
LEAK_DEPLOY = """\
from deploys.host_base.registry_login import registry_login
from deploys.model.step import model
registry_login()
model()
"""


@pytest.fixture(scope="module")
def gated_hub():
    """A gated tiny repository that only the canary HF token opens."""
    files = {
        "onnx/model.onnx": b"tiny graph " * 50,
        "onnx/model.onnx_data": os.urandom(200_000),
        "tokenizer.json": b'{"version": "1.0"}',
        "tokenizer_config.json": b"{}",
        "special_tokens_map.json": b"{}",
    }
    with HubServer([Repo("test-org/gated-tiny", files, gated=True, tokens=(HF_CANARY,))]) as hub:
        yield hub


@pytest.mark.parametrize("fetch", ["controller", "host"])
@pytest.mark.parametrize("path", ["vault", "env"])
@pytest.mark.parametrize("verbosity", ["-v", "-vvv", "--debug"])
def test_canary_secrets_never_leak(tmp_path: Path, gated_hub: HubServer, path: str, verbosity: str, fetch: str) -> None:
    env = base_env(tmp_path)
    key = tmp_path / "keys.txt"
    public = make_key(key)
    if path == "vault":
        secrets = encrypt(f"ngc_api_key: {NGC_CANARY}\nhf_token: {HF_CANARY}\n", public, tmp_path / "s.sops.yaml")
        env["SOPS_AGE_KEY_FILE"] = str(key)
    else:
        secrets = encrypt("hf_token: hf_not_this_one\n", public, tmp_path / "s.sops.yaml")  # env must win
        env.update(NGC_API_KEY=NGC_CANARY, HF_TOKEN=HF_CANARY, SOPS_AGE_KEY_FILE=str(key))
    env["HF_ENDPOINT"] = gated_hub.url
    host_data = {
        "secrets_file": str(secrets),
        "model_repo_id": "test-org/gated-tiny",
        "model_lock_file": str(tmp_path / "lock.json"),
        "model_cache_dir": str(tmp_path / "cache"),
        "triton_dir": "/srv/triton",
        "model_fetch": fetch,
        # The stand-in Hub is not https://huggingface.co: named, so that the token goes there at all.
        "model_token_endpoints": [gated_hub.url],
        "allow_plain_http": True,
        "fake_responses": {"python3 -I -c": registry_auth_digest("$oauthtoken", "an-old-key")},
    }
    (tmp_path / "inventory.py").write_text(f"hosts = [('@fake/h1', {host_data!r})]\n")
    (tmp_path / "deploy.py").write_text(LEAK_DEPLOY)
    before = len(gated_hub.requests)
    result = leak_probe.run(tmp_path, [verbosity, str(tmp_path / "inventory.py"), str(tmp_path / "deploy.py")], env=env)
    assert result.rc == 0, result.output
    # The canaries did flow: the key on docker login's stdin, the token to the (gated) hub.
    assert NGC_CANARY in result.stdins()
    assert any(r.get("auth") == f"Bearer {HF_CANARY}" for r in gated_hub.requests[before:])
    if fetch == "controller":
        assert any(r["kind"] == "put" and r["dest"].endswith("model.onnx_data.partial") for r in result.records)
    else:  # the host's curl gets the token on stdin
        assert f"Authorization: Bearer {HF_CANARY}" in result.stdins()
    # ...and appear nowhere else: not in the output, not in any command pyinfra ran.
    for canary in (NGC_CANARY, HF_CANARY):
        assert result.output.count(canary) == 0
        assert not [c for c in result.commands() if canary in c]


# -- real Docker against a real registry (Debian's docker-registry = CNCF distribution, htpasswd auth) --


def _docker_ready() -> bool:
    import shutil
    import subprocess

    if not (shutil.which("docker") and shutil.which("docker-registry") and shutil.which("htpasswd")):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


class LocalRegistry:
    """A password-protected registry on 127.0.0.1 (stand-in for nvcr.io) holding one tiny image."""

    def __init__(self, tmp: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.image = f"{self.host}/nvidia/tritonserver:e2e"
        self.tmp, self.proc = tmp, None
        (tmp / "registry.yml").write_text(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: " + str(tmp / "data") + "\n"
            f"http:\n  addr: {self.host}\nauth:\n  htpasswd:\n    realm: e2e\n    path: {tmp / 'htpasswd'}\n"
        )

    def set_password(self, password: str) -> None:
        """Change the one user's password (htpasswd reads it on stdin) and restart the registry."""
        import subprocess
        import time
        import urllib.error
        import urllib.request

        line = subprocess.run(["htpasswd", "-iBn", "ci"], input=password, capture_output=True, text=True, check=True).stdout
        (self.tmp / "htpasswd").write_text(line)
        self.stop()
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(self.tmp / "registry.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
            except urllib.error.HTTPError:
                return  # 401: up and asking for credentials
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("registry did not start")

    def push_tiny_image(self, password: str) -> None:
        import io
        import subprocess
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = b"stand-in image for the registry e2e test\n"
            info = tarfile.TarInfo("README")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        subprocess.run(["docker", "import", "-", self.image], input=buf.getvalue(), capture_output=True, check=True)
        subprocess.run(
            ["docker", "login", "-u", "ci", "--password-stdin", self.host], input=password.encode(), capture_output=True, check=True
        )
        subprocess.run(["docker", "push", self.image], capture_output=True, check=True)
        self.cleanup_client()

    def cleanup_client(self) -> None:
        import subprocess

        subprocess.run(["docker", "logout", self.host], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", self.image], capture_output=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.mark.e2e
@pytest.mark.skipif(not _docker_ready(), reason="needs a running Docker daemon, docker-registry and htpasswd")
def test_real_docker_login_rotation_and_logout(tmp_path: Path) -> None:
    import json
    import subprocess

    registry = LocalRegistry(tmp_path)
    first, second = "pw-E2ECANARY-one", "pw-E2ECANARY-two"
    key = tmp_path / "keys.txt"
    public = make_key(key)

    def vault_with(password: str) -> Path:
        return encrypt(f"registries:\n  {registry.host}:\n    username: ci\n    password: {password}\n", public, tmp_path / "s.sops.yaml")

    def deploy(**data: object) -> leak_probe.Result:
        host_data = {"secrets_file": str(tmp_path / "s.sops.yaml"), "registry_host": registry.host, "triton_image": registry.image, **data}
        (tmp_path / "inventory.py").write_text(f"hosts = [('@local', {host_data!r})]\n")
        (tmp_path / "deploy.py").write_text("from deploys.host_base.registry_login import registry_login\nregistry_login()\n")
        env = {k: v for k, v in os.environ.items() if k not in ("NGC_API_KEY", "HF_TOKEN")}
        result = leak_probe.run(
            tmp_path, ["--json", str(tmp_path / "inventory.py"), str(tmp_path / "deploy.py")], env={**env, "SOPS_AGE_KEY_FILE": str(key)}
        )
        assert result.rc == 0, result.output
        assert first not in result.output and second not in result.output
        assert not [c for c in result.commands() if first in c or second in c]
        return result

    def stored_hosts() -> set[str]:
        config = Path.home() / ".docker" / "config.json"
        return set(json.loads(config.read_text()).get("auths", {})) if config.exists() else set()

    login = f"Registry login and image pull | Docker login to {registry.host} (password on stdin)"
    pull = f"Registry login and image pull | Pull image {registry.image}"
    logout = f"Registry login and image pull | Docker logout from {registry.host} (no credential left on disk)"
    try:
        registry.set_password(first)
        registry.push_tiny_image(first)
        vault_with(first)
        assert deploy().changed_ops() == {login: 1, pull: 1}
        assert subprocess.run(["docker", "image", "inspect", registry.image], capture_output=True).returncode == 0
        assert registry.host in stored_hosts()
        assert deploy().changed_ops() == {}  # same key, image present: 0 changes

        registry.set_password(second)  # the key is rotated at the registry and in the vault
        vault_with(second)
        assert deploy().changed_ops() == {login: 1}  # exactly the login
        assert deploy().changed_ops() == {}

        assert deploy(registry_logout_after_pull=True).changed_ops() == {logout: 1}
        assert registry.host not in stored_hosts()
        assert deploy(registry_logout_after_pull=True).changed_ops() == {}
    finally:
        registry.cleanup_client()
        registry.stop()
