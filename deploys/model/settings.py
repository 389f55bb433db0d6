"""The model's settings: which ONNX export, where it is fetched, its lock. Each setting is declared once, here (deploys/core/tunables.py)."""

from __future__ import annotations

from typing import Any

from deploys.core.tunables import COMMIT_SHA, Setting, _bool, _choice, _int, _text, _url_list

REFUSED_VARIANTS = {
    "fp16": "EmbeddingGemma's activations reach ~8e5, past float16's 65504: fp16 serves NaNs",
    "q4f16": "its float16 activations overflow like fp16 (EmbeddingGemma needs fp32 activations)",
}


def _model_variant(value: Any) -> str:
    if value in REFUSED_VARIANTS:
        raise ValueError(f"refused: {REFUSED_VARIANTS[value]}; allowed: fp32, q8, q4")
    return _choice("fp32", "q8", "q4")(value)


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class ModelSettings:
    # -- model --
    model_repo_id = Setting("onnx-community/embeddinggemma-300m-ONNX", "Hugging Face repository of the ONNX export.", "str", _text(r"[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+", "owner/name"))
    model_revision = Setting("5090578d9565bb06545b4552f76e6bc2c93e4a66", "Commit sha of model_repo_id (a branch name is refused: rebuilds must be reproducible).", "str", _text(COMMIT_SHA, "a 40-character commit sha (not a branch name)"))
    model_variant = Setting("fp32", "ONNX variant: fp32, q8 or q4 (fp16 and q4f16 are refused: fp16 overflow).", "str", _model_variant)
    model_name = Setting("embeddinggemma", "Triton model name.", "str", _text(r"[A-Za-z0-9_\-]+", "letters, digits, _ and -"))
    model_fetch = Setting("controller", "Where the model is downloaded: controller (once, then pushed), host, or mirror.", "str", _choice("controller", "host", "mirror"))
    model_mirror = Setting("", "For model_fetch=mirror: an HF-compatible endpoint URL or a local directory.", "str", _text(r"\S*", "a URL, a directory or empty"))
    model_token_endpoints = Setting([], "Endpoints besides https://huggingface.co that may receive the HF token (an HF_ENDPOINT or model_mirror you trust with it); any other endpoint gets no token.", "list[str]", _url_list)
    model_require_lock = Setting(False, "Refuse model files whose sha256 deploys/model.lock.json marks unknown (instead of trusting the Hub's LFS metadata for the run).", "bool", _bool)
    model_lock_file = Setting("deploys/model.lock.json", "Model lock (sha256 + size per file and commit), relative to the repository root; fill it with `python -m deploys.model_lock refresh`.", "str", _text(r"\S+", "a file path"))
    model_cache_dir = Setting(".cache/models", "Controller-side download cache (model_fetch=controller).", "str", _text(r"\S+", "a directory path"))
    model_attention_window = Setting("repaired", "repaired: serve the graph with EmbeddingGemma's sliding-window attention put back (the upstream export drops it; deploys/core/attention_window.py), checked by guards on the controller; upstream: serve the export as published.", "str", _choice("repaired", "upstream"))
    model_attention_layers = Setting(24, "Transformer layers of the model (EmbeddingGemma-300m: 24, each 6th one full attention): the attention-window repair must find exactly this many attention blocks.", "int", _int(1, 1024))
    model_sliding_window = Setting(256, "Largest token distance |i - j| a sliding layer attends (EmbeddingGemma: 256, config.json's sliding_window 512 / 2).", "int", _int(1, 1_000_000))
    model_attention_window_strict = Setting(False, "A failed attention-window guard stops the deploy (instead of serving the upstream graph with one warning line).", "bool", _bool)
    model_download_timeout_s = Setting(3600, "Seconds one model file download may take on a host (model_fetch=host, or a mirror URL): curl --max-time.", "int", _int(60, 86_400))
# fmt: on
