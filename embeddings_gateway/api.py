"""The embeddings gateway's pure parts: its config, OpenAI-shaped errors, request parsing, bucketing
and the response body. No web framework and no Triton here, so each rule is testable on its own;
the server is embeddings_gateway/app.py (its docstring documents the HTTP API).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from embeddinggemma import MATRYOSHKA_DIMS, MAX_LENGTH, QUERY_TASKS, document_text, query_text

PROMPTS = ("none", "query", "document")
LOG_LEVELS = ("debug", "info", "warning", "error")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


class ConfigError(Exception):
    """A bad gateway config or key file; the message is one line for people."""


# ---------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class GatewayConfig:
    """What ``--config FILE`` (JSON) holds. Keys without a default are required; unknown keys are
    refused. Each key becomes the controller setting ``gateway_<key>``."""

    model_name: str  # the served name: `model` in requests, and the model's name in Triton
    triton_grpc_url: str  # host:port of Triton's gRPC endpoint
    tokenizer_dir: str  # directory with tokenizer.json (+ tokenizer_config.json) of the served model
    listen_address: str = "127.0.0.1"  # an IP literal or "localhost"; beyond loopback needs api_key_sha256_file
    listen_port: int = 6080
    # The health responder (embeddings_gateway/health.py): GET /ready and /health on a thread and port of
    # their own, so the front door's check never waits behind embedding work. Same address as listen_address.
    health_port: int = 6081
    api_key_sha256_file: str = ""  # lowercase hex sha256 of each valid key, one a line; "" = auth off (loopback only)
    triton_key_file: str = ""  # Triton's restricted-API key (its model config needs it); "" = sent without
    max_tokens: int = MAX_LENGTH  # tokens per input, prompt and special tokens included
    truncate: bool = True  # false: an input over max_tokens is a 400 naming its index
    length_buckets: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)  # pad lengths; the last ≥ max_tokens
    triton_max_batch_size: int = 8  # inputs per Triton request until Triton's model config says (each READY)
    triton_timeout_s: float = 10.0  # gRPC deadline of each Triton call
    max_inputs: int = 2048  # inputs per request (OpenAI's own limit)
    max_request_tokens: int = 300_000  # tokens per request, prompts and special tokens included (OpenAI's bound)
    token_ids_input: bool = False  # accept token-id inputs (as EmbeddingGemma ids); off: a 400 that says to send text
    max_body_bytes: int = 4 * 1024 * 1024  # request body limit (413 past it)
    max_concurrency: int = 64  # embedding requests processed at once (per host: shared among the workers)
    max_queue: int = 256  # requests waiting for a slot (per host, shared like max_concurrency); past it: 429 at once
    queue_timeout_s: float = 5.0  # longest wait for a slot; then 429
    default_prompt: str = "none"  # prompt of text inputs that name no input_type/task: none, query or document
    shutdown_timeout_s: float = 10.0  # SIGTERM: seconds in-flight requests get to finish
    log_level: str = "info"
    # Worker processes on listen_port (SO_REUSEPORT; each its own event loop, Triton channel and
    # micro-batcher); 0: one per two usable CPU cores, 1 to MAX_AUTO_WORKERS (embeddings_gateway/app.py).
    workers: int = 0


def _int(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"an integer from {low} to {high}")
        return value

    return check


def _float(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if type(value) not in (int, float) or not low < value <= high:
            raise ValueError(f"a number above {low} and at most {high}")
        return float(value)

    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"one of {', '.join(options)}")
        return value

    return check


def _string(value: Any, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty_ok) or value != value.strip():
        raise ValueError("a non-empty string without surrounding spaces" if not empty_ok else "a string (may be empty)")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _address(value: Any) -> str:
    if value != "localhost":
        try:
            ipaddress.ip_address(value)
        except (TypeError, ValueError):
            raise ValueError('an IP address (e.g. "127.0.0.1", "0.0.0.0", "::") or "localhost"') from None
    return value


def _host_port(value: Any) -> str:
    match = _HOST_PORT.match(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError('host:port, e.g. "127.0.0.1:6001"')
    return value


def _buckets(value: Any) -> tuple[int, ...]:
    allowed = f"a non-empty, strictly ascending list of integers from 1 to {MAX_LENGTH}"
    if not isinstance(value, list) or not value or any(type(v) is not int or not 1 <= v <= MAX_LENGTH for v in value):
        raise ValueError(allowed)
    if any(a >= b for a, b in itertools.pairwise(value)):
        raise ValueError(allowed)
    return tuple(value)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "model_name": _string,
    "triton_grpc_url": _host_port,
    "tokenizer_dir": _string,
    "listen_address": _address,
    "listen_port": _int(1, 65535),
    "health_port": _int(1, 65535),
    "api_key_sha256_file": lambda v: _string(v, empty_ok=True),
    "triton_key_file": lambda v: _string(v, empty_ok=True),
    "max_tokens": _int(1, MAX_LENGTH),
    "truncate": _bool,
    "length_buckets": _buckets,
    "triton_max_batch_size": _int(1, 1024),
    "triton_timeout_s": _float(0, 600),
    "max_inputs": _int(1, 65536),
    "max_request_tokens": _int(1, 10_000_000),
    "token_ids_input": _bool,
    "max_body_bytes": _int(1024, 1024**3),
    "max_concurrency": _int(1, 4096),
    "max_queue": _int(0, 65536),
    "queue_timeout_s": _float(0, 600),
    "default_prompt": _choice(PROMPTS),
    "shutdown_timeout_s": _float(0, 600),
    "log_level": _choice(LOG_LEVELS),
    "workers": _int(0, 64),
}


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def parse_config(data: Any, source: str = "config") -> GatewayConfig:
    """Validate a decoded JSON object into a GatewayConfig; ConfigError (one line) otherwise."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a JSON object expected")
    known = {f.name for f in fields(GatewayConfig)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for f in fields(GatewayConfig):
        if f.name not in data:
            if f.default is MISSING:
                raise ConfigError(f"{source}: missing key {f.name!r}")
            continue
        try:
            values[f.name] = _CHECKS[f.name](data[f.name])
        except ValueError as error:
            raise ConfigError(f"{source}: key {f.name!r}={json.dumps(data[f.name])[:80]} is invalid (allowed: {error})") from None
    config = GatewayConfig(**values)
    if config.length_buckets[-1] < config.max_tokens:
        raise ConfigError(
            f"{source}: the last of length_buckets ({config.length_buckets[-1]}) must be at least max_tokens ({config.max_tokens})"
        )
    if config.health_port == config.listen_port:
        raise ConfigError(f"{source}: health_port {config.health_port} is listen_port too; pick another port")
    if not config.api_key_sha256_file and not is_loopback(config.listen_address):
        raise ConfigError(
            f"{source}: listen_address {config.listen_address} is beyond loopback: set api_key_sha256_file (auth off is loopback only)"
        )
    return config


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate the JSON config file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise ConfigError(f"config {path} is not valid JSON: {error}") from None
    return parse_config(data, source=f"config {path}")


def load_key_hashes(path: str | Path) -> frozenset[str]:
    """The sha256 hex digests in a key file: one per line, blank lines and ``#`` comments allowed.
    A bad line is named by number only (it might be a raw key pasted by mistake)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read api_key_sha256_file {path}: {getattr(error, 'strerror', None) or error}") from None
    hashes = set()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _SHA256.match(line):
            raise ConfigError(f"api_key_sha256_file {path} line {number}: not a lowercase hex sha256")
        hashes.add(line)
    if not hashes:
        raise ConfigError(f"api_key_sha256_file {path} holds no key hash")
    return frozenset(hashes)


def key_hash(key: str) -> str:
    """The form in which keys are stored and compared: lowercase hex sha256 of the UTF-8 key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, code: str | None, param: str | None = None, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type_

    def body(self) -> bytes:
        return json.dumps({"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}).encode()


def bad_request(message: str, code: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, code, param)


# ---------------------------------------------------------------------------------------------
# Requests

FIELDS = ("input", "model", "dimensions", "encoding_format", "user", "input_type", "task", "titles", "prompt_name")
ENCODINGS = ("float", "base64")

# EmbeddingGemma's sentence-transformers prompts (config_sentence_transformers.json of
# google/embeddinggemma-300m, as its model card uses them): TEI's ``prompt_name`` and the OpenAI API's
# ``prompt_name`` extension take these names; the text is the prefix put before the input.
PROMPT_NAMES: dict[str, str] = {
    "query": "task: search result | query: ",
    "document": "title: none | text: ",
    "BitextMining": "task: search result | query: ",
    "Clustering": "task: clustering | query: ",
    "Classification": "task: classification | query: ",
    "InstructionRetrieval": "task: code retrieval | query: ",
    "MultilabelClassification": "task: classification | query: ",
    "PairClassification": "task: sentence similarity | query: ",
    "Reranking": "task: search result | query: ",
    "Retrieval": "task: search result | query: ",
    "Retrieval-query": "task: search result | query: ",
    "Retrieval-document": "title: none | text: ",
    "STS": "task: sentence similarity | query: ",
    "Summarization": "task: summarization | query: ",
}

# Token-id inputs are refused by default: LangChain's OpenAIEmbeddings (check_embedding_ctx_length=True,
# its default) sends tiktoken's ids, which as Gemma ids are other, meaningless tokens.
TOKEN_IDS_REFUSED = (
    "'input' holds token ids; this server embeds text with EmbeddingGemma's own (Gemma) tokenizer, and token ids "
    "from another tokenizer (such as tiktoken's) would be embedded as other tokens. Send the text itself. "
    "LangChain: OpenAIEmbeddings(..., check_embedding_ctx_length=False)"
)


def first_unencodable(texts: list[str]) -> int | None:
    """The index of the first text that is not valid Unicode (a lone UTF-16 surrogate, which JSON's
    \\ud800 escapes can carry), else None. One encode of the lot on the common path."""
    try:
        "".join(texts).encode("utf-8")
        return None
    except UnicodeEncodeError:
        return next(i for i, text in enumerate(texts) if not _encodable(text))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def prompt_prefix(name: str) -> str | None:
    """The prefix of a sentence-transformers prompt name, None when unknown."""
    return PROMPT_NAMES.get(name)


@dataclass(frozen=True)
class EmbeddingRequest:
    """A validated request: either ``texts`` (prompts applied) or ``token_ids`` (as given)."""

    texts: list[str] | None
    token_ids: list[list[int]] | None
    dimensions: int
    encoding_format: str

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or [])


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """body[name] when present and not null, type-checked (bool never counts as int)."""
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise bad_request(f"'{name}' must be {what}, got {type(value).__name__}", "invalid_type", name)
    return value


def _inputs(value: Any, max_inputs: int) -> tuple[list[str] | None, list[list[int]] | None]:
    """``input``: a string, a list of strings, a list of token ids, or a list of token-id lists."""
    what = "a string, a list of strings, a list of token ids or a list of token-id lists"
    if isinstance(value, str):
        return [value], None
    if not isinstance(value, list):
        raise bad_request(f"'input' must be {what}", "invalid_type", "input")
    if not value:
        raise bad_request("'input' is an empty list", "invalid_value", "input")
    if len(value) > max_inputs:
        raise bad_request(
            f"'input' has {len(value)} items, more than the {max_inputs} this server accepts per request", "too_many_inputs", "input"
        )
    if all(isinstance(v, str) for v in value):
        return value, None
    if all(type(v) is int for v in value):
        return None, [value]
    if all(isinstance(v, list) for v in value):
        for index, ids in enumerate(value):
            if not ids:
                raise bad_request(f"input[{index}] is an empty token list", "invalid_value", f"input[{index}]")
            if not all(type(t) is int for t in ids):
                raise bad_request(f"input[{index}] must be a list of integer token ids", "invalid_type", f"input[{index}]")
        return None, value
    raise bad_request(f"'input' must be {what} (not a mix)", "invalid_type", "input")


def _check_token_ids(token_ids: list[list[int]], vocab_size: int) -> None:
    for index, ids in enumerate(token_ids):
        if min(ids) < 0 or max(ids) >= vocab_size:
            raise bad_request(f"input[{index}] holds a token id outside 0..{vocab_size - 1}", "invalid_value", f"input[{index}]")


def _prompted(texts: list[str], body: dict[str, Any], default_prompt: str) -> list[str]:
    """The texts with the model card's prompt: ``input_type``/``task``/``titles``, else the default."""
    input_type = _optional(body, "input_type", str, "a string")
    task = _optional(body, "task", str, "a string")
    titles = _optional(body, "titles", list, "a list of strings or nulls")
    if input_type is not None and input_type not in PROMPTS:
        raise bad_request(f"'input_type' {input_type!r} is unknown; use one of: {', '.join(PROMPTS)}", "invalid_value", "input_type")
    if task is not None and task not in QUERY_TASKS:
        raise bad_request(f"'task' {task!r} is unknown; use one of: {', '.join(QUERY_TASKS)}", "invalid_value", "task")
    if task is not None and input_type not in (None, "query"):
        raise bad_request(f"'task' applies to queries, not to input_type {input_type!r}", "invalid_value", "task")
    prompt_name = _optional(body, "prompt_name", str, "a string")
    if prompt_name is not None:
        prefix = prompt_prefix(prompt_name)
        if prefix is None:
            raise bad_request(
                f"'prompt_name' {prompt_name!r} is unknown; use one of: {', '.join(PROMPT_NAMES)}", "invalid_value", "prompt_name"
            )
        for name in ("input_type", "task", "titles"):
            if body.get(name) is not None:
                raise bad_request(f"'prompt_name' and '{name}' both choose a prompt: send one of them", "invalid_value", name)
        return [prefix + t for t in texts]
    kind = input_type or ("query" if task is not None else default_prompt)
    if titles is not None:
        if kind != "document":
            raise bad_request("'titles' applies to documents (input_type 'document')", "invalid_value", "titles")
        if len(titles) != len(texts) or not all(t is None or isinstance(t, str) for t in titles):
            raise bad_request(f"'titles' must be a list of {len(texts)} strings or nulls, one per input", "invalid_value", "titles")
    if kind == "query":
        return [query_text(t, task or "search result") for t in texts]
    if kind == "document":
        return [document_text(t, titles[i] if titles else None) for i, t in enumerate(texts)]
    return texts


def parse_request(
    body: Any, model_name: str, max_inputs: int, default_prompt: str, vocab_size: int, allow_token_ids: bool = False
) -> EmbeddingRequest:
    """Validate a decoded /v1/embeddings body (ApiError otherwise). Unknown fields are refused
    (as OpenAI refuses unrecognised request arguments): a misspelt ``dimension`` must not pass silently.
    Token-id inputs only with ``allow_token_ids`` (the config's token_ids_input)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object", "invalid_type", None)
    for name in body:
        if name not in FIELDS:
            raise bad_request(f"Unrecognized request argument supplied: {name} (known: {', '.join(FIELDS)})", "unknown_parameter", name)
    for name in ("model", "input"):
        if body.get(name) is None:
            raise bad_request(f"'{name}' is a required property", "missing_required_parameter", name)
    model = _optional(body, "model", str, "a string")
    if model != model_name:
        raise ApiError(404, f"The model `{model}` does not exist; this server serves `{model_name}`", "model_not_found", "model")
    texts, token_ids = _inputs(body["input"], max_inputs)
    dimensions = _optional(body, "dimensions", int, "an integer")
    if dimensions is not None and dimensions not in MATRYOSHKA_DIMS:
        raise bad_request(
            f"'dimensions' {dimensions} is not supported; use one of {', '.join(map(str, MATRYOSHKA_DIMS))}", "invalid_value", "dimensions"
        )
    encoding = _optional(body, "encoding_format", str, "a string")
    if encoding is not None and encoding not in ENCODINGS:
        raise bad_request(f"'encoding_format' {encoding!r} is not supported; use float or base64", "invalid_value", "encoding_format")
    _optional(body, "user", str, "a string")  # accepted, not used
    if texts is not None:
        texts = _prompted(texts, body, default_prompt)
        for index, text in enumerate(texts):
            if not text:
                raise bad_request(f"input[{index}] is an empty string (and no prompt applies)", "invalid_value", f"input[{index}]")
        bad = first_unencodable(texts)
        if bad is not None:
            raise bad_request(
                f"input[{bad}] (or its title) is not valid Unicode: it holds a lone UTF-16 surrogate (such as \\ud800); send valid UTF-8 text",
                "invalid_value",
                f"input[{bad}]",
            )
    else:
        if not allow_token_ids:
            raise bad_request(TOKEN_IDS_REFUSED, "token_ids_not_supported", "input")
        for name in ("input_type", "task", "titles", "prompt_name"):
            if body.get(name) is not None:
                raise bad_request(f"'{name}' applies to text inputs; token-id inputs are sent as given", "invalid_value", name)
        _check_token_ids(token_ids or [], vocab_size)
    return EmbeddingRequest(
        texts=texts, token_ids=token_ids, dimensions=dimensions or MATRYOSHKA_DIMS[0], encoding_format=encoding or "float"
    )


def check_request_tokens(tokens: int, limit: int) -> None:
    """OpenAI's bound on the tokens of one request (its error's code and wording), after prompts and truncation."""
    if tokens > limit:
        raise bad_request(
            f"Requested {tokens} tokens, max {limit} tokens per request (this server's max_request_tokens); send fewer or shorter inputs per request",
            "max_tokens_per_request",
            "input",
        )


def fit_lengths(id_lists: list[list[int]], max_tokens: int, truncate: bool) -> list[list[int]]:
    """Inputs cut to ``max_tokens`` (truncate) or a 400 naming the first over-long input."""
    out = []
    for index, ids in enumerate(id_lists):
        if len(ids) > max_tokens:
            if not truncate:
                raise bad_request(
                    f"input[{index}] has {len(ids)} tokens, more than the maximum of {max_tokens} (truncation is off on this server)",
                    "context_length_exceeded",
                    f"input[{index}]",
                )
            ids = ids[:max_tokens]
        out.append(ids)
    return out


# ---------------------------------------------------------------------------------------------
# Batching and the response


def plan_batches(lengths: list[int], buckets: tuple[int, ...], chunk: int) -> list[tuple[int, list[int]]]:
    """[(padded length, input indices)]: each input goes to the smallest bucket that holds it (so
    requests of different callers share shapes and Triton's dynamic batcher merges them), each
    bucket split into chunks of at most ``chunk`` inputs. Lengths over the last bucket keep their own."""
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        bucket = next((b for b in buckets if b >= length), length)
        groups.setdefault(bucket, []).append(index)
    return [(bucket, members[i : i + chunk]) for bucket, members in sorted(groups.items()) for i in range(0, len(members), chunk)]


def response_body(embeddings: np.ndarray, encoding_format: str, model_name: str, tokens: int) -> bytes:
    """OpenAI's response JSON. base64: each row's little-endian float32 bytes (what the openai SDK decodes)."""
    if encoding_format == "base64":
        rows: Any = (json.dumps(base64.b64encode(row.tobytes()).decode("ascii")) for row in np.ascontiguousarray(embeddings, dtype="<f4"))
    else:
        # Row by row: a 2048-input answer never holds all its values as Python floats at once.
        rows = (json.dumps(row.tolist(), separators=(",", ":")) for row in np.asarray(embeddings, dtype=np.float32))
    data = ",".join(f'{{"object":"embedding","index":{index},"embedding":{row}}}' for index, row in enumerate(rows))
    tail = json.dumps({"model": model_name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, separators=(",", ":"))
    return f'{{"object":"list","data":[{data}],{tail[1:]}'.encode()


# The deploy's gateway_* settings (deploys/core/settings.py) take their defaults and checks from here.
CHECKS: dict[str, Callable[[Any], Any]] = _CHECKS
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(GatewayConfig) if f.default is not MISSING}
