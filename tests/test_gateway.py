"""The embeddings gateway (embeddings_gateway/app.py) as a real process in front of a real tritonserver.

Judges: the official openai SDK against local ONNX Runtime on the same tiny model files; httpx for
bad requests; Triton's own metrics for batching. Three gateways run for the module: ``main``
(auth on, the real Triton), ``hang`` (Triton is a socket that accepts and never answers:
deadlines and the concurrency limit) and ``dead`` (nothing listens: unavailability; truncation off).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from embeddinggemma import QUERY_TASKS, document_text, query_text
from embeddings_gateway.api import ConfigError, parse_config, plan_batches
from tests.support import tritonserver as ts
from tests.support.gateway_bench import GatewayProcess, triton_counts
from tests.support.load import TargetRefused, check_targets, run_async, run_threads
from tests.support.openai_checks import BAD_REQUESTS, Reference, assert_error, check_sdk_parity, cosines, too_many_inputs

KEY = "sk-gateway-test-key-1"
MODEL = "embeddinggemma"


@pytest.fixture(scope="module")
def triton_root(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ts.triton_dir(tmp_path_factory.mktemp("triton"), hub, ts.cpu_config())  # the deploy's own CPU config


@pytest.fixture(scope="module")
def server(triton_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ts.Server]:
    with ts.serve(triton_root / "models", tmp_path_factory.mktemp("work")) as running:
        yield running


@pytest.fixture(scope="module")
def black_hole() -> Iterator[str]:
    """host:port of a socket that completes TCP handshakes and never answers (a hung Triton)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture(scope="module")
def gateways(
    server: ts.Server, triton_root: Path, black_hole: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, GatewayProcess]]:
    """The three gateways, started together (each takes about a second to import and load)."""
    tokenizer = triton_root / "tokenizer"
    work = tmp_path_factory.mktemp("gateways")
    started = {
        # Two workers (embeddings_gateway/app.py:Supervisor): the API, SIGHUP and metrics tests below go through both.
        "main": GatewayProcess.start(
            work / "main", server.grpc_url, tokenizer, api_key=KEY, max_inputs=32, max_body_bytes=256 * 1024, workers=2
        ),
        "hang": GatewayProcess.start(work / "hang", black_hole, tokenizer, max_concurrency=1, max_queue=0, triton_timeout_s=2),
        "dead": GatewayProcess.start(
            work / "dead", f"127.0.0.1:{ts.free_port()}", tokenizer, truncate=False, max_tokens=64, length_buckets=[16, 64]
        ),
    }
    with GatewayProcess.all_healthy(started):
        yield started


@pytest.fixture(scope="module")
def main_gw(gateways: dict[str, GatewayProcess]) -> GatewayProcess:
    return gateways["main"]


@pytest.fixture(scope="module")
def reference(hub: Path) -> Reference:
    return Reference(hub)


