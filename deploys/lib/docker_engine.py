"""Docker engine on a host: its packages (from the distribution or Docker's apt repo) and its
configuration (daemon.json merged key by key, the docker.service drop-in); the operations the
docker step (deploys/steps/docker.py) routes through."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.facts.deb import DebArch, DebPackages
from pyinfra.operations import apt, files

from deploys.lib import apt_keys, render
from deploys.lib.host import PreflightError, distro_codename, distro_key
from deploys.lib.paths import APT_KEYRINGS_DIR, DOCKER_CE_KEYRING, DOCKER_CONFIG_DIR, DOCKER_DAEMON_JSON, DOCKER_DROPIN, DOCKER_DROPIN_DIR
from deploys.lib.settings import Settings
from facts.docker import DockerDaemonJson

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
    """Install Docker's packages; apt's index is refreshed only when something is missing."""
    ops = []
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
    installed = host.get_fact(DebPackages) or {}
    missing = [p for p in packages if p.split("=")[0] not in installed]
    if missing or any(op.will_change for op in ops):
        apt.update(name="Refresh apt index (Docker packages missing)")
    ops.append(apt.packages(name="Docker packages", packages=packages, no_recommends=s.docker_source == "distro"))
    return ops


def configure_daemon(s: Settings):
    """Merge our keys into daemon.json (never clobber others') and manage the systemd drop-in."""
    existing = host.get_fact(DockerDaemonJson)
    if existing is not None and "__invalid__" in existing:
        raise PreflightError(
            f"host {s.host}: {DOCKER_DAEMON_JSON} is not valid JSON ({existing['__invalid__']}); "
            "fix or remove it by hand, the deploy will not overwrite it"
        )
    merged = render.merged_daemon_config(existing, s)
    ops = [files.directory(name="Docker config directory", path=DOCKER_CONFIG_DIR, mode="755")]
    if merged != existing:
        ops.append(
            files.put(
                name=f"Docker daemon config {DOCKER_DAEMON_JSON} (merged)",
                src=StringIO(render.daemon_json(merged)),
                dest=DOCKER_DAEMON_JSON,
                mode="644",
            )
        )
    if s.docker_service_env:
        files.directory(name="docker.service drop-in directory", path=DOCKER_DROPIN_DIR, mode="755")
        dropin = files.put(
            name="docker.service drop-in (environment)", src=StringIO(render.docker_dropin(s)), dest=DOCKER_DROPIN, mode="644"
        )
    else:
        dropin = files.file(name="docker.service drop-in absent", path=DOCKER_DROPIN, present=False)
    return ops, dropin
