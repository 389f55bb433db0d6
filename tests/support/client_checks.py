"""The client libraries people already use, as judges of the gateway's two APIs: OpenAI's
``/v1/embeddings`` (openai SDK, LangChain, LlamaIndex, LiteLLM) and Text Embeddings Inference's
native ``/embed`` (huggingface_hub, LlamaIndex's and LangChain's TEI clients). Each check takes the
gateway's base URL and key, so tests/test_gateway_clients.py (a local gateway on a real Triton) and
tests/test_e2e_front_door.py (through the sandbox's front door) run the same ones. Every answer is
compared with local ONNX Runtime on the same prompted text (cosine ≥ 0.9999).

No check reaches beyond the URL it is given: LiteLLM's price map is the local copy
(LITELLM_LOCAL_MODEL_COST_MAP), and LangChain's default (tiktoken) path runs with a local byte-level
tiktoken encoding instead of cl100k_base, which tiktoken would download (see
:func:`check_langchain_default_token_ids_refused`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np

from embeddings_gateway.api import PROMPT_NAMES
from tests.support.openai_checks import MODEL, Reference, cosines

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported: no price map from the internet
MIN_COSINE = 0.9999


def corpus(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct texts of varied length (1 to ~60 words), some non-ASCII."""
    words = "the of embedding triton gateway vector query document 東京 straße café model batch token length search".split()
    rng = np.random.default_rng(seed)
    return [f"{i}: " + " ".join(rng.choice(words, size=int(rng.integers(1, 60)))) for i in range(count)]


def assert_close(got: Any, texts: list[str], reference: Reference, what: str) -> None:
    """``got`` (rows) against local ONNX Runtime on ``texts`` (already prompted)."""
    got = np.asarray(got, dtype=np.float32)
    expected, _ = reference.embed(texts)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    worst = float(cosines(got, expected).min())
    assert worst >= MIN_COSINE, f"{what}: lowest cosine {worst:.6f} < {MIN_COSINE}"


# ---------------------------------------------------------------------------------------------
# OpenAI's API


def check_openai_sdk_2048(url: str, key: str, reference: Reference) -> None:
    """The openai SDK: 2048 inputs in one call (its default base64 encoding), in order."""
    import openai

    texts = corpus(2048, seed=1)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)
    response = client.embeddings.create(input=texts, model=MODEL)
    assert [item.index for item in response.data] == list(range(2048))
    assert_close([item.embedding for item in response.data], texts, reference, "openai SDK, 2048 inputs")


def check_langchain_1000_documents(url: str, key: str, reference: Reference) -> None:
    """LangChain OpenAIEmbeddings with check_embedding_ctx_length=False (text, not token ids) and its
    default chunk_size (1000): 1,000 documents in one request."""
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model=MODEL, base_url=f"{url}/v1", api_key=key, check_embedding_ctx_length=False, max_retries=0)
    assert embeddings.chunk_size == 1000  # the default the 600-chunk failure came from
    texts = corpus(1000, seed=2)
    assert_close(embeddings.embed_documents(texts), texts, reference, "LangChain embed_documents, 1000 documents")
    assert_close([embeddings.embed_query("what is a vector?")], ["what is a vector?"], reference, "LangChain embed_query")


@contextmanager
def local_tiktoken() -> Iterator[None]:
    """LangChain's tiktoken calls answered by a local byte-level tiktoken Encoding (tiktoken's own BPE
    code, 256 byte tokens). cl100k_base needs a download and this machine has no internet; the request
    LangChain then sends has the same shape as with cl100k_base (lists of integer token ids), only
    the id values differ."""
    import tiktoken
    from langchain_openai.embeddings import base

    encoding = tiktoken.Encoding(
        name="local-bytes",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={},
    )
    saved = base.tiktoken.encoding_for_model, base.tiktoken.get_encoding
    base.tiktoken.encoding_for_model = lambda name: encoding
    base.tiktoken.get_encoding = lambda name: encoding
    try:
        yield
    finally:
        base.tiktoken.encoding_for_model, base.tiktoken.get_encoding = saved


