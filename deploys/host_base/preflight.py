"""Preflight step: read-only checks that a host can run the pinned Triton image, before anything
changes (deploys/host_base/host.py holds the checks). A failing host ends the whole run while pyinfra is
still planning, so no host is changed (pyinfra plans every host before it executes any operation).
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy

from deploys.core import settings
from deploys.host_base.host import check_disk, check_distro, check_driver_host, check_gpus, distro_key, is_gpu_host


@deploy("Preflight")
def preflight() -> None:
    """Read-only checks: distribution, GPUs and driver (GPU hosts), free disk."""
    s = settings.load(host)
    check_distro(s)
    gpu = is_gpu_host(s)
    if gpu:
        check_gpus(s)
        check_driver_host(s)
    check_disk(s, gpu)
    logger.info(f"{host.print_prefix}preflight ok: {' '.join(map(str, distro_key()))}, {'GPU' if gpu else 'CPU'} profile")
