"""The attention-window repair (deploys/core/attention_window.py) against transformers' own Gemma 3.

Fixtures: tests/data/attention_window/ (written by `make fixtures`, tools/fixtures/make_fixtures.py):
a tiny EmbeddingGemma-shaped model exported WITHOUT the window in two export styles, and the
windowed transformers model's reference embeddings. Nothing here needs torch or transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deploys.core import attention_window as aw

FIXTURES = Path(__file__).parent / "data" / "attention_window"
META = json.loads((FIXTURES / "fixture.json").read_text())
SHAPE = aw.Shape(tuple(META["layer_types"]), META["window"])
REFERENCE = np.load(FIXTURES / "reference.npz")
STYLES = META["styles"]
MATCH = 0.99999


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def session(graph: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])


def embed(sess: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0]


@pytest.fixture(scope="module", params=STYLES)
def graphs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One export style: its upstream graph, and the repaired graph written beside a copy of its weights."""
    style = request.param
    upstream = FIXTURES / style / "model.onnx"
    repaired_bytes, outcome = aw.prepare(upstream, SHAPE)
    work = tmp_path_factory.mktemp(style)
    shutil.copy(FIXTURES / style / "model.onnx_data", work / "model.onnx_data")
    (work / "model.onnx").write_bytes(repaired_bytes)
    return {"style": style, "upstream": upstream, "repaired": work / "model.onnx", "outcome": outcome, "bytes": repaired_bytes}


def test_the_fixture_has_the_real_layer_pattern() -> None:
    types = META["layer_types"]
    assert [i for i, t in enumerate(types) if t == "full_attention"] == [5, 11]  # every 6th, like 5/11/17/23
    assert aw.EMBEDDINGGEMMA.sliding == tuple(i for i in range(24) if i not in (5, 11, 17, 23))
    assert max(META["lengths"]) > 8 * META["window"] and min(META["lengths"]) <= META["window"]


def test_unrepaired_diverges_beyond_the_window_only(graphs: dict) -> None:
    sess = session(graphs["upstream"])
    cosines = {}
    for n in META["lengths"]:
        ids = REFERENCE[f"ids_{n}"]
        cosines[n] = float(cosine(embed(sess, ids, np.ones_like(ids)), REFERENCE[f"emb_{n}"])[0])
    for n, c in cosines.items():
        if n <= SHAPE.window + 1:  # every pair within the window: the windowless graph is right
            assert c >= MATCH, (n, c)
    # Beyond the window the export without it is measurably wrong (figures in the closing note).
    far = [c for n, c in cosines.items() if n >= 8 * SHAPE.window]
    assert far and max(far) < 0.999, cosines


def test_repaired_matches_transformers_at_every_length(graphs: dict) -> None:
    assert graphs["outcome"].served == "repaired", graphs["outcome"].reason
    sess = session(graphs["repaired"])
    for n in META["lengths"]:
        ids = REFERENCE[f"ids_{n}"]
        c = float(cosine(embed(sess, ids, np.ones_like(ids)), REFERENCE[f"emb_{n}"])[0])
        assert c >= MATCH, (graphs["style"], n, c)


def test_repaired_matches_transformers_in_padded_batches(graphs: dict) -> None:
    sess = session(graphs["repaired"])
    for i in range(len(META["batches"])):
        got = embed(sess, REFERENCE[f"batch{i}_ids"], REFERENCE[f"batch{i}_mask"])
        assert np.all(np.isfinite(got))
        assert np.min(cosine(got, REFERENCE[f"batch{i}_emb"])) >= MATCH, (graphs["style"], i)


def test_guards_figures_and_a_second_repair_is_a_no_op(graphs: dict) -> None:
    outcome = graphs["outcome"]
    assert outcome.blocks == outcome.expected_blocks == len(SHAPE.layer_types)
    assert outcome.inside_max_diff is not None and outcome.inside_max_diff <= aw.EQUAL_WITHIN
    assert outcome.beyond_max_diff is not None and outcome.beyond_max_diff > aw.DIFFER_BEYOND
    assert outcome.idempotent is True
    assert outcome.served_sha256 == aw.sha256(graphs["bytes"]) != outcome.upstream_sha256
    # the weights file is untouched and keeps its name: the repaired graph names the same file
    model = onnx.load(str(graphs["repaired"]), load_external_data=False)
    assert {t.external_data[0].value for t in model.graph.initializer if t.external_data} == {"model.onnx_data"}
    # repairing the served graph again: one line, and the very same bytes come back
    again, second = aw.prepare(graphs["repaired"], SHAPE)
    assert again == graphs["bytes"] and second.served == "upstream"
    assert "repaired already" in second.reason and "\n" not in second.reason
    assert "repaired:" in outcome.line() and outcome.served_sha256[:12] in outcome.line()


