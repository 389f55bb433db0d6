"""The parity check as a client of the embeddings API (OpenAI's POST /v1/embeddings, served by
embeddings_gateway/ on the host): readiness, requests at every dimension and encoding, decoding,
and the report's ``gateway`` section. Standard library HTTP only (urllib), bounded by timeouts."""

from __future__ import annotations

import argparse
import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verify.checks import GATEWAY_ENCODINGS, Evaluation, Failure, GatewayAnswers, Thresholds, evaluate_gateway
from verify.client import MATRYOSHKA_DIMS, TextEncoder
from verify.probes import embed_alone
from verify.samples import Sample


class GatewayError(Exception):
    """The gateway could not be asked (down, not ready, refused the key, a malformed answer): one line naming it."""


def _error_detail(status: int, body: bytes) -> str:
    """``HTTP 401 invalid_api_key: message`` from an OpenAI-shaped error body (else its first bytes)."""
    try:
        error = json.loads(body.decode("utf-8"))["error"]
        return f"HTTP {status} {error.get('code') or error.get('type')}: {error.get('message')}"
    except (ValueError, KeyError, TypeError, AttributeError):
        text = body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        return f"HTTP {status}" + (f": {text}" if text else "")


def _http(url: str, body: dict[str, Any] | None, key: str, timeout_s: float) -> tuple[int, bytes]:
    """(status, body) of one GET (``body`` None) or JSON POST; OSError when nothing answered."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def _unreachable(error: OSError) -> str:
    reason = getattr(error, "reason", error)
    return f"unreachable ({reason})"


def wait_gateway_ready(base_url: str, timeout_s: float) -> None:
    """Until GET /ready answers 200 (the gateway up and its model READY in Triton); GatewayError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, body = _http(f"{base_url}/ready", None, "", max(0.5, min(5.0, deadline - time.monotonic())))
            if status == 200:
                return
            last = _error_detail(status, body)
        except OSError as error:
            last = _unreachable(error)
        if time.monotonic() >= deadline:
            raise GatewayError(f"gateway {base_url} not ready within {timeout_s:g}s: {last}")
        time.sleep(0.25)


