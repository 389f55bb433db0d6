"""Parity check: Triton (HTTP and gRPC) against local ONNX Runtime on the same model files.

Run on the host that serves the model::

    python -m verify.parity --model-dir /opt/triton-embeddinggemma/models/embeddinggemma/1 \\
        --tokenizer-dir /opt/triton-embeddinggemma/tokenizer \\
        --url 127.0.0.1:6000 --grpc-url 127.0.0.1:6001 --report parity.json

It embeds the fixed samples of verify/samples.py (queries and documents with their task prefixes,
several scripts, one text longer than the max length) and checks, per sample:

- Triton vs local ONNX Runtime, each protocol: cosine ≥ --min-cosine, max |Δ| ≤ --max-abs-diff;
- L2 norm within --norm-tolerance of 1, and every value finite (NaN/inf fail);
- batch invariance: the sample inside a right-padded batch vs alone (same thresholds);
- Matryoshka 512/256/128: truncated and re-normalised, Triton vs local (same thresholds);
- with --gateway-url: the embeddings gateway (embeddings_gateway/app.py, OpenAI's POST /v1/embeddings) on
  the same sample texts (sent with ``input_type: none``: they carry their prompts already), at every
  Matryoshka dimension, ``float`` and ``base64``: each vector vs the local embedding truncated and
  re-normalised (same thresholds), float and base64 bit-identical, ``usage.prompt_tokens`` equal to
  the local tokenizer's count.

It also measures latency (p50/p95, batch 1 and the max batch) and, when NVML is available, GPU
memory before and after. One JSON report (fields: the README's "Report fields"). Exit status: 0 pass,
1 mismatch (the message names the worst sample; also a gateway that is down, not ready within
--timeout or refuses the key: the rest of the report stays), 2 error (Triton unreachable or not
ready within --timeout, wrong model contract, missing files).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import platform
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verify import options
from verify.client import EMBEDDING_DIM, MATRYOSHKA_DIMS, EmbeddingError, TextEncoder, TritonBackend, truncate
from verify.samples import Sample, samples

REPORT_VERSION = 2  # 2: the gateway section, samples[].gateway, failures of check "gateway"
EXIT_PASS, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
PROTOCOLS = ("http", "grpc")
LATENCY_SAMPLE = "q-short-en"  # batch 1
LATENCY_BATCH_SAMPLE = "d-medium"  # the max batch: copies of a mid-length document
LONG_SAMPLE = "d-long-max"
GATEWAY_ENCODINGS = ("float", "base64")


@dataclass(frozen=True)
class Thresholds:
    """Acceptance limits; they come from the verify_* settings (defaults: verify/options.py)."""

    min_cosine: float = options.BY_NAME["min_cosine"].default
    max_abs_diff: float = options.BY_NAME["max_abs_diff"].default
    norm_tolerance: float = options.BY_NAME["norm_tolerance"].default


@dataclass(frozen=True)
class Failure:
    """One failed check."""

    check: str  # parity, batch, matryoshka, norm, finite, gateway
    sample: str
    source: str  # http, grpc, http-batch, local, gateway-{dim}-{encoding}, gateway, ...
    message: str
    cosine: float | None = None
    max_abs_diff: float | None = None


@dataclass
class Evaluation:
    """Per-sample metrics, failures and the summary of one parity run."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _finite(x: float) -> float | None:
    """JSON-safe float: NaN/inf become null."""
    return float(x) if math.isfinite(x) else None


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity in float64; NaN when either vector is non-finite or zero."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.all(np.isfinite(a64)) and np.all(np.isfinite(b64))):
        return math.nan
    denominator = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    return float(a64 @ b64) / denominator if denominator > 0 else math.nan


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute component difference; NaN when any value is non-finite."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(diff.max()) if np.all(np.isfinite(diff)) else math.nan


def _close(cos: float, diff: float, limits: Thresholds) -> bool:
    # Written so that NaN fails: every comparison with NaN is False.
    return cos >= limits.min_cosine and diff <= limits.max_abs_diff


def _describe(cos: float, diff: float, limits: Thresholds) -> str:
    parts = []
    if not cos >= limits.min_cosine:
        parts.append(f"cosine {cos:.6f} < {limits.min_cosine}")
    if not diff <= limits.max_abs_diff:
        parts.append(f"max abs diff {diff:.3g} > {limits.max_abs_diff}")
    return ", ".join(parts) or "ok"


@dataclass
class _Extremes:
    """Running worst values of one evaluation (NaN makes a minimum -inf and a maximum inf)."""

    min_cos: float = math.inf
    max_diff: float = 0.0
    max_norm_error: float = 0.0
    batch_min_cos: float = math.inf
    matryoshka_min_cos: float = math.inf
    worst: tuple[float, str, str] | None = None  # (cosine, sample, source); NaN sorts first

    def note(self, cos: float, sample: str, source: str) -> None:
        key = -math.inf if math.isnan(cos) else cos
        if self.worst is None or key < self.worst[0]:
            self.worst = (key, sample, source)


