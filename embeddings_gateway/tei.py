"""Hugging Face Text Embeddings Inference's native API on the gateway: request parsing, errors and
answers, as TEI's router defines them (huggingface/text-embeddings-inference ``router/src/http/
server.rs`` and ``types.rs``, ``docs/openapi.json``). Pure parts only; the server is embeddings_gateway/app.py.

Routes (the gateway's port and API keys): ``POST /embed`` and ``POST /`` (TEI's root route of an
embedding model), ``POST /tokenize``, ``GET /info``; ``GET /health`` is the gateway's own (200 while
it serves). Errors are TEI's ``{"error": str, "error_type": str}`` with TEI's status codes:
``Empty`` 400, ``Validation`` and ``Tokenizer`` 422, ``Overloaded`` 429, ``Backend`` 424 (Triton
failed, or slow past its deadline: busy, so not retried elsewhere), ``Unhealthy`` 503 (Triton unreachable or
the model not ready; the front door retries 503 on another gateway, as on the OpenAI API). Additions: a missing or wrong key is 401 with error_type ``Unauthorized`` (TEI
answers 401 with no body), a body over ``max_body_bytes`` is 413 ``Validation``, an unknown path or
method is 404/405 ``Validation``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from embeddinggemma import EMBEDDING_DIM, MATRYOSHKA_DIMS
from embeddings_gateway.api import PROMPT_NAMES, TOKEN_IDS_REFUSED, ApiError, first_unencodable

STATUS = {"Empty": 400, "Validation": 422, "Tokenizer": 422, "Overloaded": 429, "Backend": 424, "Unhealthy": 503, "Unauthorized": 401}
# TEI ignores fields it does not know; here they are refused (a misspelt `normalise` must not pass
# silently), except `encoding_format` "float", which huggingface_hub's feature_extraction can send.
EMBED_FIELDS = ("inputs", "normalize", "truncate", "truncation_direction", "prompt_name", "dimensions", "encoding_format")
TOKENIZE_FIELDS = ("inputs", "add_special_tokens", "prompt_name")
DIRECTIONS = {"right": "right", "Right": "right", "left": "left", "Left": "left"}  # TEI's serde aliases


class TeiError(Exception):
    """An error in TEI's shape; ``status`` defaults to TEI's code for ``error_type``."""

    def __init__(self, message: str, error_type: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.error_type = message, error_type
        self.status = status if status is not None else STATUS[error_type]

    def body(self) -> bytes:
        return json.dumps({"error": self.message, "error_type": self.error_type}).encode()


def from_api_error(error: ApiError) -> TeiError:
    """The TEI error for one the shared code raised in OpenAI's terms (auth, body size, overload, Triton)."""
    if error.status == 401:
        return TeiError(error.message, "Unauthorized")
    if error.status == 429:
        return TeiError(error.message, "Overloaded")
    if error.status == 413:
        return TeiError(error.message, "Validation", 413)
    if error.status == 503:
        # Triton away or the model not ready: TEI's Unhealthy (503), which the front door retries on another gateway.
        return TeiError(error.message, "Unhealthy")
    if error.status >= 500:
        return TeiError(error.message, "Backend")  # TEI: 424 when inference fails
    if error.code == "max_tokens_per_request" or error.code == "context_length_exceeded":
        return TeiError(error.message, "Validation")
    return TeiError(error.message, "Validation", error.status if error.status in (404, 405) else None)


def validation(message: str) -> TeiError:
    return TeiError(message, "Validation")


@dataclass(frozen=True)
class TeiEmbed:
    """A validated ``POST /embed``: ``texts`` (prompt applied) or ``token_ids``."""

    texts: list[str] | None
    token_ids: list[list[int]] | None
    truncate: bool
    direction: str  # "right" or "left"
    normalize: bool
    dimensions: int

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or [])


