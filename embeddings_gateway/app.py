"""OpenAI-compatible embeddings API for EmbeddingGemma on Triton: text in, vectors out.

Runs next to Triton on each host (the deploy's systemd unit)::

    <venv>/bin/python -m embeddings_gateway --config /path/gateway.json [--check]

``--check`` validates the config, the key file and the tokenizer, then exits: 0 good, 2 bad (one
line on stderr; the same as a bad start). Config keys: :class:`embeddings_gateway.api.GatewayConfig`.
Needs the pins of embeddings_gateway/requirements.txt (starlette, uvicorn, tritonclient[grpc],
tokenizers, numpy, prometheus_client).

Endpoints
---------
``POST /v1/embeddings`` (bearer key)
    OpenAI's request: ``input`` (a string or a list of strings; at most ``max_inputs``, 2048 by
    default as OpenAI's; token ids only with ``token_ids_input``, else a 400 saying to send text:
    ids from another tokenizer, such as LangChain's tiktoken default, would embed other tokens),
    ``model`` (must be ``model_name``), ``dimensions``
    (768, 512, 256 or 128: Matryoshka, the leading components re-normalised), ``encoding_format``
    (``float``, the default, or ``base64``: little-endian float32, what the openai SDK asks for by
    default), ``user`` (accepted, ignored). Extensions: ``input_type`` (``query``, ``document`` or
    ``none``), ``task`` (one of the model card's query tasks, embeddinggemma.QUERY_TASKS; implies
    ``query``; default "search result"), ``titles`` (documents only: one string or null per input),
    ``prompt_name`` (one of EmbeddingGemma's sentence-transformers prompt names, as on TEI's API:
    embeddings_gateway.api.PROMPT_NAMES; not with input_type/task/titles). A request's tokens (prompts
    and special tokens included, after truncation) are bounded by ``max_request_tokens`` (300,000
    by default, as OpenAI's): past it a 400 ``max_tokens_per_request``.
    Text inputs get the model card's prompt (embeddinggemma.query_text / document_text); with no
    ``input_type``/``task`` the config's ``default_prompt`` applies. Token-id inputs are sent as
    given (no prompt, no special tokens added). Unknown request fields are refused (400
    ``unknown_parameter``), as OpenAI refuses unrecognised arguments: a misspelt field must not
    pass silently. An empty string is refused unless a prompt applies (the text sent is then the
    prompt alone, as in the verify samples).
    Response: ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}],
    "model": model_name, "usage": {"prompt_tokens": N, "total_tokens": N}}``, N the tokens sent
    to the model: prompts and special tokens included, after truncation, before padding.
``GET /v1/models``, ``GET /v1/models/{model}`` (bearer key): OpenAI's model list / model object.
``POST /embed``, ``POST /``, ``POST /tokenize``, ``GET /info`` (bearer key): Text Embeddings
    Inference's native API, its requests, answers, status codes and ``{"error", "error_type"}``
    errors (embeddings_gateway/tei.py). ``GET /`` (no key): TEI's health alias.
``GET /health`` (no key): 200 while the process serves. ``GET /ready`` (no key): 200 when Triton
    says the model is READY, else 503 (the answer of the background probe, below: never a wait on Triton).
``GET /ready``, ``GET /health`` on ``health_port`` (no key; embeddings_gateway/health.py): the same answers
    from a thread and a listener of their own, so they stay fast while the event loop is saturated
    with embedding work; the front door checks this port. A Triton probe thread asks Triton every
    0.5 s (1 s deadline) whether the model is READY; /ready there is 503 when it is not, when that
    answer is stale, or when the event loop has not turned for 10 s (wedged, not busy).
``GET /metrics`` (no key): Prometheus text, prefix ``embeddings_gateway_``: requests by endpoint
    and status code, inputs, tokens, Triton batch sizes and padded lengths (histograms), tokenize /
    infer / request latency histograms, requests in flight and queued, keys loaded, Triton errors.

Errors: ``{"error": {"message", "type", "param", "code"}}`` (never a traceback):

====== ===================== =========================== ==================================================
status type                  code                        when
====== ===================== =========================== ==================================================
400    invalid_request_error invalid_json                body is not JSON
400    invalid_request_error invalid_type                a field of the wrong type (param: the field)
400    invalid_request_error missing_required_parameter  no ``input`` or no ``model``
400    invalid_request_error unknown_parameter           a field this API does not know (param: its name)
400    invalid_request_error invalid_value               empty list, empty string without prompt, bad
                                                         dimensions / encoding_format / input_type / task /
                                                         titles / prompt_name, token id outside the
                                                         vocabulary, a lone UTF-16 surrogate (param input[i])
400    invalid_request_error too_many_inputs             more than ``max_inputs`` inputs
400    invalid_request_error max_tokens_per_request      more than ``max_request_tokens`` tokens in the request
400    invalid_request_error token_ids_not_supported     token-id input while ``token_ids_input`` is off
400    invalid_request_error context_length_exceeded     an input over ``max_tokens`` with ``truncate``
                                                         false (param ``input[i]``, the message names i)
401    invalid_request_error invalid_api_key             no, malformed or unknown bearer key
404    invalid_request_error model_not_found             ``model`` is not the served name
404    invalid_request_error unknown_url                 no such path
405    invalid_request_error method_not_allowed          wrong method for the path
413    invalid_request_error request_too_large           body over ``max_body_bytes`` (checked while reading)
429    requests              rate_limit_exceeded         ``max_concurrency`` busy and the queue full, or no
                                                         slot within ``queue_timeout_s`` (Retry-After: 1)
503    server_error          triton_unavailable          Triton unreachable, or the model not loaded/ready
504    server_error          triton_timeout              no answer within ``triton_timeout_s`` (busy, not dead: not
                                                         retried by the front door)
500    server_error          triton_error / internal_error  anything else (details in the log only)
====== ===================== =========================== ==================================================

Workers: ``workers`` processes serve ``listen_port`` and ``health_port`` (:class:`Supervisor`: one
SO_REUSEPORT socket each, bound before any starts; 0, the default, is half the usable cores, 1 to
MAX_AUTO_WORKERS; one worker is the plain single process, no supervisor). Each worker is a whole
gateway (event loop, Triton channel, micro-batcher, Triton probe, health responder); the kernel
spreads connections over them. ``max_concurrency`` and ``max_queue`` are the host's: each worker
admits its share (at least one at a time): the host admits what one process did, unless
max_concurrency is below the worker count. (A worker's share can be full while another's is not:
the front door's maxconn per gateway, front_door_server_maxconn, stays below max_concurrency.) The
host's CALLS_IN_FLIGHT per length are shared too, so callers still merge into full Triton batches.
/metrics from any worker counts every worker's requests (prometheus_client's multiprocess mode) and
the CPU and memory of all the gateway's processes.

Signals: SIGTERM/SIGINT stop gracefully (no new connections; in-flight requests get
``shutdown_timeout_s``). SIGHUP re-reads ``api_key_sha256_file`` (a rotated key works at once, the
old one stops; a bad file is logged and the keys loaded before stay; with several workers the
supervisor passes SIGTERM and SIGHUP on to each). Keys are compared by sha256;
the gateway never sees a key file with raw keys.

Fast path: ``POST /v1/embeddings`` is a plain ASGI handler (Starlette serves the other routes); one
``encode_batch_fast`` per request (ids without character offsets; off the event loop for large
requests; the Rust tokenizer releases the GIL), truncation at ``max_tokens``, inputs grouped into
``length_buckets`` and padded to the bucket, chunks of at most the served model's ``max_batch_size``
(Triton's model config, read each time the model becomes READY; ``triton_max_batch_size`` until
then), at most REQUEST_WINDOW (2) chunks of one request queued or in flight at once, the next sent
as one returns (a 2048-input request holds at most 2 padded batches, and other callers' chunks queue
between its chunks: a small request waits behind at most 2 Triton calls of each large one); large
answers built on the pool. Cross-request micro-batching (:class:`MicroBatcher`): chunks of one
padded length from concurrent requests are merged into one Triton call of at most that many inputs
while that length already has Triton calls in flight, with no timer (nothing waits at concurrency
1), and the rows split back per request; Triton's dynamic batcher still merges the calls in flight
(equal shapes across callers). One gRPC channel, only ``sentence_embedding`` asked back, numpy
assembly, base64 straight from the float32 buffer. ``triton_batch_size`` in /metrics observes each
Triton call, merged ones included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embeddinggemma import (
    ATTENTION_MASK,
    EMBEDDING_DIM,
    INPUT_IDS,
    SENTENCE_EMBEDDING,
    EmbeddingError,
    TextEncoder,
    triton_key_headers,
    truncate,
)
from embeddings_gateway import tei
from embeddings_gateway.api import (
    ApiError,
    ConfigError,
    GatewayConfig,
    check_request_tokens,
    fit_lengths,
    key_hash,
    load_config,
    load_key_hashes,
    parse_request,
    plan_batches,
    response_body,
)
from embeddings_gateway.health import BEAT_S, Health, HealthResponder, TritonProbe

log = logging.getLogger("embeddings_gateway")

PREFIX = "embeddings_gateway_"
# Requests whose texts add up to fewer characters are tokenized on the event loop: a thread hop
# costs more than encoding a few short texts.
INLINE_TOKENIZE_CHARS = 2048
READY_DEADLINE_S = 1.0
ENDPOINTS = {"/v1/embeddings": "embeddings", "/v1/models": "models", "/health": "health", "/ready": "ready", "/metrics": "metrics"}
# Text Embeddings Inference's native routes (embeddings_gateway/tei.py): path -> (method, endpoint label).
TEI_ROUTES = {
    "/embed": ("POST", "tei_embed"),
    "/": ("POST", "tei_embed"),
    "/tokenize": ("POST", "tei_tokenize"),
    "/info": ("GET", "tei_info"),
}
# A request has at most this many Triton calls (each at most max_batch inputs) queued or in flight at
# once; the next is sent when one returns. So a 2048-input request holds at most this many padded
# batches, and a small request queues behind at most this many calls of each large one.
REQUEST_WINDOW = 2
# Answers with more rows are built off the event loop (float JSON of 2048×768 values takes ~1 s).
INLINE_RESPONSE_ROWS = 64
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The gateway's Prometheus metrics, in a registry of its own (plus the process collector).

    With several workers (``multiprocess``: PROMETHEUS_MULTIPROC_DIR set by the supervisor before
    prometheus_client is imported), each worker writes its values to files there and /metrics, answered
    by whichever worker, adds up every worker's (prometheus_client's multiprocess mode: counters and
    histograms summed, dead workers' counts kept; the gauges of live workers summed) and the process_*
    figures of the whole process tree (:class:`TreeProcessCollector`)."""

    def __init__(self, length_buckets: Sequence[int], multiprocess: bool = False) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = registry = CollectorRegistry()
        if multiprocess:
            from prometheus_client import multiprocess as mp

            # Values go to the multiprocess files; the registry answered on /metrics reads them all.
            self.exposed = CollectorRegistry()
            mp.MultiProcessCollector(self.exposed)
            TreeProcessCollector(os.getppid(), self.exposed)
        else:
            ProcessCollector(registry=registry)
            self.exposed = registry
        self.requests = Counter(PREFIX + "requests", "HTTP requests by endpoint and status code", ["endpoint", "code"], registry=registry)
        self.inputs = Counter(PREFIX + "inputs", "Inputs embedded", registry=registry)
        self.tokens = Counter(PREFIX + "tokens", "Tokens sent to the model (prompts included, padding not)", registry=registry)
        self.batch_size = Histogram(
            PREFIX + "triton_batch_size",
            "Inputs per Triton request",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.sequence_length = Histogram(
            PREFIX + "triton_sequence_length",
            "Padded sequence length of each input sent to Triton",
            buckets=tuple(length_buckets),
            registry=registry,
        )
        self.tokenize = Histogram(PREFIX + "tokenize_seconds", "Tokenizing one request", buckets=LATENCY_BUCKETS, registry=registry)
        self.infer = Histogram(PREFIX + "infer_seconds", "One Triton request", buckets=LATENCY_BUCKETS, registry=registry)
        self.request = Histogram(
            PREFIX + "request_seconds",
            "/v1/embeddings answered with 200, body read to response built",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        live = {"multiprocess_mode": "livesum"}  # several workers: the sum over the live ones
        self.in_flight = Gauge(PREFIX + "in_flight", "Embedding requests being processed", registry=registry, **live)
        self.queued = Gauge(PREFIX + "queued", "Embedding requests waiting for a slot", registry=registry, **live)
        self.workers = Gauge(PREFIX + "workers", "Worker processes serving", registry=registry, **live)
        self.workers.set(1)
        self.api_keys = Gauge(
            PREFIX + "api_keys", "API key hashes loaded (0: auth off)", registry=registry, multiprocess_mode="livemostrecent"
        )
        self.triton_errors = Counter(PREFIX + "triton_errors", "Failed Triton requests by reason", ["reason"], registry=registry)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.exposed), CONTENT_TYPE_LATEST


class TreeProcessCollector:
    """prometheus_client's process_* metrics for the gateway as a whole: the supervisor (``root``) and
    its workers, CPU and memory summed (a worker alone would show its share only)."""

    def __init__(self, root: int, registry: Any) -> None:
        self.root = root
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE")
        registry.register(self)

    def stats(self) -> list[list[str]]:
        """/proc/PID/stat fields after the command name, of the root and each of its children."""
        rows = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rpartition(b")")[2].split()
            except OSError:
                continue  # gone meanwhile
            if int(entry.name) == self.root or int(fields[1]) == self.root:
                rows.append([v.decode() for v in fields])
        return rows

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        rows = self.stats()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        # Fields (from the state, /proc/PID/stat's third): 11 utime, 12 stime, 19 starttime, 20 vsize, 21 rss.
        cpu = sum(int(r[11]) + int(r[12]) for r in rows) / self.ticks
        yield CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds (all workers).", value=cpu)
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory size in bytes (all workers).", value=sum(int(r[21]) for r in rows) * self.page
        )
        yield GaugeMetricFamily(
            "process_virtual_memory_bytes", "Virtual memory size in bytes (all workers).", value=sum(int(r[20]) for r in rows)
        )
        start = min((int(r[19]) for r in rows), default=0) / self.ticks + boot
        yield GaugeMetricFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", value=start)