def post(
    gateway: GatewayProcess, body: Any = None, key: str | None = KEY, raw: bytes | None = None, timeout: float = 10, **kwargs: Any
) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{gateway.url}/v1/embeddings", content=content, headers=headers, timeout=timeout, **kwargs)


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from Prometheus text, labels in any order (0 when absent)."""
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if match and match.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")) == labels:
            return float(match.group(3))
    return 0.0


def gateway_metrics(gateway: GatewayProcess) -> str:
    return httpx.get(f"{gateway.url}/metrics", timeout=5).text


# ---------------------------------------------------------------------------------------------
# Parity through the official SDK


@pytest.mark.parametrize("encoding", ["sdk-default", "float"])
def test_openai_sdk_matches_local_onnx_runtime(main_gw: GatewayProcess, reference: Reference, encoding: str) -> None:
    check_sdk_parity(main_gw.url, KEY, reference, encoding)


def test_float_and_base64_carry_the_same_float32(main_gw: GatewayProcess) -> None:
    import base64

    body = {"model": MODEL, "input": ["What is Triton?", "Straße"], "dimensions": 256}
    floats = post(main_gw, {**body, "encoding_format": "float"}).json()
    encoded = post(main_gw, {**body, "encoding_format": "base64"}).json()
    for a, b in zip(floats["data"], encoded["data"], strict=True):
        assert np.array_equal(np.array(a["embedding"], np.float32), np.frombuffer(base64.b64decode(b["embedding"]), "<f4"))
    assert list(floats) == ["object", "data", "model", "usage"] and floats["object"] == "list"
    assert floats["data"][0]["object"] == "embedding" and floats["usage"] == encoded["usage"]


def test_prompt_extensions(main_gw: GatewayProcess, reference: Reference) -> None:
    raw = ["how do I rotate a key?", "東京の天気"]
    cases = [
        ({"input_type": "query"}, [query_text(t) for t in raw]),
        ({"task": "code retrieval"}, [query_text(t, task="code retrieval") for t in raw]),
        ({"input_type": "document", "titles": ["Keys", None]}, [document_text(raw[0], "Keys"), document_text(raw[1])]),
        ({"input_type": "document"}, [document_text(t) for t in raw]),
        ({}, raw),  # default_prompt none
    ]
    for extra, prompted in cases:
        response = post(main_gw, {"model": MODEL, "input": raw, "encoding_format": "float", **extra})
        assert response.status_code == 200, (extra, response.text)
        expected, tokens = reference.embed(prompted)
        got = np.array([item["embedding"] for item in response.json()["data"]], np.float32)
        assert cosines(got, expected).min() >= 0.9999, extra
        assert response.json()["usage"]["prompt_tokens"] == tokens, extra
    # Token-id input (off by default): tests/test_gateway_clients.py.
    assert set(QUERY_TASKS) >= {"search result", "code retrieval"}


# ---------------------------------------------------------------------------------------------
# Bad requests, auth, models


def test_bad_requests_get_openai_errors_then_a_good_request_works(main_gw: GatewayProcess, gateways: dict[str, GatewayProcess]) -> None:
    good = {"model": MODEL, "input": "hello"}
    cases = [*BAD_REQUESTS, too_many_inputs(32)]  # the main gateway allows 32 inputs
    for name, body, status, code, param in cases:
        raw = body if isinstance(body, bytes) else None
        response = post(main_gw, body, raw=raw)
        try:
            assert_error(response, status, code, param)
        except AssertionError as error:
            raise AssertionError(f"case {name!r}: {error}") from None
    # 413, declared by Content-Length and found while reading a chunked body.
    big = json.dumps({**good, "input": ["word " * 1000] * 60}).encode()
    assert len(big) > 256 * 1024
    assert_error(post(main_gw, raw=big), 413, "request_too_large")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 16384):
            yield big[start : start + 16384]

    assert_error(post(main_gw, raw=chunks()), 413, "request_too_large")  # type: ignore[arg-type]
    assert_error(httpx.get(f"{main_gw.url}/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"}), 405, "method_not_allowed")
    assert_error(httpx.post(f"{main_gw.url}/v1/completions", json=good), 404, "unknown_url")
    assert_error(httpx.get(f"{main_gw.url}/nothing/here"), 404, "unknown_url")
    # Over max_tokens with truncation off (the "dead" gateway: validated before any Triton call).
    long_input = {"model": MODEL, "input": ["short", "word " * 200]}
    error = assert_error(post(gateways["dead"], long_input, key=None), 400, "context_length_exceeded", "input[1]")
    assert "input[1]" in error["message"] and "64" in error["message"]
    # ...and right after all of them, a good request.
    response = post(main_gw, good)
    assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 768


def test_auth_and_open_endpoints(main_gw: GatewayProcess) -> None:
    assert_error(post(main_gw, {"model": MODEL, "input": "x"}, key=None), 401, "invalid_api_key")
    assert_error(post(main_gw, {"model": MODEL, "input": "x"}, key="sk-wrong"), 401, "invalid_api_key")
    assert_error(httpx.get(f"{main_gw.url}/v1/models"), 401, "invalid_api_key")
    bad = httpx.post(f"{main_gw.url}/v1/embeddings", json={"model": MODEL, "input": "x"}, headers={"Authorization": f"Basic {KEY}"})
    assert_error(bad, 401, "invalid_api_key")
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{main_gw.url}{path}", timeout=5).status_code == 200, path
    assert httpx.get(f"{main_gw.url}/ready", timeout=5).json()["ready"] is True
    models = httpx.get(f"{main_gw.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [MODEL] and models["data"][0]["object"] == "model"
    client = openai.OpenAI(base_url=f"{main_gw.url}/v1", api_key=KEY, max_retries=0, timeout=10)
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{main_gw.url}/v1", api_key="sk-nope", max_retries=0, timeout=10).embeddings.create(input="x", model=MODEL)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(input="x", model="other")


def test_rotated_key_file_takes_effect_on_sighup(main_gw: GatewayProcess) -> None:
    assert main_gw.key_file is not None
    original = main_gw.key_file.read_text()
    new_key = "sk-gateway-test-key-2"
    pid = main_gw.process.pid
    try:
        main_gw.key_file.write_text(f"# rotated\n{hashlib.sha256(new_key.encode()).hexdigest()}\n")
        main_gw.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while post(main_gw, {"model": MODEL, "input": "x"}, key=new_key).status_code != 200:
            assert time.monotonic() < deadline, "the new key was not accepted within 10 s of SIGHUP"
            time.sleep(0.05)
        assert_error(post(main_gw, {"model": MODEL, "input": "x"}, key=KEY), 401, "invalid_api_key")
        # A broken file on SIGHUP keeps the keys loaded before (logged), never locks everyone out by accident.
        main_gw.key_file.write_text("not-a-hash\n")
        main_gw.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert post(main_gw, {"model": MODEL, "input": "x"}, key=new_key).status_code == 200
        assert main_gw.process.poll() is None and main_gw.process.pid == pid
    finally:
        main_gw.key_file.write_text(original)
        main_gw.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while post(main_gw, {"model": MODEL, "input": "x"}).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Triton away, deadlines, concurrency


def test_triton_unreachable_is_503_fast(gateways: dict[str, GatewayProcess]) -> None:
    dead = gateways["dead"]
    start = time.monotonic()
    ready = httpx.get(f"{dead.url}/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert_error(post(dead, {"model": MODEL, "input": "x"}, key=None), 503, "triton_unavailable", type_="server_error")
    # Many chunks (20 inputs, 2 buckets: the windowed path) fail as one 503, fast.
    many = {"model": MODEL, "input": ["a"] * 18 + ["word " * 20] * 2}
    assert_error(post(dead, many, key=None), 503, "triton_unavailable", type_="server_error")
    # TEI's API: its Unhealthy error (503, which the front door retries elsewhere), in TEI's shape.
    tei = httpx.post(f"{dead.url}/embed", json={"inputs": "x"}, timeout=10)
    assert tei.status_code == 503 and tei.json()["error_type"] == "Unhealthy" and tei.headers["retry-after"] == "1", tei.text
    assert time.monotonic() - start < 10  # the gRPC deadline is 10 s; refused connections answer at once
    assert httpx.get(f"{dead.url}/health", timeout=5).status_code == 200


def test_hung_triton_hits_the_deadline_and_the_concurrency_limit_answers_429(gateways: dict[str, GatewayProcess]) -> None:
    hang = gateways["hang"]
    first: dict[str, Any] = {}

    def slow() -> None:
        t0 = time.monotonic()
        first["response"] = post(hang, {"model": MODEL, "input": "x"}, key=None, timeout=20)
        first["seconds"] = time.monotonic() - t0

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while metric(gateway_metrics(hang), "embeddings_gateway_in_flight") < 1:
        assert time.monotonic() < deadline, "the first request never got in flight"
        time.sleep(0.02)
    t0 = time.monotonic()
    refused = post(hang, {"model": MODEL, "input": "y"}, key=None)
    assert_error(refused, 429, "rate_limit_exceeded", type_="requests")
    assert refused.headers["retry-after"] == "1"  # admission full (1 in flight, no queue): shed at once
    assert time.monotonic() - t0 < 1.0
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert_error(first["response"], 504, "triton_timeout", type_="server_error")
    assert 1.5 <= first["seconds"] < 5.0  # triton_timeout_s is 2
    t0 = time.monotonic()
    assert httpx.get(f"{hang.url}/ready", timeout=5).status_code == 503
    assert time.monotonic() - t0 < 2.5


def test_health_port_tells_a_dead_triton_and_a_hung_one(gateways: dict[str, GatewayProcess]) -> None:
    """The health port of the gateways whose Triton is away (refused) or hung (never answers): /ready
    503 naming Triton, at once; /health 200 (the process lives). Before the SIGTERM test stops hang."""
    for name in ("dead", "hang"):
        deadline = time.monotonic() + 5  # the probe's first answer comes within its 1 s deadline
        while "Triton at" not in (answer := timed_get(f"{gateways[name].health_url}/ready"))[1].get("reason", ""):
            assert time.monotonic() < deadline, (name, answer)
            time.sleep(0.2)
        status, body, seconds = answer
        assert status == 503 and body["ready"] is False, (name, body)
        assert seconds < 0.5
        assert timed_get(f"{gateways[name].health_url}/health")[0] == 200  # the process lives


# ---------------------------------------------------------------------------------------------
# Metrics and bucketing


def test_request_counter_grows_by_the_requests_made(main_gw: GatewayProcess) -> None:
    labels = {"endpoint": "embeddings", "code": "200"}
    before = gateway_metrics(main_gw)
    for i in range(5):
        assert post(main_gw, {"model": MODEL, "input": ["a" * (i + 1), "b"]}).status_code == 200
    assert_error(post(main_gw, {"model": MODEL, "input": []}), 400, "invalid_value")
    after = gateway_metrics(main_gw)
    assert metric(after, "embeddings_gateway_requests_total", **labels) - metric(before, "embeddings_gateway_requests_total", **labels) == 5
    bad = {"endpoint": "embeddings", "code": "400"}
    assert metric(after, "embeddings_gateway_requests_total", **bad) - metric(before, "embeddings_gateway_requests_total", **bad) == 1
    assert metric(after, "embeddings_gateway_inputs_total") - metric(before, "embeddings_gateway_inputs_total") == 10
    for name in ("tokenize_seconds_count", "infer_seconds_count", "request_seconds_count", "triton_batch_size_count"):
        assert metric(after, f"embeddings_gateway_{name}") > metric(before, f"embeddings_gateway_{name}"), name
    assert metric(after, "embeddings_gateway_in_flight") == 0 and metric(after, "embeddings_gateway_api_keys") == 1


def test_gateway_takes_max_batch_size_from_the_model_triton_serves(server: ts.Server, triton_root: Path, tmp_path: Path) -> None:
    """Configured for 2 inputs per call, the gateway sends 8 once Triton says the model takes 8 (its
    max_batch_size, read when the model is READY): a rolled Triton release never gets more than it
    takes, and a larger one is used at once."""
    served = json.loads(httpx.get(f"http://{server.http_url}/v2/models/{MODEL}/config", timeout=5).text)["max_batch_size"]
    assert served >= 8
    with GatewayProcess.started(tmp_path, server.grpc_url, triton_root / "tokenizer", api_key=KEY, triton_max_batch_size=2) as gateway:
        assert httpx.get(f"{gateway.url}/ready", timeout=5).status_code == 200
        before = gateway_metrics(gateway)
        assert post(gateway, {"model": MODEL, "input": ["same length text"] * 8}).status_code == 200
        after = gateway_metrics(gateway)
        log = gateway.log_tail()
    calls = metric(after, "embeddings_gateway_triton_batch_size_count") - metric(before, "embeddings_gateway_triton_batch_size_count")
    rows = metric(after, "embeddings_gateway_triton_batch_size_sum") - metric(before, "embeddings_gateway_triton_batch_size_sum")
    assert (calls, rows) == (1, 8), f"{calls} Triton calls for 8 inputs; log:\n{log}"
    assert f"max_batch_size {served} (was 2)" in log


def test_plan_batches_groups_by_bucket_and_chunks() -> None:
    plan = plan_batches([5, 70, 64, 3, 200, 65, 9, 10, 11], (64, 128, 256), 3)
    assert plan == [(64, [0, 2, 3]), (64, [6, 7, 8]), (128, [1, 5]), (256, [4])]
    assert plan_batches([300], (64, 128), 8) == [(300, [0])]


def test_different_lengths_in_one_bucket_share_shapes_and_merge_in_triton(main_gw: GatewayProcess, server: ts.Server) -> None:
    """Callers with inputs of different lengths (all within the 64 bucket) reach Triton with equal
    shapes, so its dynamic batcher executes fewer batches than requests. Without buckets no two of
    these could ever merge (every length differs)."""
    texts = [" ".join(["the"] * n) for n in range(1, 33)]  # 32 distinct token counts (4 to 35), all within 64
    metrics_url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    before_lengths = gateway_metrics(main_gw)

    async def burst() -> tuple[float, float]:
        before = triton_counts(metrics_url, MODEL)
        async with httpx.AsyncClient(base_url=main_gw.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            responses = await asyncio.gather(*(client.post("/v1/embeddings", json={"model": MODEL, "input": t}) for t in texts))
        assert all(r.status_code == 200 for r in responses)
        after = triton_counts(metrics_url, MODEL)
        return after[0] - before[0], after[1] - before[1]

    merged = False
    for _ in range(3):  # the batcher's timing varies; a merge in any of 3 bursts is proof enough
        inferences, executions = asyncio.run(burst())
        assert inferences == len(texts)
        if executions < inferences:
            merged = True
            break
    assert merged, "Triton never merged same-bucket requests of different lengths"
    after_lengths = gateway_metrics(main_gw)
    name = "embeddings_gateway_triton_sequence_length"
    sent = metric(after_lengths, f"{name}_count") - metric(before_lengths, f"{name}_count")
    padded = metric(after_lengths, f"{name}_sum") - metric(before_lengths, f"{name}_sum")
    assert sent >= len(texts) and padded == 64 * sent  # every Triton request of these was [b, 64]


# ---------------------------------------------------------------------------------------------
# Config


def base_config(**overrides: Any) -> dict[str, Any]:
    return {"model_name": MODEL, "triton_grpc_url": "127.0.0.1:6001", "tokenizer_dir": "/tmp/tok", **overrides}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"listen_port": 0}, "key 'listen_port'=0 is invalid (allowed: an integer from 1 to 65535)"),
        ({"listen_port": "6080"}, "key 'listen_port'=\"6080\" is invalid"),
        ({"truncate": "yes"}, "key 'truncate'=\"yes\" is invalid (allowed: true or false)"),
        ({"length_buckets": [128, 64, 2048]}, "strictly ascending"),
        ({"length_buckets": [64, 512]}, "must be at least max_tokens (2048)"),
        ({"default_prompt": "passage"}, "one of none, query, document"),
        ({"triton_grpc_url": "http://127.0.0.1:6001"}, "host:port"),
        ({"listen_address": "0.0.0.0"}, "beyond loopback: set api_key_sha256_file"),
        ({"listen_address": "gateway.example"}, "an IP address"),
        ({"max_tokenz": 5}, "unknown key 'max_tokenz'"),
        ({"triton_timeout_s": 0}, "a number above 0"),
        ({"max_concurrency": True}, "an integer from 1 to 4096"),
        ({"workers": -1}, "key 'workers'=-1 is invalid (allowed: an integer from 0 to 64)"),
    ],
)
def test_config_refuses_bad_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="^config: .*") as caught:
        parse_config(base_config(**overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_config_defaults_and_required_keys() -> None:
    config = parse_config(base_config(listen_address="::1", length_buckets=[32, 2048]))
    assert config.max_tokens == 2048 and config.truncate is True and config.length_buckets == (32, 2048) and config.default_prompt == "none"
    with pytest.raises(ConfigError, match="missing key 'tokenizer_dir'"):
        parse_config({"model_name": MODEL, "triton_grpc_url": "127.0.0.1:1"})
    assert parse_config(base_config(listen_address="0.0.0.0", api_key_sha256_file="/etc/keys")).listen_address == "0.0.0.0"


def run_gateway(config_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embeddings_gateway", "--config", str(config_path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ts.REPO_ROOT,
    )


def test_bad_config_exits_2_with_one_line(tmp_path: Path, triton_root: Path) -> None:
    tokenizer = str(triton_root / "tokenizer")
    key_file = tmp_path / "keys"
    key_file.write_text("sk-raw-key-pasted-by-mistake\n")
    cases = {
        "unknown key": json.dumps(base_config(tokenizer_dir=tokenizer, listen_prot=1)),
        "not JSON": "{",
        "bad key file": json.dumps(base_config(tokenizer_dir=tokenizer, api_key_sha256_file=str(key_file))),
        "missing tokenizer": json.dumps(base_config(tokenizer_dir=str(tmp_path / "nope"))),
    }
    for name, text in cases.items():
        path = tmp_path / "gateway.json"
        path.write_text(text)
        result = run_gateway(path)
        assert result.returncode == 2, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("gateway: "), (name, result.stderr)
        assert "sk-raw-key" not in result.stderr
    assert run_gateway(tmp_path / "absent.json").returncode == 2
    (tmp_path / "good.json").write_text(json.dumps(base_config(tokenizer_dir=tokenizer)))
    assert run_gateway(tmp_path / "good.json", "--check").returncode == 0


def test_sigterm_lets_the_request_in_flight_finish_then_exits(gateways: dict[str, GatewayProcess]) -> None:
    hang = gateways["hang"]  # its last user: Triton never answers there, so a request stays in flight 2 s
    answer: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: answer.setdefault("response", post(hang, {"model": MODEL, "input": "x"}, key=None, timeout=20)), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 5
    while metric(gateway_metrics(hang), "embeddings_gateway_in_flight") < 1:
        assert time.monotonic() < deadline, "the request never got in flight"
        time.sleep(0.02)
    t0 = time.monotonic()
    hang.process.send_signal(signal.SIGTERM)
    # uvicorn drains, then re-raises SIGTERM: death by SIGTERM after a clean shutdown (systemd: success).
    assert hang.process.wait(timeout=15) == -signal.SIGTERM
    assert time.monotonic() - t0 < 8
    thread.join(timeout=5)
    assert_error(answer["response"], 504, "triton_timeout", type_="server_error")  # answered, not dropped
    assert "Application shutdown complete" in hang.log_tail()


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (a gateway's workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_bytes().rpartition(b")")[2].split()[1]) == pid:
                    found.add(int(entry.name))
            except (OSError, IndexError):
                pass
    return found


def test_workers_share_the_port_count_as_one_and_stop_gracefully(server: ts.Server, triton_root: Path, tmp_path: Path) -> None:
    """A 2-worker gateway: both workers serve the one port (fresh connections spread by SO_REUSEPORT),
    /metrics counts every request exactly whichever worker answers, a killed worker is started again
    and the counts of the dead one stay; SIGTERM stops all, the supervisor dies by SIGTERM (as a lone
    uvicorn does) and its metrics directory is gone."""
    with GatewayProcess.started(tmp_path / "gw", server.grpc_url, triton_root / "tokenizer", api_key=KEY, workers=2) as gw:
        workers = children(gw.process.pid)
        assert len(workers) == 2, workers
        labels = {"endpoint": "embeddings", "code": "200"}
        before = metric(gateway_metrics(gw), "embeddings_gateway_requests_total", **labels)
        cpu_before = {pid: sum(map(int, Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[11:13])) for pid in workers}
        sent = 0
        for i in range(60):  # a new connection each: the kernel spreads them over the workers' sockets
            assert post(gw, {"model": MODEL, "input": [f"worker text {i}"], "encoding_format": "base64"}).status_code == 200
            sent += 1
        text = gateway_metrics(gw)
        assert metric(text, "embeddings_gateway_requests_total", **labels) - before == sent
        assert metric(text, "embeddings_gateway_workers") == 2 and metric(text, "embeddings_gateway_api_keys") == 1
        assert metric(text, "process_cpu_seconds_total") > 0 and metric(text, "embeddings_gateway_in_flight") == 0
        cpu_after = {pid: sum(map(int, Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[11:13])) for pid in workers}
        assert all(cpu_after[pid] > cpu_before[pid] for pid in workers), (cpu_before, cpu_after)  # both did work
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while len(children(gw.process.pid) - {victim}) < 2:
            assert time.monotonic() < deadline, "the killed worker was not started again"
            time.sleep(0.1)
        for i in range(10):
            assert post(gw, {"model": MODEL, "input": [f"after {i}"]}).status_code == 200
        text = gateway_metrics(gw)
        assert metric(text, "embeddings_gateway_requests_total", **labels) - before == sent + 10  # the dead worker's counts kept
        assert metric(text, "embeddings_gateway_workers") == 2
        directory = re.search(r"their metrics: (\S+)\)", gw.log_path.read_text()).group(1)
        assert Path(directory).is_dir()
        workers = children(gw.process.pid)
        gw.process.send_signal(signal.SIGTERM)
        assert gw.process.wait(timeout=20) == -signal.SIGTERM
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not Path(directory).exists()


def test_workers_refuse_a_taken_port_with_one_line(triton_root: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps(base_config(tokenizer_dir=str(triton_root / "tokenizer"), listen_port=port, workers=2)))
        result = run_gateway(path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == f"gateway: cannot listen on 127.0.0.1:{port} (listen_port): Address already in use"


def test_worker_shares_of_the_host_limits() -> None:
    from embeddings_gateway.app import share, worker_count

    assert [share(64, 3, i, 1) for i in range(3)] == [22, 21, 21]
    assert [share(1, 2, i, 1) for i in range(2)] == [1, 1]  # at least one request at a time each
    assert [share(0, 2, i, 0) for i in range(2)] == [0, 0]
    assert worker_count(parse_config(base_config(workers=3))) == 3
    assert 1 <= worker_count(parse_config(base_config())) <= 4


def test_worker_sockets_get_tcp_nodelay_from_asyncio() -> None:
    """A worker's listening socket says it is TCP, so asyncio sets TCP_NODELAY on what it accepts:
    without it each response's body waited for the client's delayed ACK of its headers (40 ms)."""
    from embeddings_gateway.app import listening_socket

    async def accepted_nodelay() -> int:
        listener = listening_socket("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=listener)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0


# ---------------------------------------------------------------------------------------------
# tests/support/load.py


def test_load_targets_are_loopback_unless_allowed() -> None:
    check_targets(["http://127.0.0.1:6080/v1", "127.0.0.2:6001", "http://localhost:1", "http://[::1]:80/"])
    check_targets(["http://172.30.0.5:6080"], allow=["172.30.0.5"])
    for target in ("http://10.0.0.1:6080", "https://api.openai.com/v1", "8.8.8.8:53", "http://[2001:db8::1]:80"):
        with pytest.raises(TargetRefused):
            check_targets([target])
    with pytest.raises(TargetRefused):
        check_targets([])
    with pytest.raises(TargetRefused):
        check_targets(["http://172.30.0.5:1"], allow=["sandbox-host"])
    with pytest.raises(TargetRefused):
        asyncio.run(run_async(lambda: asyncio.sleep(0), targets=["http://192.168.1.1"], concurrency=1, max_requests=1, max_seconds=1))


def test_load_loops_stop_at_the_count_or_the_deadline() -> None:
    calls = 0

    async def fast() -> int:
        nonlocal calls
        calls += 1
        if calls % 10 == 0:
            raise RuntimeError("every tenth fails")
        await asyncio.sleep(0.001)
        return 2

    result = asyncio.run(run_async(fast, targets=["127.0.0.1:1"], concurrency=4, max_requests=50, max_seconds=10))
    assert result.count == 50 == calls and result.failures == 5 and result.items == 90
    assert result.errors[0] == "RuntimeError: every tenth fails" and 0 < result.percentile(50) <= result.percentile(99)

    async def hang() -> None:
        await asyncio.sleep(60)

    t0 = time.monotonic()
    result = asyncio.run(run_async(hang, targets=["localhost:1"], concurrency=3, max_requests=100, max_seconds=0.3, grace_s=0.2))
    assert time.monotonic() - t0 < 2 and result.count == 3 and result.failures == 3
    t0 = time.monotonic()
    result = run_threads(lambda: time.sleep(0.01), targets=["127.0.0.1:1"], concurrency=2, max_requests=1000, max_seconds=0.3)
    assert time.monotonic() - t0 < 2 and 5 < result.count < 1000 and result.failures == 0 and result.as_dict()["p50_ms"] >= 10
    result = run_threads(lambda: time.sleep(5), targets=["127.0.0.1:1"], concurrency=2, max_requests=10, max_seconds=0.2, grace_s=0.3)
    assert result.failures == 2 and result.count == 2


# ---------------------------------------------------------------------------------------------
# Cross-request micro-batching (embeddings_gateway.app.MicroBatcher)


class FakeCalls:
    """A stand-in Triton call for MicroBatcher: records each call's ids, holds it until released,
    and answers rows whose first component is each input's first token id (or raises ``error``)."""

    def __init__(self) -> None:
        self.calls: list[list[list[int]]] = []
        self.release: list[asyncio.Event] = []
        self.error: Exception | None = None
        self.hold = True  # False: calls answer at once

    def release_all(self) -> None:
        """Release the calls held now and answer later ones at once."""
        self.hold = False
        for event in self.release:
            event.set()

    async def __call__(self, ids: list[list[int]], length: int) -> np.ndarray:
        assert all(len(row) <= length for row in ids)
        self.calls.append(ids)
        event = asyncio.Event()
        self.release.append(event)
        if self.hold:
            await asyncio.wait_for(event.wait(), 5)
        if self.error is not None:
            raise self.error
        rows = np.zeros((len(ids), 768), np.float32)
        rows[:, 0] = [row[0] for row in ids]
        return rows


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_micro_batcher_sends_at_once_when_idle_and_merges_while_busy() -> None:
    from embeddings_gateway.app import MicroBatcher

    async def scenario() -> None:
        fake = FakeCalls()
        batcher = MicroBatcher(fake, max_batch=8, in_flight=2)
        first = batcher.submit([[1]], 64)
        await settle()
        assert fake.calls == [[[1]]]  # idle: sent on the next loop iteration, alone
        second = batcher.submit([[2, 2]], 64)
        other_length = batcher.submit([[9] * 100], 128)  # another bucket has calls of its own
        await settle()
        assert fake.calls[1:] == [[[2, 2]], [[9] * 100]]
        # 64 now has 2 calls open: these queue...
        queued = [batcher.submit([[10 + i] * (i + 1) for _ in range(n)], 64) for i, n in enumerate((2, 1, 3))]
        await settle()
        assert len(fake.calls) == 3
        fake.release[0].set()  # ...and go as ONE call when a slot frees
        await settle()
        assert fake.calls[3] == [[10], [10], [11, 11], [12, 12, 12], [12, 12, 12], [12, 12, 12]]
        assert (await first)[:, 0].tolist() == [1]
        for event in fake.release:
            event.set()
        await settle()
        assert [(await f)[:, 0].tolist() for f in queued] == [[10, 10], [11], [12, 12, 12]]
        assert (await second)[:, 0].tolist() == [2] and (await other_length)[:, 0].tolist() == [9]
        # A full batch goes even when the length's calls are all open; a piece never splits.
        held = []
        for token in (20, 21):
            held.append(batcher.submit([[token]], 64))
            await settle()
        full = [batcher.submit([[30 + i]], 64) for i in range(8)]
        await settle()
        assert [len(c) for c in fake.calls[-3:]] == [1, 1, 8]
        for event in fake.release:
            event.set()
        assert [(await f)[0, 0] for f in held + full] == [20, 21, *range(30, 38)]
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_micro_batcher_failure_fails_each_member_and_cancellation_spares_the_others() -> None:
    from embeddings_gateway.api import ApiError
    from embeddings_gateway.app import MicroBatcher

    async def scenario() -> None:
        fake = FakeCalls()
        batcher = MicroBatcher(fake, max_batch=8, in_flight=1)
        blocker = batcher.submit([[1]], 64)
        await settle()
        members = [batcher.submit([[2]], 64), batcher.submit([[3], [4]], 64)]
        gone = batcher.submit([[5]], 64)
        gone.cancel()  # its request gave up while queued: never sent
        fake.error = ApiError(503, "Triton or the model is not available; retry later", "triton_unavailable", type_="server_error")
        fake.release[0].set()
        await settle()
        assert fake.calls[1] == [[2], [3], [4]]
        fake.release[1].set()
        errors = []
        for future in [blocker, *members]:
            with pytest.raises(ApiError) as caught:
                await future
            errors.append(caught.value)
        assert [(e.status, e.code, e.type) for e in errors] == [(503, "triton_unavailable", "server_error")] * 3
        assert len({id(e) for e in errors}) == 3  # each request its own error object
        # A member cancelled while its call is in flight: the others still get their rows.
        fake.error = None
        a, b = batcher.submit([[6]], 64), batcher.submit([[7]], 64)
        await settle()
        c = batcher.submit([[8]], 64)
        await settle()
        a.cancel()
        fake.release_all()
        assert (await b)[0, 0] == 7 and (await c)[0, 0] == 8 and a.cancelled()
        # An unexpected exception is a 500 internal_error for its members, not a traceback.
        fake.error = RuntimeError("boom")
        d = batcher.submit([[9]], 64)
        with pytest.raises(ApiError) as caught:
            await d
        assert caught.value.status == 500 and caught.value.code == "internal_error"
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_concurrent_requests_merged_by_the_gateway_get_their_own_embeddings(main_gw: GatewayProcess, reference: Reference) -> None:
    """Concurrent requests of different lengths (one bucket) and sizes are merged into shared Triton
    calls, and each gets its own rows back, in order, as local ONNX Runtime computes them."""
    requests = [[" ".join(["word"] * (n + k)) for k in range(1 + n % 3)] for n in range(1, 25)]  # 1-3 inputs, 24 requests
    expected = [reference.embed(texts)[0] for texts in requests]
    name = "embeddings_gateway_triton_batch_size"

    async def burst() -> list[Any]:
        async with httpx.AsyncClient(base_url=main_gw.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            body = {"model": MODEL, "encoding_format": "float"}
            return await asyncio.gather(*(client.post("/v1/embeddings", json={**body, "input": texts}) for texts in requests))

    merged = False
    for _ in range(3):  # merging depends on timing; every burst must be right, one merge is proof enough
        before = gateway_metrics(main_gw)
        responses = asyncio.run(burst())
        after = gateway_metrics(main_gw)
        for texts, want, response in zip(requests, expected, responses, strict=True):
            assert response.status_code == 200, response.text
            got = np.array([item["embedding"] for item in response.json()["data"]], np.float32)
            assert got.shape == (len(texts), 768) and cosines(got, want).min() >= 0.9999
        calls = metric(after, f"{name}_count") - metric(before, f"{name}_count")
        inputs = metric(after, f"{name}_sum") - metric(before, f"{name}_sum")
        assert inputs == sum(map(len, requests))
        if calls < len(requests):
            merged = True
            break
    assert merged, "the gateway never merged concurrent requests into one Triton call"


class FailingMergedTriton:
    """A fake Triton gRPC server: every ModelInfer is held 0.3 s (so concurrent requests queue and
    merge in the gateway), then answers a batch of one with unit vectors and fails a larger batch
    with UNAVAILABLE. ``sizes`` records each call's batch size."""

    def __init__(self) -> None:
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.sizes: list[int] = []
        outer = self

        class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
            def ModelInfer(self, request: Any, context: Any) -> Any:
                batch = int(request.inputs[0].shape[0])
                outer.sizes.append(batch)
                time.sleep(0.3)
                if batch > 1:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "fake Triton: merged batches fail here")
                rows = np.zeros((batch, 768), "<f4")
                rows[:, 0] = 1
                output = service_pb2.ModelInferResponse.InferOutputTensor(name="sentence_embedding", datatype="FP32", shape=[batch, 768])
                return service_pb2.ModelInferResponse(model_name=MODEL, outputs=[output], raw_output_contents=[rows.tobytes()])

        from concurrent.futures import ThreadPoolExecutor

        self.server = grpc.server(ThreadPoolExecutor(max_workers=16))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), self.server)
        self.url = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=0)


