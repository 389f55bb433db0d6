"""Docker engine on a host: its packages (from the distribution or Docker's apt repo) and its
configuration (daemon.json merged key by key, the docker.service drop-in); the operations the
docker step (deploys/host_base/docker.py) routes through."""

from __future__ import annotations

from io import StringIO

from pyinfra import host, state
from pyinfra.facts.deb import DebArch, DebPackages
from pyinfra.facts.files import Sha256File
from pyinfra.operations import apt, files

from deploys.core import operations, redact, registry
from deploys.core.paths import APT_KEYRINGS_DIR, DOCKER_CE_KEYRING, DOCKER_CONFIG_DIR, DOCKER_DAEMON_JSON, DOCKER_DROPIN, DOCKER_DROPIN_DIR
from deploys.core.settings import Settings
from deploys.host_base import apt_keys
from deploys.host_base import render as host_base_render
from deploys.host_base.host import PreflightError, distro_codename, distro_key
from facts.docker import DockerDaemonJson, UrlCredentialsDigest

# Docker from the distribution, per distribution: the engine, its CLI (a package of its own from
# Debian 13 on) and the compose v2 plugin (Debian 12 ships only compose v1). Installed without
# recommends (git, perl, criu…: 11 packages instead of 52 on Debian 13); AppArmor, a recommend,
# is what Docker confines containers with on Ubuntu, so it is listed there.
DISTRO_PACKAGES = {
    ("ubuntu", 22): ["docker.io", "docker-compose-v2", "apparmor"],
    ("ubuntu", 24): ["docker.io", "docker-compose-v2", "apparmor"],
    ("debian", 13): ["docker.io", "docker-cli", "docker-compose"],
}


def distro_packages(s: Settings) -> list[str]:
    """docker.io and the compose v2 plugin under this distribution's name."""
    key = distro_key()
    if key not in DISTRO_PACKAGES:
        raise PreflightError(
            f"host {s.host}: setting docker_source=distro: {key[0]} {key[1]} packages no docker compose v2; "
            "set docker_source: docker-ce for this host"
        )
    return DISTRO_PACKAGES[key]


def docker_ce_packages(s: Settings) -> list[str]:
    """Docker's own packages, pinned when docker_ce_version is set."""
    pin = f"={s.docker_ce_version}" if s.docker_ce_version else ""
    return [f"docker-ce{pin}", f"docker-ce-cli{pin}", "containerd.io", "docker-compose-plugin"]


def install_packages(s: Settings):
    """Install curl, then Docker's packages; apt's index is refreshed only when something is missing.

    curl first: this step is the first that may need it (files.download of Docker's apt key), and
    every later one does (the toolkit's apt key, model_fetch=host, Triton's health fact and READY
    wait). Not in the returned ops: installing curl restarts nothing."""
    ops = []
    installed = host.get_fact(DebPackages) or {}
    refreshed = "curl" not in installed
    if refreshed:
        apt.update(name="Refresh apt index (curl missing)")
    apt.packages(name="Install curl (apt key downloads, Triton's health checks and READY wait)", packages=["curl"])
    if s.docker_source == "docker-ce":
        name, _ = distro_key()
        codename = distro_codename()
        files.directory(name="apt keyrings directory", path=APT_KEYRINGS_DIR, mode="755")
        keyring = apt_keys.ensure_key(
            "Docker",
            f"{s.docker_ce_apt_url}/{name}/gpg",
            DOCKER_CE_KEYRING,
            s.docker_ce_key_fingerprint,
            "docker_ce_key_fingerprint",
            s.allow_plain_http,
        )
        repo = apt.repo(
            name="Docker apt repository",
            src=f"deb [arch={host.get_fact(DebArch)} signed-by={DOCKER_CE_KEYRING}] {s.docker_ce_apt_url}/{name} {codename} stable",
            filename="docker",
        )
        ops += [op for op in (keyring, repo) if op is not None]
        packages = docker_ce_packages(s)
    else:
        packages = distro_packages(s)
    missing = [p for p in packages if p.split("=")[0] not in installed]
    # A new apt source needs its own refresh; missing packages from the distribution do not when
    # the index was just refreshed for curl.
    if any(op.will_change for op in ops) or (missing and not refreshed):
        apt.update(name="Refresh apt index (Docker packages missing)")
    ops.append(apt.packages(name="Docker packages", packages=packages, no_recommends=s.docker_source == "distro"))
    return ops