def overloaded(message: str) -> ApiError:
    return ApiError(429, message, "rate_limit_exceeded", type_="requests")


class Admission:
    """At most ``limit`` requests processed at once, at most ``queue`` waiting for a slot and each
    for at most ``timeout_s``; the rest get 429 at once. Never an unbounded wait."""

    def __init__(self, limit: int, queue: int, timeout_s: float, metrics: Metrics) -> None:
        self.limit, self.queue, self.timeout_s, self.metrics = limit, queue, timeout_s, metrics
        self._semaphore = asyncio.Semaphore(limit)
        self._waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._semaphore.locked():
            if self._waiting >= self.queue:
                raise overloaded(f"Too many requests: {self.limit} in flight and {self._waiting} waiting; retry later")
            self._waiting += 1
            self.metrics.queued.inc()
            try:
                await asyncio.wait_for(self._semaphore.acquire(), self.timeout_s)
            except asyncio.TimeoutError:
                raise overloaded(f"Too many requests: no slot free within {self.timeout_s:g}s; retry later") from None
            finally:
                self._waiting -= 1
                self.metrics.queued.dec()
        else:
            await self._semaphore.acquire()  # returns at once: a slot is free
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self.metrics.in_flight.dec()
            self._semaphore.release()


def share(total: int, workers: int, index: int, minimum: int) -> int:
    """Worker ``index``'s part of a host-wide limit ``total`` split among ``workers`` (the parts add
    up to ``total`` unless ``minimum`` lifts one)."""
    base, extra = divmod(total, workers)
    return max(minimum, base + (1 if index < extra else 0))