def _metrics(cos: float, diff: float, norm: float) -> dict[str, float | None]:
    return {"cosine": _finite(cos), "max_abs_diff": _finite(diff), "norm": _finite(norm)}


def check_local_finite(sample_id: str, reference: np.ndarray) -> list[Failure]:
    """finite: the local ONNX Runtime output itself has no NaN/inf."""
    if np.all(np.isfinite(reference)):
        return []
    return [
        Failure(
            "finite",
            sample_id,
            "local",
            f"local ONNX Runtime output for {sample_id!r} has NaN/inf: the model itself is broken (fp16 overflow?)",
        )
    ]


def check_finite(sample_id: str, source: str, vector: np.ndarray) -> list[Failure]:
    """finite: a Triton output has no NaN/inf."""
    if np.all(np.isfinite(vector)):
        return []
    return [Failure("finite", sample_id, source, f"Triton ({source}) output for {sample_id!r} has NaN/inf", None, None)]


def check_norm(sample_id: str, source: str, norm: float, limits: Thresholds) -> list[Failure]:
    """norm: a Triton embedding is unit-length within norm_tolerance."""
    if abs(norm - 1.0) <= limits.norm_tolerance:
        return []
    return [Failure("norm", sample_id, source, f"L2 norm {norm:.6f} of {sample_id!r} ({source}) is not 1 ± {limits.norm_tolerance}")]


def check_parity(sample_id: str, source: str, cos: float, diff: float, limits: Thresholds, batched: bool) -> list[Failure]:
    """parity (batch, for a batched source): Triton vs local ONNX Runtime within the thresholds."""
    if _close(cos, diff, limits):
        return []
    check = "batch" if batched else "parity"
    return [
        Failure(
            check,
            sample_id,
            source,
            f"{sample_id!r} via {source} vs local ONNX Runtime: {_describe(cos, diff, limits)}",
            _finite(cos),
            _finite(diff),
        )
    ]


def check_batch_invariance(
    index: int,
    sample_id: str,
    row: dict[str, Any],
    triton: dict[str, np.ndarray],
    batched: dict[str, np.ndarray],
    limits: Thresholds,
    extremes: _Extremes,
) -> list[Failure]:
    """batch: the same server, a sample alone vs inside a padded batch."""
    failures = []
    for source, arrays in batched.items():
        alone = triton.get(source.split("-")[0])
        if alone is None:
            continue
        cos, diff = cosine(alone[index], arrays[index]), max_abs_diff(alone[index], arrays[index])
        row[source]["cosine_vs_alone"], row[source]["max_abs_diff_vs_alone"] = _finite(cos), _finite(diff)
        extremes.batch_min_cos = min(extremes.batch_min_cos, cos) if not math.isnan(cos) else -math.inf
        if not _close(cos, diff, limits) and np.all(np.isfinite(arrays[index])) and np.all(np.isfinite(alone[index])):
            failures.append(
                Failure(
                    "batch",
                    sample_id,
                    source,
                    f"{sample_id!r} inside a padded batch vs alone: {_describe(cos, diff, limits)}",
                    _finite(cos),
                    _finite(diff),
                )
            )
            extremes.note(cos, sample_id, source)
    return failures


def check_matryoshka(
    sample_id: str, row: dict[str, Any], reference: np.ndarray, first: str, served: np.ndarray, limits: Thresholds, extremes: _Extremes
) -> list[Failure]:
    """matryoshka: truncated to 512/256/128 and re-normalised, Triton (first protocol) vs local."""
    failures = []
    row["matryoshka"] = {}
    for dim in MATRYOSHKA_DIMS[1:]:
        a, b = truncate(reference[None], dim)[0], truncate(served[None], dim)[0]
        cos, diff = cosine(a, b), max_abs_diff(a, b)
        norm = float(np.linalg.norm(np.asarray(b, np.float64)))
        row["matryoshka"][str(dim)] = _metrics(cos, diff, norm)
        extremes.matryoshka_min_cos = min(extremes.matryoshka_min_cos, cos) if not math.isnan(cos) else -math.inf
        if np.all(np.isfinite(b)) and (not _close(cos, diff, limits) or not abs(norm - 1.0) <= limits.norm_tolerance):
            message = f"{sample_id!r} truncated to {dim}: {_describe(cos, diff, limits)}, norm {norm:.6f}"
            failures.append(Failure("matryoshka", sample_id, f"{first}-{dim}", message, _finite(cos), _finite(diff)))
    return failures