def gateway_embeddings(base_url: str, key: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """POST /v1/embeddings: the decoded answer. Busy answers (429, 503) are retried until ``timeout_s``;
    anything else but 200 is a GatewayError naming the gateway, the status and OpenAI's error message."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, raw = _http(f"{base_url}/v1/embeddings", body, key, max(0.5, deadline - time.monotonic()))
        except OSError as error:
            raise GatewayError(f"gateway {base_url}: POST /v1/embeddings {_unreachable(error)}") from None
        if status == 200:
            try:
                return json.loads(raw.decode("utf-8"))
            except ValueError:
                raise GatewayError(f"gateway {base_url}: POST /v1/embeddings answered 200 with a body that is not JSON") from None
        if status not in (429, 503) or time.monotonic() >= deadline:
            raise GatewayError(f"gateway {base_url} refused POST /v1/embeddings: {_error_detail(status, raw)}")
        time.sleep(0.25)


def decode_embeddings(base_url: str, answer: Any, count: int, dim: int, encoding: str) -> np.ndarray:
    """``data[].embedding`` as float32 ``[count, dim]`` in ``index`` order (base64: little-endian float32)."""
    try:
        data = sorted(answer["data"], key=lambda item: item["index"])
        if [item["index"] for item in data] != list(range(count)):
            raise ValueError(f"indexes {[item['index'] for item in data]} for {count} inputs")
        if encoding == "base64":
            rows = [np.frombuffer(base64.b64decode(item["embedding"], validate=True), dtype="<f4") for item in data]
        else:
            rows = [np.asarray(item["embedding"], dtype=np.float64).astype(np.float32) for item in data]
        if any(row.shape != (dim,) for row in rows):
            raise ValueError(f"vectors of {sorted({row.size for row in rows})} components, not {dim}")
    except (KeyError, TypeError, ValueError) as error:
        raise GatewayError(f"gateway {base_url}: malformed /v1/embeddings answer (dimensions {dim}, {encoding}): {error}") from None
    return np.stack(rows).astype(np.float32)


def _span(ids: Sequence[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"


def ask_gateway(
    base_url: str,
    key: str,
    model_name: str,
    texts: Sequence[str],
    id_lists: Sequence[Sequence[int]],
    ids: Sequence[str],
    sent: Sequence[bool],
    max_inputs: int,
    timeout_s: float,
    answers: GatewayAnswers,
    once: Sequence[bool] | None = None,
) -> None:
    """Every dimension and encoding of the ``sent`` texts, at most ``max_inputs`` a request, into
    ``answers``; the ``once`` texts (the long ones) only at the first dimension and encoding: their
    length is what they check, and it costs the same at every dimension (the gateway embeds in full,
    then truncates). The texts carry their prompts: ``input_type: none`` keeps the gateway's default
    prompt off them. GatewayError on the first request that fails."""
    step = max(1, max_inputs)
    for number, (dim, encoding) in enumerate((d, e) for d in MATRYOSHKA_DIMS for e in GATEWAY_ENCODINGS):
        asked = [is_sent and (number == 0 or once is None or not once[i]) for i, is_sent in enumerate(sent)]
        indexes = [i for i, is_asked in enumerate(asked) if is_asked]
        chunks = [indexes[start : start + step] for start in range(0, len(indexes), step)]
        answers.asked[(dim, encoding)] = asked
        out = np.full((len(texts), dim), np.nan, dtype=np.float32)
        for chunk in chunks:
            body = {
                "model": model_name,
                "input": [texts[i] for i in chunk],
                "dimensions": dim,
                "encoding_format": encoding,
                "input_type": "none",
            }
            answer = gateway_embeddings(base_url, key, body, timeout_s)
            answers.requests += 1
            out[chunk] = decode_embeddings(base_url, answer, len(chunk), dim, encoding)
            usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
            tokens = usage.get("prompt_tokens")
            answers.prompt_tokens += tokens if type(tokens) is int else 0
            label = _span([ids[i] for i in chunk])
            answers.usage.append((label, f"gateway-{dim}-{encoding}", tokens, sum(len(id_lists[i]) for i in chunk)))
        answers.vectors[(dim, encoding)] = out


def check_gateway_endpoint(
    args: argparse.Namespace,
    sample_list: Sequence[Sample],
    encoder: TextEncoder,
    id_lists: Sequence[Sequence[int]],
    local: np.ndarray,
    local_backend: Any,
    limits: Thresholds,
) -> tuple[dict[str, Any], Evaluation]:
    """The report's ``gateway`` section and the gateway's evaluation (rows, failures). Without
    --gateway-url: ``checked`` false, no failures. A gateway that cannot be asked is one failure."""
    ids = [s.id for s in sample_list]
    section: dict[str, Any] = {
        "url": args.gateway_url or None,
        "checked": bool(args.gateway_url),
        "requests": 0,
        "min_cosine": None,
        "max_abs_diff": None,
        "max_norm_error": None,
        "dimensions": list(MATRYOSHKA_DIMS) if args.gateway_url else [],
        "encodings": list(GATEWAY_ENCODINGS) if args.gateway_url else [],
        "max_tokens": None,
        "skipped": [],
        "once": [],
        "prompt_tokens": 0,
        "failures": 0,
        "seconds": 0.0,
        "message": "gateway not checked (no --gateway-url)",
    }
    if not args.gateway_url:
        return section, Evaluation(rows=[None] * len(ids))
    base_url = args.gateway_url.rstrip("/")
    texts = [s.text for s in sample_list]
    # The gateway truncates at its own max tokens: the local reference is cut where the gateway cuts.
    gateway_encoder = encoder
    if args.gateway_max_tokens and args.gateway_max_tokens != encoder.max_length:
        gateway_encoder = TextEncoder(args.tokenizer_dir, max_length=args.gateway_max_tokens)
    gateway_ids = gateway_encoder.encode(texts) if gateway_encoder is not encoder else list(id_lists)
    sent = [True] * len(ids)
    if args.gateway_no_truncate:  # the gateway refuses (400) inputs over its max tokens: not sent
        full = TextEncoder(args.tokenizer_dir, max_length=gateway_encoder.max_length)
        full.tokenizer.no_truncation()
        sent = [len(row) <= gateway_encoder.max_length for row in full.encode(texts)]
    references = np.array(local, dtype=np.float32, copy=True)
    for i, row in enumerate(gateway_ids):
        if sent[i] and list(row) != list(id_lists[i]):
            references[i] = embed_alone(local_backend, gateway_encoder, [row])[0]
    section["max_tokens"] = gateway_encoder.max_length
    section["skipped"] = [sample_id for sample_id, is_sent in zip(ids, sent, strict=True) if not is_sent]

    once = [s.long for s in sample_list]  # the long documents: at the first dimension and encoding only
    section["once"] = [sample_id for sample_id, is_sent, is_long in zip(ids, sent, once, strict=True) if is_sent and is_long]
    answers = GatewayAnswers()
    started = time.monotonic()
    try:
        key = Path(args.gateway_key_file).read_text(encoding="utf-8").strip() if args.gateway_key_file else ""
    except OSError as error:
        key, problem = "", f"gateway {base_url}: cannot read the key file {args.gateway_key_file}: {error.strerror or error}"
    else:
        problem = None
        try:
            wait_gateway_ready(base_url, args.timeout)
            ask_gateway(base_url, key, args.model_name, texts, gateway_ids, ids, sent, args.gateway_max_inputs, args.timeout, answers, once)
        except GatewayError as error:
            problem = str(error)
    section["seconds"] = round(time.monotonic() - started, 3)
    section["requests"], section["prompt_tokens"] = answers.requests, answers.prompt_tokens
    if problem is not None:
        section["failures"], section["message"] = 1, problem
        return section, Evaluation(rows=[None] * len(ids), failures=[Failure("gateway", "(all)", "gateway", problem)])
    evaluation = evaluate_gateway(ids, references, answers, sent, limits)
    summary = evaluation.summary
    section.update({k: summary[k] for k in ("min_cosine", "max_abs_diff", "max_norm_error")})
    section["failures"] = len(evaluation.failures)
    section["message"] = (
        f"gateway {base_url}: {len(evaluation.failures)} failed checks; first: {evaluation.failures[0].message}"
        if evaluation.failures
        else f"gateway {base_url}: {sum(sent) - len(section['once'])} samples x {len(MATRYOSHKA_DIMS)} dimensions x "
        f"{len(GATEWAY_ENCODINGS)} encodings, {len(section['once'])} long at {MATRYOSHKA_DIMS[0]} {GATEWAY_ENCODINGS[0]}, "
        f"in {answers.requests} requests, min cosine {summary['min_cosine']}, max abs diff {summary['max_abs_diff']}"
    )
    return section, evaluation