def triton_error(error: Exception, timeout_s: float) -> ApiError:
    """An ApiError for a failed Triton call: 503 when Triton is away or has no ready model, 504 when slow."""
    status = ""
    if callable(getattr(error, "status", None)):
        status = str(error.status() or "")
    text = str(error).lower()
    if "DEADLINE_EXCEEDED" in status or isinstance(error, asyncio.TimeoutError):
        # 504, not 503: a slow Triton is busy, not dead; the front door retries 503s elsewhere, never this.
        return ApiError(504, f"Triton did not answer within {timeout_s:g}s", "triton_timeout", type_="server_error")
    if (
        "UNAVAILABLE" in status
        or "NOT_FOUND" in status
        or any(s in text for s in ("unknown model", "not ready", "no available version", "not found"))
    ):
        return ApiError(503, "Triton or the model is not available; retry later", "triton_unavailable", type_="server_error")
    return ApiError(500, "The model server failed to process the request", "triton_error", type_="server_error")


class ClientGone(Exception):
    """The client hung up before its request body was read."""


INTERNAL_ERROR = ApiError(500, "The server had an error while processing your request", "internal_error", type_="server_error")


def error_headers(error: ApiError) -> dict[str, str]:
    """Extra response headers of an error: Retry-After on 429/503, WWW-Authenticate on 401."""
    return {"Retry-After": "1"} if error.status in (429, 503) else {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}


# Triton calls a length bucket keeps open before its inputs queue and merge (MicroBatcher): two keep
# Triton's single instance busy (one executing, one queued there) without holding inputs back.
CALLS_IN_FLIGHT = 2