def _without_one_block(style: str, tmp: Path) -> Path:
    """The style's graph with its third attention block's Softmax replaced by an Identity."""
    model = onnx.load(str(FIXTURES / style / "model.onnx"), load_external_data=False)
    block = aw.attention_blocks(model)[2]
    block.op_type = "Identity"
    del block.attribute[:]
    shutil.copy(FIXTURES / style / "model.onnx_data", tmp / "model.onnx_data")
    onnx.save(model, str(tmp / "model.onnx"))
    return tmp / "model.onnx"


@pytest.mark.parametrize("style", STYLES)
def test_a_graph_missing_a_block_gets_one_line_and_no_change(style: str, tmp_path: Path) -> None:
    graph = _without_one_block(style, tmp_path)
    before = graph.read_bytes()
    served, outcome = aw.prepare(graph, SHAPE)
    assert served == before and graph.read_bytes() == before
    assert outcome.served == "upstream" and outcome.served_sha256 == outcome.upstream_sha256
    assert (
        outcome.reason
        == f"found {len(SHAPE.layer_types) - 1} attention blocks, the model's config has {len(SHAPE.layer_types)} layers: left as it is"
    )
    assert "NOT repaired" in outcome.line() and "\n" not in outcome.line()


def test_a_shape_that_does_not_fit_the_graph_is_refused() -> None:
    model = onnx.load(str(FIXTURES / STYLES[0] / "model.onnx"), load_external_data=False)
    with pytest.raises(aw.RepairRefused, match="found 12 attention blocks, the model's config has 24 layers"):
        aw.repair(model, aw.EMBEDDINGGEMMA)


def test_the_repair_adds_nodes_only_in_sliding_layers() -> None:
    model = onnx.load(str(FIXTURES / STYLES[0] / "model.onnx"), load_external_data=False)
    repaired = aw.repair(model, SHAPE)
    layers = {n.name.split("/")[1] for n in repaired.graph.node if n.name.startswith(aw.PREFIX)}
    assert layers == {f"layer{i}" for i in SHAPE.sliding}
    # everything the export had is still there, untouched but for the sliding Softmax inputs
    assert len(repaired.graph.node) - len(model.graph.node) == len(SHAPE.sliding) * len(
        [n for n in repaired.graph.node if n.name.startswith(f"{aw.PREFIX}layer0/")]
    )
    assert [t.name for t in repaired.graph.initializer] == [t.name for t in model.graph.initializer]


# -- verify's long samples on the sandbox's model: a real tritonserver (tests/support/tritonserver.py) --


def test_verify_passes_with_the_long_samples_on_the_repaired_fixture(tmp_path: Path) -> None:
    """What the sandbox serves (tests/sandbox/fleet.py: the eager fixture, repaired, with tinymodel's
    tokenizer): verify.parity, HTTP and gRPC against local ONNX Runtime, passes with the long samples,
    every one of which crosses the fixture's window many times over."""
    import subprocess
    import sys

    from tests.support import tinymodel
    from tests.support import tritonserver as ts

    hub = tmp_path / "hub"
    tinymodel.write_tokenizer(hub)
    (hub / "onnx").mkdir()
    shutil.copy(FIXTURES / "eager" / "model.onnx_data", hub / "onnx" / "model.onnx_data")
    served, outcome = aw.prepare(FIXTURES / "eager" / "model.onnx", SHAPE)
    assert outcome.served == "repaired", outcome.reason
    (hub / "onnx" / "model.onnx").write_bytes(served)
    root = ts.triton_dir(tmp_path / "triton", hub, ts.cpu_config())
    with ts.serve(root / "models", tmp_path / "work") as server:
        command = [sys.executable, "-m", "verify.parity", "--model-dir", str(root / "models/embeddinggemma/1")]
        command += ["--tokenizer-dir", str(root / "tokenizer"), "--url", server.http_url, "--grpc-url", server.grpc_url]
        command += ["--report", str(tmp_path / "r.json"), "--latency-iterations", "2"]
        result = subprocess.run(command, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    tokens = {row["id"]: row["tokens"] for row in report["samples"]}
    assert report["verdict"] == "pass" and {"d-long-300", "d-long-600", "d-long-1200", "d-long-2000"} <= set(tokens)
    assert min(tokens[f"d-long-{n}"] for n in (300, 600, 1200, 2000)) > 50 * SHAPE.window, tokens
