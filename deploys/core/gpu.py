"""Whether a host is a GPU host: asked by the host base (preflight, toolkit), Triton and verify."""

from __future__ import annotations

from pyinfra import host

from deploys.core.settings import Settings
from facts.gpu import NvidiaGpus
from facts.nvidia_host import NvidiaHost


def is_gpu_host(s: Settings) -> bool:
    """Resolve the `gpu` setting: true/false as given, "auto" from the nvidia-smi fact or, on a
    host without a driver yet, an NVIDIA GPU on its PCI bus (facts/nvidia_host.py)."""
    if s.gpu == "auto":
        # A failing nvidia-smi still means a GPU box: check_gpus then explains the driver problem.
        fact = host.get_fact(NvidiaGpus)
        return bool(fact["gpus"] or fact["error"] or host.get_fact(NvidiaHost)["gpus"])
    return bool(s.gpu)