def _compare_sources(
    index: int,
    sample_id: str,
    row: dict[str, Any],
    reference: np.ndarray,
    triton: dict[str, np.ndarray],
    batched: dict[str, np.ndarray],
    limits: Thresholds,
    extremes: _Extremes,
) -> list[Failure]:
    """Each source (alone and batched) vs local: finite, then norm and parity."""
    failures = []
    for source, arrays in list(triton.items()) + list(batched.items()):
        vector = arrays[index]
        cos, diff = cosine(reference, vector), max_abs_diff(reference, vector)
        norm = float(np.linalg.norm(np.asarray(vector, np.float64)))
        row[source] = _metrics(cos, diff, norm)
        extremes.note(cos, sample_id, source)
        extremes.min_cos = min(extremes.min_cos, cos) if not math.isnan(cos) else -math.inf
        extremes.max_diff = max(extremes.max_diff, diff) if not math.isnan(diff) else math.inf
        not_finite = check_finite(sample_id, source, vector)
        if not_finite:
            failures += not_finite
            continue
        extremes.max_norm_error = max(extremes.max_norm_error, abs(norm - 1.0))
        failures += check_norm(sample_id, source, norm, limits)
        failures += check_parity(sample_id, source, cos, diff, limits, batched=source in batched)
    return failures


def evaluate(
    ids: Sequence[str],
    local: np.ndarray,
    triton: dict[str, np.ndarray],
    batched: dict[str, np.ndarray],
    limits: Thresholds,
) -> Evaluation:
    """Compare embeddings ``[n, 768]``: ``local`` (ONNX Runtime, each sample alone), ``triton``
    ({protocol: each sample alone}) and ``batched`` ({source: the samples inside padded batches}).

    Pure function: the parity verdict is decided here, one ``check_*`` function per check kind."""
    result = Evaluation()
    extremes = _Extremes()
    first = next(iter(triton))
    for index, sample_id in enumerate(ids):
        row: dict[str, Any] = {"id": sample_id}
        reference = local[index]
        result.failures += check_local_finite(sample_id, reference)
        result.failures += _compare_sources(index, sample_id, row, reference, triton, batched, limits, extremes)
        result.failures += check_batch_invariance(index, sample_id, row, triton, batched, limits, extremes)
        result.failures += check_matryoshka(sample_id, row, reference, first, triton[first][index], limits, extremes)
        result.rows.append(row)

    worst = extremes.worst
    result.summary = {
        "samples": len(ids),
        "min_cosine": _finite(extremes.min_cos),
        "max_abs_diff": _finite(extremes.max_diff),
        "max_norm_error": _finite(extremes.max_norm_error),
        "batch_min_cosine_vs_alone": _finite(extremes.batch_min_cos),
        "matryoshka_min_cosine": _finite(extremes.matryoshka_min_cos),
        "worst": None if worst is None else {"sample": worst[1], "source": worst[2], "cosine": _finite(worst[0])},
    }
    return result


# -- the embeddings gateway (embeddings_gateway/app.py): the same samples as text, every dimension and encoding --


def check_gateway(
    sample_id: str,
    row: dict[str, Any],
    reference: np.ndarray,
    dim: int,
    encoding: str,
    served: np.ndarray,
    limits: Thresholds,
    extremes: _Extremes,
) -> list[Failure]:
    """gateway: one vector of /v1/embeddings vs the local embedding truncated to ``dim`` and
    re-normalised: finite, unit norm, and within the thresholds."""
    source = f"gateway-{dim}-{encoding}"
    expected = truncate(reference[None], dim)[0]
    cos, diff = cosine(expected, served), max_abs_diff(expected, served)
    norm = float(np.linalg.norm(np.asarray(served, np.float64)))
    metrics, kept = _metrics(cos, diff, norm), row.get(str(dim))
    if kept is None or metrics["cosine"] is None or (kept["cosine"] is not None and metrics["cosine"] < kept["cosine"]):
        row[str(dim)] = metrics  # the worse encoding's numbers
    if not np.all(np.isfinite(reference)):
        return []  # the local run is broken: check_local_finite says so once
    extremes.note(cos, sample_id, source)
    extremes.min_cos = min(extremes.min_cos, cos) if not math.isnan(cos) else -math.inf
    extremes.max_diff = max(extremes.max_diff, diff) if not math.isnan(diff) else math.inf
    if not np.all(np.isfinite(served)):
        return [Failure("gateway", sample_id, source, f"the gateway's embedding of {sample_id!r} ({dim}, {encoding}) has NaN/inf")]
    extremes.max_norm_error = max(extremes.max_norm_error, abs(norm - 1.0))
    problems = []
    if not _close(cos, diff, limits):
        problems.append(_describe(cos, diff, limits))
    if not abs(norm - 1.0) <= limits.norm_tolerance:
        problems.append(f"L2 norm {norm:.6f} is not 1 ± {limits.norm_tolerance}")
    if not problems:
        return []
    message = f"{sample_id!r} via the gateway (dimensions {dim}, {encoding}) vs local ONNX Runtime: {', '.join(problems)}"
    return [Failure("gateway", sample_id, source, message, _finite(cos), _finite(diff))]


