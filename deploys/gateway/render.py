"""The embeddings gateway's rendering: its JSON config and its systemd unit.

Rendered from templates/gateway/ by deploys/core/render.py's ``render``; pure functions of validated settings."""

from __future__ import annotations

import json

from deploys.core.render import render
from deploys.core.settings import Settings


def gateway_config(s: Settings, triton_grpc_url: str, tokenizer_dir: str, api_key_sha256_file: str, triton_key_file: str = "") -> str:
    """The embeddings gateway's JSON config (templates/gateway/gateway.json.j2), parsed back as JSON."""
    text = render(
        "gateway.json.j2",
        s=s,
        triton_grpc_url=triton_grpc_url,
        tokenizer_dir=tokenizer_dir,
        api_key_sha256_file=api_key_sha256_file,
        triton_key_file=triton_key_file,
    )
    json.loads(text)
    return text


def gateway_unit(user: str, venv: str, work_dir: str, config_file: str, stop_timeout_s: int) -> str:
    """The embeddings gateway's systemd unit (templates/gateway/embeddings-gateway.service.j2)."""
    return render(
        "embeddings-gateway.service.j2", user=user, venv=venv, work_dir=work_dir, config_file=config_file, stop_timeout_s=stop_timeout_s
    )
