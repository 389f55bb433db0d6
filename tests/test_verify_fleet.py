"""verify.fleet: the fleet table and cross-host parity, from reports shaped like verify.parity's."""

from __future__ import annotations

import numpy as np

from verify.client import normalise
from verify.fleet import COLUMNS, HostResult, cross_host, drift, rows, table


def _report(embeddings: np.ndarray, verdict: str = "pass", gpu: dict | None = None) -> dict:
    return {
        "verdict": verdict,
        "summary": {"min_cosine": 0.99999912, "max_abs_diff": 2.5e-6},
        "model": {"sha256": "ab" * 32},
        "latency": {"batch_1": {"p50_ms": 4.31}},
        "gpu": {"before": gpu, "after": gpu},
        "embeddings": {f"s{i}": [float(x) for x in row] for i, row in enumerate(embeddings)},
    }


BASE = normalise(np.random.default_rng(3).standard_normal((3, 768)))
H100 = {"driver": "575.57.08", "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_used_mib": 1.0}]}


def test_identical_hosts_agree_and_the_table_has_every_column() -> None:
    results = [
        HostResult("gpu-b", _report(BASE, gpu=H100), image="tritonserver:25.05-py3"),
        HostResult("gpu-a", _report(BASE.copy(), gpu=H100), image="tritonserver:25.05-py3"),
    ]
    fleet = cross_host(results)
    assert fleet["reference"] == "gpu-a"
    assert abs(fleet["hosts"]["gpu-b"]["min_cosine"] - 1.0) < 1e-12
    assert drift(results, 0.9999) == []
    text = table(results)
    header = text.splitlines()[0].split()
    assert header[:2] == ["host", "GPU"] and "verdict" in header
    first, second = rows(results)
    assert first[0] == "gpu-a" and first[1] == "NVIDIA H100 80GB HBM3" and first[2] == "575.57.08"
    col = {name: i for i, name in enumerate(COLUMNS)}
    assert first[col["model sha"]] == "abababababab" and first[col["min cos"]] == "0.999999"
    assert first[col["max diff"]] == "2.5e-06" and first[col["p50 ms"]] == "4.3" and first[col["window"]] == "-"
    assert first[col["fleet cos"]] == "ref" and second[col["fleet cos"]] == "1.000000" and second[col["verdict"]] == "PASS"
    gateway = COLUMNS.index("gateway")
    assert "gateway" in header and first[gateway] == "-"  # reports without a gateway section


def test_drift_between_hosts_is_named() -> None:
    drifted = BASE.copy()
    drifted[2] = normalise(BASE[2] + 0.05 * normalise(np.random.default_rng(4).standard_normal(768)))
    results = [HostResult("a", _report(BASE)), HostResult("b", _report(drifted))]
    lines = drift(results, 0.9999)
    assert len(lines) == 1 and "host b vs a" in lines[0] and "'s2'" in lines[0]
    assert cross_host(results)["hosts"]["b"]["worst_sample"] == "s2"


def test_failed_and_errored_hosts_show_in_the_table() -> None:
    results = [
        HostResult("ok", _report(BASE)),
        HostResult("bad", _report(BASE, verdict="fail")),
        HostResult("down", {"verdict": "error", "message": "parity ERROR: Triton at http://127.0.0.1:6000 not ready"}),
    ]
    by_host = {row[0]: row for row in rows(results)}
    fleet_cos, verdict = COLUMNS.index("fleet cos"), COLUMNS.index("verdict")
    assert by_host["ok"][1] == "none" and by_host["ok"][fleet_cos] == "ref"  # a failed host is never the reference
    assert by_host["bad"][verdict] == "FAIL" and by_host["down"][verdict] == "ERROR"
    assert by_host["down"][4:verdict] == ("-",) * (verdict - 4)


def test_the_gateway_column() -> None:
    checked = {"url": "http://127.0.0.1:6080", "checked": True, "requests": 8, "min_cosine": 0.99999871, "failures": 0}
    results = [
        HostResult("a", {**_report(BASE), "gateway": checked}),
        HostResult("b", {**_report(BASE), "gateway": {"url": None, "checked": False, "requests": 0, "failures": 0}}),
        HostResult("c", {**_report(BASE, verdict="fail"), "gateway": {**checked, "requests": 0, "min_cosine": None, "failures": 1}}),
        HostResult("d", {**_report(BASE, verdict="fail"), "gateway": {**checked, "min_cosine": 0.93, "failures": 12}}),
    ]
    column = COLUMNS.index("gateway")
    assert COLUMNS[column + 1] == "verdict"
    assert {row[0]: row[column] for row in rows(results)} == {"a": "0.999999", "b": "off", "c": "FAIL", "d": "FAIL"}
    assert "gateway" in table(results).splitlines()[0]
    assert cross_host([HostResult("down", {"verdict": "error"})]) == {"reference": None, "hosts": {}}


def test_the_window_column_says_which_graph_is_served() -> None:
    repaired = {**_report(BASE), "fidelity": {"served": "repaired", "reason": "", "line": "attention window repaired: …"}}
    chosen = {**_report(BASE), "fidelity": {"served": "upstream", "reason": "", "line": "…"}}
    failed = {**_report(BASE), "fidelity": {"served": "upstream", "reason": "found 23 attention blocks", "line": "…"}}
    cells = [row[COLUMNS.index("window")] for row in rows([HostResult("a", repaired), HostResult("b", chosen), HostResult("c", failed)])]
    assert cells == ["repaired", "upstream", "UPSTREAM"]
