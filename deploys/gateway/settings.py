"""The embeddings gateway's settings (deploy side; each gateway_<key> is a key of the host program's config). Each setting is declared once, here (deploys/core/tunables.py)."""

from __future__ import annotations

from typing import Any

from deploys.core.tunables import Setting, _bool, _int, _ip
from embeddings_gateway import api as gateway_api


def _gateway(key: str, kind: str, doc: str) -> Setting[Any]:
    """A setting that is a key of the gateway's config: default and check from embeddings_gateway/api.py,
    so the controller refuses what the host program would refuse."""
    check = gateway_api.CHECKS[key]
    default = gateway_api.DEFAULTS[key]

    def checked(value: Any) -> Any:
        try:
            value = check(list(value) if isinstance(value, tuple) else value)
        except ValueError as error:
            raise ValueError(f"allowed: {error}") from None
        return list(value) if isinstance(value, tuple) else value

    return Setting(list(default) if isinstance(default, tuple) else default, doc, kind, checked, name=f"gateway_{key}")


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class GatewaySettings:
    # -- embeddings gateway (OpenAI /v1/embeddings on every host: embeddings_gateway/app.py) --
    gateway_enabled = Setting(True, "Run the embeddings gateway (a systemd unit) on the host.", "bool", _bool)
    gateway_listen_address = Setting("127.0.0.1", "Address the gateway listens on; beyond loopback (a private address the front door reaches) needs gateway_api_keys in the vault.", "str", _ip)
    gateway_listen_port = _gateway("listen_port", "int", "Port of the embeddings gateway (OpenAI /v1/embeddings, TEI's /embed, /ready, /metrics).")
    gateway_health_port = _gateway("health_port", "int", "Port of the gateway's health responder (GET /ready, /health on a thread of its own, fast while the gateway is saturated); the front door checks it. Same address as gateway_listen_address.")
    gateway_max_tokens = _gateway("max_tokens", "int", "Tokens per input, prompt and special tokens included. The export is reported (third party, not measured here) to drift from Gemma 3 past 256 tokens: cosine 0.991 at 512, 0.949 at 2048.")
    gateway_truncate = _gateway("truncate", "bool", "Truncate inputs over gateway_max_tokens; false: such a request is a 400 naming the input.")
    gateway_length_buckets = _gateway("length_buckets", "list[int]", "Pad lengths: inputs are padded to the bucket above them so Triton's batcher can merge callers (the last ≥ gateway_max_tokens).")
    gateway_triton_timeout_s = _gateway("triton_timeout_s", "float", "gRPC deadline of each Triton call (past it: 504).")
    gateway_max_inputs = _gateway("max_inputs", "int", "Inputs per request, OpenAI's 2048 by default (past it: 400; TEI API: 422).")
    gateway_max_request_tokens = _gateway("max_request_tokens", "int", "Tokens per request after prompts and truncation, OpenAI's 300000 by default (past it: 400 max_tokens_per_request).")
    gateway_token_ids_input = _gateway("token_ids_input", "bool", "Accept token-id inputs as EmbeddingGemma ids; false: a 400 saying to send text (LangChain: check_embedding_ctx_length=False).")
    gateway_max_body_bytes = _gateway("max_body_bytes", "int", "Request body limit in bytes (past it: 413).")
    gateway_max_concurrency = _gateway("max_concurrency", "int", "Embedding requests processed at once on the host (shared among gateway_workers, at least 1 each).")
    gateway_max_queue = _gateway("max_queue", "int", "Requests waiting for a slot on the host (shared among gateway_workers); past it: 429 at once.")
    gateway_workers = _gateway("workers", "int", "Gateway worker processes on the one port (SO_REUSEPORT, each with its own event loop, Triton channel and micro-batcher); 0: half the host's usable cores, 1 to 4.")
    gateway_queue_timeout_s = _gateway("queue_timeout_s", "float", "Longest wait for a slot, then 429.")
    gateway_default_prompt = _gateway("default_prompt", "str", "Prompt for text inputs that name no input_type or task: none, query or document.")
    gateway_shutdown_timeout_s = _gateway("shutdown_timeout_s", "float", "On stop or restart, seconds in-flight requests get to finish.")
    gateway_log_level = _gateway("log_level", "str", "Gateway log level: debug, info, warning or error.")
    gateway_ready_timeout_s = Setting(60, "Seconds to wait for the gateway's /ready after a (re)start.", "int", _int(5, 3600))
# fmt: on