# float and base64 come from two requests: under load the gateway batches each with other callers'
# work, and a different batch may move the last bits (8.2e-08 seen in a roll under load). An encoding
# fault (float16, bfloat16, float64 bytes, the wrong byte order) is 1e-5 or more off on a unit vector.
ENCODING_MAX_ABS_DIFF = 1e-6


def check_gateway_encodings(ids: Sequence[str], dim: int, floats: np.ndarray, base64s: np.ndarray) -> list[Failure]:
    """gateway: ``encoding_format`` float and base64 give the same float32 vector (to batching's last bits)."""
    failures = []
    for index, sample_id in enumerate(ids):
        a, b = np.asarray(floats[index], np.float32), np.asarray(base64s[index], np.float32)
        if a.shape != b.shape or not max_abs_diff(a, b) <= ENCODING_MAX_ABS_DIFF:
            diff = max_abs_diff(a, b) if a.shape == b.shape else math.nan
            message = f"{sample_id!r} via the gateway (dimensions {dim}): float and base64 differ (max abs diff {diff:.3g})"
            failures.append(Failure("gateway", sample_id, f"gateway-{dim}", message, None, _finite(diff)))
    return failures


def check_gateway_usage(label: str, source: str, prompt_tokens: Any, expected: int) -> list[Failure]:
    """gateway: ``usage.prompt_tokens`` of a request equals the local tokenizer's count of its inputs."""
    if prompt_tokens == expected and type(prompt_tokens) is int:
        return []
    message = f"gateway usage.prompt_tokens {prompt_tokens!r} for {label} ({source}), the local tokenizer counts {expected}"
    return [Failure("gateway", label, source, message)]


@dataclass
class GatewayAnswers:
    """What the gateway answered: ``vectors[(dim, encoding)]`` ``[n, dim]`` (NaN rows: not sent), and
    per request ``(label, source, prompt_tokens, expected tokens)``."""

    vectors: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    usage: list[tuple[str, str, Any, int]] = field(default_factory=list)
    requests: int = 0
    prompt_tokens: int = 0


def evaluate_gateway(
    ids: Sequence[str], references: np.ndarray, answers: GatewayAnswers, sent: Sequence[bool], limits: Thresholds
) -> Evaluation:
    """The gateway's answers vs ``references`` (local ONNX Runtime ``[n, 768]`` on the token ids the
    gateway embeds). Pure: one ``check_gateway*`` function per check; rows are ``{dim: metrics}``
    per sample (the worse encoding), ``None`` for a sample not sent."""
    result = Evaluation()
    extremes = _Extremes()
    dims = sorted({dim for dim, _ in answers.vectors}, reverse=True)
    for index, sample_id in enumerate(ids):
        row: dict[str, Any] = {}
        if sent[index]:
            for dim in dims:
                for encoding in GATEWAY_ENCODINGS:
                    served = answers.vectors.get((dim, encoding))
                    if served is not None:
                        result.failures += check_gateway(sample_id, row, references[index], dim, encoding, served[index], limits, extremes)
        result.rows.append(row if sent[index] else None)
    sent_ids = [sample_id for sample_id, is_sent in zip(ids, sent, strict=True) if is_sent]
    sent_index = [i for i, is_sent in enumerate(sent) if is_sent]
    for dim in dims:
        floats, base64s = answers.vectors.get((dim, "float")), answers.vectors.get((dim, "base64"))
        if floats is not None and base64s is not None:
            result.failures += check_gateway_encodings(sent_ids, dim, floats[sent_index], base64s[sent_index])
    for label, source, prompt_tokens, expected in answers.usage:
        result.failures += check_gateway_usage(label, source, prompt_tokens, expected)
    worst = extremes.worst
    result.summary = {
        "min_cosine": _finite(extremes.min_cos) if worst is not None else None,
        "max_abs_diff": _finite(extremes.max_diff) if worst is not None else None,
        "max_norm_error": _finite(extremes.max_norm_error) if worst is not None else None,
        "worst": None if worst is None else {"sample": worst[1], "source": worst[2], "cosine": _finite(worst[0])},
    }
    # The worst comparison's failure first: verdict_message names it when the gateway alone failed.
    if worst is not None:
        result.failures.sort(key=lambda f: (f.sample, f.source) != (worst[1], worst[2]))
    return result


