"""A tiny stand-in for EmbeddingGemma-300m with the real model's exact I/O contract.

Stand-in for: ``onnx-community/embeddinggemma-300m-ONNX`` (the Hub is not reachable from tests,
and 1.2 GB is too big for them). What is the same as the real export:

- inputs ``input_ids`` and ``attention_mask``: int64 ``[batch, seq]``;
- outputs ``last_hidden_state``: float32 ``[batch, seq, 768]`` and ``sentence_embedding``:
  float32 ``[batch, 768]`` (mask-aware mean pooling, a 768→k→768 dense projection, L2 norm);
- the weights live in an external data file ``model.onnx_data`` whose name is recorded in the
  graph (so renaming it breaks loading, as with the real files);
- tokenizer files ``tokenizer.json`` (+ ``tokenizer_config.json``, ``special_tokens_map.json``)
  with Gemma's special-token ids (pad 0, eos 1, bos 2, unk 3), readable by ``tokenizers``.

The network itself is tiny (a byte-level BPE vocabulary of ~1000 tokens, one masked self-attention
layer of width 32), so padding bugs, batching bugs and weight mismatches change its output just
as they would change the real model's. Everything is seeded: the same call writes the same bytes.

Variants for negative tests: ``perturb`` adds seeded noise to every weight (a "wrong weights"
copy), ``nan`` poisons the projection so every ``sentence_embedding`` is NaN (what fp16
overflow does to the real model).

CLI (used by the sandbox as its model source)::

    python -m tests.support.tinymodel OUT_DIR [--perturb 0.05] [--nan]

writes ``OUT_DIR/onnx/model.onnx``, ``OUT_DIR/onnx/model.onnx_data`` and the tokenizer files in
``OUT_DIR/``, the layout of the Hub repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 768  # EmbeddingGemma's output width: part of the contract, kept.
WIDTH = 32  # the tiny network's internal width
PROJECTION = 64  # real model: 768→3072→768; here 768→64→768
MAX_LENGTH = 2048  # EmbeddingGemma's maximum sequence length
VOCAB_SIZE = 1000
SEED = 20250904
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")  # ids 0..3, as in Gemma's vocabulary
DATA_FILE = "model.onnx_data"
OPSET = 17  # LayerNormalization; loadable by ONNX Runtime ≥ 1.12
IR_VERSION = 8  # old enough for any ONNX Runtime the images ship

# Training text for the tokenizer: EmbeddingGemma's task prefixes plus mixed-script prose, so the
# verification samples tokenise into real merges rather than single bytes.
CORPUS = (
    "task: search result | query: ",
    "task: question answering | query: ",
    "task: fact checking | query: ",
    "task: classification | query: ",
    "task: clustering | query: ",
    "task: sentence similarity | query: ",
    "task: code retrieval | query: ",
    "title: none | text: ",
    "How do I deploy an embedding model with Triton Inference Server on a GPU host?",
    "Triton serves models over HTTP and gRPC, batches requests dynamically and reports metrics.",
    "The quick brown fox jumps over the lazy dog while the server keeps answering requests.",
    "ONNX Runtime runs the same graph locally, so both results must agree to many decimal places.",
    "Matryoshka embeddings can be truncated to 512, 256 or 128 dimensions and normalised again.",
    "Documents carry an optional title; queries carry a task description before the text.",
    "Die Straße führt über die Brücke nach Köln, wo das Wetter schön ist.",
    "Le système répond rapidement aux requêtes des utilisateurs, même à grande échelle.",
    "東京の天気は晴れです。モデルは文章の意味をベクトルに変換します。",
    "Поиск документов по смыслу работает на любом языке.",
    "البحث الدلالي يعمل مع النصوص العربية أيضا",
    "Emoji and symbols: ✓ ✗ → ≥ ≤ π ∑ 🚀 🙂",
    "def embed(texts): return client.embed_documents(texts, titles=None)",
    "SELECT id, title FROM documents WHERE score > 0.9 ORDER BY score DESC;",
)


@dataclass(frozen=True)
class Written:
    """Paths written by :func:`write_model` (model files) and :func:`write_tokenizer`."""

    model: Path
    data: Path


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def train_tokenizer() -> tokenizers.Tokenizer:  # noqa: F821 - imported lazily below
    """A byte-level BPE tokenizer with Gemma's special-token ids; every string is encodable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(CORPUS) * 4, trainer=trainer)
    bos, eos = SPECIAL_TOKENS[2], SPECIAL_TOKENS[1]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} $B {eos}",
        special_tokens=[(bos, tokenizer.token_to_id(bos)), (eos, tokenizer.token_to_id(eos))],
    )
    return tokenizer


