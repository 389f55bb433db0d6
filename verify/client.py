"""Client for EmbeddingGemma-300m served by Triton: task prefixes, tokenising, padding, Matryoshka.

Usage::

    from verify.client import EmbeddingClient

    client = EmbeddingClient("127.0.0.1:6000", tokenizer_dir="/opt/triton-embeddinggemma/tokenizer")
    queries = client.embed_queries(["how do I rotate an NGC key?"], dim=256)
    docs = client.embed_documents(["Rotate keys every 90 days."], titles=["Key rotation"])
    scores = queries @ docs.T  # cosine: every row is L2-normalised

Needs only numpy, tokenizers and tritonclient (``[http]`` or ``[grpc]`` for the protocol used).

The model's contract (prompts, Matryoshka sizes, tensor names, padding) is embeddinggemma.py's,
shared with the embeddings gateway.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# The model's contract (prompts, dimensions, tensor names, tokenizer, Triton's key header) is shared
# with the gateway: embeddinggemma.py. Re-exported here, so ``from verify.client import query_text`` reads on.
from embeddinggemma import (
    ATTENTION_MASK,
    EMBEDDING_DIM,
    INPUT_IDS,
    MATRYOSHKA_DIMS,
    MAX_LENGTH,
    QUERY_TASKS,
    SENTENCE_EMBEDDING,
    TRITON_GRPC_KEY_PREFIX,
    TRITON_KEY_HEADER,
    EmbeddingError,
    TextEncoder,
    document_text,
    normalise,
    query_text,
    triton_key_headers,
    truncate,
)

__all__ = [
    "ATTENTION_MASK",
    "EMBEDDING_DIM",
    "INPUT_IDS",
    "MATRYOSHKA_DIMS",
    "MAX_LENGTH",
    "QUERY_TASKS",
    "SENTENCE_EMBEDDING",
    "TRITON_GRPC_KEY_PREFIX",
    "TRITON_KEY_HEADER",
    "Backend",
    "EmbeddingClient",
    "EmbeddingError",
    "ModelContractError",
    "TextEncoder",
    "TritonBackend",
    "TritonUnavailable",
    "document_text",
    "normalise",
    "query_text",
    "triton_key_headers",
    "truncate",
]


class TritonUnavailable(EmbeddingError):
    """Triton could not be reached, or the model is not ready, within the timeout."""


class ModelContractError(EmbeddingError):
    """The served model's inputs/outputs are not EmbeddingGemma's."""


class Backend(Protocol):
    """Anything that maps (input_ids, attention_mask) to sentence embeddings [batch, 768]."""

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


@dataclass
class TritonBackend:
    """One Triton model over HTTP or gRPC (tritonclient); errors become TritonUnavailable."""

    url: str
    model_name: str = "embeddinggemma"
    protocol: str = "http"
    timeout_s: float = 30.0
    key_file: str = ""  # Triton's restricted-API key (model config, repository index); '' = none sent

    def __post_init__(self) -> None:
        if self.protocol not in ("http", "grpc"):
            raise ValueError(f"protocol {self.protocol!r}: use http or grpc")
        self._client: Any = None
        self._module: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.protocol == "http":
                import tritonclient.http as module

                self._client = module.InferenceServerClient(self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s)
            else:
                import tritonclient.grpc as module

                self._client = module.InferenceServerClient(self.url)
            self._module = module
        return self._client

    def _tritonclient(self) -> Any:
        """The tritonclient module of the protocol (tritonclient.http or tritonclient.grpc)."""
        self.client  # noqa: B018 - imports the module on first use
        return self._module

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a client method; any transport or server error becomes TritonUnavailable."""
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except Exception as error:
            message = str(error).strip() or type(error).__name__
            raise TritonUnavailable(f"{what} failed at {self.protocol}://{self.url}: {message}") from None

    def model_states(self) -> dict[str, tuple[str, str]]:
        """{model name: (state, reason)} from the repository index (empty when unavailable)."""
        try:
            kwargs = {"as_json": True} if self.protocol == "grpc" else {}
            index = self._call(
                "repository index", "get_model_repository_index", headers=triton_key_headers(self.key_file, self.protocol), **kwargs
            )
        except (TritonUnavailable, EmbeddingError):
            return {}
        models = index.get("models", []) if isinstance(index, dict) else index
        return {m.get("name", ""): (m.get("state", "UNKNOWN"), m.get("reason", "")) for m in models}

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the server is live and the model ready; TritonUnavailable after ``timeout_s``."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            try:
                if self._call("liveness check", "is_server_live"):
                    if self._call("model readiness check", "is_model_ready", self.model_name):
                        return
                    state, reason = self.model_states().get(self.model_name, ("absent", "not in the model repository"))
                    last = f"model {self.model_name!r} is not ready (state {state}{': ' + reason if reason else ''})"
                else:
                    last = "server is not live"
            except TritonUnavailable as error:
                last = str(error)
                self._client = None  # reconnect on the next try
            if time.monotonic() >= deadline:
                raise TritonUnavailable(f"Triton at {self.protocol}://{self.url} not ready within {timeout_s:.0f}s: {last}")
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def metadata(self) -> dict[str, Any]:
        """Model metadata (name, platform, inputs, outputs) as a dict."""
        kwargs = {"as_json": True} if self.protocol == "grpc" else {}
        return self._call("model metadata", "get_model_metadata", self.model_name, **kwargs)

    def max_batch_size(self) -> int:
        """The model config's max_batch_size (0: no batching)."""
        kwargs = {"as_json": True} if self.protocol == "grpc" else {}
        config = self._call(
            "model config", "get_model_config", self.model_name, headers=triton_key_headers(self.key_file, self.protocol), **kwargs
        )
        config = config.get("config", config)  # gRPC wraps it
        return int(config.get("max_batch_size", 0))

    def check_contract(self) -> None:
        """ModelContractError unless the model takes/returns EmbeddingGemma's tensors."""
        meta = self.metadata()
        inputs = {t["name"]: t["datatype"] for t in meta.get("inputs", [])}
        outputs = {t["name"]: (t["datatype"], [int(d) for d in t.get("shape", [])]) for t in meta.get("outputs", [])}
        for name in (INPUT_IDS, ATTENTION_MASK):
            if inputs.get(name) != "INT64":
                raise ModelContractError(f"model {self.model_name!r} at {self.url}: input {name!r} INT64 expected, server has {inputs}")
        datatype, shape = outputs.get(SENTENCE_EMBEDDING, (None, []))
        if datatype != "FP32" or not shape or shape[-1] != EMBEDDING_DIM:
            raise ModelContractError(
                f"model {self.model_name!r} at {self.url}: output {SENTENCE_EMBEDDING!r} FP32 [.., {EMBEDDING_DIM}] expected, "
                f"server has {sorted(outputs)}"
            )

    def server_version(self) -> str:
        """Triton's version string."""
        kwargs = {"as_json": True} if self.protocol == "grpc" else {}
        return str(self._call("server metadata", "get_server_metadata", **kwargs).get("version", ""))

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """One request; returns sentence_embedding float32 ``[batch, 768]``."""
        module = self._tritonclient()
        inputs = []
        for name, array in ((INPUT_IDS, input_ids), (ATTENTION_MASK, attention_mask)):
            tensor = module.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.int64))
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(SENTENCE_EMBEDDING)]
        result = self._call("inference", "infer", self.model_name, inputs, outputs=outputs)
        array = result.as_numpy(SENTENCE_EMBEDDING)
        if array is None:
            raise ModelContractError(f"model {self.model_name!r} at {self.url} returned no {SENTENCE_EMBEDDING!r}")
        return np.asarray(array, dtype=np.float32)

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None


