"""EmbeddingGemma-300m as both the gateway and the verify runtime see it: tensor names, dimensions,
the model card's prompts, Matryoshka truncation, the tokenizer with padding, and the header of
Triton's restricted APIs. One module, shipped with each host copy (embeddings_gateway/ and verify/),
so neither imports the other; deploys/ reads the key header from here too.

What the model expects (model card, onnx-community/embeddinggemma-300m-ONNX): queries are prefixed
``task: search result | query: `` (or another task), documents ``title: {title or "none"} | text: ``;
inputs ``input_ids`` / ``attention_mask`` int64 ``[batch, seq]``; output ``sentence_embedding`` float32
``[batch, 768]``, L2-normalised. Matryoshka sizes 512/256/128 are the leading components,
re-normalised. Triton's dynamic batcher merges only requests of equal shape, so a batch is padded to
one length (its longest text, rounded up to ``pad_multiple``) on the right.

Needs numpy (and tokenizers for :class:`TextEncoder`); nothing from the deploy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
SENTENCE_EMBEDDING = "sentence_embedding"
EMBEDDING_DIM = 768
MATRYOSHKA_DIMS = (768, 512, 256, 128)
MAX_LENGTH = 2048  # EmbeddingGemma's context
# The header Triton's restricted APIs (model config, repository index, ...) want; its value is the
# host's key (deploys/triton/triton_api.py). Lower case: gRPC metadata keys must be.
TRITON_KEY_HEADER = "triton-api-key"
# Over gRPC Triton (2.51, 25.05) checks the metadata key with this prefix, whatever the option says.
TRITON_GRPC_KEY_PREFIX = "triton-grpc-protocol-"
QUERY_TASKS = (
    "search result",
    "question answering",
    "fact checking",
    "classification",
    "clustering",
    "sentence similarity",
    "code retrieval",
)


class EmbeddingError(Exception):
    """Base class of the client's errors; the message is meant for people."""


def triton_key_headers(key_file: str | Path, protocol: str = "http") -> dict[str, str]:
    """The header (``protocol`` http) or gRPC metadata (grpc) Triton's restricted APIs want, its value
    read from ``key_file`` ({} when ``key_file`` is ''); EmbeddingError naming the file when it
    cannot be read."""
    if not key_file:
        return {}
    try:
        key = Path(key_file).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise EmbeddingError(f"cannot read Triton's API key file {key_file}: {error.strerror or error}") from None
    if not key:
        raise EmbeddingError(f"Triton's API key file {key_file} is empty")
    return {(TRITON_GRPC_KEY_PREFIX if protocol == "grpc" else "") + TRITON_KEY_HEADER: key}


def query_text(text: str, task: str = "search result") -> str:
    """``text`` with EmbeddingGemma's query prefix for ``task`` (one of QUERY_TASKS)."""
    if task not in QUERY_TASKS:
        raise ValueError(f"unknown task {task!r}; use one of: {', '.join(QUERY_TASKS)}")
    return f"task: {task} | query: {text}"


def document_text(text: str, title: str | None = None) -> str:
    """``text`` with EmbeddingGemma's document prefix (title "none" when absent)."""
    return f"title: {title or 'none'} | text: {text}"


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero, NaN stays NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, np.float32(1e-12))).astype(np.float32)


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka: the first ``dim`` components of each row, re-normalised."""
    if dim not in MATRYOSHKA_DIMS:
        raise ValueError(f"dim {dim} is not a Matryoshka size of EmbeddingGemma; use one of {MATRYOSHKA_DIMS}")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    return embeddings if dim == embeddings.shape[-1] else normalise(embeddings[..., :dim])


class TextEncoder:
    """The model's own tokenizer (``tokenizer.json``), truncation and right padding."""

    def __init__(self, tokenizer_dir: str | Path, max_length: int = MAX_LENGTH, pad_multiple: int = 8) -> None:
        from tokenizers import Tokenizer  # lazy: the rest of the module needs numpy only

        directory = Path(tokenizer_dir)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise EmbeddingError(f"no tokenizer.json in {directory}")
        config = _read_json(directory / "tokenizer_config.json")
        model_max = config.get("model_max_length")
        # Hub configs often say 1e30 ("no limit"): only a smaller, sane value lowers ours.
        if isinstance(model_max, int) and 0 < model_max < max_length:
            max_length = model_max
        self.max_length = max_length
        self.pad_multiple = max(1, pad_multiple)
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        pad_token = config.get("pad_token") if isinstance(config.get("pad_token"), str) else "<pad>"
        pad_id = self.tokenizer.token_to_id(pad_token)
        self.pad_id = 0 if pad_id is None else pad_id  # Gemma's <pad> is 0

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (special tokens added, truncated to max_length). ``encode_batch_fast``:
        the same ids without the character offsets nothing here reads (a quarter less CPU)."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch_fast(list(texts))]

    def pad(self, id_lists: Sequence[Sequence[int]], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), int64 ``[batch, length]``, right-padded. ``length`` defaults
        to the longest list rounded up to ``pad_multiple`` (capped at max_length)."""
        longest = max((len(ids) for ids in id_lists), default=1)
        if length is None:
            length = min(self.max_length, -(-longest // self.pad_multiple) * self.pad_multiple)
            length = max(length, longest)
        if length < longest:
            raise ValueError(f"pad length {length} is shorter than the longest input ({longest} tokens)")
        ids = np.full((len(id_lists), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(id_lists), length), dtype=np.int64)
        for row, tokens in enumerate(id_lists):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
