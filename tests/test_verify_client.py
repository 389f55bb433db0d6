"""verify.client: prefixes, tokenising and padding, Matryoshka, and embedding through a real Triton."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support import tritonserver as ts
from verify.client import (
    EmbeddingClient,
    TextEncoder,
    TritonBackend,
    TritonUnavailable,
    document_text,
    normalise,
    query_text,
    truncate,
)
from verify.local import LocalBackend, choose_providers


@pytest.fixture(scope="module")
def server(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ts.Server]:
    root = ts.triton_dir(tmp_path_factory.mktemp("triton"), hub, ts.cpu_config())
    with ts.serve(root / "models", tmp_path_factory.mktemp("work")) as running:
        yield running


def test_prefixes_are_the_model_cards() -> None:
    assert query_text("hi") == "task: search result | query: hi"
    assert query_text("x", task="code retrieval") == "task: code retrieval | query: x"
    assert document_text("body") == "title: none | text: body"
    assert document_text("body", title="T") == "title: T | text: body"
    with pytest.raises(ValueError, match="unknown task"):
        query_text("x", task="search results")


def test_matryoshka_truncates_and_renormalises() -> None:
    rng = np.random.default_rng(1)
    full = normalise(rng.standard_normal((3, 768)))
    for dim in (512, 256, 128):
        small = truncate(full, dim)
        assert small.shape == (3, dim) and small.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(small * np.linalg.norm(full[:, :dim], axis=1, keepdims=True), full[:, :dim], atol=1e-6)
    assert truncate(full, 768) is full or np.array_equal(truncate(full, 768), full)
    with pytest.raises(ValueError, match="Matryoshka"):
        truncate(full, 300)


def test_encoder_pads_right_to_a_multiple(hub: Path) -> None:
    encoder = TextEncoder(hub, pad_multiple=8)
    ids = encoder.encode(["short", "a somewhat longer text than the first one"])
    input_ids, mask = encoder.pad(ids)
    assert input_ids.dtype == mask.dtype == np.int64
    assert input_ids.shape[1] % 8 == 0 and input_ids.shape[1] >= max(map(len, ids))
    for row, tokens in enumerate(ids):
        assert list(input_ids[row, : len(tokens)]) == tokens
        assert mask[row].sum() == len(tokens) and not mask[row, len(tokens) :].any()
        assert (input_ids[row, len(tokens) :] == 0).all()  # Gemma's <pad> is 0
    with pytest.raises(ValueError, match="shorter"):
        encoder.pad(ids, length=2)


def test_encoder_truncates_at_max_length(hub: Path, tmp_path: Path) -> None:
    encoder = TextEncoder(hub, max_length=32)
    (ids,) = encoder.encode(["word " * 500])
    assert len(ids) == 32 and ids[0] == 2
    # A smaller model_max_length in tokenizer_config.json lowers the limit; a huge one does not.
    for name in ts.TOKENIZER_FILES:
        (tmp_path / name).write_bytes((hub / name).read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 16}))
    assert TextEncoder(tmp_path).max_length == 16
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 10**30}))
    assert TextEncoder(tmp_path).max_length == 2048


def test_encoder_ids_are_those_of_the_full_encode_batch(hub: Path) -> None:
    """encode() and the gateway's truncation variants ask encode_batch_fast (no character offsets): the
    same ids as encode_batch, truncated on the right or the left, or not at all."""
    from tokenizers import Tokenizer

    texts = ["short", "東京の天気 and Straße nach Köln", "", "word " * 500, "task: search result | query: What is Triton?"]
    for max_length in (2048, 32):
        encoder = TextEncoder(hub, max_length=max_length)
        ids = encoder.encode(texts)
        assert ids == [encoding.ids for encoding in encoder.tokenizer.encode_batch(texts)]
        assert len(ids[3]) == 32 if max_length == 32 else len(ids[3]) > 32
    left = Tokenizer.from_str(encoder.tokenizer.to_str())  # as Gateway.tokenizer("left") makes it
    left.enable_truncation(max_length=32, direction="left")
    fast = [encoding.ids for encoding in left.encode_batch_fast(texts)]
    assert fast == [encoding.ids for encoding in left.encode_batch(texts)] and fast[3] != ids[3] and len(fast[3]) == 32


def test_local_provider_choice() -> None:
    assert choose_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    with pytest.raises(Exception, match="onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_matches_local_onnx_runtime(server: ts.Server, hub: Path, protocol: str) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    local = LocalBackend(hub / "onnx", device="cpu")
    encoder = TextEncoder(hub)
    queries = ["What is Triton?", "東京の天気", "a much longer query " * 20]
    docs, titles = ["Triton serves models.", "Straße nach Köln"], ["Triton", None]
    with EmbeddingClient(url, hub, protocol=protocol, batch_size=2) as client:
        got_q = client.embed_queries(queries)
        got_d = client.embed_documents(docs, titles=titles, dim=256)
        assert client.backend.max_batch_size() == 8
    expected_q = np.stack(
        [local.infer(*encoder.pad([ids], length=len(ids)))[0] for ids in encoder.encode([query_text(q) for q in queries])]
    )
    expected_d = np.stack(
        [
            local.infer(*encoder.pad([ids], length=len(ids)))[0]
            for ids in encoder.encode([document_text(d, t) for d, t in zip(docs, titles, strict=True)])
        ]
    )
    assert got_q.shape == (3, 768) and got_d.shape == (2, 256)
    np.testing.assert_allclose(got_q, expected_q, atol=1e-5)  # input order kept despite length sorting
    np.testing.assert_allclose(got_d, truncate(expected_d, 256), atol=1e-5)


def test_client_rejects_bad_arguments(server: ts.Server, hub: Path) -> None:
    client = EmbeddingClient(server.http_url, hub)
    with pytest.raises(ValueError, match="titles"):
        client.embed_documents(["a", "b"], titles=["only one"])
    with pytest.raises(ValueError, match="Matryoshka"):
        client.embed_queries(["a"], dim=100)
    TritonBackend(server.http_url).check_contract()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_down_is_a_clear_error_within_the_timeout(hub: Path, protocol: str) -> None:
    url = f"127.0.0.1:{ts.free_port()}"
    backend = TritonBackend(url, protocol=protocol, timeout_s=2)
    start = time.monotonic()
    with pytest.raises(TritonUnavailable, match=rf"Triton at {protocol}://{url} not ready within 2s"):
        backend.wait_ready()
    assert time.monotonic() - start < 10
    with pytest.raises(TritonUnavailable, match="failed at"):
        EmbeddingClient(url, hub, protocol=protocol, batch_size=4, timeout_s=2).embed_queries(["x"])