def check_langchain_default_token_ids_refused(url: str, key: str) -> str:
    """LangChain OpenAIEmbeddings with its defaults (check_embedding_ctx_length=True) sends token ids:
    refused with a 400 that says to send text and how (returns the message)."""
    import openai
    from langchain_openai import OpenAIEmbeddings

    sent: list[Any] = []

    def record(request: httpx.Request) -> None:
        sent.append(json.loads(request.content))

    http_client = httpx.Client(event_hooks={"request": [record]}, timeout=30)
    embeddings = OpenAIEmbeddings(model=MODEL, base_url=f"{url}/v1", api_key=key, max_retries=0, http_client=http_client)
    assert embeddings.check_embedding_ctx_length is True
    with local_tiktoken():
        try:
            embeddings.embed_documents(["hello world", "a second document"])
        except openai.BadRequestError as error:
            body = error.body if isinstance(error.body, dict) else {}
            message = str(body.get("message", error))
            assert error.status_code == 400 and body.get("code") == "token_ids_not_supported", body
        else:
            raise AssertionError("token-id input was embedded, not refused")
    assert sent and all(isinstance(ids, list) and all(type(t) is int for t in ids) for ids in sent[0]["input"]), sent[:1]
    assert "check_embedding_ctx_length=False" in message and "Gemma" in message, message
    return message


def check_llamaindex(url: str, key: str, reference: Reference) -> None:
    """LlamaIndex OpenAIEmbedding (model_name: a model LlamaIndex does not know by name)."""
    from llama_index.embeddings.openai import OpenAIEmbedding

    embed = OpenAIEmbedding(model_name=MODEL, api_base=f"{url}/v1", api_key=key, max_retries=0, embed_batch_size=100)
    texts = corpus(150, seed=3)
    assert_close(embed.get_text_embedding_batch(texts), texts, reference, "LlamaIndex OpenAIEmbedding")


def check_litellm(url: str, key: str, reference: Reference) -> None:
    """LiteLLM's embedding() against an OpenAI-compatible base (price map local: nothing fetched)."""
    assert os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP") == "True"
    import litellm

    texts = corpus(20, seed=4)
    response = litellm.embedding(model=f"openai/{MODEL}", input=texts, api_base=f"{url}/v1", api_key=key, num_retries=0)
    assert_close([row["embedding"] for row in response.data], texts, reference, "LiteLLM")


# ---------------------------------------------------------------------------------------------
# Text Embeddings Inference's API


def check_hf_feature_extraction(url: str, key: str, reference: Reference) -> None:
    """huggingface_hub InferenceClient.feature_extraction at the gateway's root (TEI's POST /):
    plain, with prompt_name, and with dimensions."""
    from huggingface_hub import InferenceClient

    client = InferenceClient(model=url, token=key, timeout=60)
    texts = corpus(16, seed=5)
    assert_close(client.feature_extraction(texts), texts, reference, "huggingface_hub feature_extraction")
    for name in ("query", "Retrieval-document", "STS"):
        got = client.feature_extraction(texts[:4], prompt_name=name)
        assert_close(got, [PROMPT_NAMES[name] + t for t in texts[:4]], reference, f"feature_extraction prompt_name={name}")
    small = client.feature_extraction(texts[:4], dimensions=256)
    expected, _ = reference.embed(texts[:4])
    cut = expected[:, :256] / np.linalg.norm(expected[:, :256], axis=1, keepdims=True)
    assert small.shape == (4, 256) and cosines(small, cut).min() >= MIN_COSINE


def check_llamaindex_tei(url: str, key: str, reference: Reference) -> None:
    """LlamaIndex TextEmbeddingsInference (POST /embed) with its query/text instructions set to the
    model card's prompts, less their trailing space (LlamaIndex joins instruction and text with one)."""
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    embed = TextEmbeddingsInference(
        model_name=MODEL,
        base_url=url,
        auth_token=key,
        timeout=60,
        embed_batch_size=32,
        query_instruction=PROMPT_NAMES["query"].rstrip(),
        text_instruction=PROMPT_NAMES["document"].rstrip(),
    )
    texts = corpus(40, seed=6)
    got = embed.get_text_embedding_batch(texts)
    assert_close(got, [PROMPT_NAMES["document"] + t for t in texts], reference, "LlamaIndex TextEmbeddingsInference documents")
    query = embed.get_query_embedding("where is the café?")
    assert_close([query], [PROMPT_NAMES["query"] + "where is the café?"], reference, "LlamaIndex TextEmbeddingsInference query")