def _object(body: Any, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation("the request body must be a JSON object")
    for name in body:
        if name not in known:
            raise validation(f"unknown field `{name}`, expected one of {', '.join(f'`{k}`' for k in known)}")
    if body.get("inputs") is None:
        raise validation("missing field `inputs`")
    return body


def _typed(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise validation(f"`{name}` must be {what}, got {type(value).__name__}")
    return value


def _prompt(body: dict[str, Any]) -> str:
    name = _typed(body, "prompt_name", str, "a string")
    if name is None:
        return ""
    if name not in PROMPT_NAMES:
        raise validation(f"`prompt_name` `{name}` is not in this model's prompts: {', '.join(PROMPT_NAMES)}")
    return PROMPT_NAMES[name]


def _texts(value: Any, max_inputs: int, token_ids_ok: bool) -> tuple[list[str] | None, list[list[int]] | None]:
    """TEI's ``inputs``: a string, token ids, or a list of either."""
    what = "`inputs` must be a string, a list of strings, a list of token ids or a list of token-id lists"
    if isinstance(value, str):
        return [value], None
    if not isinstance(value, list):
        raise validation(what)
    if not value:
        raise TeiError("`inputs` cannot be empty", "Empty")
    if all(type(v) is int for v in value):
        value = [value]
    elif len(value) > max_inputs:
        raise validation(f"batch size {len(value)} > maximum allowed batch size {max_inputs}")
    if all(isinstance(v, str) for v in value):
        return value, None
    if all(isinstance(v, list) and v and all(type(t) is int for t in v) for v in value):
        if not token_ids_ok:
            raise validation(
                TOKEN_IDS_REFUSED.replace("'input'", "`inputs`").replace(
                    "OpenAIEmbeddings(..., check_embedding_ctx_length=False)", "send text"
                )
            )
        return None, value
    raise validation(what + " (not a mix)")


def _checked_texts(texts: list[str]) -> None:
    for index, text in enumerate(texts):
        if not text:
            raise TeiError(f"`inputs[{index}]` cannot be empty", "Empty")
    bad = first_unencodable(texts)
    if bad is not None:
        raise validation(f"`inputs[{bad}]` is not valid Unicode: it holds a lone UTF-16 surrogate (such as \\ud800); send valid UTF-8 text")


def parse_embed(body: Any, max_inputs: int, auto_truncate: bool, token_ids_ok: bool, vocab_size: int) -> TeiEmbed:
    """Validate a decoded ``POST /embed`` (or ``POST /``) body; TeiError otherwise."""
    body = _object(body, EMBED_FIELDS)
    texts, token_ids = _texts(body["inputs"], max_inputs, token_ids_ok)
    normalize = _typed(body, "normalize", bool, "true or false")
    truncate = _typed(body, "truncate", bool, "true, false or null")
    direction = body.get("truncation_direction")
    if direction is not None and direction not in DIRECTIONS:
        raise validation(f"`truncation_direction` must be Right or Left, got {json.dumps(direction)[:40]}")
    dimensions = _typed(body, "dimensions", int, "an integer")
    if dimensions is not None and dimensions not in MATRYOSHKA_DIMS:
        raise validation(
            f"`dimensions` {dimensions} is not supported: EmbeddingGemma's Matryoshka sizes are {', '.join(map(str, MATRYOSHKA_DIMS))}"
        )
    encoding = body.get("encoding_format")
    if encoding not in (None, "float"):
        raise validation(
            f"`encoding_format` {json.dumps(encoding)[:40]} is not supported on /embed: use float (or the OpenAI API's base64)"
        )
    prefix = _prompt(body)
    if texts is not None:
        _checked_texts(texts)  # before the prompt: an empty input is the caller's mistake even with one
        texts = [prefix + text for text in texts] if prefix else texts
    else:
        if prefix:
            raise validation("`prompt_name` applies to text inputs; token ids are sent as given")
        for index, ids in enumerate(token_ids or []):
            if min(ids) < 0 or max(ids) >= vocab_size:
                raise validation(f"`inputs[{index}]` holds a token id outside 0..{vocab_size - 1}")
    return TeiEmbed(
        texts=texts,
        token_ids=token_ids,
        truncate=auto_truncate if truncate is None else truncate,
        direction=DIRECTIONS[direction or "right"],
        normalize=True if normalize is None else normalize,
        dimensions=dimensions or EMBEDDING_DIM,
    )


@dataclass(frozen=True)
class TeiTokenize:
    texts: list[str]
    add_special_tokens: bool


def parse_tokenize(body: Any, max_inputs: int) -> TeiTokenize:
    """Validate a decoded ``POST /tokenize`` body; TeiError otherwise."""
    body = _object(body, TOKENIZE_FIELDS)
    inputs = body["inputs"]
    if isinstance(inputs, str):
        texts = [inputs]
    elif isinstance(inputs, list) and all(isinstance(v, str) for v in inputs):
        if not inputs:
            raise TeiError("`inputs` cannot be empty", "Empty")
        if len(inputs) > max_inputs:
            raise validation(f"batch size {len(inputs)} > maximum allowed batch size {max_inputs}")
        texts = inputs
    else:
        raise validation("`inputs` must be a string or a list of strings")
    special = _typed(body, "add_special_tokens", bool, "true or false")
    bad = first_unencodable(texts)
    if bad is not None:
        raise validation(f"`inputs[{bad}]` is not valid Unicode: it holds a lone UTF-16 surrogate (such as \\ud800); send valid UTF-8 text")
    prefix = _prompt(body)
    return TeiTokenize(texts=[prefix + t for t in texts], add_special_tokens=True if special is None else special)


def simple_tokens(text: str, ids: list[int], tokens: list[str], offsets: list[tuple[int, int]], special: list[int]) -> list[dict[str, Any]]:
    """TEI's SimpleToken list of one encoding: special tokens carry their token text and no offsets;
    the others the input's text between ``start`` and ``stop``, which are UTF-8 byte offsets (Rust's,
    as TEI gives them; the Python tokenizer's offsets are characters)."""
    byte_at = [0]
    for char in text:
        byte_at.append(byte_at[-1] + len(char.encode("utf-8")))
    out = []
    for token_id, token, (start, stop), is_special in zip(ids, tokens, offsets, special, strict=True):
        if is_special:
            out.append({"id": token_id, "text": token, "special": True, "start": None, "stop": None})
        else:
            out.append({"id": token_id, "text": text[start:stop], "special": False, "start": byte_at[start], "stop": byte_at[stop]})
    return out


def info(
    model_name: str, max_concurrency: int, max_tokens: int, max_request_tokens: int, max_batch: int, max_inputs: int, auto_truncate: bool
) -> dict[str, Any]:
    """TEI's ``GET /info`` (its Info schema), filled from the gateway's config."""
    return {
        "model_id": model_name,
        "model_sha": None,
        "model_dtype": "float32",
        "served_model_name": model_name,
        "model_type": {"embedding": {"pooling": "mean"}},
        "max_concurrent_requests": max_concurrency,
        "max_input_length": max_tokens,
        "max_batch_tokens": max_request_tokens,
        "max_batch_requests": max_batch,
        "max_client_batch_size": max_inputs,
        "auto_truncate": auto_truncate,
        "tokenization_workers": 2,
        "version": "triton-embeddinggemma-gateway",
        "sha": None,
        "docker_label": None,
    }


def embed_response(rows: Any) -> bytes:
    """TEI's EmbedResponse: a JSON list of float lists, row by row (never all values as Python floats at once)."""
    return ("[" + ",".join(json.dumps(row.tolist(), separators=(",", ":")) for row in rows) + "]").encode()
