"""The embeddings gateway: EmbeddingGemma on Triton behind OpenAI's /v1/embeddings and Text Embeddings
Inference's API, one systemd unit on every Triton host (``python -m embeddings_gateway``).

- ``embeddings_gateway.app``: the server (Starlette, uvicorn, async gRPC to Triton); its docstring documents the API.
- ``embeddings_gateway.api``: its config, request parsing, errors, buckets, response (no framework, no Triton).
- ``embeddings_gateway.tei``: Text Embeddings Inference's native API, pure parts.
- ``embeddings_gateway.health``: the health path off the busy path (Triton probe, /ready responder threads).

Runs on a host from its own venv (requirements.txt here, a hashed lock) with embeddinggemma.py, the
model's contract it shares with verify/; it imports nothing from verify/ or deploys/.
"""
