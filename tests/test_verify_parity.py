"""verify.parity: the verdict logic, and the whole check against a real tritonserver.

The end-to-end cases run ``python -m verify.parity`` (a subprocess, as on a host) against the real
``tritonserver`` from nvidia-pytriton serving the deploy's UNCHANGED CPU config.pbtxt with the
onnxruntime stand-in backend, and the tiny model from tests/support/tinymodel.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support import tinymodel
from tests.support import tritonserver as ts
from verify import checks, parity, probes
from verify.client import TextEncoder, normalise
from verify.samples import long_tokens, samples

REPO = Path(__file__).resolve().parent.parent
LIMITS = checks.Thresholds(min_cosine=0.9999, max_abs_diff=1e-3, norm_tolerance=1e-3)


# -- the verdict, on synthetic embeddings ------------------------------------------------------


def _embeddings(n: int = 4, seed: int = 0) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((n, 768)))


def test_identical_embeddings_pass() -> None:
    local = _embeddings()
    result = checks.evaluate(
        ["a", "b", "c", "d"], local, {"http": local.copy(), "grpc": local.copy()}, {"http-batch": local.copy()}, LIMITS
    )
    assert result.failures == []
    assert result.summary["min_cosine"] == pytest.approx(1.0)
    assert checks.verdict_message(result).startswith("parity PASS")


def test_mismatch_names_the_worst_sample() -> None:
    local = _embeddings()
    served = local.copy()
    served[1] = normalise(local[1] + 0.01 * _embeddings(1, seed=5)[0])  # slightly off
    served[2] = normalise(local[2] + 0.2 * _embeddings(1, seed=6)[0])  # far off: the worst
    result = checks.evaluate(["a", "b", "c", "d"], local, {"http": served}, {}, LIMITS)
    assert {f.sample for f in result.failures if f.check == "parity"} == {"b", "c"}
    assert result.summary["worst"]["sample"] == "c"
    message = checks.verdict_message(result)
    assert message.startswith("parity FAIL") and "worst sample 'c'" in message and "cosine" in message


def test_nan_fails_even_though_nan_compares_false() -> None:
    local = _embeddings()
    served = local.copy()
    served[3, 7] = np.nan
    result = checks.evaluate(["a", "b", "c", "d"], local, {"http": served}, {}, LIMITS)
    assert any(f.check == "finite" and f.sample == "d" for f in result.failures)
    assert result.summary["worst"]["sample"] == "d" and "NaN" in checks.verdict_message(result)
    # NaN in the reference (a broken model file, e.g. fp16 overflow) fails too.
    broken = checks.evaluate(["a", "b", "c", "d"], np.full_like(local, np.nan), {"http": np.full_like(local, np.nan)}, {}, LIMITS)
    assert {f.source for f in broken.failures if f.check == "finite"} >= {"local", "http"}


def test_norm_and_batch_and_matryoshka_checks() -> None:
    local = _embeddings()
    scaled = local.copy()
    scaled[0] *= 1.01  # same direction, not unit norm
    batched = local.copy()
    batched[2] = normalise(local[2] + 0.1 * _embeddings(1, seed=9)[0])
    result = checks.evaluate(["a", "b", "c", "d"], local, {"http": scaled}, {"http-batch": batched}, LIMITS)
    kinds = {(f.check, f.sample) for f in result.failures}
    assert ("norm", "a") in kinds and ("batch", "c") in kinds
    assert result.rows[2]["http-batch"]["cosine_vs_alone"] < 0.9999
    tail = local.copy()
    tail[1, :128] += 0.05  # the leading components differ: the 128-d truncation disagrees
    result = checks.evaluate(["a", "b", "c", "d"], local, {"http": tail}, {}, LIMITS)
    assert any(f.check == "matryoshka" and f.sample == "b" for f in result.failures)


def test_batches_pad_the_long_sample_with_a_short_one() -> None:
    sample_list = samples()
    lengths = [10 + i for i in range(len(sample_list) - 1)] + [2048]
    groups = probes.batches(sample_list, lengths, max_batch=4, max_length=2048)
    assert all(len(chunk) <= 4 for chunk, _ in groups)
    assert {i for chunk, _ in groups for i in chunk} == set(range(len(sample_list)))
    long_chunk, long_length = groups[-1]
    assert long_chunk == [len(sample_list) - 1, 0] and long_length == 2048


def test_long_samples_scale_with_the_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EmbeddingGemma's window (256) keeps 300..2000 tokens; a small window gets short texts, each
    distinct and still past the window in the sandbox's tokenizer; parity's --window defaults to
    $VERIFY_WINDOW (how the deploy passes model_sliding_window)."""
    assert long_tokens() == long_tokens(256) == (300, 600, 1200, 2000) and long_tokens(8) == (10, 19, 38, 63)
    assert [s.id for s in samples()][11:15] == ["d-long-300", "d-long-600", "d-long-1200", "d-long-2000"]
    small = [s for s in samples(8) if s.id.startswith("d-long-") and s.id != "d-long-max"]
    assert [s.id for s in small] == ["d-long-10", "d-long-19", "d-long-38", "d-long-63"]
    tinymodel.write_all(tmp_path)
    counts = [len(ids) for ids in TextEncoder(tmp_path).encode([s.text for s in small])]
    assert counts == sorted(set(counts)) and counts[0] > 8 + 1 and counts[-1] < 256, counts
    args = ["--model-dir", str(tmp_path), "--tokenizer-dir", str(tmp_path)]
    assert parity.parser().parse_args(args).window == 256
    monkeypatch.setenv("VERIFY_WINDOW", "8")
    assert parity.parser().parse_args(args).window == 8 and parity.parser().parse_args([*args, "--window", "16"]).window == 16


