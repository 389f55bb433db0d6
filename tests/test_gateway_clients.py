"""The gateway's client compatibility (issue 23), judged by client libraries nobody here wrote,
against a real gateway process on a real tritonserver (the stand-in python backend on the tiny
model), each answer compared with local ONNX Runtime on the same prompted text (tests/support/client_checks.py).

Two gateways: ``clients`` (every default: 2048 inputs, 300,000 tokens per request, token ids off;
auth on) and ``ids`` (token_ids_input on, a low max_request_tokens, no auth).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from embeddinggemma import query_text
from tests.support import client_checks as cc
from tests.support import tritonserver as ts
from tests.support.gateway_bench import GatewayProcess
from tests.support.openai_checks import MODEL, Reference, assert_error, cosines
from tests.test_gateway import triton_root  # noqa: F401 (a module fixture: a Triton model directory)

KEY = "sk-gateway-clients-key-1"


@pytest.fixture(scope="module")
def gateways(triton_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GatewayProcess]]:
    tokenizer = triton_root / "tokenizer"
    hole = socket.socket()  # a "Triton" that accepts and never answers
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    with hole, ts.serve(triton_root / "models", tmp_path_factory.mktemp("work")) as server:
        work = tmp_path_factory.mktemp("gateways")
        hung = f"127.0.0.1:{hole.getsockname()[1]}"
        started = {
            "clients": GatewayProcess.start(work / "clients", server.grpc_url, tokenizer, api_key=KEY),
            "ids": GatewayProcess.start(work / "ids", server.grpc_url, tokenizer, token_ids_input=True, max_request_tokens=2000),
            "hung": GatewayProcess.start(work / "hung", hung, tokenizer, triton_timeout_s=1),
        }
        with GatewayProcess.all_healthy(started):
            yield started


@pytest.fixture(scope="module")
def url(gateways: dict[str, GatewayProcess]) -> str:
    return gateways["clients"].url


@pytest.fixture(scope="module")
def reference(hub: Path) -> Reference:
    return Reference(hub)


# ---------------------------------------------------------------------------------------------
# OpenAI's API, judged by its clients


def test_openai_sdk_2048_inputs_in_one_call(url: str, reference: Reference) -> None:
    cc.check_openai_sdk_2048(url, KEY, reference)


def test_langchain_embeds_1000_documents_with_its_default_chunk_size(url: str, reference: Reference) -> None:
    cc.check_langchain_1000_documents(url, KEY, reference)


def test_langchain_default_token_ids_are_refused_with_the_fix(url: str) -> None:
    message = cc.check_langchain_default_token_ids_refused(url, KEY)
    assert "tiktoken" in message


def test_llamaindex_openai_embedding(url: str, reference: Reference) -> None:
    cc.check_llamaindex(url, KEY, reference)


def test_litellm(url: str, reference: Reference) -> None:
    cc.check_litellm(url, KEY, reference)


def test_openai_limits_inputs_and_tokens_per_request(gateways: dict[str, GatewayProcess], url: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    over = httpx.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": ["x"] * 2049}, headers=auth, timeout=30)
    error = assert_error(over, 400, "too_many_inputs", "input")
    assert "2048" in error["message"]
    # The tokens bound (ids gateway: 2000 tokens per request); the message names the limit and the count.
    ids_url = gateways["ids"].url
    texts = ["word " * 100] * 10  # 303 tokens each with the tiny model's tokenizer: 3030 in all
    error = assert_error(
        httpx.post(f"{ids_url}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=30), 400, "max_tokens_per_request"
    )
    assert "Requested 3030 tokens, max 2000 tokens per request" in error["message"], error
    ok = httpx.post(f"{ids_url}/v1/embeddings", json={"model": MODEL, "input": texts[:6]}, timeout=30)
    assert ok.status_code == 200 and len(ok.json()["data"]) == 6
    tei = httpx.post(f"{ids_url}/embed", json={"inputs": texts}, timeout=30)
    assert tei.status_code == 422 and tei.json()["error_type"] == "Validation" and "2000" in tei.json()["error"]


def test_token_ids_are_embedded_as_given_when_the_setting_is_on(gateways: dict[str, GatewayProcess], reference: Reference) -> None:
    ids_url = gateways["ids"].url
    ids = reference.encoder.encode([query_text("how do I rotate a key?")])[0]
    text = httpx.post(
        f"{ids_url}/v1/embeddings", json={"model": MODEL, "input": query_text("how do I rotate a key?"), "encoding_format": "float"}
    )
    for tokens_input in (ids, [ids, ids]):
        response = httpx.post(
            f"{ids_url}/v1/embeddings", json={"model": MODEL, "input": tokens_input, "encoding_format": "float"}, timeout=30
        )
        assert response.status_code == 200, response.text
        got = np.array([row["embedding"] for row in response.json()["data"]], np.float32)
        assert cosines(got, np.array([text.json()["data"][0]["embedding"]] * len(got), np.float32)).min() >= 0.9999
    outside = httpx.post(f"{ids_url}/v1/embeddings", json={"model": MODEL, "input": [[2, 10**6, 1]]}, timeout=30)
    assert_error(outside, 400, "invalid_value", "input[0]")
    tei = httpx.post(f"{ids_url}/embed", json={"inputs": [ids]}, timeout=30)
    assert tei.status_code == 200 and cosines(np.array(tei.json(), np.float32), got[:1]).min() >= 0.9999


def test_prompt_name_on_the_openai_api(url: str, reference: Reference) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    texts = ["a short query", "東京の天気"]
    for name in ("Retrieval-query", "Clustering", "document"):
        body = {"model": MODEL, "input": texts, "prompt_name": name, "encoding_format": "float"}
        response = httpx.post(f"{url}/v1/embeddings", json=body, headers=auth, timeout=30)
        cc.assert_close([row["embedding"] for row in response.json()["data"]], [cc.PROMPT_NAMES[name] + t for t in texts], reference, name)
    clash = httpx.post(
        f"{url}/v1/embeddings", json={"model": MODEL, "input": "x", "prompt_name": "STS", "input_type": "query"}, headers=auth
    )
    assert_error(clash, 400, "invalid_value", "input_type")
    assert_error(
        httpx.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": "x", "prompt_name": "sts"}, headers=auth),
        400,
        "invalid_value",
        "prompt_name",
    )


# ---------------------------------------------------------------------------------------------
# Text Embeddings Inference's API, judged by its clients


def test_huggingface_hub_feature_extraction(url: str, reference: Reference) -> None:
    cc.check_hf_feature_extraction(url, KEY, reference)


def test_llamaindex_text_embeddings_inference(url: str, reference: Reference) -> None:
    cc.check_llamaindex_tei(url, KEY, reference)


def test_tei_errors_have_tei_shape_and_codes(url: str) -> None:
    cc.check_tei_errors(url, KEY)


def test_tei_info_tokenize_health(url: str, reference: Reference) -> None:
    cc.check_tei_info_tokenize_health(url, KEY, reference)


def test_tei_truncation_normalize_and_dimensions(gateways: dict[str, GatewayProcess], url: str, reference: Reference) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    encoder = reference.encoder
    long_text = " ".join(f"w{i}" for i in range(3000))  # past max_tokens (2048)
    ids = encoder.tokenizer.encode(long_text).ids  # truncated right at 2048 by the reference encoder
    assert len(ids) == 2048
    right = httpx.post(f"{url}/embed", json={"inputs": long_text, "truncate": True}, headers=auth, timeout=60)
    assert right.status_code == 200, right.text
    refused = httpx.post(f"{url}/embed", json={"inputs": ["ok", long_text], "truncate": False}, headers=auth, timeout=60)
    assert refused.status_code == 422 and refused.json()["error_type"] == "Validation" and "input[1]" in refused.json()["error"]
    left = httpx.post(
        f"{url}/embed", json={"inputs": long_text, "truncate": True, "truncation_direction": "Left"}, headers=auth, timeout=60
    )
    assert left.status_code == 200
    assert cosines(np.array(left.json(), np.float32), np.array(right.json(), np.float32)).max() < 0.9999  # other tokens kept
    # normalize false with dimensions: the first components as the model gives them (not re-normalised).
    full = np.array(httpx.post(f"{url}/embed", json={"inputs": "abc"}, headers=auth).json(), np.float32)
    raw = np.array(
        httpx.post(f"{url}/embed", json={"inputs": "abc", "dimensions": 128, "normalize": False}, headers=auth).json(), np.float32
    )
    unit = np.array(httpx.post(f"{url}/embed", json={"inputs": "abc", "dimensions": 128}, headers=auth).json(), np.float32)
    np.testing.assert_allclose(raw, full[:, :128], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    assert np.linalg.norm(raw) < 0.999


def test_lone_surrogates_are_4xx_on_both_apis(url: str) -> None:
    cc.check_lone_surrogates(url, KEY)


def test_a_2048_input_request_does_not_stall_small_ones(url: str) -> None:
    """While 2048 inputs are embedded, single-input requests keep being answered: each request keeps at
    most REQUEST_WINDOW Triton calls out, so a small one waits behind at most that many of the large one."""
    auth = {"Authorization": f"Bearer {KEY}"}
    # 2048 inputs of 138 tokens (283k tokens, under the 300k bound), base64: Triton's work dominates the request.
    big = {"model": MODEL, "input": [f"{i} " + "word " * 44 for i in range(2048)], "encoding_format": "base64"}
    done = threading.Event()
    big_seconds: list[float] = []
    big_status: list[int] = []

    def send_big() -> None:
        start = time.perf_counter()
        try:
            big_status.append(httpx.post(f"{url}/v1/embeddings", json=big, headers=auth, timeout=120).status_code)
            big_seconds.append(time.perf_counter() - start)
        finally:
            done.set()

    thread = threading.Thread(target=send_big)
    thread.start()
    small: list[float] = []
    with httpx.Client(headers=auth, timeout=30) as client:
        time.sleep(0.2)
        while not done.is_set() and len(small) < 200:
            start = time.perf_counter()
            response = client.post(f"{url}/v1/embeddings", content=json.dumps({"model": MODEL, "input": "hello"}))
            assert response.status_code == 200
            small.append(time.perf_counter() - start)
    thread.join(timeout=120)
    assert big_status == [200], big_status
    assert len(small) >= 5, f"only {len(small)} small requests while the big one ran {big_seconds[0]:.2f}s"
    p95 = float(np.percentile(small, 95))
    print(
        f"2048 inputs: {big_seconds[0]:.2f}s; {len(small)} small requests meanwhile, p95 {p95 * 1000:.0f} ms, max {max(small) * 1000:.0f} ms"
    )
    # Measured here: p95 83 ms while the big request took 4.0 s; with no window (every chunk sent at
    # once, as before) p95 1.0 s and max 4.1 s while it took 5.4 s. The bound: half a second, or a
    # tenth of the big request's time on a slower machine.
    bound = max(0.5, big_seconds[0] / 10)
    assert p95 < bound, f"small requests' p95 {p95:.3f}s > {bound:.2f}s while the 2048-input request took {big_seconds[0]:.2f}s"


def test_a_large_request_on_a_hung_triton_ends_at_the_deadline(gateways: dict[str, GatewayProcess]) -> None:
    """The windowed path (many chunks) is bounded too: no chunk back within triton_timeout_s (1 s) + 1 s
    is a 504 triton_timeout (TEI's API: 424 Backend; slow is busy, not dead, so the front door does not
    retry it elsewhere); the chunks still queued are never sent."""
    hung = gateways["hung"].url
    start = time.monotonic()
    response = httpx.post(f"{hung}/v1/embeddings", json={"model": MODEL, "input": cc.corpus(100)}, timeout=20)
    assert_error(response, 504, "triton_timeout", type_="server_error")
    assert time.monotonic() - start < 4
    tei = httpx.post(f"{hung}/embed", json={"inputs": cc.corpus(100)}, timeout=20)
    assert tei.status_code == 424 and tei.json()["error_type"] == "Backend", tei.text
