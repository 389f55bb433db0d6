"""An ONNX graph with EmbeddingGemma-300m's tensor shapes and seeded random weights (no torch).

Stand-in for the real 1.2 GB ``onnx/model.onnx_data`` where only size matters: ``make bench`` times
the controller's attention-window repair and its guards on it (tests/sandbox/bench.py). The layers
are Gemma-shaped, not Gemma: vocabulary 262,144 x 768, 24 layers of 3 query heads and 1 key/value
head of width 256, a gated 1,152-wide MLP, then mean pooling, 768 -> 3072 -> 768 and L2
normalisation: about 303 M float32 weights, like the real file. The attention blocks are decomposed
(MatMul, Add mask, Softmax, MatMul), as both of the fixture's export styles are.

    python -m tests.support.gemma_shaped OUT_DIR [--layers 24] [--vocab 262144]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20261206
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, MLP, DENSE = 768, 3, 1, 256, 1152, 3072


def build(layers: int = 24, vocab: int = 262_144, seed: int = SEED) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []

    def weight(name: str, *shape: int) -> str:
        value = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[0]))
        inits.append(numpy_helper.from_array(value, name))
        return name

    n = helper.make_node
    nodes = []

    def const(name: str, value: np.ndarray) -> str:
        nodes.append(n("Constant", [], [name], value=numpy_helper.from_array(value, name)))
        return name

    scale = const("scale", np.array(HEAD_DIM**-0.5, np.float32))
    one, low = const("one", np.array(1.0, np.float32)), const("low", np.array(np.finfo(np.float32).min, np.float32))
    q_shape = const("q_shape", np.array([0, 0, HEADS, HEAD_DIM], np.int64))
    kv_shape = const("kv_shape", np.array([0, 0, KV_HEADS, HEAD_DIM], np.int64))
    flat = const("flat", np.array([0, 0, HEADS * HEAD_DIM], np.int64))
    axes12, axis1 = const("axes12", np.array([1, 2], np.int64)), const("axis1", np.array([1], np.int64))
    axis2 = const("axis2", np.array([2], np.int64))
    nodes += [
        n("Gather", [weight("embed", vocab, HIDDEN), "input_ids"], ["h0"]),
        n("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        n("Sub", [one, "mask_f"], ["mask_off"]),
        n("Mul", ["mask_off", low], ["mask_bias2"]),
        n("Unsqueeze", ["mask_bias2", axes12], ["mask_bias"]),  # [b, 1, 1, s]
    ]
    h = "h0"
    for i in range(layers):
        p = f"l{i}_"
        nodes += [
            n("MatMul", [h, weight(p + "q", HIDDEN, HEADS * HEAD_DIM)], [p + "q2"]),
            n("MatMul", [h, weight(p + "k", HIDDEN, KV_HEADS * HEAD_DIM)], [p + "k2"]),
            n("MatMul", [h, weight(p + "v", HIDDEN, KV_HEADS * HEAD_DIM)], [p + "v2"]),
            n("Reshape", [p + "q2", q_shape], [p + "q3"]),
            n("Reshape", [p + "k2", kv_shape], [p + "k3"]),
            n("Reshape", [p + "v2", kv_shape], [p + "v3"]),
            n("Transpose", [p + "q3"], [p + "qh"], perm=[0, 2, 1, 3]),
            n("Transpose", [p + "k3"], [p + "kt"], perm=[0, 2, 3, 1]),
            n("Transpose", [p + "v3"], [p + "vh"], perm=[0, 2, 1, 3]),
            n("MatMul", [p + "qh", p + "kt"], [p + "s0"]),
            n("Mul", [p + "s0", scale], [p + "s1"]),
            n("Add", [p + "s1", "mask_bias"], [p + "s2"]),
            n("Softmax", [p + "s2"], [p + "a"], axis=-1),
            n("MatMul", [p + "a", p + "vh"], [p + "c"]),
            n("Transpose", [p + "c"], [p + "ct"], perm=[0, 2, 1, 3]),
            n("Reshape", [p + "ct", flat], [p + "cf"]),
            n("MatMul", [p + "cf", weight(p + "o", HEADS * HEAD_DIM, HIDDEN)], [p + "attn"]),
            n("Add", [h, p + "attn"], [p + "r"]),
            n("MatMul", [p + "r", weight(p + "gate", HIDDEN, MLP)], [p + "g"]),
            n("MatMul", [p + "r", weight(p + "up", HIDDEN, MLP)], [p + "u"]),
            n("Tanh", [p + "g"], [p + "ga"]),
            n("Mul", [p + "ga", p + "u"], [p + "gu"]),
            n("MatMul", [p + "gu", weight(p + "down", MLP, HIDDEN)], [p + "d"]),
            n("Add", [p + "r", p + "d"], [p + "out"]),
        ]
        h = p + "out"
    nodes += [
        n("Identity", [h], ["last_hidden_state"]),
        n("Unsqueeze", ["mask_f", axis2], ["mask3"]),
        n("Mul", ["last_hidden_state", "mask3"], ["masked"]),
        n("ReduceSum", ["masked", axis1], ["summed"], keepdims=0),
        n("ReduceSum", ["mask3", axis1], ["count"], keepdims=0),
        n("Div", ["summed", "count"], ["pooled"]),
        n("MatMul", ["pooled", weight("dense_up", HIDDEN, DENSE)], ["up"]),
        n("MatMul", ["up", weight("dense_down", DENSE, HIDDEN)], ["down"]),
        n("LpNormalization", ["down"], ["sentence_embedding"], axis=-1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "gemma_shaped",
        [helper.make_tensor_value_info(x, TensorProto.INT64, ["batch_size", "sequence_length"]) for x in ("input_ids", "attention_mask")],
        [
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN]),
            helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch_size", HIDDEN]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests.gemma_shaped")
    model.ir_version = 8
    return model


def write(out_dir: Path, layers: int = 24, vocab: int = 262_144) -> Path:
    """``out_dir/model.onnx`` + ``model.onnx_data`` (the real layout's names); returns the graph."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.onnx_data").unlink(missing_ok=True)
    onnx.save_model(build(layers, vocab), str(out_dir / "model.onnx"), save_as_external_data=True, location="model.onnx_data")
    return out_dir / "model.onnx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.gemma_shaped", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--vocab", type=int, default=262_144)
    args = parser.parse_args(argv)
    graph = write(args.out_dir, args.layers, args.vocab)
    print(f"wrote {graph} and {graph.with_name('model.onnx_data')} ({graph.with_name('model.onnx_data').stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