# -- end to end with a real tritonserver --------------------------------------------------------


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hub-shaped tiny models: the good one, a perturbed copy of its weights, and the NaN variant."""
    out = {}
    for name, kwargs in {"good": {}, "perturbed": {"perturb": 0.02}, "nan": {"nan": True}}.items():
        out[name] = tmp_path_factory.mktemp(name)
        tinymodel.write_all(out[name], **kwargs)
    return out


@pytest.fixture(scope="module")
def good_server(hubs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ts.Server, Path]]:
    root = ts.triton_dir(tmp_path_factory.mktemp("good"), hubs["good"], ts.cpu_config())
    with ts.serve(root / "models", tmp_path_factory.mktemp("work")) as server:
        yield server, root


def run_parity(
    http: str, grpc: str, model_dir: Path, tokenizer_dir: Path, report: Path, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "verify.parity",
        "--model-dir",
        str(model_dir),
        "--tokenizer-dir",
        str(tokenizer_dir),
        "--url",
        http,
        "--grpc-url",
        grpc,
        "--report",
        str(report),
        "--latency-iterations",
        "5",
        *extra,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_latency_iterations_below_one_are_refused_in_one_line() -> None:
    """0 timed requests once ended in an IndexError traceback (no p50 of nothing): argparse refuses it."""
    for value in ("0", "-3", "many"):
        done = subprocess.run(
            [sys.executable, "-m", "verify.parity", "--model-dir", "m", "--tokenizer-dir", "t", "--latency-iterations", value],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "argument --latency-iterations:" in done.stderr.splitlines()[-1]
    assert parity.parser().parse_args(["--model-dir", "m", "--tokenizer-dir", "t", "--latency-iterations", "1"]).latency_iterations == 1


def test_parity_passes_against_real_triton(good_server: tuple[ts.Server, Path], hubs: dict[str, Path], tmp_path: Path) -> None:
    server, root = good_server
    result = run_parity(server.http_url, server.grpc_url, root / "models/embeddinggemma/1", root / "tokenizer", tmp_path / "r.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parity PASS" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "pass" and report["failures"] == []
    assert report["summary"]["min_cosine"] >= 0.9999 and report["summary"]["max_abs_diff"] <= 1e-3
    assert report["server"]["version"] == "2.51.0" and report["server"]["max_batch_size"] == 8
    assert report["local"]["provider"] == "CPUExecutionProvider"
    assert report["model"]["sha256"] == tinymodel.sha256(hubs["good"] / "onnx" / "model.onnx_data")
    assert report["latency"]["batch_1"]["p50_ms"] > 0 and report["latency"]["batch_max"]["batch_size"] == 8
    assert report["gpu"] == {"before": None, "after": None}  # no NVML here
    ids = [s.id for s in samples()]
    assert [row["id"] for row in report["samples"]] == ids and set(report["embeddings"]) == set(ids)
    long_row = report["samples"][-1]
    assert long_row["tokens"] == 2048 and long_row["at_max_length"]
    for row in report["samples"]:
        assert set(row) >= {"http", "grpc", "http-batch", "matryoshka"}
        assert set(row["matryoshka"]) == {"512", "256", "128"}
        assert "gateway" not in row
    # No --gateway-url: the gateway check is skipped, and the report says so (tests/test_verify_gateway.py runs it).
    assert report["gateway"]["checked"] is False and report["gateway"]["requests"] == 0 and report["gateway"]["failures"] == 0
    assert "not checked" in report["gateway"]["message"] and "gateway not checked" in result.stdout


def test_perturbed_weights_fail_naming_the_worst_sample(hubs: dict[str, Path], tmp_path: Path) -> None:
    # Triton serves a perturbed copy; the host's reference files are the good ones.
    root = ts.triton_dir(tmp_path / "triton", hubs["perturbed"], ts.cpu_config())
    with ts.serve(root / "models", tmp_path / "work") as server:
        result = run_parity(server.http_url, server.grpc_url, hubs["good"] / "onnx", hubs["good"], tmp_path / "r.json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "fail"
    # The worst sample, worked out here from the per-sample rows, is the one the message names.
    worst = min(report["samples"], key=lambda row: row["http"]["cosine"])["id"]
    assert report["summary"]["worst"]["sample"] == worst
    assert f"worst sample {worst!r}" in result.stderr and "parity FAIL" in result.stderr
    assert {f["check"] for f in report["failures"]} >= {"parity"}


def test_wrong_output_name_is_a_clear_error(hubs: dict[str, Path], tmp_path: Path) -> None:
    config = ts.cpu_config().replace('name: "sentence_embedding"', 'name: "sentence_embeddings"')
    root = ts.triton_dir(tmp_path / "triton", hubs["good"], config)
    # Triton (like with the real backend) refuses the model, and with exit-on-error refuses to start.
    with pytest.raises(ts.TritonStartError, match="unexpected inference output 'sentence_embeddings'"):
        ts.start(root / "models", tmp_path / "strict")
    # A server that stays up without the model: verify says why it is not ready.
    with ts.serve(root / "models", tmp_path / "work", exit_on_error=False, wait="live") as server:
        result = run_parity(
            server.http_url, server.grpc_url, root / "models/embeddinggemma/1", root / "tokenizer", tmp_path / "r.json", "--timeout", "3"
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not ready" in result.stderr and "unexpected inference output 'sentence_embeddings'" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "error"


def test_triton_down_is_a_clear_error_within_the_timeout(hubs: dict[str, Path], tmp_path: Path) -> None:
    http, grpc = f"127.0.0.1:{ts.free_port()}", f"127.0.0.1:{ts.free_port()}"
    start = time.monotonic()
    result = run_parity(http, grpc, hubs["good"] / "onnx", hubs["good"], tmp_path / "r.json", "--timeout", "2")
    assert time.monotonic() - start < 30
    assert result.returncode == 2
    assert f"Triton at http://{http} not ready within 2s" in result.stderr and "parity ERROR" in result.stderr


def test_nan_outputs_fail(hubs: dict[str, Path], tmp_path: Path) -> None:
    # A model that outputs NaN (what fp16 does to EmbeddingGemma): Triton and ONNX Runtime agree, on NaN.
    root = ts.triton_dir(tmp_path / "triton", hubs["nan"], ts.cpu_config())
    with ts.serve(root / "models", tmp_path / "work") as server:
        result = run_parity(server.http_url, server.grpc_url, root / "models/embeddinggemma/1", root / "tokenizer", tmp_path / "r.json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NaN" in result.stderr
    report = json.loads((tmp_path / "r.json").read_text())  # strict JSON: no NaN tokens
    assert report["verdict"] == "fail" and report["summary"]["min_cosine"] is None
    assert {f["check"] for f in report["failures"]} == {"finite"}
    assert all(v is None for v in report["embeddings"]["q-short-en"])
    assert not math.isnan(report["latency"]["batch_1"]["p50_ms"])


def test_gpu_snapshot_reads_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML's answers become the report's gpu section (no GPU here: a scripted pynvml module)."""
    import types

    calls = []
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: calls.append("init")
    fake.nvmlShutdown = lambda: calls.append("shutdown")
    fake.nvmlSystemGetDriverVersion = lambda: b"575.57.08"
    fake.nvmlDeviceGetCount = lambda: 1
    fake.nvmlDeviceGetHandleByIndex = lambda index: ("handle", index)
    fake.nvmlDeviceGetName = lambda handle: "NVIDIA H100 80GB HBM3"
    fake.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(used=3 * 2**30, total=80 * 2**30)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert probes.gpu_snapshot() == {
        "driver": "575.57.08",
        "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_used_mib": 3072.0, "memory_total_mib": 81920.0}],
    }
    assert calls == ["init", "shutdown"]

    def no_driver() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = no_driver
    assert probes.gpu_snapshot() is None