def verdict_message(evaluation: Evaluation, gateway: dict[str, Any] | None = None) -> str:
    """One line: PASS, or FAIL naming the worst sample and the first failure of each kind. Triton's
    own failures come first; the gateway's worst one is named when only the gateway failed.
    ``gateway``: the report's gateway section (PASS then says what the gateway check did)."""
    worst = evaluation.summary.get("worst") or {}
    if not evaluation.failures:
        suffix = ""
        if gateway is not None:
            suffix = (
                f"; gateway: {gateway['requests']} requests, min cosine {gateway['min_cosine']}"
                if gateway.get("checked")
                else "; gateway not checked"
            )
        return (
            f"parity PASS: {evaluation.summary['samples']} samples, min cosine {evaluation.summary['min_cosine']}, "
            f"max abs diff {evaluation.summary['max_abs_diff']}{suffix}"
        )
    direct = [f for f in evaluation.failures if f.check != "gateway"]
    if direct:
        worst_failure = next(
            (f for f in direct if (f.sample, f.source) == (worst.get("sample"), worst.get("source"))),
            next((f for f in direct if f.sample == worst.get("sample")), direct[0]),
        )
    else:
        worst_failure = evaluation.failures[0]  # evaluate_gateway sorts the worst first
    kinds = sorted({f.check for f in evaluation.failures})
    return (
        f"parity FAIL: {len(evaluation.failures)} failed checks ({', '.join(kinds)}); worst sample {worst_failure.sample!r} "
        f"({worst_failure.source}): {worst_failure.message}"
    )


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


def _embed_alone(backend: Any, encoder: TextEncoder, id_lists: Sequence[Sequence[int]]) -> np.ndarray:
    return np.stack([backend.infer(*encoder.pad([ids], length=len(ids)))[0] for ids in id_lists])


def _embed_batched(
    backend: Any, encoder: TextEncoder, id_lists: Sequence[Sequence[int]], groups: list[tuple[list[int], int]]
) -> np.ndarray:
    out = np.full((len(id_lists), EMBEDDING_DIM), np.nan, dtype=np.float32)
    for chunk, length in groups:
        out[chunk] = backend.infer(*encoder.pad([id_lists[i] for i in chunk], length=length))
    return out


class GatewayError(Exception):
    """The gateway could not be asked (down, not ready, refused the key, a malformed answer): one line naming it."""


def _error_detail(status: int, body: bytes) -> str:
    """``HTTP 401 invalid_api_key: message`` from an OpenAI-shaped error body (else its first bytes)."""
    try:
        error = json.loads(body.decode("utf-8"))["error"]
        return f"HTTP {status} {error.get('code') or error.get('type')}: {error.get('message')}"
    except (ValueError, KeyError, TypeError, AttributeError):
        text = body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        return f"HTTP {status}" + (f": {text}" if text else "")


def _http(url: str, body: dict[str, Any] | None, key: str, timeout_s: float) -> tuple[int, bytes]:
    """(status, body) of one GET (``body`` None) or JSON POST; OSError when nothing answered."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def _unreachable(error: OSError) -> str:
    reason = getattr(error, "reason", error)
    return f"unreachable ({reason})"


def wait_gateway_ready(base_url: str, timeout_s: float) -> None:
    """Until GET /ready answers 200 (the gateway up and its model READY in Triton); GatewayError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, body = _http(f"{base_url}/ready", None, "", max(0.5, min(5.0, deadline - time.monotonic())))
            if status == 200:
                return
            last = _error_detail(status, body)
        except OSError as error:
            last = _unreachable(error)
        if time.monotonic() >= deadline:
            raise GatewayError(f"gateway {base_url} not ready within {timeout_s:g}s: {last}")
        time.sleep(0.25)