class EmbeddingClient:
    """Embed queries and documents with EmbeddingGemma on Triton (HTTP or gRPC)."""

    def __init__(
        self,
        url: str,
        tokenizer_dir: str | Path,
        model_name: str = "embeddinggemma",
        protocol: str = "http",
        max_length: int = MAX_LENGTH,
        batch_size: int | None = None,
        timeout_s: float = 30.0,
        pad_multiple: int = 8,
        backend: Backend | None = None,
    ) -> None:
        self.encoder = TextEncoder(tokenizer_dir, max_length=max_length, pad_multiple=pad_multiple)
        self.backend: Backend = backend or TritonBackend(url, model_name=model_name, protocol=protocol, timeout_s=timeout_s)
        self._batch_size = batch_size

    @property
    def batch_size(self) -> int:
        """Texts per request: as given, else the server's max_batch_size (1 without batching)."""
        if self._batch_size is None:
            server_max = self.backend.max_batch_size() if isinstance(self.backend, TritonBackend) else 8
            self._batch_size = max(1, server_max)
        return self._batch_size

    def embed_queries(self, texts: Iterable[str], task: str = "search result", dim: int = EMBEDDING_DIM) -> np.ndarray:
        """Embeddings ``[n, dim]`` of queries, with the task prefix."""
        return self.embed_texts([query_text(t, task) for t in texts], dim=dim)

    def embed_documents(self, texts: Iterable[str], titles: Iterable[str | None] | None = None, dim: int = EMBEDDING_DIM) -> np.ndarray:
        """Embeddings ``[n, dim]`` of documents, each with its optional title."""
        texts = list(texts)
        titles = list(titles) if titles is not None else [None] * len(texts)
        if len(titles) != len(texts):
            raise ValueError(f"{len(titles)} titles for {len(texts)} documents")
        return self.embed_texts([document_text(t, title) for t, title in zip(texts, titles, strict=True)], dim=dim)

    def embed_texts(self, texts: Sequence[str], dim: int = EMBEDDING_DIM) -> np.ndarray:
        """Embeddings of already-prefixed texts. Texts of similar length share a request (less
        padding); the result keeps the input order."""
        if dim not in MATRYOSHKA_DIMS:
            raise ValueError(f"dim {dim} is not a Matryoshka size of EmbeddingGemma; use one of {MATRYOSHKA_DIMS}")
        ids = self.encoder.encode(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), EMBEDDING_DIM), dtype=np.float32)
        size = self.batch_size
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            input_ids, mask = self.encoder.pad([ids[i] for i in chunk])
            out[chunk] = self.backend.infer(input_ids, mask)
        return truncate(out, dim)

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close:
            close()

    def __enter__(self) -> EmbeddingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
