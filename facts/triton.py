"""Triton on a host: readiness over HTTP (curl on the host itself) and the releases under triton_dir."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any, TypedDict
from urllib.parse import quote as url_quote

from pyinfra.api import FactBase

from deploys.core.paths import CURRENT, PREVIOUS, RELEASES
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
        probes = "; ".join(f"echo \"{check} $({_CURL} -o /dev/null -w '%{{http_code}}' {quote(url)})\"" for check, url in checks.items())
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


class TritonReleases(FactBase[dict[str, Any]]):
    """
    ``{"current": id | None, "previous": id | None, "releases": [ids, most recently activated first]}``
    from ``{triton_dir}`` (deploys/core/paths.py); all empty when the directory is missing.
    """

    def command(self, root: str) -> str:
        return (
            f"cd {quote(root)} 2>/dev/null || exit 0; "
            f'echo "{CURRENT} $(readlink {CURRENT} 2>/dev/null)"; echo "{PREVIOUS} $(readlink {PREVIOUS} 2>/dev/null)"; '
            f'for d in {RELEASES}/*/; do [ -d "$d" ] && stat -c "release %Y %n" "$d"; done; true'
        )

    @staticmethod
    def default() -> dict[str, Any]:
        return {"current": None, "previous": None, "releases": []}

    def process(self, output: list[str]) -> dict[str, Any]:
        return parse_releases(output)


def parse_releases(output: list[str]) -> dict[str, Any]:
    """Parse :class:`TritonReleases`'s output (pure; tests feed it real shell output)."""
    result = TritonReleases.default()
    found: list[tuple[int, str]] = []
    for line in output:
        parts = line.split()
        if len(parts) == 2 and parts[0] in (CURRENT, PREVIOUS):
            result[parts[0]] = PurePosixPath(parts[1]).name or None
        elif len(parts) == 3 and parts[0] == "release" and parts[1].isdigit():
            found.append((int(parts[1]), PurePosixPath(parts[2].rstrip("/")).name))
    result["releases"] = [name for _, name in sorted(found, key=lambda item: (-item[0], item[1]))]
    return result


class TritonReleaseImages(FactBase[dict[str, str]]):
    """
    ``{release id: image}``: the Triton image each release's compose file under ``{triton_dir}/releases``
    names (its first ``    image:`` line, as the canonical compose file has it); ``{}`` when
    there is none.
    """

    def command(self, root: str) -> str:
        return (
            f"cd {quote(root)}/{RELEASES} 2>/dev/null || exit 0; "
            'for f in */docker-compose.yml; do [ -f "$f" ] && printf \'%s %s\\n\' "${f%%/*}" "$(sed -n \'s/^    image: //p\' "$f" | head -n 1)"; done; true'
        )

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        return parse_release_images(output)


def parse_release_images(output: list[str]) -> dict[str, str]:
    """Parse :class:`TritonReleaseImages`'s output (``<id> "<image>"``: the template writes the image as a JSON string)."""
    found: dict[str, str] = {}
    for line in output:
        release, _, value = line.strip().partition(" ")
        value = value.strip()
        if not release or not value:
            continue
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        elif value.startswith("'"):
            value = value.strip("'")  # a single-quoted YAML scalar (the canonical compose file)
        if isinstance(value, str) and value:
            found[release] = value
    return found


class TritonModelLinks(FactBase[dict[str, dict[str, str | None]]]):
    """
    ``{name: {"store": "<device>:<inode>" | None, "release": "<device>:<inode>" | None}}``: for each
    model file ``name``, the identity of the model store's file (``store_dir/name``) and of the
    release's (``release_dir/name``; a hard link of the store's when intact). None: no such file.
    ``{}`` when neither directory has any of them.
    """

    def command(self, store_dir: str, release_dir: str, names: tuple[str, ...]) -> str:
        parts = []
        for name in names:
            for side, directory in (("store", store_dir), ("release", release_dir)):
                path = quote(f"{directory}/{name}")
                parts.append(f"[ -f {path} ] && stat -c {quote(f'{side} %d:%i {name}')} {path}")
        return "; ".join(parts) + "; true"

    @staticmethod
    def default() -> dict[str, dict[str, str | None]]:
        return {}

    def process(self, output: list[str]) -> dict[str, dict[str, str | None]]:
        return parse_model_links(output)


