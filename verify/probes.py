"""The parity check's measurements on the host: latency percentiles, GPU memory (NVML), model file
digests, and the padded batches it sends (alone and batched embeddings through a backend)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verify.client import EMBEDDING_DIM, TextEncoder
from verify.samples import Sample

LONG_SAMPLE = "d-long-max"  # the sample longer than any max length


def percentiles(durations_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/mean in milliseconds."""
    ms = np.asarray(durations_s, np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "n": int(ms.size),
    }


def time_calls(call: Callable[[], object], iterations: int, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of ``iterations`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return durations


def gpu_snapshot() -> dict[str, Any] | None:
    """Driver and per-GPU memory use via NVML; None where NVML (or a GPU) is absent."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            devices.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_used_mib": round(memory.used / 2**20, 1),
                    "memory_total_mib": round(memory.total / 2**20, 1),
                }
            )
        return {"driver": driver.decode() if isinstance(driver, bytes) else driver, "devices": devices}
    finally:
        pynvml.nvmlShutdown()


def file_digests(directory: Path, names: Sequence[str]) -> dict[str, str]:
    """sha256 of the files ``names`` that exist in ``directory``."""
    digests = {}
    for path in (Path(directory) / name for name in names):
        if not path.is_file():
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[path.name] = digest.hexdigest()
    return digests


def batches(sample_list: Sequence[Sample], lengths: Sequence[int], max_batch: int, max_length: int) -> list[tuple[list[int], int]]:
    """Padded batches as (sample indexes, pad length): the ordinary samples in groups of
    ``max_batch`` padded to their longest, and the long sample with the shortest one padded to the
    max length (heavy padding)."""
    long_index = next((i for i, s in enumerate(sample_list) if s.id == LONG_SAMPLE), None)
    ordinary = [i for i in range(len(sample_list)) if i != long_index]
    groups = []
    size = max(1, max_batch)
    for start in range(0, len(ordinary), size):
        chunk = ordinary[start : start + size]
        groups.append((chunk, max(lengths[i] for i in chunk) + (1 if size == 1 else 0)))
    if long_index is not None:
        shortest = min(ordinary, key=lambda i: lengths[i]) if ordinary else None
        chunk = [long_index] + ([shortest] if shortest is not None and size > 1 else [])
        groups.append((chunk, max(max(lengths[i] for i in chunk), min(max_length, lengths[long_index]))))
    return groups


def embed_alone(backend: Any, encoder: TextEncoder, id_lists: Sequence[Sequence[int]]) -> np.ndarray:
    return np.stack([backend.infer(*encoder.pad([ids], length=len(ids)))[0] for ids in id_lists])


def embed_batched(backend: Any, encoder: TextEncoder, id_lists: Sequence[Sequence[int]], groups: list[tuple[list[int], int]]) -> np.ndarray:
    out = np.full((len(id_lists), EMBEDDING_DIM), np.nan, dtype=np.float32)
    for chunk, length in groups:
        out[chunk] = backend.infer(*encoder.pad([id_lists[i] for i in chunk], length=length))
    return out