def _write_secret(name: str, path: str, text: str):
    """The operation writing ``text`` (it holds credentials) to ``path`` through stdin, 0600."""
    return operations.secret_file(name=f"{name} (0600: holds credentials)", path=path, content=redact.Secret(text))


def _ours(s: Settings) -> list[str]:
    """Setting values that may land in daemon.json or the drop-in with credentials in them."""
    return [
        s.docker_http_proxy,
        s.docker_https_proxy,
        *s.docker_registry_mirrors,
        *s.docker_insecure_registries,
        *s.docker_service_env.values(),
    ]


def configure_daemon(s: Settings):
    """Merge our keys into daemon.json (never clobber others') and manage the systemd drop-in.

    Returns (the daemon.json operations, the drop-in operations): each a change that needs a
    Docker restart (the drop-in's also a daemon-reload). A file that holds credentials in a URL (a
    proxy's user:password) is written through stdin, 0600; the deploy reads it only masked
    (DockerDaemonJson) plus a digest of its credentials (UrlCredentialsDigest), so a changed
    password is one change and the same one is none. A mode-only fix (0600) restarts nothing.
    """
    existing = host.get_fact(DockerDaemonJson)  # URL credentials masked (user:****@)
    if existing is not None and "__invalid__" in existing:
        raise PreflightError(
            f"host {s.host}: {DOCKER_DAEMON_JSON} is not valid JSON ({existing['__invalid__']}); "
            "fix or remove it by hand, the deploy will not overwrite it"
        )
    ours = _ours(s)
    merged = host_base_render.merged_daemon_config(
        redact.unmask_tree(existing, ours), s, insecure_registries=registry.insecure_registries(s, state.inventory)
    )
    text = host_base_render.daemon_json(merged)
    changed = redact.mask_tree(merged) != existing
    ops = [files.directory(name="Docker config directory", path=DOCKER_CONFIG_DIR, mode="755")]
    name = f"Docker daemon config {DOCKER_DAEMON_JSON} (merged)"
    if not redact.has_credentials(text):
        if changed:
            ops.append(files.put(name=name, src=StringIO(text), dest=DOCKER_DAEMON_JSON, mode="644"))
    else:
        unknown = redact.still_masked(merged)
        ours_secret = any(redact.has_credentials(value) for value in ours)
        if unknown and (changed or ours_secret):
            raise PreflightError(
                f"host {s.host}: {DOCKER_DAEMON_JSON} holds credentials this deploy did not write ({unknown[0]}); "
                "it reads them only masked and will not rewrite the file: move them into the docker_* settings or remove them by hand"
            )
        if changed or (not unknown and host.get_fact(UrlCredentialsDigest, path=DOCKER_DAEMON_JSON) != redact.credentials_digest(text)):
            ops.append(_write_secret(name, DOCKER_DAEMON_JSON, text))
        else:
            files.file(name=f"{DOCKER_DAEMON_JSON} mode 0600 (holds credentials)", path=DOCKER_DAEMON_JSON, mode="600")

    dropin_ops = []
    if s.docker_service_env:
        files.directory(name="docker.service drop-in directory", path=DOCKER_DROPIN_DIR, mode="755")
        dropin = host_base_render.docker_dropin(s)
        name = "docker.service drop-in (environment)"
        if not redact.has_credentials(dropin):
            dropin_ops.append(files.put(name=name, src=StringIO(dropin), dest=DOCKER_DROPIN, mode="644"))
        elif host.get_fact(Sha256File, path=DOCKER_DROPIN) != operations.digest(dropin):
            dropin_ops.append(_write_secret(name, DOCKER_DROPIN, dropin))
        else:
            files.file(name=f"{DOCKER_DROPIN} mode 0600 (holds credentials)", path=DOCKER_DROPIN, mode="600")
    else:
        dropin_ops.append(files.file(name="docker.service drop-in absent", path=DOCKER_DROPIN, present=False))
    return ops, dropin_ops
