"""What a Triton host's restart behind the front door runs (deploys/core/rolling.py rolls it): the
new release live (``current`` switched, ``docker compose up -d``, Triton READY, the gateway's /ready
when it runs), the parity check, and the way back to the release it served."""

from __future__ import annotations

from typing import Any

from deploys.core import endpoints, paths
from deploys.core.rolling import RollPlan, plan_for
from deploys.core.settings import Settings
from deploys.triton import release, verify_run
from deploys.triton.triton_service import compose_up_command, forces_recreate, wait_ready_command


def _gateway_ready_if_running(s: Settings) -> str:
    """Wait for the gateway's /ready when its unit runs (a host deployed before the gateway has none yet)."""
    if not s.gateway_enabled:
        return "true"
    return f"if systemctl is-active --quiet {paths.GATEWAY_UNIT}; then {endpoints.wait_ready_command(s)}; fi"


def _go_live(s: Settings, layout: paths.Layout, target: str, keep_previous: bool, force: bool) -> str:
    """Switch ``current`` to release ``target``, ``docker compose up -d`` it, Triton READY, the gateway READY."""
    up = compose_up_command(s, layout.release(target).compose_file, *(["--force-recreate"] if force else []))
    parts = [
        release.switch_command(layout.root, target, keep_previous),
        f"( {up} )",
        f"( {wait_ready_command(s)} )",
        f"( {_gateway_ready_if_running(s)} )",
    ]
    return " && ".join(parts)


def triton_roll_plan(
    host: Any,
    doors: tuple[str, ...],
    s: Settings,
    gpu: bool,
    new: str,
    reason: str,
    back_to: str | None,
    previous: str | None,
    triton_key: bool = True,
) -> RollPlan:
    """The Triton step's roll: release ``new`` live, READY, parity of Triton with local ONNX Runtime;
    on failure back to ``back_to`` (the release the container served), READY, with ``previous``
    (the host's ``previous`` before the roll) put back too."""
    layout = paths.layout(s)
    # Each part bounds itself (compose up, READY, the gateway's /ready); this bounds the lot.
    start_timeout = s.triton_start_timeout_s + s.triton_ready_timeout_s + s.gateway_ready_timeout_s + 60
    device = verify_run.local_device(s, gpu)
    return plan_for(
        host,
        doors,
        s,
        what=f"Triton release {new}",
        start=_go_live(s, layout, new, keep_previous=False, force=forces_recreate(reason)),
        start_timeout_s=start_timeout,
        check=verify_run.roll_check_command(s, layout, device, triton_key=triton_key) if s.verify_enabled else "",
        check_timeout_s=900,
        judge=verify_run.roll_verdict(host.name),
        roll_back=(
            _go_live(s, layout, back_to, keep_previous=True, force=False)
            + f" && {release.restore_previous_command(layout.root, previous, back_to)}"
            if back_to
            else ""
        ),
        roll_back_to=back_to or "",
    )
