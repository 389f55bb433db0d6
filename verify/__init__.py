"""Verification and client for EmbeddingGemma-300m on Triton (runs on hosts; see verify/README.md).

- ``verify.client``: embed queries/documents over HTTP or gRPC (prefixes, tokenising, padding, Matryoshka).
- ``verify.parity``: ``python -m verify.parity``, Triton vs local ONNX Runtime, one JSON report
  (its verdicts in ``verify.checks``, measurements in ``verify.probes``, the embeddings API's answers
  in ``verify.api_probe``).
- ``verify.fleet``: the fleet table and cross-host parity from several reports.

Needs only numpy, tokenizers, tritonclient and (parity) onnxruntime, and embeddinggemma.py (the model's
contract, shipped beside it); nothing from the deploy or the gateway.
"""