def write_tokenizer(out_dir: Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json; return tokenizer.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer()
    path = out_dir / "tokenizer.json"
    path.write_text(tokenizer.to_str(pretty=False) + "\n", encoding="utf-8")
    pad, eos, bos, unk = SPECIAL_TOKENS
    special = {"bos_token": bos, "eos_token": eos, "pad_token": pad, "unk_token": unk}
    config = {
        **special,
        "tokenizer_class": "GemmaTokenizer",
        "model_max_length": MAX_LENGTH,
        "padding_side": "right",
        "add_bos_token": True,
        "add_eos_token": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    return path


def make_weights(vocab_size: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """The tiny network's float32 weights, seeded."""
    rng = _rng(seed)

    def normal(*shape: int, fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    return {
        "embed_tokens": rng.standard_normal((vocab_size, WIDTH)).astype(np.float32),
        "attn_q": normal(WIDTH, WIDTH, fan_in=WIDTH),
        "attn_k": normal(WIDTH, WIDTH, fan_in=WIDTH),
        "attn_v": normal(WIDTH, WIDTH, fan_in=WIDTH),
        "attn_o": normal(WIDTH, WIDTH, fan_in=WIDTH),
        "norm_gamma": np.ones(WIDTH, np.float32),
        "norm_beta": np.zeros(WIDTH, np.float32),
        "mlp_up": normal(WIDTH, 4 * WIDTH, fan_in=WIDTH),
        "mlp_up_bias": np.zeros(4 * WIDTH, np.float32),
        "mlp_down": normal(4 * WIDTH, WIDTH, fan_in=4 * WIDTH),
        "out_proj": normal(WIDTH, HIDDEN, fan_in=WIDTH),
        "dense_1": normal(HIDDEN, PROJECTION, fan_in=HIDDEN),
        "dense_2": normal(PROJECTION, HIDDEN, fan_in=PROJECTION),
    }


def perturb_weights(weights: dict[str, np.ndarray], scale: float, seed: int = SEED + 1) -> dict[str, np.ndarray]:
    """A copy with seeded noise of relative size ``scale`` added to every weight."""
    rng = _rng(seed)
    out = {}
    for name, value in weights.items():
        spread = float(np.std(value)) or 1.0
        out[name] = (value + scale * spread * rng.standard_normal(value.shape)).astype(np.float32)
    return out


def poison_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A copy whose projection holds a NaN: every sentence_embedding comes out NaN."""
    out = dict(weights)
    dense_2 = weights["dense_2"].copy()
    dense_2[0, 0] = np.nan
    out["dense_2"] = dense_2
    return out


def build_graph(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The ONNX graph: embedding → masked self-attention → MLP → 768 → mean pool → dense → L2 norm."""
    n = helper.make_node
    consts = {
        "scale": np.array(1.0 / np.sqrt(WIDTH), np.float32),
        "one": np.array(1.0, np.float32),
        "mask_bias": np.array(1e4, np.float32),
        "eps_count": np.array(1e-9, np.float32),
        "eps_norm": np.array(1e-12, np.float32),
        "axis_1": np.array([1], np.int64),
        "axis_2": np.array([2], np.int64),
    }
    # Weights are initializers (saved as external data); small constants are Constant nodes, because
    # shape inference must read them (axes) and cannot read external tensors.
    initializers = [numpy_helper.from_array(v, name) for name, v in weights.items()]
    nodes = [n("Constant", [], [name], value=numpy_helper.from_array(v, name)) for name, v in consts.items()]
    nodes += [
        n("Gather", ["embed_tokens", "input_ids"], ["x"]),
        n("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        # self-attention; padded keys get -1e4 so they weigh exactly 0 after softmax
        n("MatMul", ["x", "attn_q"], ["q"]),
        n("MatMul", ["x", "attn_k"], ["k"]),
        n("MatMul", ["x", "attn_v"], ["v"]),
        n("Transpose", ["k"], ["k_t"], perm=[0, 2, 1]),
        n("MatMul", ["q", "k_t"], ["scores_raw"]),
        n("Mul", ["scores_raw", "scale"], ["scores_scaled"]),
        n("Sub", ["mask_f", "one"], ["mask_off"]),
        n("Mul", ["mask_off", "mask_bias"], ["key_bias_2d"]),
        n("Unsqueeze", ["key_bias_2d", "axis_1"], ["key_bias"]),
        n("Add", ["scores_scaled", "key_bias"], ["scores"]),
        n("Softmax", ["scores"], ["attn"], axis=-1),
        n("MatMul", ["attn", "v"], ["ctx"]),
        n("MatMul", ["ctx", "attn_o"], ["attn_out"]),
        n("Add", ["x", "attn_out"], ["h_res"]),
        n("LayerNormalization", ["h_res", "norm_gamma", "norm_beta"], ["h"], axis=-1),
        n("MatMul", ["h", "mlp_up"], ["mlp_a"]),
        n("Add", ["mlp_a", "mlp_up_bias"], ["mlp_b"]),
        n("Tanh", ["mlp_b"], ["mlp_c"]),
        n("MatMul", ["mlp_c", "mlp_down"], ["mlp_out"]),
        n("Add", ["h", "mlp_out"], ["h2"]),
        n("MatMul", ["h2", "out_proj"], ["last_hidden_state"]),
        # mean pooling over real tokens only
        n("Unsqueeze", ["mask_f", "axis_2"], ["mask_3d"]),
        n("Mul", ["last_hidden_state", "mask_3d"], ["masked"]),
        n("ReduceSum", ["masked", "axis_1"], ["summed"], keepdims=0),
        n("ReduceSum", ["mask_3d", "axis_1"], ["count_raw"], keepdims=0),
        n("Max", ["count_raw", "eps_count"], ["count"]),
        n("Div", ["summed", "count"], ["pooled"]),
        n("MatMul", ["pooled", "dense_1"], ["dense_a"]),
        n("MatMul", ["dense_a", "dense_2"], ["dense_b"]),
        # L2 normalisation
        n("Mul", ["dense_b", "dense_b"], ["squares"]),
        n("ReduceSum", ["squares", "axis_1"], ["sum_squares"], keepdims=1),
        n("Sqrt", ["sum_squares"], ["norm_raw"]),
        n("Max", ["norm_raw", "eps_norm"], ["norm"]),
        n("Div", ["dense_b", "norm"], ["sentence_embedding"]),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    outputs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN]),
        helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch_size", HIDDEN]),
    ]
    graph = helper.make_graph(nodes, "tiny_embeddinggemma", inputs, outputs, initializers)
    # producer_name stays "tests.tinymodel" (its path before tests/support/): the model's bytes, and so its digests, do not move.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests.tinymodel")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write_model(out_dir: Path, vocab_size: int, perturb: float = 0.0, nan: bool = False) -> Written:
    """Write ``model.onnx`` + ``model.onnx_data`` (external data, name recorded in the graph)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = make_weights(vocab_size)
    if perturb:
        weights = perturb_weights(weights, perturb)
    if nan:
        weights = poison_weights(weights)
    model = build_graph(weights)
    model_path, data_path = out_dir / "model.onnx", out_dir / DATA_FILE
    data_path.unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(
        model,
        str(model_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=DATA_FILE,
        size_threshold=0,
    )
    data_path.chmod(0o644)  # onnx creates it 0600; downloaded files are world-readable
    return Written(model=model_path, data=data_path)


def write_all(out_dir: Path, perturb: float = 0.0, nan: bool = False) -> Written:
    """Write a Hub-shaped repository: tokenizer files in ``out_dir``, model files in ``out_dir/onnx``."""
    from tokenizers import Tokenizer

    tokenizer_path = write_tokenizer(out_dir)
    vocab_size = Tokenizer.from_file(str(tokenizer_path)).get_vocab_size()
    return write_model(out_dir / "onnx", vocab_size, perturb=perturb, nan=nan)


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.tinymodel", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="directory to write (Hub layout: onnx/ + tokenizer files)")
    parser.add_argument("--perturb", type=float, default=0.0, help="relative noise added to every weight")
    parser.add_argument("--nan", action="store_true", help="write the variant whose embeddings are NaN")
    args = parser.parse_args(argv)
    written = write_all(args.out_dir, perturb=args.perturb, nan=args.nan)
    print(f"wrote {written.model} and {written.data} (sha256 {sha256(written.data)[:12]}) and tokenizer files in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
