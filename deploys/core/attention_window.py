"""Put EmbeddingGemma's sliding-window attention back into an ONNX export that dropped it.

EmbeddingGemma attends bidirectionally within |i - j| <= 256 in its sliding layers (every layer but
each 6th: ``layer_types`` in its config.json; transformers' Gemma 3 with
``use_bidirectional_attention``). The onnx-community export applies full attention in every layer,
so its embeddings drift from the model's beyond 256 tokens (field notes: cosine 0.949 at 2048).

Why graph surgery rather than a graph of our own: the export's weights, names and every other op stay
exactly as published (the weights file is not even read to repair, and keeps its name, which the graph
records); the change is a few nodes per sliding layer that can be read in a diff of the two graphs. A
graph of our own would re-implement Gemma 3 (RoPE variants, norms, GELU, the head) and its
fidelity would rest on us alone.

How a block is found, by structure (not by node names, which differ with every exporter):
an attention block is a ``Softmax`` over the last axis whose input comes, through at most a few
element-wise ops (Add, Mul, Div, Where, Cast, ...), from a ``MatMul`` of two computed tensors
(Q times K transposed) and whose output reaches a ``MatMul`` (times V), directly or through NaN
guards (SDPA exports add ``IsNaN``/``Where``). Blocks are taken in graph order, which ONNX requires
to be topological: block k is layer k.

The repair: in each sliding layer, the Softmax input ``scores`` [.., q, k] becomes
``Where(|i - j| <= window, scores, float32 min)``. ``Where`` replaces rather than adds, so a score
the padding mask already pushed to float32 min (or -inf) cannot overflow, and every real query row
keeps at least itself. Full layers are left as they are. The graph records the repair in its
metadata (``attention_window``), so a second repair is refused and the file is left unchanged.

Guards (:func:`check`), before anything is uploaded: the expected number of blocks; with ONNX
Runtime, repaired and upstream agree (max |diff| <= 1e-5) on inputs whose length keeps every pair
within the window and differ beyond it; repairing the repaired graph changes nothing (by digest).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

METADATA_KEY = "attention_window"
PREFIX = "attention_window/"  # names of the nodes the repair adds
REPAIR_VERSION = 1  # part of the recorded metadata: a different repair gives a different served digest
# Ops that may sit between the score MatMul and the Softmax (scaling, masking, soft-capping, casts)
_BETWEEN = {"Add", "Sub", "Mul", "Div", "Where", "Cast", "Tanh", "Reshape", "Identity", "Clip", "Min", "Max"}
_AFTER = {"Where", "IsNaN", "Cast", "Identity", "Reshape", "Not", "And", "Or"}
_HOPS = 6
EQUAL_WITHIN = 1e-5  # max |diff| for "equal" inside the window
DIFFER_BEYOND = 1e-4  # max |diff| must exceed this beyond the window


class RepairRefused(Exception):
    """The graph does not have the expected shape (or is repaired already): one line, no change."""


@dataclass(frozen=True)
class Shape:
    """What the model's config says: the layer types in order and the largest admitted distance."""

    layer_types: tuple[str, ...]
    window: int

    @property
    def sliding(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == "sliding_attention")

    @classmethod
    def every(cls, layers: int, full_every: int, window: int) -> Shape:
        """``layers`` layers, each ``full_every``-th one full (EmbeddingGemma: 24, 6, 256)."""
        return cls(tuple("full_attention" if (i + 1) % full_every == 0 else "sliding_attention" for i in range(layers)), window)


EMBEDDINGGEMMA = Shape.every(24, 6, 256)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _computed(name: str, producers: dict[str, onnx.NodeProto]) -> bool:
    """Produced by a node that is not a Constant (so not a weight or a literal)."""
    node = producers.get(name)
    return node is not None and node.op_type != "Constant"


def _reaches_score_matmul(name: str, producers: dict[str, onnx.NodeProto]) -> bool:
    frontier, seen = [name], set()
    for _ in range(_HOPS):
        nxt = []
        for value in frontier:
            node = producers.get(value)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "MatMul" and all(_computed(i, producers) for i in node.input):
                return True
            if node.op_type in _BETWEEN:
                nxt.extend(node.input)
        frontier = nxt
    return False


