"""Verification and client for EmbeddingGemma-300m on Triton (runs on hosts; see verify/README.md).

- ``verify.client``: embed queries/documents over HTTP or gRPC (prefixes, tokenising, padding, Matryoshka).
- ``verify.parity``: ``python -m verify.parity``, Triton vs local ONNX Runtime, one JSON report.
- ``verify.fleet``: the fleet table and cross-host parity from several reports.

Needs only numpy, tokenizers, tritonclient and (parity) onnxruntime; nothing from the deploy.
"""
