"""The bench's own arithmetic (no Docker needed): busy CPU from /proc/stat, per-operation wall time
from pyinfra's stderr, the growth table and the model bytes sent. Inputs are captured real outputs."""

from __future__ import annotations

import pytest

from tests.sandbox import bench

# /proc/stat of this project's 2-core machine (captured 2026-11-25), ticks at 100 Hz.
PROC_STAT = """cpu  114373 0 65561 464888 4955 0 2352 347 0 0
cpu0 50818 0 28801 244610 854 0 666 160 0 0
cpu1 63555 0 36760 220277 4100 0 1685 186 0 0
intr 1 2 3
"""

# pyinfra 3.10's stderr with -y --json on a sandbox host (captured), with the reader's timestamps.
STDERR = [
    (0.0, "--> Loading config...\n"),
    (1.9, "--> Beginning operation run...\n"),
    (2.0, "--> Starting operation: Docker | Docker packages \n"),
    (8.1, "    [host1] Success\n"),
    (8.2, "--> Starting operation: Docker | Docker config directory \n"),
    (8.6, "    [host1] No changes\n"),
    (8.6, "--> Starting operation: Verify | Directory /opt/triton-embeddinggemma/verify \n"),
    (9.0, "--> Starting operation: Docker | Docker config directory \n"),
]


def test_busy_cpu_counts_user_system_irq_steal_not_idle_or_iowait() -> None:
    assert bench.busy_cpu_seconds(PROC_STAT, 100) == pytest.approx((114373 + 65561 + 2352 + 347) / 100)


def test_busy_cpu_without_an_aggregate_line_is_an_error() -> None:
    with pytest.raises(ValueError):
        bench.busy_cpu_seconds("cpu0 1 2 3 4 5 6 7 8\n", 100)


def test_operation_lasts_until_the_next_starts_and_the_last_until_the_end() -> None:
    durations = bench.operation_seconds(STDERR, end=12.0)
    assert durations["Docker | Docker packages"] == pytest.approx(6.2)
    assert durations["Verify | Directory /opt/triton-embeddinggemma/verify"] == pytest.approx(0.4)
    # the same name twice adds up: 0.4 s, then from 9.0 to the end
    assert durations["Docker | Docker config directory"] == pytest.approx(0.4 + 3.0)
    assert len(durations) == 3, "lines other than operation starts are not operations"


def test_growth_orders_by_added_seconds_and_keeps_operations_only_one_run_has() -> None:
    one = {"pull": 9.7, "packages": 6.1, "wait READY": 2.1}
    three = {"pull": 17.0, "packages": 13.6, "wait READY": 2.0, "new": 0.5}
    assert bench.growth(one, three, rows=3) == [("packages", 6.1, 13.6), ("pull", 9.7, 17.0), ("new", 0.0, 0.5)]


def test_sent_bytes_count_each_changed_upload_once_per_host() -> None:
    sizes = {"onnx/model.onnx": 100, "onnx/model.onnx_data": 1000, "tokenizer.json": 10}
    results = {
        "operations": [
            {"name": "Model files (pinned, checksummed) | Upload model file model.onnx_data (1.0 kB)", "success": ["host1", "host2"]},
            {"name": "Model files (pinned, checksummed) | Upload model file tokenizer.json (10 B)", "success": []},
            {"name": "Docker | Docker packages", "success": ["host1", "host2"]},
        ]
    }
    assert bench._sent_bytes(results, sizes) == 2000


def test_load_texts_leave_out_every_long_document_that_would_pad_a_batch() -> None:
    """The load tests' inputs (overload, rolls under load) are the parity samples up to d-medium: a long
    one pads each 32-input request it lands in to its length (the CI failure of the overload test)."""
    from tests.support.overload import load_texts
    from verify.samples import samples

    texts = load_texts()
    long_ones = {sample.id: sample.text for sample in samples() if sample.id.startswith("d-long")}
    assert len(texts) >= 8 and len(texts) == len(set(texts))
    assert set(texts).isdisjoint(long_ones.values())
    assert max(len(text) for text in texts) < min(len(text) for text in long_ones.values())
