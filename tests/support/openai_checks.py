"""Checks of an OpenAI-compatible embeddings endpoint, shared by the gateway's tests on a local
Triton (tests/test_gateway.py) and on the sandbox fleet (tests/test_e2e.py): the reference
embeddings from local ONNX Runtime, the official openai SDK's parity run, OpenAI's error shape and
a table of bad requests with the status and error code each must get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from verify.client import MATRYOSHKA_DIMS, MAX_LENGTH, TextEncoder, truncate
from verify.local import LocalBackend
from verify.samples import WINDOW, samples

MODEL = "embeddinggemma"


class Reference:
    """Local ONNX Runtime on a model directory laid out like the Hub repository (the judge)."""

    def __init__(self, model_root: Path, window: int = WINDOW, max_length: int = MAX_LENGTH) -> None:
        self.window = window  # the model's attention window: the verify samples' long lengths follow it
        self.encoder = TextEncoder(model_root, max_length=max_length)  # where the gateway truncates
        self.local = LocalBackend(model_root / "onnx", device="cpu")

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Each (already prompted) text alone, unpadded; and the token count."""
        ids = self.encoder.encode(texts)
        vectors = np.stack([self.local.infer(*self.encoder.pad([row], length=len(row)))[0] for row in ids])
        return vectors, sum(map(len, ids))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check_sdk_parity(base_url: str, api_key: str, reference: Reference, encoding: str, min_cosine: float = 0.9999) -> None:
    """The verify samples (prompts applied) through the official openai SDK at every Matryoshka
    size, with the SDK's default encoding (base64) or ``encoding_format="float"``: each embedding
    within ``min_cosine`` of local ONNX Runtime, unit norm, usage equal to the tokenizer's count."""
    import openai

    texts = [sample.text for sample in samples(reference.window)]
    expected, tokens = reference.embed(texts)
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30)
    for dim in MATRYOSHKA_DIMS:
        extra = {} if encoding == "sdk-default" else {"encoding_format": encoding}
        response = client.embeddings.create(input=texts, model=MODEL, dimensions=dim, **extra)
        got = np.array([item.embedding for item in response.data], dtype=np.float32)
        assert [item.index for item in response.data] == list(range(len(texts)))
        assert got.shape == (len(texts), dim)
        assert cosines(got, truncate(expected, dim)).min() >= min_cosine, f"dimensions={dim}, {encoding}"
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        assert response.model == MODEL and response.usage.prompt_tokens == response.usage.total_tokens == tokens


def assert_error(
    response: Any, status: int, code: str | None, param: str | None = "any", type_: str = "invalid_request_error"
) -> dict[str, Any]:
    """``response`` (httpx) is OpenAI's error shape with this status, type, code (and param)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error = body["error"]
    assert error["type"] == type_ and error["code"] == code and isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in response.text
    if param != "any":
        assert error["param"] == param, error
    return error


_GOOD = {"model": MODEL, "input": "hello"}

# (what, body or raw bytes, status, code, param). The inputs count limit is the caller's (max_inputs + 1).
BAD_REQUESTS: list[tuple[str, Any, int, str, str | None]] = [
    ("not JSON", b'{"model": "embeddinggemma", "input": ', 400, "invalid_json", None),
    ("not an object", [1, 2], 400, "invalid_type", None),
    ("no input", {"model": MODEL}, 400, "missing_required_parameter", "input"),
    ("no model", {"input": "x"}, 400, "missing_required_parameter", "model"),
    ("input a number", {**_GOOD, "input": 42.5}, 400, "invalid_type", "input"),
    ("empty list", {**_GOOD, "input": []}, 400, "invalid_value", "input"),
    ("empty string, no prompt", {**_GOOD, "input": ["a", ""]}, 400, "invalid_value", "input[1]"),
    ("mixed list", {**_GOOD, "input": ["a", 3]}, 400, "invalid_type", "input"),
    ("token list of strings", {**_GOOD, "input": [[1, 2], ["x"]]}, 400, "invalid_type", "input[1]"),
    ("token ids (off by default)", {**_GOOD, "input": [[2, 651, 1]]}, 400, "token_ids_not_supported", "input"),
    ("one token-id list (off by default)", {**_GOOD, "input": [2, 651, 1]}, 400, "token_ids_not_supported", "input"),
    ("lone surrogate", b'{"model": "embeddinggemma", "input": ["ok", "\\ud800"]}', 400, "invalid_value", "input[1]"),
    ("prompt_name unknown", {**_GOOD, "prompt_name": "passage"}, 400, "invalid_value", "prompt_name"),
    ("dimensions not Matryoshka", {**_GOOD, "dimensions": 300}, 400, "invalid_value", "dimensions"),
    ("dimensions a string", {**_GOOD, "dimensions": "256"}, 400, "invalid_type", "dimensions"),
    ("encoding_format unknown", {**_GOOD, "encoding_format": "int8"}, 400, "invalid_value", "encoding_format"),
    ("input_type unknown", {**_GOOD, "input_type": "passage"}, 400, "invalid_value", "input_type"),
    ("task unknown", {**_GOOD, "task": "search results"}, 400, "invalid_value", "task"),
    ("task with documents", {**_GOOD, "input_type": "document", "task": "clustering"}, 400, "invalid_value", "task"),
    ("titles length mismatch", {**_GOOD, "input": ["a", "b"], "input_type": "document", "titles": ["t"]}, 400, "invalid_value", "titles"),
    ("titles for queries", {**_GOOD, "input_type": "query", "titles": ["t"]}, 400, "invalid_value", "titles"),
    ("misspelt field", {**_GOOD, "dimension": 256}, 400, "unknown_parameter", "dimension"),
    ("user not a string", {**_GOOD, "user": 7}, 400, "invalid_type", "user"),
    ("unknown model", {**_GOOD, "model": "text-embedding-3-small"}, 404, "model_not_found", "model"),
]


def too_many_inputs(max_inputs: int) -> tuple[str, Any, int, str, str | None]:
    """The bad request one input over ``max_inputs``."""
    return ("too many inputs", {**_GOOD, "input": ["x"] * (max_inputs + 1)}, 400, "too_many_inputs", "input")


def good_request() -> dict[str, Any]:
    return dict(_GOOD)
