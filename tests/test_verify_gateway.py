"""verify.parity through the embeddings gateway (--gateway-url): the verdict logic on synthetic
answers, and ``python -m verify.parity`` (a subprocess, as on a host) against a real tritonserver
serving the tiny model and real gateway processes (tests/support/gateway_bench.py GatewayProcess) in front
of it, judged against local ONNX Runtime on the same files.

Gateways of the module: ``auth`` (bearer auth, ``default_prompt: query``: parity must send its
already prompted samples with ``input_type: none``, or every vector would differ) and ``short``
(``max_tokens: 64``: it truncates where the local run does not, unless parity is told) and
``strict`` (``max_tokens: 64``, truncation off, no auth: it refuses the longer samples).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support import tritonserver as ts
from tests.support.gateway_bench import GatewayProcess
from verify import api_probe, checks, parity
from verify.client import MATRYOSHKA_DIMS, TextEncoder, normalise, truncate
from verify.samples import samples

REPO = Path(__file__).resolve().parent.parent
KEY = "verify-test-key-0123456789abcdef"
LIMITS = checks.Thresholds(min_cosine=0.9999, max_abs_diff=1e-3, norm_tolerance=1e-3)
IDS = [s.id for s in samples()]


# -- the gateway's verdict, on synthetic answers -------------------------------------------------


def _answers(local: np.ndarray, tokens: int = 40) -> checks.GatewayAnswers:
    """What a correct gateway answers for ``local``: every dimension, both encodings, one request each."""
    answers = checks.GatewayAnswers()
    for dim in MATRYOSHKA_DIMS:
        for encoding in checks.GATEWAY_ENCODINGS:
            answers.vectors[(dim, encoding)] = truncate(local, dim).copy()
            answers.usage.append(("a..d", f"gateway-{dim}-{encoding}", tokens, 40))
            answers.requests += 1
    return answers


def test_gateway_verdict_on_synthetic_answers() -> None:
    local = normalise(np.random.default_rng(1).standard_normal((4, 768)))
    ids, sent = ["a", "b", "c", "d"], [True] * 4
    good = checks.evaluate_gateway(ids, local, _answers(local), sent, LIMITS)
    assert good.failures == [] and good.summary["min_cosine"] == pytest.approx(1.0)
    assert set(good.rows[0]) == {"768", "512", "256", "128"}

    off = _answers(local)
    off.vectors[(256, "base64")][2] = normalise(off.vectors[(256, "base64")][2] + 0.1 * normalise(np.ones(256)))
    result = checks.evaluate_gateway(ids, local, off, sent, LIMITS)
    # The perturbed vector fails against local and against its float twin; it is named first.
    assert {(f.check, f.sample, f.source) for f in result.failures} == {
        ("gateway", "c", "gateway-256-base64"),
        ("gateway", "c", "gateway-256"),
    }
    assert result.failures[0].source == "gateway-256-base64" and result.summary["worst"]["sample"] == "c"
    assert result.rows[2]["256"]["cosine"] < 0.9999 and result.rows[1]["256"]["cosine"] == pytest.approx(1.0)

    # float and base64 agree to batching's last bits: a few ulps pass (two requests, batched with
    # different neighbours under load), a float16 round trip fails even though within the thresholds.
    ulp = _answers(local)
    ulp.vectors[(768, "float")][0, 5] = np.nextafter(ulp.vectors[(768, "float")][0, 5], np.float32(2))
    assert checks.evaluate_gateway(ids, local, ulp, sent, LIMITS).failures == []
    half = _answers(local)
    half.vectors[(768, "float")][0] = half.vectors[(768, "float")][0].astype(np.float16).astype(np.float32)
    assert [(f.sample, f.source) for f in checks.evaluate_gateway(ids, local, half, sent, LIMITS).failures] == [("a", "gateway-768")]

    miscounted = checks.evaluate_gateway(ids, local, _answers(local, tokens=41), sent, LIMITS)
    assert len(miscounted.failures) == 8 and "usage.prompt_tokens 41" in miscounted.failures[0].message

    nan = _answers(local)
    nan.vectors[(128, "float")][3, 0] = np.nan
    failures = checks.evaluate_gateway(ids, local, nan, sent, LIMITS).failures
    assert any("NaN" in f.message and f.sample == "d" for f in failures)

    unsent = checks.evaluate_gateway(ids, local, _answers(local), [True, True, True, False], LIMITS)
    assert unsent.rows[3] is None and unsent.failures == []  # a NaN row never sent is not compared

    # A long sample asked at the first dimension and encoding only: its NaN rows elsewhere are not
    # compared (nor float vs base64 where one side was not asked), its one answer is.
    once = _answers(local)
    for dim, encoding in list(once.vectors)[1:]:
        once.vectors[(dim, encoding)][3] = np.nan
        once.asked[(dim, encoding)] = [True, True, True, False]
    long_only = checks.evaluate_gateway(ids, local, once, sent, LIMITS)
    assert long_only.failures == [] and set(long_only.rows[3]) == {"768"} and set(long_only.rows[0]) == {"768", "512", "256", "128"}
    once.vectors[(768, "float")][3] = normalise(once.vectors[(768, "float")][3] + 0.1 * normalise(np.ones(768)))
    assert [(f.sample, f.source) for f in checks.evaluate_gateway(ids, local, once, sent, LIMITS).failures] == [("d", "gateway-768-float")]

    # Only the gateway failed: the message names its worst sample, not a Triton one.
    evaluation = checks.evaluate(ids, local, {"http": local.copy()}, {}, LIMITS)
    evaluation.failures += result.failures
    message = checks.verdict_message(evaluation)
    assert message.startswith("parity FAIL") and "worst sample 'c' (gateway-256-base64)" in message and "via the gateway" in message


def test_a_gateway_that_is_down_fails_within_the_timeout() -> None:
    url = f"http://127.0.0.1:{ts.free_port()}"
    start = time.monotonic()
    with pytest.raises(api_probe.GatewayError, match=rf"gateway {url} not ready within 1s: unreachable"):
        api_probe.wait_gateway_ready(url, 1.0)
    assert time.monotonic() - start < 5


# -- end to end: a real tritonserver and real gateways ---------------------------------------------


@pytest.fixture(scope="module")
def stack(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = ts.triton_dir(tmp_path_factory.mktemp("triton"), hub, ts.cpu_config())
    work = tmp_path_factory.mktemp("gateways")
    key_file = work / "verify.key"
    key_file.write_text(KEY)  # as the verify step writes it: the key, no newline
    with ts.serve(root / "models", tmp_path_factory.mktemp("work")) as server:
        tokenizer = root / "tokenizer"
        gateways = {
            "auth": GatewayProcess.start(work / "auth", server.grpc_url, tokenizer, api_key=KEY, default_prompt="query"),
            "short": GatewayProcess.start(work / "short", server.grpc_url, tokenizer, api_key=KEY, max_tokens=64, length_buckets=[64]),
            "strict": GatewayProcess.start(work / "strict", server.grpc_url, tokenizer, max_tokens=64, length_buckets=[64], truncate=False),
        }
        try:
            for gateway in gateways.values():
                gateway.wait_healthy()
            yield {"root": root, "server": server, "key_file": key_file, **gateways}
        finally:
            for gateway in gateways.values():
                gateway.stop()


def run_parity(stack: dict, report: Path, *extra: str) -> subprocess.CompletedProcess:
    root, server = stack["root"], stack["server"]
    command = [
        sys.executable, "-m", "verify.parity",
        "--model-dir", str(root / "models/embeddinggemma/1"),
        "--tokenizer-dir", str(root / "tokenizer"),
        "--url", server.http_url, "--grpc-url", server.grpc_url,
        "--report", str(report),
        "--latency-iterations", "2",
        *extra,
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)


def test_parity_through_the_gateway_passes(stack: dict, tmp_path: Path) -> None:
    gateway = stack["auth"]
    result = run_parity(stack, tmp_path / "r.json", "--gateway-url", gateway.url, "--gateway-key-file", str(stack["key_file"]))
    assert result.returncode == 0, result.stdout + result.stderr + gateway.log_tail()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["report_version"] == 2 and report["verdict"] == "pass" and report["failures"] == []
    section = report["gateway"]
    # One request per dimension and encoding: the 11 short samples in each, the 5 long ones (past the
    # window, and the one truncated at max length) only in the first (768, float).
    long_ids = [s.id for s in samples() if s.long]
    assert long_ids == ["d-long-300", "d-long-600", "d-long-1200", "d-long-2000", "d-long-max"] and section["once"] == long_ids
    assert section["url"] == gateway.url and section["checked"] is True and section["requests"] == 4 * 2
    assert section["dimensions"] == [768, 512, 256, 128] and section["encodings"] == ["float", "base64"]
    assert section["min_cosine"] >= 0.9999 and section["max_abs_diff"] <= 1e-3 and section["failures"] == 0
    assert section["max_tokens"] == 2048 and section["skipped"] == []
    # usage.prompt_tokens: the local tokenizer's count, the long sample truncated at 2048 by both.
    assert report["samples"][-1]["tokens"] == 2048
    tokens = {row["id"]: row["tokens"] for row in report["samples"]}
    assert section["prompt_tokens"] == 8 * sum(n for i, n in tokens.items() if i not in long_ids) + sum(tokens[i] for i in long_ids)
    for row in report["samples"]:
        dims = {"768"} if row["id"] in long_ids else {"768", "512", "256", "128"}
        assert set(row["gateway"]) == dims and all(m["cosine"] >= 0.9999 for m in row["gateway"].values())
    assert "gateway: 8 requests, min cosine" in result.stdout
    assert "11 samples x 4 dimensions x 2 encodings, 5 long at 768 float, in 8 requests" in section["message"]


def test_requests_are_split_at_max_inputs(stack: dict) -> None:
    sample_list = samples()
    encoder = TextEncoder(stack["root"] / "tokenizer")
    id_lists = encoder.encode([s.text for s in sample_list])
    answers = checks.GatewayAnswers()
    texts = [s.text for s in sample_list]
    api_probe.ask_gateway(stack["auth"].url, KEY, "embeddinggemma", texts, id_lists, IDS, [True] * len(IDS), 5, 30, answers)
    assert len(IDS) == 16 and answers.requests == 4 * 4 * 2
    assert [label for label, *_ in answers.usage[:4]] == ["q-short-en..q-ja", "q-emoji..d-ru", "d-medium..d-long-2000", "d-long-max"]
    assert all(got == expected for _, _, got, expected in answers.usage)
    assert answers.vectors[(128, "base64")].shape == (16, 128) and np.array_equal(
        answers.vectors[(128, "base64")], answers.vectors[(128, "float")]
    )
    # base64 is little-endian float32 of the vector (alone here, not in a batch of 5: float32 rounding apart).
    body = {"model": "embeddinggemma", "input": texts[0], "dimensions": 256, "encoding_format": "base64", "input_type": "none"}
    answer = api_probe.gateway_embeddings(stack["auth"].url, KEY, body, 30)
    alone = np.frombuffer(base64.b64decode(answer["data"][0]["embedding"]), "<f4")
    assert np.abs(alone - answers.vectors[(256, "float")][0]).max() < 1e-5


def test_a_wrong_key_fails_naming_the_gateway_and_401(stack: dict, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key-0123456789")
    gateway = stack["auth"]
    result = run_parity(stack, tmp_path / "r.json", "--gateway-url", gateway.url, "--gateway-key-file", str(wrong))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "fail" and report["summary"]["min_cosine"] >= 0.9999  # Triton itself is fine
    assert [(f["check"], f["source"]) for f in report["failures"]] == [("gateway", "gateway")]
    message = report["gateway"]["message"]
    assert f"gateway {gateway.url}" in message and "HTTP 401 invalid_api_key" in message
    assert report["gateway"]["failures"] == 1 and report["gateway"]["requests"] == 0
    assert "parity FAIL" in result.stderr and "HTTP 401" in result.stderr and gateway.url in result.stderr
    # No key at all: the same, as a missing Authorization header.
    no_key = run_parity(stack, tmp_path / "n.json", "--gateway-url", gateway.url, "--latency-iterations", "1")
    assert no_key.returncode == 1 and "HTTP 401" in json.loads((tmp_path / "n.json").read_text())["gateway"]["message"]


def test_a_gateway_truncating_elsewhere_fails_naming_the_gateway(stack: dict, tmp_path: Path) -> None:
    gateway, key = stack["short"], str(stack["key_file"])
    result = run_parity(stack, tmp_path / "r.json", "--gateway-url", gateway.url, "--gateway-key-file", key)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert {f["check"] for f in report["failures"]} == {"gateway"}  # Triton direct passes
    vectors = {f["sample"] for f in report["failures"] if f["source"].count("-") == 2}
    assert {"d-long-max", "d-medium"} <= vectors and "q-short-en" not in vectors  # texts over 64 tokens
    assert any("usage.prompt_tokens" in f["message"] for f in report["failures"])
    assert "via the gateway" in result.stderr and "(gateway-" in result.stderr
    assert report["gateway"]["failures"] == len(report["failures"]) and report["gateway"]["min_cosine"] < 0.9999
    # Told where the gateway truncates, parity compares with a local run cut at the same place: pass.
    told = run_parity(stack, tmp_path / "t.json", "--gateway-url", gateway.url, "--gateway-key-file", key, "--gateway-max-tokens", "64")
    assert told.returncode == 0, told.stdout + told.stderr
    section = json.loads((tmp_path / "t.json").read_text())["gateway"]
    assert section["max_tokens"] == 64 and section["min_cosine"] >= 0.9999


def test_a_gateway_refusing_long_inputs_is_asked_only_for_the_rest(stack: dict) -> None:
    """gateway_truncate false: --gateway-no-truncate leaves out the samples it would refuse (400)."""
    from verify.local import LocalBackend

    root, gateway = stack["root"], stack["strict"]
    sample_list = samples()
    encoder = TextEncoder(root / "tokenizer")
    id_lists = encoder.encode([s.text for s in sample_list])
    local_backend = LocalBackend(root / "models/embeddinggemma/1", device="cpu")
    local = np.stack([local_backend.infer(*encoder.pad([ids], length=len(ids)))[0] for ids in id_lists])
    base = ["--model-dir", "m", "--tokenizer-dir", str(root / "tokenizer"), "--gateway-url", gateway.url, "--timeout", "10"]

    def check(*extra: str) -> tuple[dict, checks.Evaluation]:
        args = parity.parser().parse_args([*base, *extra])
        return api_probe.check_gateway_endpoint(args, sample_list, encoder, id_lists, local, local_backend, LIMITS)

    section, evaluation = check("--gateway-max-tokens", "64")  # not told that it refuses: its 400 is the failure
    assert section["failures"] == 1 and "HTTP 400 context_length_exceeded" in section["message"] and gateway.url in section["message"]
    section, evaluation = check("--gateway-max-tokens", "64", "--gateway-no-truncate")
    long_ones = [s.id for s, ids in zip(sample_list, id_lists, strict=True) if len(ids) > 64]
    assert section["skipped"] == long_ones and "d-long-max" in long_ones and "q-short-en" not in long_ones
    assert evaluation.failures == [] and section["requests"] == 8 and section["min_cosine"] >= 0.9999, section["message"]
    rows = dict(zip(IDS, evaluation.rows, strict=True))
    assert rows["d-long-max"] is None and set(rows["q-short-en"]) == {"768", "512", "256", "128"}
