"""Triton readiness and served model config, read over HTTP from the host itself with curl."""

from __future__ import annotations

import json
from typing import Any, TypedDict
from urllib.parse import quote as url_quote

from pyinfra.api import FactBase

from facts._shell import quote, when_present

# Short timeouts: these facts are polled while waiting for the model to load.
_CURL = "curl -s --connect-timeout 2 --max-time 5"


class TritonHealthInfo(TypedDict):
    live: bool
    ready: bool
    model_ready: bool


def _base_url(port: int, address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{int(port)}"


def _model_path(model: str) -> str:
    return f"/v2/models/{url_quote(model, safe='')}"


class TritonHealth(FactBase[TritonHealthInfo]):
    """
    Triton's health endpoints on ``address:port`` (default 127.0.0.1, the published HTTP port):
    ``{"live": …, "ready": …, "model_ready": …}``, each True only on HTTP 200. The command prints
    one ``<check> <status code>`` line per endpoint (``live 200``, ``ready 400``,
    ``model_ready 000`` when refused); no curl or nothing listening: all False.
    """

    def command(self, port: int, model: str, address: str = "127.0.0.1") -> str:
        base = _base_url(port, address)
        checks = {
            "live": f"{base}/v2/health/live",
            "ready": f"{base}/v2/health/ready",
            "model_ready": f"{base}{_model_path(model)}/ready",
        }
        probes = "; ".join(
            f"echo \"{check} $({_CURL} -o /dev/null -w '%{{http_code}}' {quote(url)})\""
            for check, url in checks.items()
        )
        return when_present("curl", probes)

    @staticmethod
    def default() -> TritonHealthInfo:
        return {"live": False, "ready": False, "model_ready": False}

    def process(self, output: list[str]) -> TritonHealthInfo:
        result = self.default()
        for line in output:
            parts = line.split()
            if len(parts) == 2 and parts[0] in result:
                result[parts[0]] = parts[1] == "200"  # type: ignore[literal-required]
        return result


class TritonModelConfig(FactBase[dict[str, Any] | None]):
    """
    The config Triton actually serves for ``model`` (JSON from ``/v2/models/MODEL/config``), or
    None when curl is absent, nothing listens, or the model is unknown.
    """

    def command(self, port: int, model: str, address: str = "127.0.0.1") -> str:
        url = f"{_base_url(port, address)}{_model_path(model)}/config"
        return when_present("curl", f"{_CURL} --fail {quote(url)} || true")

    def process(self, output: list[str]) -> dict[str, Any] | None:
        try:
            data = json.loads("\n".join(output))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