def _reaches_value_matmul(name: str, consumers: dict[str, list[onnx.NodeProto]]) -> bool:
    frontier = [name]
    for _ in range(_HOPS):
        nxt = []
        for value in frontier:
            for node in consumers.get(value, []):
                if node.op_type == "MatMul" and node.input[0] == value:
                    return True
                if node.op_type in _AFTER:
                    nxt.extend(node.output)
        frontier = nxt
    return False


def _softmax_axis(node: onnx.NodeProto) -> int:
    for a in node.attribute:
        if a.name == "axis":
            return int(a.i)
    return -1


def attention_blocks(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The attention Softmax nodes, in graph (= layer) order."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    return [
        n
        for n in graph.node
        if n.op_type == "Softmax"
        and _softmax_axis(n) in (-1, 3)
        and _reaches_score_matmul(n.input[0], producers)
        and _reaches_value_matmul(n.output[0], consumers)
    ]


def _recorded(model: onnx.ModelProto) -> str | None:
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return prop.value
    return None


def _window_nodes(scores: str, window: int, tag: str) -> tuple[list[onnx.NodeProto], str]:
    """Nodes computing ``Where(|i - j| <= window, scores, float32 min)``; returns (nodes, output)."""
    p = f"{PREFIX}{tag}/"
    n = helper.make_node
    const = {
        "zero": helper.make_tensor(p + "zero", TensorProto.INT64, [], [0]),
        "one": helper.make_tensor(p + "one", TensorProto.INT64, [], [1]),
        "window": helper.make_tensor(p + "window", TensorProto.INT64, [], [window]),
        "axis0": helper.make_tensor(p + "axis0", TensorProto.INT64, [1], [0]),
        "axis1": helper.make_tensor(p + "axis1", TensorProto.INT64, [1], [1]),
        "low": helper.make_tensor(p + "low", TensorProto.FLOAT, [], [float(np.finfo(np.float32).min)]),
    }
    nodes = [n("Constant", [], [p + k], value=v, name=p + k) for k, v in const.items()]
    nodes += [
        n("Shape", [scores], [p + "q_len"], start=-2, end=-1, name=p + "q_shape"),
        n("Shape", [scores], [p + "k_len"], start=-1, name=p + "k_shape"),
        n("Squeeze", [p + "q_len", p + "axis0"], [p + "q_n"], name=p + "q_n"),
        n("Squeeze", [p + "k_len", p + "axis0"], [p + "k_n"], name=p + "k_n"),
        n("Range", [p + "zero", p + "q_n", p + "one"], [p + "i"], name=p + "i"),
        n("Range", [p + "zero", p + "k_n", p + "one"], [p + "j"], name=p + "j"),
        n("Unsqueeze", [p + "i", p + "axis1"], [p + "i_col"], name=p + "i_col"),
        n("Sub", [p + "i_col", p + "j"], [p + "diff"], name=p + "diff"),
        n("Abs", [p + "diff"], [p + "distance"], name=p + "distance"),
        n("LessOrEqual", [p + "distance", p + "window"], [p + "inside"], name=p + "inside"),
        n("CastLike", [p + "low", scores], [p + "low_like"], name=p + "low_like"),
        n("Where", [p + "inside", scores, p + "low_like"], [p + "scores"], name=p + "where"),
    ]
    return nodes, p + "scores"


