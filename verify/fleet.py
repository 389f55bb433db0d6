"""Fleet view of parity reports: one table row per host, and cross-host parity.

The ``gateway`` column is the embeddings gateway's min cosine vs local ONNX Runtime (the report's
``gateway`` section), ``off`` when it was not checked, ``FAIL`` when a gateway check failed.

Cross-host parity compares the same sample's Triton embedding on every host with a reference host
(the first passing host in name order): it catches drift between GPU models, drivers or images
that per-host parity cannot see (each host compares Triton with itself). Pure functions: the deploy
(deploys/verify.py) gathers the reports and logs :func:`table`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

COLUMNS = ("host", "GPU", "driver", "image", "model sha", "window", "min cos", "max diff", "p50 ms", "fleet cos", "gateway", "verdict")


@dataclass(frozen=True)
class HostResult:
    """What the table needs from one host: its report plus what the controller knows."""

    host: str
    report: Mapping[str, Any]
    image: str = ""


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.nan
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator else math.nan


def _embeddings(report: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {
        sample: np.asarray([math.nan if x is None else x for x in values], np.float64)
        for sample, values in (report.get("embeddings") or {}).items()
    }


def cross_host(results: list[HostResult]) -> dict[str, Any]:
    """{"reference": host, "hosts": {host: {"min_cosine", "max_abs_diff", "worst_sample"}}} comparing
    every host's embeddings with the reference host's, sample by sample (common samples only)."""
    passing = sorted((r for r in results if r.report.get("verdict") == "pass" and r.report.get("embeddings")), key=lambda r: r.host)
    if not passing:
        return {"reference": None, "hosts": {}}
    reference = passing[0]
    ref = _embeddings(reference.report)
    out: dict[str, Any] = {}
    for result in results:
        mine = _embeddings(result.report)
        common = sorted(set(ref) & set(mine))
        if not common:
            continue
        scores = {s: _cosine(ref[s], mine[s]) for s in common}
        worst = min(common, key=lambda s: -math.inf if math.isnan(scores[s]) else scores[s])
        diffs = [float(np.max(np.abs(ref[s] - mine[s]))) for s in common if ref[s].shape == mine[s].shape]
        out[result.host] = {
            "min_cosine": None if math.isnan(scores[worst]) else scores[worst],
            "max_abs_diff": max(diffs) if diffs and all(math.isfinite(d) for d in diffs) else None,
            "worst_sample": worst,
        }
    return {"reference": reference.host, "hosts": out}


def _gpu(report: Mapping[str, Any]) -> tuple[str, str]:
    snapshot = (report.get("gpu") or {}).get("before") or {}
    names = sorted({d.get("name", "?") for d in snapshot.get("devices", [])})
    if not names:
        return "none", "-"
    count = len(snapshot.get("devices", []))
    return (f"{count}x " if count > 1 else "") + "/".join(names), str(snapshot.get("driver", "-"))


def _number(value: Any, digits: int) -> str:
    if value is None:
        return "nan"
    if isinstance(value, float) and digits < 0:
        return f"{value:.{-digits}g}"
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def gateway_cell(report: Mapping[str, Any]) -> str:
    """The gateway column: its min cosine vs local ONNX Runtime, ``off`` (not checked), ``FAIL``
    (a gateway check failed, or it could not be asked), ``-`` (no gateway section: an error report)."""
    section = report.get("gateway")
    if not isinstance(section, Mapping):
        return "-"
    if not section.get("checked"):
        return "off"
    if section.get("failures"):
        return "FAIL"
    return _number(section.get("min_cosine"), 6)


def model_cell(report: Mapping[str, Any]) -> str:
    """The model sha column: the served data file's (or graph's) sha256, first 12 hex; with
    ``DIFFERS from lock`` (or ``from source``) when a served file's sha256 is not the expected one
    (deploys/triton/verify_run.py check_model_files)."""
    model = report.get("model") or {}
    sha = (model.get("sha256") or "-")[:12]
    if model.get("differs"):
        return f"{sha} DIFFERS from {model.get('expected_from') or 'lock'}"
    return sha


def window_cell(report: Mapping[str, Any]) -> str:
    """The attention-window column: ``repaired``, ``upstream`` (chosen by the setting) or
    ``UPSTREAM`` (a failed guard or a fetch mode that skips the repair; the report's
    ``fidelity.line`` says which); ``-`` for reports without the section."""
    served = (report.get("fidelity") or {}).get("served")
    if served == "upstream" and (report.get("fidelity") or {}).get("reason"):
        return "UPSTREAM"
    return served or "-"


def rows(results: list[HostResult]) -> list[tuple[str, ...]]:
    """Table rows (strings), hosts in name order."""
    fleet = cross_host(results)
    out = []
    for result in sorted(results, key=lambda r: r.host):
        report = result.report
        summary = report.get("summary") or {}
        gpu, driver = _gpu(report)
        sha = model_cell(report)
        p50 = ((report.get("latency") or {}).get("batch_1") or {}).get("p50_ms")
        cross = fleet["hosts"].get(result.host)
        if cross is None:
            fleet_cos = "-"
        elif result.host == fleet["reference"]:
            fleet_cos = "ref"
        else:
            fleet_cos = _number(cross["min_cosine"], 6)
        out.append(
            (
                result.host,
                gpu,
                driver,
                result.image or "-",
                sha,
                window_cell(report),
                _number(summary.get("min_cosine"), 6) if summary else "-",
                _number(summary.get("max_abs_diff"), -2) if summary else "-",
                _number(p50, 1) if p50 is not None else "-",
                fleet_cos,
                gateway_cell(report),
                str(report.get("verdict", "?")).upper(),
            )
        )
    return out


def table(results: list[HostResult]) -> str:
    """The fleet table as aligned text (for the log)."""
    body = [COLUMNS, *rows(results)]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in body]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def drift(results: list[HostResult], min_cosine: float) -> list[str]:
    """One line per host whose embeddings differ from the reference host's beyond ``min_cosine``."""
    fleet = cross_host(results)
    lines = []
    for host, cross in sorted(fleet["hosts"].items()):
        score = cross["min_cosine"]
        if score is None or score < min_cosine:
            lines.append(
                f"fleet drift: host {host} vs {fleet['reference']}: sample {cross['worst_sample']!r} cosine "
                f"{_number(score, 6)} < {min_cosine} (different GPU, driver, image or model files?)"
            )
    return lines