def test_a_failed_merged_triton_call_fails_exactly_its_members_with_503(triton_root: Path, tmp_path: Path) -> None:
    fake = FailingMergedTriton()
    try:
        with GatewayProcess.started(tmp_path / "gw", fake.url, triton_root / "tokenizer") as gateway:

            async def burst() -> list[Any]:
                async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
                    return await asyncio.gather(
                        *(client.post("/v1/embeddings", json={"model": MODEL, "input": f"text {i}"}) for i in range(12))
                    )

            responses = asyncio.run(burst())
    finally:
        fake.stop()
    ok = [r for r in responses if r.status_code == 200]
    failed = [r for r in responses if r.status_code != 200]
    assert sum(fake.sizes) == 12 and max(fake.sizes) > 1, fake.sizes  # every input sent once; some merged
    assert len(ok) == fake.sizes.count(1) and len(failed) == sum(size for size in fake.sizes if size > 1)
    for response in failed:
        assert_error(response, 503, "triton_unavailable", type_="server_error")
        assert response.headers["retry-after"] == "1"
    for response in ok:
        assert response.json()["data"][0]["embedding"][:2] == [1.0, 0.0]


# ---------------------------------------------------------------------------------------------
# The health path off the busy path (embeddings_gateway/health.py)


def timed_get(url: str, timeout: float = 5) -> tuple[int, dict[str, Any], float]:
    start = time.monotonic()
    response = httpx.get(url, timeout=timeout)
    return response.status_code, response.json(), time.monotonic() - start


