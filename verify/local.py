"""Local ONNX Runtime on the same model files Triton serves: the parity reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verify.client import ATTENTION_MASK, INPUT_IDS, SENTENCE_EMBEDDING, EmbeddingError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for ``device`` (auto, cpu or cuda) given ONNX Runtime's ``available``."""
    if device not in ("auto", "cpu", "cuda"):
        raise EmbeddingError(f"device {device!r}: use auto, cpu or cuda")
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise EmbeddingError(f"device cuda asked for, but this ONNX Runtime offers only {available} (install onnxruntime-gpu)")
    return [CPU]


@dataclass
class LocalBackend:
    """An ONNX Runtime session on ``model_dir/model_file`` (external data next to it)."""

    model_dir: Path
    device: str = "auto"
    threads: int = 0
    model_file: str = "model.onnx"  # q8/q4 variants keep their repository names
    session: Any = field(init=False, repr=False)
    provider: str = field(init=False)

    def __post_init__(self) -> None:
        import onnxruntime as ort

        path = Path(self.model_dir) / self.model_file
        if not path.is_file():
            raise EmbeddingError(f"no {self.model_file} in {self.model_dir}")
        if self.device != "cpu" and hasattr(ort, "preload_dlls"):
            try:  # onnxruntime-gpu ≥ 1.21 finds CUDA/cuDNN from the nvidia-* wheels this way
                ort.preload_dlls()
            except Exception:
                pass
        providers = choose_providers(self.device, ort.get_available_providers())
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as error:
            raise EmbeddingError(f"ONNX Runtime cannot load {path}: {error}") from None
        active = self.session.get_providers()
        if self.device == "cuda" and CUDA not in active:
            raise EmbeddingError(f"device cuda asked for, but ONNX Runtime fell back to {active} (CUDA/cuDNN libraries missing?)")
        self.provider = active[0]
        self.version = ort.__version__

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """sentence_embedding float32 ``[batch, 768]``."""
        feeds = {INPUT_IDS: np.asarray(input_ids, np.int64), ATTENTION_MASK: np.asarray(attention_mask, np.int64)}
        (embeddings,) = self.session.run([SENTENCE_EMBEDDING], feeds)
        return np.asarray(embeddings, dtype=np.float32)