def parse_model_links(output: list[str]) -> dict[str, dict[str, str | None]]:
    """Parse :class:`TritonModelLinks`'s output (``store 2049:131 model.onnx``; pure)."""
    found: dict[str, dict[str, str | None]] = {}
    for line in output:
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0] in ("store", "release") and ":" in parts[1]:
            found.setdefault(parts[2], {"store": None, "release": None})[parts[0]] = parts[1]
    return found


class TritonReleaseOwnSettings(FactBase[dict[str, dict[str, Any]]]):
    """
    ``{release id: {"triton_http_port": 6000, "triton_grpc_port": 6001, "triton_metrics_port": 6002,
    "triton_bind_address": "127.0.0.1", "model_name": "embeddinggemma"}}``: the values each
    release's compose file under ``{triton_dir}/releases`` was rendered with (its published ports,
    the HTTP port's address and ``--load-model=``, as
    templates/triton/docker-compose.yml.j2 writes them), so a rollback waits on that release's own port
    and container whatever the inventory or ``--data`` say now; ``{}`` when there is none.
    """

    def command(self, root: str) -> str:
        return (
            f"cd {quote(root)}/{RELEASES} 2>/dev/null || exit 0; "
            'for f in */docker-compose.yml; do [ -f "$f" ] && sed -n '
            # a port item: a JSON string (releases from before the canonical compose file) or a
            # YAML scalar, plain or quoted (the canonical file); parse_release_own_settings unquotes
            "-e 's|^ *- \\(.*:800[012].\\{0,1\\}\\)$|'\"${f%%/*}\"' port \\1|p' "
            # --load-model= inside the container's sh -c script (or, in releases from before it, a list item)
            "-e 's|.*--load-model=\\([A-Za-z0-9_.-]*\\).*|'\"${f%%/*}\"' model \"--load-model=\\1\"|p' "
            '"$f"; done; true'
        )

    @staticmethod
    def default() -> dict[str, dict[str, Any]]:
        return {}

    def process(self, output: list[str]) -> dict[str, dict[str, Any]]:
        return parse_release_own_settings(output)


_CONTAINER_PORTS = {"8000": "triton_http_port", "8001": "triton_grpc_port", "8002": "triton_metrics_port"}


def parse_release_own_settings(output: list[str]) -> dict[str, dict[str, Any]]:
    """Parse :class:`TritonReleaseOwnSettings`'s output (``<id> port "ADDR:PORT:8000"`` or
    ``<id> port ADDR:PORT:8000``, ``<id> model "--load-model=NAME"``); a release is kept only with
    its three ports, the HTTP port's address and its model name."""
    found: dict[str, dict[str, Any]] = {}
    for line in output:
        release, kind, value = [*line.strip().split(" ", 2), "", ""][:3]
        if kind == "port" and value[:1] not in ('"', ""):
            value = json.dumps(value.strip("'"))  # a plain or single-quoted YAML scalar
        try:
            text = json.loads(value)
        except ValueError:
            continue
        if not isinstance(text, str):
            continue
        if kind == "port":
            address, host_port, container_port = ["", "", *text.rsplit(":", 2)][-3:]
            if container_port in _CONTAINER_PORTS and host_port.isdigit():
                found.setdefault(release, {})[_CONTAINER_PORTS[container_port]] = int(host_port)
                if container_port == "8000" and address:
                    found[release]["triton_bind_address"] = address.removeprefix("[").removesuffix("]")
        elif kind == "model" and text.startswith("--load-model=") and len(text) > len("--load-model="):
            found.setdefault(release, {})["model_name"] = text[len("--load-model=") :]
    return {r: v for r, v in found.items() if len(v) == len(_CONTAINER_PORTS) + 2}
