"""GPU inventory from ``nvidia-smi`` and the data-centre GPU classifier preflight uses.

Stand-in note: no GPU exists where this project is developed, so the tests feed these parsers
outputs in the exact formats ``nvidia-smi`` prints (and run the command through a shell with a
scripted ``nvidia-smi`` on PATH); the parsing is the same code that runs on real hosts.
"""

from __future__ import annotations

import re
from typing import TypedDict

from pyinfra.api import FactBase

from facts._shell import RC_MARKER, split_rc, when_present

QUERY_FIELDS = ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap")
# nvidia-smi can hang for minutes when the driver is wedged; a fact must not hang the deploy.
SMI_TIMEOUT_S = 60


class Gpu(TypedDict):
    index: int
    name: str
    uuid: str
    driver_version: str
    driver_major: int
    memory_total_mib: int | None  # None where nvidia-smi prints [N/A]
    compute_capability: float | None  # None where nvidia-smi prints [N/A]


class GpuInventory(TypedDict):
    smi: bool  # nvidia-smi is on PATH
    error: str | None  # nvidia-smi ran but failed (its own message), or printed no GPU
    gpus: list[Gpu]


def _int_or_none(field: str) -> int | None:
    """nvidia-smi prints ``[N/A]`` (or ``[Not Supported]``) for values a GPU does not report."""
    return None if field.startswith("[") else int(field)


def _float_or_none(field: str) -> float | None:
    return None if field.startswith("[") else float(field)


def parse_gpu_line(line: str) -> Gpu | None:
    """Parse one ``--format=csv,noheader,nounits`` row; None when the line is not a GPU row."""
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != len(QUERY_FIELDS):
        return None
    index, name, uuid, driver, memory, cc = fields
    try:
        return {
            "index": int(index),
            "name": name,
            "uuid": uuid,
            "driver_version": driver,
            "driver_major": int(driver.split(".")[0]),
            "memory_total_mib": _int_or_none(memory),
            "compute_capability": _float_or_none(cc),
        }
    except ValueError:
        return None


class NvidiaGpus(FactBase[GpuInventory]):
    """
    GPUs as ``nvidia-smi`` reports them:

    .. code:: python

        {"smi": True, "error": None, "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
          "uuid": "GPU-…", "driver_version": "575.57.08", "driver_major": 575,
          "memory_total_mib": 81559, "compute_capability": 9.0}]}

    No ``nvidia-smi``: ``{"smi": False, "error": None, "gpus": []}``. ``nvidia-smi`` failing (no
    driver loaded, "No devices were found", driver/library mismatch, a hang): ``smi`` True,
    ``error`` its message, ``gpus`` whatever rows it still printed (usually none).
    """

    def command(self) -> str:
        query = ",".join(QUERY_FIELDS)
        smi = f"timeout {SMI_TIMEOUT_S} nvidia-smi --query-gpu={query} --format=csv,noheader,nounits 2>&1"
        # The exit status goes on its own line so that a failure is reported, not fatal.
        return when_present("nvidia-smi", f'{smi}; echo "{RC_MARKER}$?"')

    @staticmethod
    def default() -> GpuInventory:
        return {"smi": False, "error": None, "gpus": []}

    def process(self, output: list[str]) -> GpuInventory:
        lines, rc = split_rc(output)
        gpus: list[Gpu] = []
        messages: list[str] = []
        for line in lines:
            if not line.strip():
                continue
            gpu = parse_gpu_line(line)
            if gpu is None:
                messages.append(line.strip())
            else:
                gpus.append(gpu)

        error: str | None = None
        if rc == 124:
            error = f"nvidia-smi did not answer within {SMI_TIMEOUT_S}s (driver hung?)"
        elif rc not in (0, None) or not gpus:
            error = " ".join(messages) or (f"nvidia-smi exited with status {rc}" if rc else "nvidia-smi listed no GPU")
        return {"smi": True, "error": error, "gpus": gpus}


# Model tokens of NVIDIA data-centre GPUs (what a name like "NVIDIA A100-SXM4-40GB" splits into).
# These are the GPUs NVIDIA's forward-compatibility packages and older "data center" driver
# branches support; GeForce/Quadro/RTX workstation cards are not among them.
_DATACENTER_MODEL = re.compile(
    r"^(?:"
    r"A100|A10[GM]?|A16|A2|A30|A40|A800"  # Ampere
    r"|H100|H200|H800|H20|GH200"  # Hopper
    r"|B100|B200|B300|GB200|GB300"  # Blackwell
    r"|L4|L20|L40S?"  # Ada
    r"|T4|T4G"  # Turing
    r"|V100S?|P100|P40|P4|P6|K80|K40|M60|M40"  # Volta and older
    r")$",
    re.IGNORECASE,
)


def is_datacenter_gpu(name: str) -> bool:
    """True for NVIDIA data-centre GPUs (A100, A10, H100, L4, L40S, T4, V100, B200, GH200, …).

    Matches whole model tokens, so "NVIDIA RTX A6000" or "NVIDIA GeForce RTX 4090" stay False.
    Every "Tesla"-branded board and RTX "Server Edition" boards are data-centre parts too.
    """
    if re.search(r"\btesla\b|server edition", name, re.IGNORECASE):
        return True
    tokens = re.split(r"[\s\-_/]+", name.strip())
    return any(_DATACENTER_MODEL.match(token) for token in tokens)
