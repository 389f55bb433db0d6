"""The tiny EmbeddingGemma stand-in (tests/support/tinymodel.py) keeps the real model's contract."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from tests.support import tinymodel

REPO = Path(__file__).resolve().parent.parent


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(model_dir: Path, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    hidden, pooled = session.run(["last_hidden_state", "sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
    return hidden, pooled


def test_same_call_writes_same_bytes(hub: Path, tmp_path: Path) -> None:
    tinymodel.write_all(tmp_path)
    assert _digests(tmp_path) == _digests(hub)
    assert set(_digests(hub)) == {
        "onnx/model.onnx",
        "onnx/model.onnx_data",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }


def test_io_contract_is_embeddinggemmas(hub: Path) -> None:
    model = onnx.load(str(hub / "onnx" / "model.onnx"), load_external_data=False)
    inputs = {i.name: (i.type.tensor_type.elem_type, len(i.type.tensor_type.shape.dim)) for i in model.graph.input}
    outputs = {
        o.name: (o.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim])
        for o in model.graph.output
    }
    assert inputs == {"input_ids": (onnx.TensorProto.INT64, 2), "attention_mask": (onnx.TensorProto.INT64, 2)}
    assert outputs["last_hidden_state"][0] == onnx.TensorProto.FLOAT and outputs["last_hidden_state"][1][2] == 768
    assert outputs["sentence_embedding"][0] == onnx.TensorProto.FLOAT and outputs["sentence_embedding"][1][1] == 768
    # The weights live in the external data file, whose name the graph records.
    locations = {entry.value for t in model.graph.initializer for entry in t.external_data if entry.key == "location"}
    assert locations == {"model.onnx_data"}
    assert (hub / "onnx" / "model.onnx").stat().st_size < 10_000 < (hub / "onnx" / "model.onnx_data").stat().st_size


def test_outputs_pooled_and_normalised(hub: Path) -> None:
    ids = np.array([[2, 40, 41, 42, 1, 0, 0], [2, 50, 1, 0, 0, 0, 0]], np.int64)
    mask = (np.arange(7)[None, :] < np.array([[5], [3]])).astype(np.int64)
    hidden, pooled = _run(hub / "onnx", ids, mask)
    assert hidden.shape == (2, 7, 768) and hidden.dtype == np.float32
    assert pooled.shape == (2, 768) and pooled.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    # Padding is masked: the first row alone, unpadded, gives the same embedding.
    _, alone = _run(hub / "onnx", ids[:1, :5], mask[:1, :5])
    np.testing.assert_allclose(alone[0], pooled[0], atol=1e-5)
    assert abs(float(pooled[0] @ pooled[1])) < 0.99  # different texts, different embeddings


def test_renamed_data_file_breaks_loading(hub: Path, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes((hub / "onnx" / "model.onnx").read_bytes())
    (tmp_path / "weights.bin").write_bytes((hub / "onnx" / "model.onnx_data").read_bytes())
    with pytest.raises(Exception, match="model.onnx_data"):
        ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])


def test_perturbed_and_nan_variants(hub: Path, tmp_path: Path) -> None:
    vocab = Tokenizer.from_file(str(hub / "tokenizer.json")).get_vocab_size()
    tinymodel.write_model(tmp_path / "perturbed", vocab, perturb=0.05)
    tinymodel.write_model(tmp_path / "nan", vocab, nan=True)
    ids = np.array([[2, 60, 61, 62, 63, 1]], np.int64)
    mask = np.ones_like(ids)
    _, good = _run(hub / "onnx", ids, mask)
    _, bad = _run(tmp_path / "perturbed", ids, mask)
    _, nan = _run(tmp_path / "nan", ids, mask)
    assert 0.5 < float(good[0] @ bad[0]) < 0.9999
    assert np.isnan(nan).all()
    assert (tmp_path / "perturbed" / "model.onnx").read_bytes() == (hub / "onnx" / "model.onnx").read_bytes()  # same graph, other weights


def test_tokenizer_has_gemmas_special_ids(hub: Path) -> None:
    tokenizer = Tokenizer.from_file(str(hub / "tokenizer.json"))
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "<eos>", "<bos>", "<unk>")] == [0, 1, 2, 3]
    text = "task: search result | query: Straße 東京 🚀"
    encoding = tokenizer.encode(text)
    assert encoding.ids[0] == 2 and encoding.ids[-1] == 1
    assert tokenizer.decode(encoding.ids) == text  # byte-level: every script round-trips


def test_cli_writes_hub_layout(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.tinymodel", str(tmp_path / "out"), "--perturb", "0.01"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "onnx" / "model.onnx_data").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()