def repair(model: onnx.ModelProto, shape: Shape) -> onnx.ModelProto:
    """A copy of ``model`` with the window applied in ``shape``'s sliding layers.

    Raises RepairRefused (one line) when the block count differs or the graph is repaired already."""
    if _recorded(model) is not None:
        raise RepairRefused(f"the graph is repaired already ({METADATA_KEY} = {_recorded(model)}): left as it is")
    if any(n.name.startswith(PREFIX) for n in model.graph.node):
        raise RepairRefused("the graph already holds attention-window nodes: left as it is")
    blocks = attention_blocks(model)
    if len(blocks) != len(shape.layer_types):
        raise RepairRefused(f"found {len(blocks)} attention blocks, the model's config has {len(shape.layer_types)} layers: left as it is")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 15:  # CastLike and Shape(start, end)
        raise RepairRefused(f"the graph's opset {opset} is older than 15: left as it is")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    targets = {blocks[i].output[0]: i for i in shape.sliding}
    new_nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        if node.op_type == "Softmax" and node.output[0] in targets:
            layer = targets[node.output[0]]
            added, windowed = _window_nodes(node.input[0], shape.window, f"layer{layer}")
            new_nodes.extend(added)
            node.input[0] = windowed
        new_nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(new_nodes)
    record = {"window": shape.window, "sliding_layers": list(shape.sliding), "version": REPAIR_VERSION}
    out.metadata_props.add(key=METADATA_KEY, value=json.dumps(record, separators=(",", ":")))
    return out


def graph_bytes(model: onnx.ModelProto) -> bytes:
    """The serialised graph (deterministic for one onnx version): what is written and digested."""
    return model.SerializeToString(deterministic=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- guards with ONNX Runtime --


@dataclass
class Outcome:
    """What the repair did to one graph: served ``repaired`` or ``upstream``, and the guard figures."""

    served: str  # "repaired" | "upstream"
    upstream_sha256: str
    served_sha256: str
    blocks: int = 0
    expected_blocks: int = 0
    inside_max_diff: float | None = None  # at window + 1 tokens (all pairs within the window)
    beyond_max_diff: float | None = None  # at 4 * window + 1 tokens
    idempotent: bool | None = None
    reason: str = ""  # why upstream is served (a failed guard), empty when repaired
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)

    def line(self) -> str:
        """The fidelity line of the log, the verify report and the fleet table."""
        if self.served == "repaired":
            return (
                f"attention window repaired: {self.blocks} blocks, ≤window max|Δ| {self.inside_max_diff:.1e}, "
                f"beyond max|Δ| {self.beyond_max_diff:.1e}, served {self.served_sha256[:12]} (upstream {self.upstream_sha256[:12]})"
            )
        return f"attention window NOT repaired: upstream {self.upstream_sha256[:12]} served ({self.reason})"


