"""Fixtures the test modules share (helpers they share live in tests/support/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import tinymodel


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny EmbeddingGemma stand-in as a Hub repository directory (onnx/model.onnx + data,
    tokenizer files), written once per run; read-only for the tests. (tests/test_plan.py's own
    ``hub``, a served Hub for the plan tests, overrides it there and where it is imported.)"""
    root = tmp_path_factory.mktemp("hub")
    tinymodel.write_all(root)
    return root