@dataclass(slots=True)
class Piece:
    """One request's inputs of one padded length, waiting for (or in) a Triton call."""

    ids: list[list[int]]
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Cross-request batching, as text-embeddings-inference does: pieces (a request's inputs of one
    padded length) queue per length; a length with fewer than ``in_flight`` Triton calls open, or
    with ``max_batch`` inputs queued, sends what is queued (FIFO, whole pieces, at most ``max_batch``
    inputs) in one call and splits the rows back. No timer: a piece is sent on the next loop
    iteration when its length is idle (no added latency at concurrency 1), and waits only while
    Triton is busy with earlier calls, which is when others join it. Triton's dynamic batcher still
    merges the calls in flight.

    ``call(ids, length)`` makes one Triton call ([len(ids), 768] or an exception). A failed call
    fails each of its pieces with its own copy of the ApiError (anything else: 500). A cancelled
    piece (its request gave up: timeout, disconnect) is skipped when still queued, and its rows are
    dropped when already sent; the other pieces are not affected. Waits are bounded by the call's
    gRPC deadline and by the caller's own timeout on the future."""

    def __init__(
        self, call: Callable[[list[list[int]], int], Awaitable[np.ndarray]], max_batch: int, in_flight: int = CALLS_IN_FLIGHT
    ) -> None:
        self._call, self.max_batch, self.in_flight = call, max_batch, in_flight
        self._queues: dict[int, deque[Piece]] = {}
        self._queued: dict[int, int] = {}  # inputs queued per length
        self._open: dict[int, int] = {}  # Triton calls in flight per length
        self._scheduled: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def submit(self, ids: list[list[int]], length: int) -> asyncio.Future[np.ndarray]:
        """Queue ``ids`` (at most max_batch, each at most ``length`` tokens); the future gives their rows."""
        assert 0 < len(ids) <= self.max_batch
        loop = asyncio.get_running_loop()
        piece = Piece(ids, loop.create_future())
        self._queues.setdefault(length, deque()).append(piece)
        self._queued[length] = self._queued.get(length, 0) + len(ids)
        if length not in self._scheduled:  # pieces submitted in this loop iteration go together
            self._scheduled.add(length)
            loop.call_soon(self._flush, length)
        return piece.future

    def _flush(self, length: int) -> None:
        self._scheduled.discard(length)
        if self._closed:
            return
        queue = self._queues[length]
        while queue and (self._open.get(length, 0) < self.in_flight or self._queued[length] >= self.max_batch):
            batch: list[Piece] = []
            size = 0
            # size == 0: at least one piece each time, even one planned before max_batch went down.
            while queue and (size == 0 or size + len(queue[0].ids) <= self.max_batch):
                piece = queue.popleft()
                self._queued[length] -= len(piece.ids)
                if not piece.future.done():  # done: cancelled while queued
                    batch.append(piece)
                    size += len(piece.ids)
            if batch:
                self._open[length] = self._open.get(length, 0) + 1
                task = asyncio.ensure_future(self._run(batch, length))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[Piece], length: int) -> None:
        try:
            rows = await self._call([row for piece in batch for row in piece.ids], length)
        except Exception as error:
            if not isinstance(error, ApiError):
                log.error("Triton call failed unexpectedly", exc_info=error)
                error = INTERNAL_ERROR
            for piece in batch:
                if not piece.future.done():
                    piece.future.set_exception(ApiError(error.status, error.message, error.code, error.param, error.type))
        except BaseException:  # cancelled (shutdown): the pieces' requests are cancelled with it
            for piece in batch:
                piece.future.cancel()
            raise
        else:
            start = 0
            for piece in batch:
                if not piece.future.done():
                    piece.future.set_result(rows[start : start + len(piece.ids)])
                start += len(piece.ids)
        finally:
            self._open[length] -= 1
            self._flush(length)

    async def close(self) -> None:
        """Cancel the calls in flight (after the server drained its requests)."""
        self._closed = True
        for queue in self._queues.values():
            for piece in queue:
                piece.future.cancel()
            queue.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def request_headers(scope: dict[str, Any]) -> tuple[str, str]:
    """The ``Authorization`` and ``Content-Length`` headers of an ASGI request ("" when absent)."""
    authorization = declared = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-length":
            declared = value.decode("latin-1")
    return authorization, declared