def test_health_responder_answers_while_the_event_loop_is_blocked(server: ts.Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The responder and the Triton probe on their threads, an event loop that beats and is then held
    by pure-Python work (holding the GIL, as a saturated gateway's loop does): /ready still answers in
    milliseconds, 200 while the block is short, 503 once the loop has not turned for LOOP_STALL_S
    (wedged), 200 again when it turns."""
    from embeddings_gateway import health as gh

    monkeypatch.setattr(gh, "LOOP_STALL_S", 2.0)
    health = gh.Health(MODEL)
    probe = gh.TritonProbe(health, server.grpc_url, on_ready=lambda client: None)
    responder = gh.HealthResponder(health, "127.0.0.1", ts.free_port())
    url = f"http://127.0.0.1:{responder.server.server_address[1]}"
    loop = asyncio.new_event_loop()

    def beat() -> None:
        health.beat()
        loop.call_later(gh.BEAT_S, beat)

    def hold(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # CPU work on the loop's thread, GIL held between switches
            sum(range(1000))

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    probe.start()
    responder.start()
    try:
        loop.call_soon_threadsafe(beat)
        thread.start()
        deadline = time.monotonic() + 10
        while timed_get(f"{url}/ready")[0] != 200:
            assert time.monotonic() < deadline, timed_get(f"{url}/ready")
            time.sleep(0.1)
        loop.call_soon_threadsafe(hold, 6.0)
        time.sleep(0.1)
        held = time.monotonic()
        answers = []
        while time.monotonic() - held < 4.0:  # checks while the loop is held
            answers.append(timed_get(f"{url}/ready"))
            time.sleep(0.05)
        statuses = [status for status, _, _ in answers]
        assert max(seconds for _, _, seconds in answers) < 0.5, answers
        assert statuses[:3] == [200] * 3, answers  # held for less than LOOP_STALL_S: busy, not wedged
        assert statuses[-3:] == [503] * 3, answers
        assert "event loop has not run" in answers[-1][1]["reason"]
        deadline = time.monotonic() + 8
        while timed_get(f"{url}/ready")[0] != 200:
            assert time.monotonic() < deadline, "not ready again once the loop turned"
            time.sleep(0.1)
        assert timed_get(f"{url}/health")[0] == 200 and timed_get(f"{url}/nope")[0] == 404
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        responder.stop()
        probe.stop()
        loop.close()


def test_health_port_stays_fast_while_the_gateway_is_saturated(server: ts.Server, triton_root: Path, tmp_path: Path) -> None:
    """A real gateway saturated by 48 concurrent 32-input requests (about 6 s): its health port's
    /ready answers 200 each time, well within the front door's check timeout; the figures of both
    ports are printed."""
    with GatewayProcess.started(tmp_path, server.grpc_url, triton_root / "tokenizer", api_key=KEY, max_inputs=64) as gateway:
        texts = [f"saturating text number {i} with a few more words in it" for i in range(32)]
        body = json.dumps({"model": MODEL, "input": texts, "encoding_format": "base64"}).encode()

        async def call() -> int:
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.post(f"{gateway.url}/v1/embeddings", content=body, headers={"Authorization": f"Bearer {KEY}"})
            assert response.status_code in (200, 429), response.text[:200]
            return 1 if response.status_code == 200 else 0

        def load() -> Any:
            return asyncio.run(run_async(call, targets=[gateway.url], concurrency=48, max_requests=5000, max_seconds=6))

        result: dict[str, Any] = {}
        loader = threading.Thread(target=lambda: result.setdefault("load", load()), daemon=True)
        loader.start()
        time.sleep(1.0)
        health, main = [], []
        while loader.is_alive() and len(health) < 60:
            health.append(timed_get(f"{gateway.health_url}/ready"))
            if len(health) % 4 == 1:  # the main port's /ready, for the printed comparison only
                main.append(timed_get(f"{gateway.url}/ready", timeout=10))
            time.sleep(0.05)
        loader.join(timeout=30)
    load_result = result["load"]
    print(
        f"saturated: {load_result.as_dict()}; health port /ready max {max(s for *_, s in health) * 1000:.0f} ms, "
        f"main port /ready max {max(s for *_, s in main) * 1000:.0f} ms ({len(health)} checks)"
    )
    assert load_result.items > 10 and load_result.failures == 0, load_result.as_dict()  # it was saturated, and served
    assert len(health) >= 10
    assert [status for status, _, _ in health] == [200] * len(health)
    # Under the front door's check timeout (front_door_check_timeout_ms, 1 s) with room: seen here at
    # most 0.2-0.55 s on a 2-core machine shared with Triton, this load and the test itself.
    assert max(seconds for _, _, seconds in health) < 1.0, health
