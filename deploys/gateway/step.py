"""Gateway step: the OpenAI-compatible embeddings API (embeddings_gateway/) as a systemd unit, from a
pinned venv; restarted only when its code, pins, config or unit changed (behind a front door out of its pool,
host by host: deploys/core/rolling.py), reloaded (SIGHUP, no restart) when only its API keys changed;
never touches Triton (deploys/gateway/logic.py)."""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import deploy
from pyinfra.facts.files import Sha256File
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from deploys.core import endpoints, operations, paths, rolling, runtimes, settings
from deploys.core.repo import CONTRACT_SRC, GATEWAY_SRC
from deploys.gateway import logic as gateway


@deploy("Embeddings gateway")
def embeddings_gateway() -> None:
    """The gateway installed, configured, enabled and READY; restarted only on change."""
    s = settings.load(host)
    if not s.gateway_enabled:
        logger.info(f"{host.print_prefix}embeddings gateway skipped (gateway_enabled: false)")
        return
    keys = endpoints.api_keys(s)  # the vault first: a vault problem ends the run before any change
    layout = paths.layout(s)
    g = layout.gateway
    requirements = gateway.REQUIREMENTS
    doors = rolling.front_doors(state.inventory)
    # Behind a front door a gateway that already runs restarts out of the pool, host by host.
    rolls = bool(doors) and host.get_fact(Sha256File, path=paths.GATEWAY_UNIT_FILE) is not None
    unfinished = rolling.pending(host) if rolls else None  # a killed run's roll: restart and back in the pool

    apt.packages(name="Install python3-venv and curl (gateway runtime)", packages=["python3-venv", "curl"])
    server.group(name=f"Group {gateway.SERVICE_USER}", group=gateway.SERVICE_USER, system=True)
    server.user(
        name=f"Service user {gateway.SERVICE_USER}",
        user=gateway.SERVICE_USER,
        group=gateway.SERVICE_USER,
        system=True,
        shell="/usr/sbin/nologin",
        home=g.base,
        create_home=False,
    )
    files.directory(name=f"Directory {g.base}", path=g.base, mode="755")
    # The one pinned-venv operation the verify runtime uses too (verify_wheels_dir honoured here as there).
    wheels = runtimes.check_wheels_dir(s)
    install = operations.pinned_venv(
        name="Install the gateway runtime (pinned)",
        **runtimes.venv_args(s, g, requirements, endpoints.GATEWAY_STEP, "the gateway runtime", wheels),
    )
    # The gateway's code: its package and the model's contract (gateway.shipped_files), nothing of verify/.
    code = files.sync(
        name="Upload the gateway code (embeddings_gateway/)",
        src=str(GATEWAY_SRC),
        dest=g.code,
        exclude=gateway.CODE_EXCLUDE,
        exclude_dir=gateway.CODE_EXCLUDE_DIR,
        delete=True,
    )
    contract = files.put(name="Upload the model's contract (embeddinggemma.py)", src=str(CONTRACT_SRC), dest=g.contract, mode="644")
    files.directory(name="No gateway code left in verify/ (before embeddings_gateway/)", path=g.old_code, present=False)
    config = files.put(
        name="Gateway config (gateway.json)", src=StringIO(gateway.config_text(s, layout, auth=bool(keys))), dest=g.config, mode="644"
    )
    hashes = files.put(
        name="Gateway API key hashes (sha256 only)",
        src=StringIO(gateway.key_hashes_text(keys, endpoints.verify_key(s, keys))),
        dest=g.api_keys,
        user=gateway.SERVICE_USER,
        group=gateway.SERVICE_USER,
        mode="600",
    )
    # Triton's restricted-API key (the triton step made it): the gateway's own copy, read at each
    # model-config call, so a new key needs no restart.
    operations.secret_file(
        name="Gateway copy of Triton's API key (0600, service user)",
        path=g.triton_key,
        src_on_host=layout.triton_key,
        user=gateway.SERVICE_USER,
        group=gateway.SERVICE_USER,
    )
    unit = files.put(
        name=f"Gateway unit {paths.GATEWAY_UNIT}", src=StringIO(gateway.unit_text(s, layout)), dest=paths.GATEWAY_UNIT_FILE, mode="644"
    )

    changed = [op for op in (install, code, contract, config, unit) if op is not None]
    systemd.daemon_reload(name="systemd daemon-reload (gateway unit changed)", _if=unit.did_change)
    if rolls:
        rolling.roll(
            name=f"Restart the gateway behind the front door ({s.rollout_max_unavailable} host(s) out of the pool at a time)",
            plan=gateway.gateway_roll_plan(host, doors, s),
            _parallel=s.rollout_max_unavailable,
            **({} if unfinished else {"_if": any_changed(*changed)}),
        )
    else:
        systemd.service(
            name="Restart the gateway (code, pins, config or unit changed)",
            service=paths.GATEWAY_UNIT,
            restarted=True,
            _if=any_changed(*changed),
        )
    # Keys alone: SIGHUP re-reads them; the gateway keeps serving. (After a restart it read them anyway.)
    systemd.service(name="Reload the gateway's API keys (SIGHUP)", service=paths.GATEWAY_UNIT, reloaded=True, _if=hashes.did_change)
    systemd.service(name="Gateway enabled and running", service=paths.GATEWAY_UNIT, running=True, enabled=True)
    if not rolls:
        operations.wait_ready(
            name=f"Wait for the gateway READY (≤ {s.gateway_ready_timeout_s}s)",
            **endpoints.ready_args(s),
            _if=any_changed(*changed),
        )
