"""IPv6 bind addresses give bracketed URLs and ``host:port`` targets everywhere the deploy builds them
from an address: the READY wait, the health fact, parity's Triton URLs, the gateway's Triton target
and its own probe URL, the compose port mappings, and the fake hosts' canned answers."""

from __future__ import annotations

import json
import shlex

import pytest

from deploys.core import endpoints, operations, paths, settings
from deploys.gateway import logic as gateway
from deploys.triton import render as triton_render
from deploys.triton import triton_service
from deploys.triton import verify_run as verify_step
from facts.triton import TritonHealth
from tests.support.operation_runner import shell_of

# (triton_bind_address, how the host reaches Triton's HTTP port)
CASES = [
    ("127.0.0.1", "127.0.0.1:6000"),
    ("0.0.0.0", "127.0.0.1:6000"),
    ("10.0.0.5", "10.0.0.5:6000"),
    ("::1", "[::1]:6000"),
    ("fd00::5", "[fd00::5]:6000"),
    ("2001:db8::17", "[2001:db8::17]:6000"),
]


def _settings(**data: object) -> settings.Settings:
    return settings.parse("web-1", {"gpu": False, "triton_bind_beyond_loopback": True, **data})


@pytest.mark.parametrize("address, endpoint", CASES, ids=[a for a, _ in CASES])
def test_triton_urls_bracket_ipv6(address: str, endpoint: str) -> None:
    s = _settings(triton_bind_address=address)
    assert endpoints.probe_endpoint(s, s.triton_http_port) == endpoint
    assert f"http://{endpoint}/v2/models/embeddinggemma/ready" in triton_service.wait_ready_command(s)
    health = TritonHealth().command(port=s.triton_http_port, model=s.model_name, address=endpoints.probe_address(s))
    assert f"http://{endpoint}/v2/health/live" in health
    grpc = endpoint.replace(":6000", ":6001")
    argv = shlex.split(verify_step.parity_command(s, paths.layout(s), "cpu").split(" > ")[0].split("&& ", 1)[1])
    assert argv[argv.index("--url") + 1] == endpoint and argv[argv.index("--grpc-url") + 1] == grpc
    config = json.loads(gateway.config_text(s, paths.layout(s), auth=False))
    assert grpc in json.dumps(config)


@pytest.mark.parametrize(
    "address, url",
    [("127.0.0.1", "http://127.0.0.1:6080"), ("::", "http://[::1]:6080"), ("fd00::7", "http://[fd00::7]:6080")],
)
def test_gateway_probe_url_brackets_ipv6(address: str, url: str) -> None:
    assert endpoints.probe_url(_settings(gateway_listen_address=address)) == url


def test_compose_publishes_on_a_bracketed_ipv6_address() -> None:
    s = _settings(triton_bind_address="fd00::5")
    text = triton_render.compose_file(s, gpu=False)
    assert '"[fd00::5]:6000:8000"' in text or "[fd00::5]:6000:8000" in text, text


def test_no_url_is_built_from_a_bare_address() -> None:
    # What every case above would break into: 'http://fd00::5:6000' (a port-less URL with a bad host).
    s = _settings(triton_bind_address="fd00::5", gateway_listen_address="fd00::7")
    texts = [
        triton_service.wait_ready_command(s),
        verify_step.parity_command(s, paths.layout(s), "cpu"),
        gateway.config_text(s, paths.layout(s), auth=True),
        shell_of(operations.wait_ready, **endpoints.ready_args(s)),
    ]
    for text in texts:
        assert "fd00::5:" not in text.replace("[fd00::5]:", ""), text
        assert "fd00::7:" not in text.replace("[fd00::7]:", ""), text
