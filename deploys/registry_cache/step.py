"""Registry cache step (hosts of the inventory group ``registry_cache``): the distribution registry from
the distribution's apt (``docker-registry``) as a pull-through cache of the cache host's
``registry_host`` (deploys/registry_cache/logic.py), its upstream credential from the vault.

The config is rendered from templates/registry_cache/registry-cache.yml.j2 and checked on the controller (the
registry has no check mode and ignores unknown keys: the check refuses any key the template does
not write); it holds the upstream's password, so it reaches the host only on stdin, 0600 for the
registry's user, and only when its sha256 differs from the live file's. Then the registry restarts
and the step waits for its /v2/; when it does not answer, the previous config is put back. The TLS
PEM comes from the vault the same way. Nothing changed: no restart.

Then the cache is warmed: each image the Triton hosts of the inventory pull through it that its
storage lacks (facts.registry_cache.RegistryCacheWarm) is fetched from the upstream once
(deploys/registry_cache/registry_warm.py). The step comes before the Triton chain in deploys/all.py, so pyinfra
runs these operations before the hosts' pulls, which the cache then serves from its storage.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import deploy
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from deploys.core import operations, redact, registry, settings
from deploys.registry_cache import logic as registry_cache
from deploys.registry_cache import registry_warm
from deploys.registry_cache import render as registry_cache_render
from facts.disk import DirectoryBytes
from facts.registry_cache import RegistryCacheWarm


@deploy("Registry cache")
def registry_cache_step() -> None:
    """docker-registry installed, proxying the upstream with the vault's credential; restarted only on change."""
    s = settings.load(host)
    registry.check_host(s)
    # The vault first: a problem ends the run before any change.
    cred = registry.credential(s) if s.registry_auth == "vault" else None
    pem = registry_cache.tls_pem(s)
    config = registry_cache_render.registry_cache_config(
        s,
        cred.username if cred else "",
        cred.password.unmask() if cred else "",
        registry_cache.TLS_PEM if pem else "",
    )

    apt.packages(
        name="Install docker-registry (the distribution registry), curl and python3",
        packages=["docker-registry", "curl", "python3"],
        no_recommends=True,
        update=True,
        cache_time=3600,
    )
    changes = [
        files.directory(
            name=f"Cache storage {s.registry_cache_storage_dir}",
            path=s.registry_cache_storage_dir,
            user=registry_cache.USER,
            group=registry_cache.USER,
            mode="750",
        )
    ]
    files.directory(name="docker-registry.service drop-in directory", path=registry_cache.DROPIN.rsplit("/", 1)[0], mode="755")
    dropin = files.put(
        name="docker-registry.service drop-in (restart on failure)",
        src=StringIO(registry_cache.dropin()),
        dest=registry_cache.DROPIN,
        mode="644",
    )
    systemd.daemon_reload(name="systemd daemon-reload (docker-registry drop-in changed)", _if=dropin.did_change)
    changes.append(dropin)
    if pem:
        changes.append(
            operations.secret_file(
                name="Registry cache TLS certificate and key (0600, from the vault)",
                path=registry_cache.TLS_PEM,
                content=redact.Secret(pem),
                user=registry_cache.USER,
                group=registry_cache.USER,
            )
        )
    # No check on the host (the registry has none): registry_cache.check_config checked it on the
    # controller (render). Live with the old file kept; the restart below confirms or puts it back.
    changes.append(
        operations.validated_config(
            name=f"Registry cache config {registry_cache.CONFIG} (checked; 0600, on stdin: it holds the upstream's password)",
            path=registry_cache.CONFIG,
            content=config,
            mode="600",
            user=registry_cache.USER,
            group=registry_cache.USER,
            secret=True,
        )
    )
    operations.wait_ready(
        name="Restart docker-registry and wait for its /v2/ (the previous config back if it does not answer)",
        **registry_cache.restart_wait(s),
        _if=any_changed(*changes),
    )
    systemd.service(name="docker-registry enabled and running", service=registry_cache.SERVICE, running=True, enabled=True)
    if s.registry_cache_warm_platforms:
        script = registry_cache.WARM_SCRIPT
        files.directory(name="Directory of the cache warm script", path=script.rsplit("/", 1)[0], mode="755")
        files.put(name="Cache warm script (deploys/registry_cache/registry_warm.py)", src=registry_warm.__file__, dest=script, mode="644")
        for ref in registry_cache.cache_images(state.inventory):
            repo, tag_or_digest = registry_cache.split_ref(ref)
            found = host.get_fact(
                RegistryCacheWarm,
                script=script,
                storage=s.registry_cache_storage_dir,
                repo=repo,
                ref=tag_or_digest,
                platforms=tuple(s.registry_cache_warm_platforms),
            )
            if found == "warm":
                continue
            logger.info(
                f"{host.print_prefix}registry cache: {repo}@{tag_or_digest} {found or 'not checked yet'}: fetching it from the upstream once"
            )
            server.shell(
                name=f"Warm the cache: {repo}@{tag_or_digest} ({', '.join(s.registry_cache_warm_platforms)}; one fetch from the upstream)",
                commands=[registry_cache.warm_command(s, repo, tag_or_digest)],
            )
    warning = registry_cache.usage_warning(s, host.get_fact(DirectoryBytes, path=s.registry_cache_storage_dir))
    if warning:
        logger.warning(f"{host.print_prefix}{warning}")