class Gateway:
    """State and handlers of one gateway process."""

    def __init__(self, config: GatewayConfig, encoder: TextEncoder, keys: frozenset[str] | None, worker: int = 0, workers: int = 1) -> None:
        self.config = config
        self.worker, self.workers = worker, workers
        self.encoder = encoder
        if not config.truncate:
            # Exact token counts for the 400 message; the body limit bounds the work.
            encoder.tokenizer.no_truncation()
        self.max_tokens = encoder.max_length  # a smaller model_max_length in tokenizer_config.json lowers it
        self.vocab_size = encoder.tokenizer.get_vocab_size(with_added_tokens=True)
        self.keys = keys
        self.metrics = Metrics(config.length_buckets, multiprocess=workers > 1)
        self.metrics.api_keys.set(len(keys or ()))
        self.created = int(time.time())
        self.client: Any = None
        self.admission: Admission | None = None
        self.batcher: MicroBatcher | None = None
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokenize")
        self.vitals = Health(config.model_name)
        # Bound in main() (a taken port is one line there); None: no health port (tests that embed the app).
        self.responder: HealthResponder | None = None
        self._tokenizers: dict[str, Any] = {}  # TEI's truncation choices: "right", "left", "none" (made on first use)
        self._last_error_log = -math.inf

    # -- lifecycle ------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        import tritonclient.grpc.aio as grpcclient

        self.client = grpcclient.InferenceServerClient(self.config.triton_grpc_url)  # one channel, reused
        # The limits are the host's: each worker admits its share (at least one request at a time).
        c, n, i = self.config, self.workers, self.worker
        self.admission = Admission(share(c.max_concurrency, n, i, 1), share(c.max_queue, n, i, 0), c.queue_timeout_s, self.metrics)
        # The host keeps CALLS_IN_FLIGHT calls open per length, shared among the workers: more would
        # split callers into smaller Triton batches (more calls, each costing CPU here and in Triton).
        self.batcher = MicroBatcher(self.infer, self.config.triton_max_batch_size, max(1, -(-CALLS_IN_FLIGHT // self.workers)))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_keys)
        beat: asyncio.TimerHandle | None = None

        def heartbeat() -> None:  # the health responder tells a wedged loop from a busy one by this
            nonlocal beat
            self.vitals.beat()
            beat = loop.call_later(BEAT_S, heartbeat)

        heartbeat()
        probe = TritonProbe(self.vitals, self.config.triton_grpc_url, self.follow_batch_size)
        probe.start()
        if self.responder is not None:
            self.responder.start()
        log.info(
            "serving model %s on %s:%s, Triton gRPC %s, auth %s",
            self.config.model_name,
            self.config.listen_address,
            self.config.listen_port,
            self.config.triton_grpc_url,
            f"on ({len(self.keys)} keys)" if self.keys is not None else "off (loopback only)",
        )
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            if beat is not None:
                beat.cancel()
            if self.responder is not None:
                self.responder.stop()
            await asyncio.to_thread(probe.stop)
            await self.batcher.close()
            await self.client.close()
            self.pool.shutdown(wait=False, cancel_futures=True)

    def reload_keys(self) -> None:
        """SIGHUP: re-read the key file; a bad file keeps the keys loaded before."""
        if self.keys is None:
            log.info("SIGHUP: auth is off, no key file to re-read")
            return
        try:
            self.keys = load_key_hashes(self.config.api_key_sha256_file)
        except ConfigError as error:
            log.error("SIGHUP: %s; keeping the %d keys loaded before", error, len(self.keys))
            return
        self.metrics.api_keys.set(len(self.keys))
        log.info("SIGHUP: %d API keys loaded", len(self.keys))

    # -- helpers --------------------------------------------------------------------------

    def authorize(self, authorization: str) -> None:
        """401 unless auth is off or the bearer key's sha256 is in the key file (``authorization``: the header's value)."""
        if self.keys is None:
            return
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(401, "You didn't provide an API key: send it as 'Authorization: Bearer KEY'", "invalid_api_key")
        if key_hash(key) not in self.keys:
            raise ApiError(401, "Incorrect API key provided", "invalid_api_key")

    def log_triton_error(self, error: Exception) -> None:
        """Log a Triton failure, at most one line every 5 s (a dead Triton must not flood journald)."""
        now = time.monotonic()
        if now - self._last_error_log >= 5:
            self._last_error_log = now
            log.warning("Triton request failed: %s", str(error).strip()[:300] or type(error).__name__)

    async def tokenize(self, texts: list[str], tokenizer: Any = None) -> list[list[int]]:
        """Token ids of ``texts`` with the config's tokenizer, or ``tokenizer`` (a truncation variant)."""

        def encode(texts: list[str]) -> list[list[int]]:
            return [encoding.ids for encoding in tokenizer.encode_batch_fast(texts)]

        work = self.encoder.encode if tokenizer is None else encode
        if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:
            return work(texts)
        return await asyncio.get_running_loop().run_in_executor(self.pool, work, texts)

    def tokenizer(self, truncation: str) -> Any:
        """The model's tokenizer truncating at max_tokens on the ``right`` or ``left``, or not at all (``none``)."""
        if truncation not in self._tokenizers:
            from tokenizers import Tokenizer

            variant = Tokenizer.from_str(self.encoder.tokenizer.to_str())
            variant.no_padding()
            if truncation == "none":
                variant.no_truncation()
            else:
                variant.enable_truncation(max_length=self.max_tokens, direction=truncation)
            self._tokenizers[truncation] = variant
        return self._tokenizers[truncation]

    async def infer(self, ids: list[list[int]], length: int) -> np.ndarray:
        """One Triton request of ``ids`` padded to ``length``; sentence_embedding float32 [batch, 768]."""
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.utils import InferenceServerException

        input_ids, attention_mask = self.encoder.pad(ids, length=length)
        inputs = []
        for name, array in ((INPUT_IDS, input_ids), (ATTENTION_MASK, attention_mask)):
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        self.metrics.batch_size.observe(input_ids.shape[0])
        start = time.perf_counter()
        try:
            result = await self.client.infer(
                self.config.model_name,
                inputs,
                outputs=[grpcclient.InferRequestedOutput(SENTENCE_EMBEDDING)],  # not last_hidden_state: [b, seq, 768]
                client_timeout=self.config.triton_timeout_s,
            )
        except InferenceServerException as error:
            api_error = triton_error(error, self.config.triton_timeout_s)
            self.metrics.triton_errors.labels(api_error.code).inc()
            self.log_triton_error(error)
            raise api_error from None
        finally:
            self.metrics.infer.observe(time.perf_counter() - start)
        embeddings = result.as_numpy(SENTENCE_EMBEDDING)
        if embeddings is None or embeddings.shape != (input_ids.shape[0], EMBEDDING_DIM):
            self.metrics.triton_errors.labels("contract").inc()
            log.error("Triton returned %s for a batch of %d", None if embeddings is None else embeddings.shape, input_ids.shape[0])
            raise ApiError(500, "The model server returned an unexpected result", "triton_error", type_="server_error")
        return embeddings

    async def embed(
        self, texts: list[str] | None, token_ids: list[list[int]] | None, truncation: str | None = None
    ) -> tuple[np.ndarray, int]:
        """Embeddings [n, 768] (unit rows, input order) and the tokens sent. ``truncation``: None, the
        config's; else TEI's "right", "left" or "none" (an over-long input is then a 400)."""
        start = time.perf_counter()
        tokenizer = None if truncation is None or (truncation == "right" and self.config.truncate) else self.tokenizer(truncation)
        ids = await self.tokenize(texts, tokenizer) if texts is not None else token_ids or []
        ids = fit_lengths(ids, self.max_tokens, self.config.truncate if truncation is None else truncation != "none")
        self.metrics.tokenize.observe(time.perf_counter() - start)
        lengths = [len(row) for row in ids]
        tokens = sum(lengths)
        check_request_tokens(tokens, self.config.max_request_tokens)
        assert self.batcher is not None
        plan = plan_batches(lengths, self.config.length_buckets, self.batcher.max_batch)
        for length, members in plan:
            for _ in members:
                self.metrics.sequence_length.observe(length)
        out = np.empty((len(ids), EMBEDDING_DIM), dtype=np.float32)
        # The gRPC deadline bounds each call; this bounds each wait (queueing included), whatever happens below it.
        bound = self.config.triton_timeout_s + 1.0
        if len(plan) == 1:  # the common case: one piece, awaited as it is (no task, no window)
            length, members = plan[0]
            try:
                out[members] = await asyncio.wait_for(self.batcher.submit([ids[i] for i in members], length), bound)
            except asyncio.TimeoutError as error:
                raise triton_error(error, self.config.triton_timeout_s) from None
            return out, tokens
        await self.run_window(ids, plan, out, bound)
        return out, tokens

    async def run_window(self, ids: list[list[int]], plan: list[tuple[int, list[int]]], out: np.ndarray, bound: float) -> None:
        """Send ``plan``'s pieces with at most REQUEST_WINDOW queued or in flight, the next one as one
        returns (so other callers' pieces queue between them), rows written into ``out``. A failure or
        a wait past ``bound`` cancels the pieces still out (queued ones are skipped, sent ones dropped)."""
        assert self.batcher is not None
        pending: dict[asyncio.Future[np.ndarray], list[int]] = {}
        queue = iter(plan)
        try:
            while True:
                while len(pending) < REQUEST_WINDOW:
                    step = next(queue, None)
                    if step is None:
                        break
                    length, members = step
                    pending[self.batcher.submit([ids[i] for i in members], length)] = members
                if not pending:
                    return
                done, _ = await asyncio.wait(pending, timeout=bound, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    raise triton_error(asyncio.TimeoutError(), self.config.triton_timeout_s)
                for future in done:
                    out[pending.pop(future)] = future.result()
        finally:
            for future in pending:
                future.cancel()

    async def ready(self) -> tuple[bool, str]:
        """Is the model READY in Triton? The background probe's last answer (embeddings_gateway/health.py):
        no wait on Triton here, so /ready is as fast as the loop."""
        return self.vitals.ready()

    def follow_batch_size(self, client: Any) -> None:
        """Take the served model's max_batch_size from Triton (the probe thread calls this, with its
        synchronous gRPC client, each time the model becomes READY and before it says so): a Triton
        restarted with another max_batch_size (a rolled release) is never sent more. The model config
        is one of Triton's restricted APIs: the key file is read each time (a new key works without a
        gateway restart). One int assignment: the loop reads it whole."""
        assert self.batcher is not None
        config = client.get_model_config(
            self.config.model_name,
            headers=triton_key_headers(self.config.triton_key_file, "grpc"),
            as_json=True,
            client_timeout=min(READY_DEADLINE_S, self.config.triton_timeout_s),
        )
        size = int(config.get("config", {}).get("max_batch_size", 0) or 0)
        if size > 0 and size != self.batcher.max_batch:
            log.info("Triton serves %s with max_batch_size %d (was %d)", self.config.model_name, size, self.batcher.max_batch)
            self.batcher.max_batch = size

    # -- endpoints ------------------------------------------------------------------------

    async def read_body(self, declared: str, receive: Any) -> bytes:
        """The body from ASGI ``receive``, refused with 413 as soon as it passes max_body_bytes (never
        read unbounded; ``declared``: the Content-Length header, "" when none). ClientGone when the
        client hangs up first."""
        limit = self.config.max_body_bytes
        too_large = ApiError(413, f"Request body too large: the limit is {limit} bytes", "request_too_large")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            if not message.get("more_body", False):
                return b"".join((*chunks, chunk)) if chunks else chunk
            chunks.append(chunk)

    async def embeddings(self, scope: dict[str, Any], receive: Any, send: Any) -> int:
        """POST /v1/embeddings as a plain ASGI handler, the hot path: no Starlette request, routing or
        response objects. Answers like the Starlette handlers do (errors in OpenAI's shape, the same
        headers); returns the status sent (499: the client hung up before the body was read)."""
        authorization, declared = request_headers(scope)
        headers: list[tuple[bytes, bytes]] = []
        try:
            self.authorize(authorization)
            status, payload = 200, await self.embed_body(await self.read_body(declared, receive))
        except ApiError as error:
            status, payload = error.status, error.body()
            headers = [(k.lower().encode(), v.encode()) for k, v in error_headers(error).items()]
        except ClientGone:
            return 499
        except Exception as error:
            log.error("unexpected error on POST /v1/embeddings", exc_info=error)
            status, payload = 500, INTERNAL_ERROR.body()
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return status

    async def embed_body(self, body: bytes) -> bytes:
        """The response JSON of a /v1/embeddings body (ApiError otherwise)."""
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError(400, "We could not parse the JSON body of your request", "invalid_json") from None
        parsed = parse_request(
            data, self.config.model_name, self.config.max_inputs, self.config.default_prompt, self.vocab_size, self.config.token_ids_input
        )
        assert self.admission is not None
        async with self.admission.slot():
            start = time.perf_counter()
            vectors, tokens = await self.embed(parsed.texts, parsed.token_ids)
            vectors = truncate(vectors, parsed.dimensions)
            payload = await self.off_loop(len(vectors), response_body, vectors, parsed.encoding_format, self.config.model_name, tokens)
            self.metrics.request.observe(time.perf_counter() - start)
        self.metrics.inputs.inc(len(parsed))
        self.metrics.tokens.inc(tokens)
        return payload

    async def off_loop(self, rows: int, work: Callable[..., bytes], *args: Any) -> bytes:
        """``work(*args)`` (an answer's JSON) on the pool when the answer is large, so the loop keeps serving."""
        if rows <= INLINE_RESPONSE_ROWS:
            return work(*args)
        return await asyncio.get_running_loop().run_in_executor(self.pool, work, *args)

    # -- Text Embeddings Inference's native API (embeddings_gateway/tei.py) --------------------

    async def tei(self, scope: dict[str, Any], receive: Any, send: Any) -> int:
        """TEI's routes as a plain ASGI handler (errors in TEI's shape); returns the status sent."""
        authorization, declared = request_headers(scope)
        path, method = scope.get("path", ""), scope["method"]
        headers: list[tuple[bytes, bytes]] = []
        try:
            try:
                want, _ = TEI_ROUTES[path]
                if method != want:
                    headers = [(b"allow", want.encode())]
                    raise tei.TeiError(f"Method not allowed ({method} {path}); use {want}", "Validation", 405)
                self.authorize(authorization)
                if path == "/info":
                    assert self.batcher is not None
                    c = self.config
                    info = tei.info(
                        c.model_name,
                        c.max_concurrency,
                        self.max_tokens,
                        c.max_request_tokens,
                        self.batcher.max_batch,
                        c.max_inputs,
                        c.truncate,
                    )
                    status, payload = 200, json.dumps(info).encode()
                else:
                    body = await self.read_body(declared, receive)
                    try:
                        data = json.loads(body)
                    except ValueError as error:
                        raise tei.TeiError(f"Failed to parse the request body as JSON: {error}", "Validation", 400) from None
                    work = self.tei_tokenize if path == "/tokenize" else self.tei_embed
                    status, payload = 200, await work(data)
            except ApiError as error:
                raise tei.from_api_error(error) from None
        except tei.TeiError as error:
            status, payload = error.status, error.body()
            if error.status in (429, 424, 503):
                headers.append((b"retry-after", b"1"))
        except ClientGone:
            return 499
        except Exception as error:
            log.error("unexpected error on %s %s", method, path, exc_info=error)
            status, payload = 500, tei.TeiError("The server had an error while processing your request", "Backend", 500).body()
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return status

    async def tei_embed(self, data: Any) -> bytes:
        """``POST /embed`` (and ``POST /``): TEI's EmbedResponse, a list of float lists."""
        c = self.config
        parsed = tei.parse_embed(data, c.max_inputs, c.truncate, c.token_ids_input, self.vocab_size)
        assert self.admission is not None
        async with self.admission.slot():
            start = time.perf_counter()
            truncation = parsed.direction if parsed.truncate else "none"
            vectors, tokens = await self.embed(parsed.texts, parsed.token_ids, truncation)
            if parsed.dimensions != EMBEDDING_DIM:
                # TEI cuts to `dimensions`, then normalises when asked; the model's own output is already unit length.
                vectors = (
                    truncate(vectors, parsed.dimensions) if parsed.normalize else np.ascontiguousarray(vectors[:, : parsed.dimensions])
                )
            payload = await self.off_loop(len(vectors), tei.embed_response, vectors)
            self.metrics.request.observe(time.perf_counter() - start)
        self.metrics.inputs.inc(len(parsed))
        self.metrics.tokens.inc(tokens)
        return payload

    async def tei_tokenize(self, data: Any) -> bytes:
        """``POST /tokenize``: TEI's list of SimpleToken lists (no Triton call, no slot needed)."""
        parsed = tei.parse_tokenize(data, self.config.max_inputs)
        tokenizer = self.tokenizer("right") if self.config.truncate else self.tokenizer("none")
        encodings = tokenizer.encode_batch(parsed.texts, add_special_tokens=parsed.add_special_tokens)
        out = [
            tei.simple_tokens(text, e.ids, e.tokens, e.offsets, e.special_tokens_mask)
            for text, e in zip(parsed.texts, encodings, strict=True)
        ]
        return json.dumps(out).encode()

    def model_object(self) -> dict[str, Any]:
        return {"id": self.config.model_name, "object": "model", "created": self.created, "owned_by": "triton-embeddinggemma"}

    async def models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        self.authorize(request.headers.get("authorization", ""))
        return JSONResponse({"object": "list", "data": [self.model_object()]})

    async def model(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        self.authorize(request.headers.get("authorization", ""))
        name = request.path_params["model"]
        if name != self.config.model_name:
            raise ApiError(
                404, f"The model `{name}` does not exist; this server serves `{self.config.model_name}`", "model_not_found", "model"
            )
        return JSONResponse(self.model_object())

    async def health(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    async def readiness(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        ok, reason = await self.ready()
        body = {"ready": ok, "model": self.config.model_name, **({"reason": reason} if reason else {})}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics_text(self, request: Any) -> Any:
        from starlette.responses import Response

        payload, content_type = self.metrics.exposition()
        return Response(payload, media_type=content_type)

    # -- the ASGI app ---------------------------------------------------------------------

    def app(self) -> Any:
        """The Starlette app, wrapped in the request counter."""
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.responses import Response
        from starlette.routing import Route

        def error_response(error: ApiError, headers: dict[str, str] | None = None) -> Response:
            return Response(error.body(), status_code=error.status, media_type="application/json", headers=headers)

        async def on_api_error(request: Any, error: Exception) -> Response:
            assert isinstance(error, ApiError)
            return error_response(error, error_headers(error) or None)

        async def on_http_error(request: Any, error: Exception) -> Response:
            assert isinstance(error, HTTPException)
            where = f"{request.method} {request.url.path}"
            if error.status_code == 404:
                return error_response(ApiError(404, f"Invalid URL ({where})", "unknown_url"))
            if error.status_code == 405:
                return error_response(ApiError(405, f"Method not allowed ({where})", "method_not_allowed"), dict(error.headers or {}))
            return error_response(ApiError(error.status_code, str(error.detail), None))

        async def on_unexpected(request: Any, error: Exception) -> Response:
            log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
            return error_response(INTERNAL_ERROR)

        class Embeddings:  # an ASGI endpoint (not a function: Starlette passes it scope, receive and send)
            async def __call__(inner, scope: dict[str, Any], receive: Any, send: Any) -> None:
                await self.embeddings(scope, receive, send)

        routes = [
            Route("/v1/embeddings", Embeddings(), methods=["POST"]),  # Front answers POST before Starlette; others: 405
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.model, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/", self.health, methods=["GET"]),  # TEI's public health alias (POST / embeds: Front)
            Route("/ready", self.readiness, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
        ]
        handlers = {ApiError: on_api_error, HTTPException: on_http_error, Exception: on_unexpected}
        return Front(Starlette(routes=routes, exception_handlers=handlers, lifespan=self.lifespan), self)


class Front:
    """The ASGI app: ``POST /v1/embeddings`` straight to :meth:`Gateway.embeddings` (the hot path),
    everything else to Starlette; every HTTP answer counted by endpoint and status code."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app, self.gateway, self.metrics = app, gateway, gateway.metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/v1/embeddings" and scope["method"] == "POST":
            status = 500
            try:
                status = await self.gateway.embeddings(scope, receive, send)
            finally:
                self.metrics.requests.labels("embeddings", str(status)).inc()
            return
        if path in TEI_ROUTES and not (path == "/" and scope["method"] in ("GET", "HEAD")):  # GET /: TEI's public health alias
            status = 500
            try:
                status = await self.gateway.tei(scope, receive, send)
            finally:
                self.metrics.requests.labels(TEI_ROUTES[path][1], str(status)).inc()
            return
        endpoint = ENDPOINTS.get(path) or ("models" if path.startswith("/v1/models/") else "other")
        status = 500

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()


def prepare(config_path: str | Path) -> Gateway:
    """Config, key file and tokenizer loaded and checked (ConfigError / EmbeddingError otherwise)."""
    return Gateway(*load(config_path))


def load(config_path: str | Path) -> tuple[GatewayConfig, TextEncoder, frozenset[str] | None]:
    """The config, the tokenizer and the key hashes, checked (ConfigError / EmbeddingError otherwise)."""
    config = load_config(config_path)
    keys = load_key_hashes(config.api_key_sha256_file) if config.api_key_sha256_file else None
    if not Path(config.tokenizer_dir).is_dir():
        raise ConfigError(f"tokenizer_dir {config.tokenizer_dir} is not a directory")
    encoder = TextEncoder(config.tokenizer_dir, max_length=config.max_tokens)
    return config, encoder, keys


# workers = 0 (the default): one worker per two usable cores, at least one, at most MAX_AUTO_WORKERS.
# Half the cores: Triton's own CPU side (its gRPC front end, the CPU stand-in's whole model) shares
# the host; measured on a 2-core machine where Triton computes on the CPU, a second worker lowered
# embeddings/s (callers split into smaller Triton batches, each costing CPU in both processes).
MAX_AUTO_WORKERS = 4


def worker_count(config: GatewayConfig) -> int:
    """The config's ``workers``, or (0) half the usable cores, from 1 up to MAX_AUTO_WORKERS."""
    if config.workers:
        return config.workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores // 2, MAX_AUTO_WORKERS))


def listening_socket(address: str, port: int) -> socket.socket:
    """A TCP socket bound to ``address:port`` with SO_REUSEPORT and listening: one per worker, so the
    kernel spreads new connections over the workers (OSError when the port is taken by anything else)."""
    host = "127.0.0.1" if address == "localhost" else address
    # IPPROTO_TCP spelt out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    # it a response's body waits for the client's delayed ACK of its headers (40 ms a request, measured).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(app: Any, config: GatewayConfig) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=config.listen_address,
        port=config.listen_port,
        log_level=config.log_level,
        access_log=False,  # per-request lines cost CPU at load; /metrics counts requests
        loop="uvloop",  # libuv's loop: less CPU per request than asyncio's (requirements.in)
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(config.shutdown_timeout_s),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embeddings_gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the gateway's JSON config")
    parser.add_argument("--check", action="store_true", help="validate config, key file and tokenizer, then exit")
    args = parser.parse_args(argv)
    try:
        config, encoder, keys = load(args.config)
    except (ConfigError, EmbeddingError) as error:
        print(f"gateway: {error}", file=sys.stderr)
        return 2
    if args.check:
        print(f"gateway: config {args.config} is valid", file=sys.stderr)
        return 0
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s", stream=sys.stderr)
    workers = worker_count(config)
    if workers > 1:
        return Supervisor(config, encoder, keys, workers).run()
    import uvicorn

    gateway = Gateway(config, encoder, keys)
    try:
        gateway.responder = HealthResponder(gateway.vitals, config.listen_address, config.health_port)
    except OSError as error:
        print(
            f"gateway: cannot listen on {config.listen_address}:{config.health_port} (health_port): {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    server = uvicorn.Server(uvicorn_config(gateway.app(), config))
    server.run()
    return 0 if server.started else 1


class Supervisor:
    """Several workers on one port: the supervisor binds one SO_REUSEPORT socket per worker for
    listen_port and for health_port (a taken port is one line here, before any worker starts), forks
    the workers (each a Gateway on its own event loop, Triton channel, micro-batcher and health
    responder, with its share of max_concurrency and max_queue), and then only watches them: SIGTERM /
    SIGINT stop them gracefully (each drains its requests within shutdown_timeout_s) and the
    supervisor then dies by the same signal, as a single uvicorn process does; SIGHUP is passed on (each
    worker re-reads the key file); a worker that dies is started again, and the supervisor gives up
    (exit 1) when workers die within CRASH_WINDOW_S of their start CRASH_LIMIT times in a row.
    /metrics: any worker answers for all (Metrics: prometheus_client's multiprocess mode, in a
    directory of the supervisor's, removed when it exits)."""

    CRASH_WINDOW_S = 10.0
    CRASH_LIMIT = 3

    def __init__(self, config: GatewayConfig, encoder: TextEncoder, keys: frozenset[str] | None, workers: int) -> None:
        self.config, self.encoder, self.keys, self.workers = config, encoder, keys, workers
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, start time)
        self.signals: list[int] = []

    def run(self) -> int:
        import shutil
        import tempfile

        c = self.config
        sockets: list[tuple[socket.socket, socket.socket]] = []
        try:
            for _ in range(self.workers):
                listener = self._bind(c.listen_port, "listen_port")
                sockets.append((listener, self._bind(c.health_port, "health_port")))
        except OSError as error:
            print(f"gateway: {error}", file=sys.stderr)
            for pair in sockets:
                for sock in pair:
                    sock.close()
            return 1
        directory = tempfile.mkdtemp(prefix="embeddings-gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # before any worker imports prometheus_client
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda number, frame: self.signals.append(number))
        log.info("starting %d workers on %s:%s (their metrics: %s)", self.workers, c.listen_address, c.listen_port, directory)
        try:
            code, stopped_by = self._watch(sockets)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        if stopped_by is not None and code == 0:
            # As a lone uvicorn does: a clean stop on a signal dies by that signal (systemd: success).
            signal.signal(stopped_by, signal.SIG_DFL)
            signal.raise_signal(stopped_by)
        return code

    def _bind(self, port: int, key: str) -> socket.socket:
        try:
            return listening_socket(self.config.listen_address, port)
        except OSError as error:
            raise OSError(f"cannot listen on {self.config.listen_address}:{port} ({key}): {error.strerror or error}") from None

    def _start(self, index: int, sockets: list[tuple[socket.socket, socket.socket]]) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the loop's own handler (lifespan)
                for other, pair in enumerate(sockets):
                    if other != index:
                        for sock in pair:
                            sock.close()
                code = serve_worker(self.config, self.encoder, self.keys, index, self.workers, *sockets[index])
            except BaseException as error:
                log.error("worker %d failed", index, exc_info=error)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = (index, time.monotonic())

    def _watch(self, sockets: list[tuple[socket.socket, socket.socket]]) -> tuple[int, int | None]:
        """Start the workers and watch them until all have ended: (exit code, the stopping signal or None)."""
        from prometheus_client import multiprocess

        for index in range(self.workers):
            self._start(index, sockets)
        stopping: int | None = None
        deadline = math.inf
        crashes, code = 0, 0
        while self.children:
            while self.signals:
                number = self.signals.pop(0)
                if number == signal.SIGHUP:
                    for pid in self.children:
                        os.kill(pid, signal.SIGHUP)
                elif stopping is None:
                    stopping = number
                    deadline = time.monotonic() + self.config.shutdown_timeout_s + 5
                    for pid in self.children:
                        os.kill(pid, signal.SIGTERM)
            if time.monotonic() > deadline:
                for pid in self.children:
                    os.kill(pid, signal.SIGKILL)
                deadline = math.inf
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.1)
                continue
            index, started = self.children.pop(pid)
            multiprocess.mark_process_dead(pid)
            clean = (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0) or (
                os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
            )
            if stopping is not None:
                code = code or (0 if clean else 1)
                continue
            log.error("worker %d (pid %d) ended (status %d); starting it again", index, pid, status)
            crashes = crashes + 1 if time.monotonic() - started < self.CRASH_WINDOW_S else 1
            if crashes >= self.CRASH_LIMIT:
                log.error("workers keep failing at start; stopping the gateway")
                self.signals.append(signal.SIGTERM)
                code = 1
                continue
            self._start(index, sockets)
        return code, stopping


def serve_worker(
    config: GatewayConfig,
    encoder: TextEncoder,
    keys: frozenset[str] | None,
    index: int,
    workers: int,
    listener: socket.socket,
    health: socket.socket,
) -> int:
    """One worker of a Supervisor: a Gateway serving ``listener`` (and its health responder ``health``)."""
    import uvicorn

    gateway = Gateway(config, encoder, keys, index, workers)
    gateway.responder = HealthResponder(gateway.vitals, config.listen_address, config.health_port, sock=health)
    server = uvicorn.Server(uvicorn_config(gateway.app(), config))
    server.run(sockets=[listener])
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
