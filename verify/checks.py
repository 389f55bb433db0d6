"""The parity check's verdicts: pure functions from embeddings to failures and report rows.

Triton (HTTP, gRPC) against local ONNX Runtime per sample (cosine, max |Δ|, norm, finite values),
batch invariance, Matryoshka sizes, and the embeddings API's answers (every dimension, float and
base64, usage). No I/O here: verify/parity.py runs the probes and hands their arrays in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verify import options
from verify.client import MATRYOSHKA_DIMS, truncate

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
    """What the gateway answered: ``vectors[(dim, encoding)]`` ``[n, dim]`` (NaN rows: not sent),
    ``asked[(dim, encoding)]`` which rows were asked there (absent: every sent row), and per request
    ``(label, source, prompt_tokens, expected tokens)``."""

    vectors: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    asked: dict[tuple[int, str], list[bool]] = field(default_factory=dict)
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
                    if served is not None and answers.asked.get((dim, encoding), sent)[index]:
                        result.failures += check_gateway(sample_id, row, references[index], dim, encoding, served[index], limits, extremes)
        result.rows.append(row if sent[index] else None)
    for dim in dims:
        floats, base64s = answers.vectors.get((dim, "float")), answers.vectors.get((dim, "base64"))
        if floats is not None and base64s is not None:
            both = [
                i
                for i in range(len(ids))
                if sent[i] and answers.asked.get((dim, "float"), sent)[i] and answers.asked.get((dim, "base64"), sent)[i]
            ]
            result.failures += check_gateway_encodings([ids[i] for i in both], dim, floats[both], base64s[both])
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