def gateway_embeddings(base_url: str, key: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """POST /v1/embeddings: the decoded answer. Busy answers (429, 503) are retried until ``timeout_s``;
    anything else but 200 is a GatewayError naming the gateway, the status and OpenAI's error message."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, raw = _http(f"{base_url}/v1/embeddings", body, key, max(0.5, deadline - time.monotonic()))
        except OSError as error:
            raise GatewayError(f"gateway {base_url}: POST /v1/embeddings {_unreachable(error)}") from None
        if status == 200:
            try:
                return json.loads(raw.decode("utf-8"))
            except ValueError:
                raise GatewayError(f"gateway {base_url}: POST /v1/embeddings answered 200 with a body that is not JSON") from None
        if status not in (429, 503) or time.monotonic() >= deadline:
            raise GatewayError(f"gateway {base_url} refused POST /v1/embeddings: {_error_detail(status, raw)}")
        time.sleep(0.25)


def decode_embeddings(base_url: str, answer: Any, count: int, dim: int, encoding: str) -> np.ndarray:
    """``data[].embedding`` as float32 ``[count, dim]`` in ``index`` order (base64: little-endian float32)."""
    try:
        data = sorted(answer["data"], key=lambda item: item["index"])
        if [item["index"] for item in data] != list(range(count)):
            raise ValueError(f"indexes {[item['index'] for item in data]} for {count} inputs")
        if encoding == "base64":
            rows = [np.frombuffer(base64.b64decode(item["embedding"], validate=True), dtype="<f4") for item in data]
        else:
            rows = [np.asarray(item["embedding"], dtype=np.float64).astype(np.float32) for item in data]
        if any(row.shape != (dim,) for row in rows):
            raise ValueError(f"vectors of {sorted({row.size for row in rows})} components, not {dim}")
    except (KeyError, TypeError, ValueError) as error:
        raise GatewayError(f"gateway {base_url}: malformed /v1/embeddings answer (dimensions {dim}, {encoding}): {error}") from None
    return np.stack(rows).astype(np.float32)


def _span(ids: Sequence[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"


def ask_gateway(
    base_url: str,
    key: str,
    model_name: str,
    texts: Sequence[str],
    id_lists: Sequence[Sequence[int]],
    ids: Sequence[str],
    sent: Sequence[bool],
    max_inputs: int,
    timeout_s: float,
    answers: GatewayAnswers,
) -> None:
    """Every dimension and encoding of the ``sent`` texts, at most ``max_inputs`` a request, into
    ``answers``. The texts carry their prompts: ``input_type: none`` keeps the gateway's default
    prompt off them. GatewayError on the first request that fails."""
    indexes = [i for i, is_sent in enumerate(sent) if is_sent]
    chunks = [indexes[start : start + max(1, max_inputs)] for start in range(0, len(indexes), max(1, max_inputs))]
    for dim in MATRYOSHKA_DIMS:
        for encoding in GATEWAY_ENCODINGS:
            out = np.full((len(texts), dim), np.nan, dtype=np.float32)
            for chunk in chunks:
                body = {
                    "model": model_name,
                    "input": [texts[i] for i in chunk],
                    "dimensions": dim,
                    "encoding_format": encoding,
                    "input_type": "none",
                }
                answer = gateway_embeddings(base_url, key, body, timeout_s)
                answers.requests += 1
                out[chunk] = decode_embeddings(base_url, answer, len(chunk), dim, encoding)
                usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
                tokens = usage.get("prompt_tokens")
                answers.prompt_tokens += tokens if type(tokens) is int else 0
                label = _span([ids[i] for i in chunk])
                answers.usage.append((label, f"gateway-{dim}-{encoding}", tokens, sum(len(id_lists[i]) for i in chunk)))
            answers.vectors[(dim, encoding)] = out


def check_gateway_endpoint(
    args: argparse.Namespace,
    sample_list: Sequence[Sample],
    encoder: TextEncoder,
    id_lists: Sequence[Sequence[int]],
    local: np.ndarray,
    local_backend: Any,
    limits: Thresholds,
) -> tuple[dict[str, Any], Evaluation]:
    """The report's ``gateway`` section and the gateway's evaluation (rows, failures). Without
    --gateway-url: ``checked`` false, no failures. A gateway that cannot be asked is one failure."""
    ids = [s.id for s in sample_list]
    section: dict[str, Any] = {
        "url": args.gateway_url or None,
        "checked": bool(args.gateway_url),
        "requests": 0,
        "min_cosine": None,
        "max_abs_diff": None,
        "max_norm_error": None,
        "dimensions": list(MATRYOSHKA_DIMS) if args.gateway_url else [],
        "encodings": list(GATEWAY_ENCODINGS) if args.gateway_url else [],
        "max_tokens": None,
        "skipped": [],
        "prompt_tokens": 0,
        "failures": 0,
        "seconds": 0.0,
        "message": "gateway not checked (no --gateway-url)",
    }
    if not args.gateway_url:
        return section, Evaluation(rows=[None] * len(ids))
    base_url = args.gateway_url.rstrip("/")
    texts = [s.text for s in sample_list]
    # The gateway truncates at its own max tokens: the local reference is cut where the gateway cuts.
    gateway_encoder = encoder
    if args.gateway_max_tokens and args.gateway_max_tokens != encoder.max_length:
        gateway_encoder = TextEncoder(args.tokenizer_dir, max_length=args.gateway_max_tokens)
    gateway_ids = gateway_encoder.encode(texts) if gateway_encoder is not encoder else list(id_lists)
    sent = [True] * len(ids)
    if args.gateway_no_truncate:  # the gateway refuses (400) inputs over its max tokens: not sent
        full = TextEncoder(args.tokenizer_dir, max_length=gateway_encoder.max_length)
        full.tokenizer.no_truncation()
        sent = [len(row) <= gateway_encoder.max_length for row in full.encode(texts)]
    references = np.array(local, dtype=np.float32, copy=True)
    for i, row in enumerate(gateway_ids):
        if sent[i] and list(row) != list(id_lists[i]):
            references[i] = _embed_alone(local_backend, gateway_encoder, [row])[0]
    section["max_tokens"] = gateway_encoder.max_length
    section["skipped"] = [sample_id for sample_id, is_sent in zip(ids, sent, strict=True) if not is_sent]

    answers = GatewayAnswers()
    started = time.monotonic()
    try:
        key = Path(args.gateway_key_file).read_text(encoding="utf-8").strip() if args.gateway_key_file else ""
    except OSError as error:
        key, problem = "", f"gateway {base_url}: cannot read the key file {args.gateway_key_file}: {error.strerror or error}"
    else:
        problem = None
        try:
            wait_gateway_ready(base_url, args.timeout)
            ask_gateway(base_url, key, args.model_name, texts, gateway_ids, ids, sent, args.gateway_max_inputs, args.timeout, answers)
        except GatewayError as error:
            problem = str(error)
    section["seconds"] = round(time.monotonic() - started, 3)
    section["requests"], section["prompt_tokens"] = answers.requests, answers.prompt_tokens
    if problem is not None:
        section["failures"], section["message"] = 1, problem
        return section, Evaluation(rows=[None] * len(ids), failures=[Failure("gateway", "(all)", "gateway", problem)])
    evaluation = evaluate_gateway(ids, references, answers, sent, limits)
    summary = evaluation.summary
    section.update({k: summary[k] for k in ("min_cosine", "max_abs_diff", "max_norm_error")})
    section["failures"] = len(evaluation.failures)
    section["message"] = (
        f"gateway {base_url}: {len(evaluation.failures)} failed checks; first: {evaluation.failures[0].message}"
        if evaluation.failures
        else f"gateway {base_url}: {sum(sent)} samples x {len(MATRYOSHKA_DIMS)} dimensions x {len(GATEWAY_ENCODINGS)} encodings "
        f"in {answers.requests} requests, min cosine {summary['min_cosine']}, max abs diff {summary['max_abs_diff']}"
    )
    return section, evaluation


def run(args: argparse.Namespace) -> tuple[dict[str, Any], Evaluation]:
    """Everything but the exit status: returns (report, evaluation). Raises EmbeddingError."""
    limits = Thresholds(args.min_cosine, args.max_abs_diff, args.norm_tolerance)
    encoder = TextEncoder(args.tokenizer_dir, max_length=args.max_length)
    sample_list = samples()
    texts = [s.text for s in sample_list]
    id_lists = encoder.encode(texts)
    lengths = [len(ids) for ids in id_lists]
    urls = {"http": args.url, "grpc": args.grpc_url}
    servers = {
        p: TritonBackend(urls[p], model_name=args.model_name, protocol=p, timeout_s=args.request_timeout, key_file=args.triton_key_file)
        for p in PROTOCOLS
        if urls[p]
    }
    if not servers:
        raise EmbeddingError("give --url and/or --grpc-url")
    first = next(iter(servers.values()))
    first.wait_ready(args.timeout)
    first.check_contract()
    for backend in servers.values():
        backend.wait_ready(args.timeout)
    server_max_batch = first.max_batch_size()
    max_batch = min(args.max_batch or server_max_batch or 1, server_max_batch or 1)

    gpu_before = gpu_snapshot()
    started = time.monotonic()
    triton = {p: _embed_alone(b, encoder, id_lists) for p, b in servers.items()}
    groups = batches(sample_list, lengths, max_batch, encoder.max_length)
    protocol, backend = next(iter(servers.items()))
    batched = {f"{protocol}-batch": _embed_batched(backend, encoder, id_lists, groups)}
    index = {s.id: i for i, s in enumerate(sample_list)}
    single = encoder.pad([id_lists[index[LATENCY_SAMPLE]]])
    full = encoder.pad([id_lists[index[LATENCY_BATCH_SAMPLE]]] * max_batch)
    latency = {
        "protocol": protocol,
        "batch_1": {
            **percentiles(time_calls(lambda: backend.infer(*single), args.latency_iterations)),
            "batch_size": 1,
            "seq_len": int(single[0].shape[1]),
        },
        "batch_max": {
            **percentiles(time_calls(lambda: backend.infer(*full), args.latency_iterations)),
            "batch_size": max_batch,
            "seq_len": int(full[0].shape[1]),
        },
    }
    gpu_after = gpu_snapshot()
    triton_seconds = time.monotonic() - started

    local_backend = _local_backend(args)
    local = _embed_alone(local_backend, encoder, id_lists)
    evaluation = evaluate([s.id for s in sample_list], local, triton, batched, limits)
    for row, sample, count in zip(evaluation.rows, sample_list, lengths, strict=True):
        row.update({"kind": sample.kind, "tokens": count, "at_max_length": count >= encoder.max_length})
    gateway, through_gateway = check_gateway_endpoint(args, sample_list, encoder, id_lists, local, local_backend, limits)
    evaluation.failures += through_gateway.failures
    if gateway["checked"]:
        for row, gateway_row in zip(evaluation.rows, through_gateway.rows, strict=True):
            row["gateway"] = gateway_row

    model_files = file_digests(args.model_dir, [args.model_file, args.model_file + "_data"]) if not args.no_hash else {}
    report = {
        "report_version": REPORT_VERSION,
        "verdict": "fail" if evaluation.failures else "pass",
        "message": verdict_message(evaluation, gateway),
        "created_unix": int(time.time()),
        "host": platform.node(),
        "thresholds": asdict(limits),
        "summary": evaluation.summary,
        "failures": [asdict(f) for f in evaluation.failures],
        "samples": evaluation.rows,
        "server": {
            "http_url": args.url,
            "grpc_url": args.grpc_url,
            "model_name": args.model_name,
            "version": first.server_version(),
            "max_batch_size": server_max_batch,
            "seconds": round(triton_seconds, 3),
        },
        "local": {"provider": local_backend.provider, "onnxruntime": local_backend.version, "device": args.device},
        "model": {
            "dir": str(args.model_dir),
            "files": model_files,
            "graph": args.model_file,
            "sha256": model_files.get(args.model_file + "_data") or model_files.get(args.model_file),
        },
        "tokenizer": {
            "dir": str(args.tokenizer_dir),
            "max_length": encoder.max_length,
            "sha256": file_digests(args.tokenizer_dir, ["tokenizer.json"]).get("tokenizer.json"),
        },
        "gateway": gateway,
        "latency": latency,
        "gpu": {"before": gpu_before, "after": gpu_after},
        # Triton's embedding of every sample (first protocol, alone): the fleet compares these across hosts.
        "embeddings": {
            s.id: [round(float(x), 7) if math.isfinite(x) else None for x in triton[protocol][i]] for i, s in enumerate(sample_list)
        },
    }
    for backend in servers.values():
        backend.close()
    return report, evaluation


def _local_backend(args: argparse.Namespace) -> Any:
    from verify.local import LocalBackend  # needs onnxruntime; the client module does not

    return LocalBackend(Path(args.model_dir), device=args.device, threads=args.threads, model_file=args.model_file)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verify.parity", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True, type=Path, help="directory with model.onnx (+ model.onnx_data) that Triton serves")
    p.add_argument("--model-file", default="model.onnx", help="graph file name in --model-dir (q8: model_quantized.onnx)")
    p.add_argument("--tokenizer-dir", required=True, type=Path, help="directory with tokenizer.json (+ tokenizer_config.json)")
    p.add_argument("--url", default="127.0.0.1:6000", help="Triton HTTP host:port ('' to skip HTTP)")
    p.add_argument("--grpc-url", default="127.0.0.1:6001", help="Triton gRPC host:port ('' to skip gRPC)")
    p.add_argument(
        "--triton-key-file", default="", help="file holding Triton's restricted-API key (model config, repository index); '' = none sent"
    )
    p.add_argument("--model-name", default="embeddinggemma")
    options.add_arguments(p)  # device, thresholds, max length, latency iterations, timeout
    p.add_argument("--threads", type=int, default=0, help="local ONNX Runtime intra-op threads (0: its default)")
    p.add_argument("--max-batch", type=int, default=0, help="batch size for the batch checks and latency (0: the server's max_batch_size)")
    p.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request")
    p.add_argument("--report", type=Path, help="write the JSON report here ('-': stdout)")
    p.add_argument("--no-hash", action="store_true", help="skip hashing the model files")
    g = p.add_argument_group("embeddings gateway (embeddings_gateway/app.py)")
    g.add_argument("--gateway-url", default="", help="the gateway's base URL, e.g. http://127.0.0.1:6080 ('': not checked)")
    g.add_argument("--gateway-key-file", default="", help="file holding the gateway's bearer key ('': no Authorization header)")
    g.add_argument(
        "--gateway-max-tokens", type=int, default=0, help="the gateway's max_tokens: where it truncates (0: the same as --max-length)"
    )
    g.add_argument(
        "--gateway-no-truncate", action="store_true", help="the gateway refuses longer inputs: samples over max tokens are not sent"
    )
    g.add_argument("--gateway-max-inputs", type=int, default=256, help="inputs per request (at most the gateway's max_inputs)")
    return p


def write_report(report: dict[str, Any], destination: Path | None) -> None:
    if destination is None:
        return
    text = json.dumps(report, indent=None, separators=(",", ":"), allow_nan=False) + "\n"
    if str(destination) == "-":
        sys.stdout.write(text)
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    say = sys.stderr if str(args.report) == "-" else sys.stdout
    try:
        report, evaluation = run(args)
    except EmbeddingError as error:
        message = f"parity ERROR: {error}"
        write_report(
            {
                "report_version": REPORT_VERSION,
                "verdict": "error",
                "message": message,
                "created_unix": int(time.time()),
                "host": platform.node(),
            },
            args.report,
        )
        print(message, file=sys.stderr)
        return EXIT_ERROR
    write_report(report, args.report)
    summary = report["summary"]
    print(
        f"latency {report['latency']['protocol']}: batch 1 p50 {report['latency']['batch_1']['p50_ms']} ms, "
        f"batch {report['latency']['batch_max']['batch_size']} p50 {report['latency']['batch_max']['p50_ms']} ms; "
        f"local {report['local']['provider']}; min cosine {summary['min_cosine']}, max abs diff {summary['max_abs_diff']}",
        file=say,
    )
    print(report["message"], file=say if not evaluation.failures else sys.stderr)
    return EXIT_MISMATCH if evaluation.failures else EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