def _session(graph: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _embed(session, length: int, vocab_hint: int = 200) -> np.ndarray:
    ids = np.random.default_rng(length).integers(4, vocab_hint, size=(1, length)).astype(np.int64)
    ids[0, 0], ids[0, -1] = 2, 1
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    names = [o.name for o in session.get_outputs()]
    return np.concatenate([np.asarray(v).reshape(-1) for v in session.run(names, feeds)])


def check(upstream_graph: Path, repaired: bytes, shape: Shape) -> tuple[float, float]:
    """(max |diff| within the window, max |diff| beyond) between the upstream and repaired graphs,
    both run by ONNX Runtime over the same weights file.

    ONNX Runtime refuses external data outside the graph's directory, symlinks resolved (a Hugging
    Face cache keeps files as symlinks into blobs/), so both graphs are written into a scratch
    directory beside the weights file's real location, next to a hard link to it: the weights are
    neither copied nor changed, and the scratch directory is removed after."""
    upstream = upstream_graph.read_bytes()
    names = {t.external_data[0].value for t in _external(upstream)}
    real = {name: (upstream_graph.parent / name).resolve() for name in names}
    homes = {p.parent for p in real.values()}
    if len(homes) > 1:
        raise RepairRefused(f"the graph's weights files live in several directories ({sorted(map(str, homes))})")
    home = homes.pop() if homes else upstream_graph.resolve().parent
    try:
        scratch_dir = tempfile.TemporaryDirectory(prefix=".attention-window-", dir=home)
    except OSError as error:
        raise RepairRefused(f"cannot write a scratch directory beside the weights in {home} for the guards ({error.strerror})") from None
    with scratch_dir as scratch:
        try:
            for name, path in real.items():
                os.link(path, Path(scratch, name))
        except OSError as error:
            raise RepairRefused(f"cannot hard-link the weights file in {home} for the guards ({error.strerror})") from None
        Path(scratch, "upstream.onnx").write_bytes(upstream)
        Path(scratch, "repaired.onnx").write_bytes(repaired)
        before, after = _session(Path(scratch, "upstream.onnx")), _session(Path(scratch, "repaired.onnx"))
        inside = shape.window + 1
        beyond = 4 * shape.window + 1
        diff_inside = float(np.max(np.abs(_embed(before, inside) - _embed(after, inside))))
        diff_beyond = float(np.max(np.abs(_embed(before, beyond) - _embed(after, beyond))))
    return diff_inside, diff_beyond


def _external(graph: bytes) -> list[onnx.TensorProto]:
    model = onnx.load_from_string(graph)
    return [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]


def prepare(upstream_graph: Path, shape: Shape) -> tuple[bytes, Outcome]:
    """The graph to serve and what happened: the repaired graph when every guard holds, else the
    upstream bytes with the failed guard named in one line (``Outcome.reason``)."""
    started = time.monotonic()
    upstream = upstream_graph.read_bytes()
    up_sha = sha256(upstream)
    outcome = Outcome("upstream", up_sha, up_sha, expected_blocks=len(shape.layer_types))
    try:
        try:
            model = onnx.load_from_string(upstream)
        except Exception as error:  # protobuf's DecodeError and friends
            raise RepairRefused(f"the file is not an ONNX graph ({type(error).__name__})") from None
        outcome.blocks = len(attention_blocks(model))
        repaired_model = repair(model, shape)
        repaired = graph_bytes(repaired_model)
        try:
            repair(onnx.load_from_string(repaired), shape)
            again = None
        except RepairRefused:
            again = repaired  # refused, so the bytes stay as they are
        outcome.idempotent = again is not None and sha256(again) == sha256(repaired)
        try:
            inside, beyond = check(upstream_graph, repaired, shape)
        except RepairRefused:
            raise
        except Exception as error:  # ONNX Runtime's own refusals: first line only
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise RepairRefused(f"ONNX Runtime could not run the graphs for the guards: {first[:300]}") from None
        outcome.inside_max_diff, outcome.beyond_max_diff = inside, beyond
        if not outcome.idempotent:
            raise RepairRefused("a second repair changed the graph")
        if inside > EQUAL_WITHIN:
            raise RepairRefused(f"within the window the repaired graph differs from upstream by {inside:.1e} > {EQUAL_WITHIN:.0e}")
        if beyond <= DIFFER_BEYOND:
            raise RepairRefused(f"beyond the window the repaired graph equals upstream (max|Δ| {beyond:.1e}): the window did not take")
    except RepairRefused as refused:
        outcome.reason = str(refused)
        outcome.seconds = time.monotonic() - started
        return upstream, outcome
    outcome.served, outcome.served_sha256 = "repaired", sha256(repaired)
    outcome.seconds = time.monotonic() - started
    return repaired, outcome


def layer_types_of(config: dict, fallback: Sequence[str] = EMBEDDINGGEMMA.layer_types) -> tuple[str, ...]:
    return tuple(config.get("layer_types") or fallback)


def main(argv: list[str] | None = None) -> int:
    """``python -m deploys.core.attention_window GRAPH [--out FILE]``: repair one graph beside its
    weights file with the guards, print the outcome line (and the JSON figures with --json)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m deploys.core.attention_window", description=main.__doc__.splitlines()[0])
    parser.add_argument("graph", type=Path)
    parser.add_argument("--layers", type=int, default=len(EMBEDDINGGEMMA.layer_types))
    parser.add_argument("--window", type=int, default=EMBEDDINGGEMMA.window)
    parser.add_argument("--out", type=Path, help="write the served graph here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    data, outcome = prepare(args.graph, Shape.every(args.layers, 6, args.window))
    if args.out:
        args.out.write_bytes(data)
    print(json.dumps({**outcome.__dict__, "line": outcome.line()}) if args.json else outcome.line())
    return 0 if outcome.served == "repaired" else 1


if __name__ == "__main__":
    raise SystemExit(main())
