"""Rolling reboots of the Triton hosts that need one, behind the front door (docs/driver.md: the runbook):

    pyinfra inventories/prod.py deploys/reboot.py -y

A host needs a reboot when its NVIDIA module was installed or changed and is not the loaded one, no
module exists for the running kernel, nouveau is loaded, or /var/run/reboot-required exists (the
driver step's install, kernel security updates). Only those hosts reboot, each drained first, at
most ``rollout_max_unavailable`` at once, checked after the boot (driver, fabric manager, GPU smoke
run, Triton READY, parity) and back in the pool before the next (deploys/host_base/reboot.py). A
fleet without a front door reboots only with ``reboot_without_front_door: true``. A re-run on hosts
that need nothing reboots nothing.
"""

from pyinfra import host, logger, state

from deploys.core import connection, endpoints, paths, rolling, settings
from deploys.core.gpu import is_gpu_host
from deploys.core.roles import is_triton_host
from deploys.deploy_lock.step import lock, unlock
from deploys.host_base import driver
from deploys.host_base.reboot import reboot_roll
from deploys.triton import verify_run
from deploys.triton.triton_service import gpu_smoke_command, wait_ready_command
from facts.nvidia_host import NvidiaHost

connection.install(state)
settings.validate_fleet(state)


def after_boot_checks(s: settings.Settings, facts: dict, gpu: bool) -> str:
    """The checks a rebooted host passes before it is back in the pool; only the parity check's
    verdict goes to stdout (the roll's judge reads it)."""
    parts = []
    expected = facts["module_for_kernel"] if facts["module_for_kernel"] not in (None, "present") else driver.installed_driver(facts)
    if gpu and expected:
        parts.append(
            f'v=$(timeout 60 nvidia-smi --query-gpu=driver_version --format=csv,noheader | sort -u); [ "$v" = {expected} ] || '
            f"{{ echo \"nvidia-smi shows driver '$v' after the reboot, {expected} expected\" >&2; exit 1; }}"
        )
    if gpu and facts["nvswitches"]:
        parts.append(
            "systemctl is-active --quiet nvidia-fabricmanager || { echo 'nvidia-fabricmanager is not active after the reboot' >&2; exit 1; }"
        )
    if gpu:
        parts.append(gpu_smoke_command(s))
    parts.append(wait_ready_command(s))
    if s.gateway_enabled:
        parts.append(f"if systemctl is-enabled --quiet {paths.GATEWAY_UNIT}; then {endpoints.wait_ready_command(s)}; fi")
    checks = " && ".join(f"( {part} ) >&2" for part in parts)
    if s.verify_enabled:
        checks += " && " + verify_run.roll_check_command(s, paths.layout(s), verify_run.local_device(s, gpu))
    return checks


if is_triton_host(host):  # front doors and monitoring hosts are not rebooted by this command
    lock()
    s = settings.load(host)
    facts = host.get_fact(NvidiaHost)
    gpu = is_gpu_host(s)
    reasons = driver.reboot_reasons(facts, driver.installed_driver(facts) if gpu else None)
    if not reasons:
        logger.info(f"{host.print_prefix}no reboot needed")
    else:
        doors = rolling.front_doors(state.inventory)
        if not doors and not s.reboot_without_front_door:
            raise settings.SettingsError(
                f"host {host.name} needs a reboot ({'; '.join(reasons)}) but the fleet has no front door: its clients would see it go away; "
                "reboot it in a maintenance window, or set reboot_without_front_door: true"
            )
        plan = rolling.plan_for(
            host,
            doors,
            s,
            what="reboot",
            start=s.reboot_command,
            start_timeout_s=s.reboot_timeout_s,
            check=after_boot_checks(s, facts, gpu),
            check_timeout_s=s.triton_ready_timeout_s + s.gateway_ready_timeout_s + 900,
            judge=verify_run.roll_verdict(host.name) if s.verify_enabled else None,
        )
        reboot_roll(
            name=f"Reboot behind the front door ({s.rollout_max_unavailable} host(s) out of the pool at a time)",
            plan=plan,
            reasons=tuple(reasons),
            _parallel=s.rollout_max_unavailable,
        )
    unlock()