# (what, body: JSON or raw bytes, status, error_type, a word the message must hold)
TEI_BAD_REQUESTS: list[tuple[str, Any, int, str, str]] = [
    ("not JSON", b'{"inputs": ', 400, "Validation", "JSON"),
    ("no inputs", {"normalize": True}, 422, "Validation", "inputs"),
    ("empty batch", {"inputs": []}, 400, "Empty", "empty"),
    ("empty string", {"inputs": ["a", ""]}, 400, "Empty", "inputs[1]"),
    ("inputs a number", {"inputs": 4.5}, 422, "Validation", "inputs"),
    ("unknown prompt_name", {"inputs": "x", "prompt_name": "passage"}, 422, "Validation", "prompt_name"),
    ("dimensions not Matryoshka", {"inputs": "x", "dimensions": 300}, 422, "Validation", "dimensions"),
    ("bad truncation_direction", {"inputs": "x", "truncation_direction": "middle"}, 422, "Validation", "truncation_direction"),
    ("normalize not a bool", {"inputs": "x", "normalize": "yes"}, 422, "Validation", "normalize"),
    ("misspelt field", {"inputs": "x", "normalise": False}, 422, "Validation", "normalise"),
    ("token ids (off by default)", {"inputs": [[2, 651, 1]]}, 422, "Validation", "tokenizer"),
    ("lone surrogate", b'{"inputs": ["ok", "\\ud800"]}', 422, "Validation", "inputs[1]"),
]


def assert_tei_error(response: httpx.Response, status: int, error_type: str, word: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type, body
    assert word.lower() in body["error"].lower(), body
    assert "Traceback" not in response.text


def check_tei_errors(url: str, key: str) -> None:
    """TEI's error shape and status codes for bad requests on /embed, then a good one works."""
    auth = {"Authorization": f"Bearer {key}"}
    for what, body, status, error_type, word in TEI_BAD_REQUESTS:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = httpx.post(f"{url}/embed", content=raw, headers={**auth, "Content-Type": "application/json"}, timeout=30)
        try:
            assert_tei_error(response, status, error_type, word)
        except AssertionError as error:
            raise AssertionError(f"case {what!r}: {error}") from None
    assert_tei_error(httpx.post(f"{url}/embed", json={"inputs": "x"}, timeout=30), 401, "Unauthorized", "key")
    assert_tei_error(httpx.get(f"{url}/embed", headers=auth, timeout=30), 405, "Validation", "POST")
    assert_tei_error(httpx.post(f"{url}/tokenize", json={"inputs": []}, headers=auth, timeout=30), 400, "Empty", "empty")
    good = httpx.post(f"{url}/embed", json={"inputs": "fine"}, headers=auth, timeout=30)
    assert good.status_code == 200 and len(good.json()) == 1 and len(good.json()[0]) == 768, good.text


def check_tei_info_tokenize_health(url: str, key: str, reference: Reference) -> None:
    """GET /info (TEI's Info fields), POST /tokenize (ids as the model's tokenizer gives them, byte
    offsets), GET /health."""
    auth = {"Authorization": f"Bearer {key}"}
    info = httpx.get(f"{url}/info", headers=auth, timeout=30).json()
    for field in ("model_id", "model_dtype", "model_type", "max_input_length", "max_client_batch_size", "auto_truncate", "version"):
        assert field in info, info
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    text = "café 東京"
    tokens = httpx.post(f"{url}/tokenize", json={"inputs": [text]}, headers=auth, timeout=30).json()[0]
    assert [t["id"] for t in tokens] == reference.encoder.encode([text])[0]
    plain = [t for t in tokens if not t["special"]]
    assert plain and all(text.encode()[t["start"] : t["stop"]].decode() == t["text"] for t in plain), tokens
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200


def check_lone_surrogates(url: str, key: str) -> None:
    """A JSON string holding a lone UTF-16 surrogate (valid JSON, not valid Unicode): 4xx naming the
    input on both APIs, never 5xx."""
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    openai_cases = [
        b'{"model": "embeddinggemma", "input": "\\ud800"}',
        b'{"model": "embeddinggemma", "input": ["fine", "x\\udfff y"]}',
        b'{"model": "embeddinggemma", "input": ["fine"], "input_type": "document", "titles": ["\\ud83d"]}',
    ]
    for raw, where in zip(openai_cases, ("input[0]", "input[1]", "input[0]"), strict=True):
        response = httpx.post(f"{url}/v1/embeddings", content=raw, headers=auth, timeout=30)
        assert 400 <= response.status_code < 500, (raw, response.status_code, response.text)
        error = response.json()["error"]
        assert error["param"] == where and where in error["message"], error
    for path in ("/embed", "/", "/tokenize"):
        response = httpx.post(f"{url}{path}", content=b'{"inputs": ["fine", "\\ud800"]}', headers=auth, timeout=30)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        assert "inputs[1]" in response.json()["error"], response.text
