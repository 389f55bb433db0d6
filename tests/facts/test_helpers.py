"""Pure helpers next to the facts: data-centre GPU classifier, auth digest, GPU summary."""

from __future__ import annotations

import base64
import hashlib

import pytest

from facts.docker import registry_auth_digest
from facts.gpu import is_datacenter_gpu, parse_gpu_line

# Names exactly as nvidia-smi prints them.
DATACENTER = [
    "NVIDIA H100 80GB HBM3",
    "NVIDIA H100 PCIe",
    "NVIDIA H100 NVL",
    "NVIDIA H200",
    "NVIDIA H800",
    "NVIDIA GH200 480GB",
    "NVIDIA A100-SXM4-40GB",
    "NVIDIA A100 80GB PCIe",
    "NVIDIA A800-SXM4-80GB",
    "NVIDIA A10",
    "NVIDIA A10G",
    "NVIDIA A30",
    "NVIDIA A40",
    "NVIDIA A16",
    "NVIDIA A2",
    "NVIDIA L4",
    "NVIDIA L40",
    "NVIDIA L40S",
    "NVIDIA B200",
    "NVIDIA B100",
    "NVIDIA GB200",
    "Tesla T4",
    "Tesla V100-SXM2-16GB",
    "Tesla V100S-PCIE-32GB",
    "Tesla P100-PCIE-16GB",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition",
]
NOT_DATACENTER = [
    "NVIDIA GeForce RTX 4090",
    "NVIDIA GeForce RTX 3090",
    "NVIDIA GeForce RTX 5090",
    "NVIDIA RTX A6000",
    "NVIDIA RTX A4000",
    "NVIDIA RTX A1000",
    "NVIDIA RTX 6000 Ada Generation",
    "Quadro RTX 8000",
    "NVIDIA GeForce GTX 1080 Ti",
    "NVIDIA TITAN RTX",
    "",
]


@pytest.mark.parametrize("name", DATACENTER)
def test_datacenter(name: str) -> None:
    assert is_datacenter_gpu(name)


@pytest.mark.parametrize("name", NOT_DATACENTER)
def test_not_datacenter(name: str) -> None:
    assert not is_datacenter_gpu(name)


def test_registry_auth_digest_is_sha256_of_docker_auth_field() -> None:
    # Docker's config.json auth field for user "$oauthtoken", key "nvapi-example":
    stored = "JG9hdXRodG9rZW46bnZhcGktZXhhbXBsZQ=="
    assert base64.b64decode(stored) == b"$oauthtoken:nvapi-example"
    assert registry_auth_digest("$oauthtoken", "nvapi-example") == hashlib.sha256(stored.encode()).hexdigest()
    assert registry_auth_digest("$oauthtoken", "nvapi-example") == ("7a27e2a53ea1bd5dcc606965a77d99e1867a6a47042091b26ac9ea3ba7f75451")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "No devices were found",
        "0, NVIDIA H100 80GB HBM3, GPU-x, 575.57.08, 81559",  # a field short
        "x, NVIDIA H100 80GB HBM3, GPU-x, 575.57.08, 81559, 9.0",  # index not a number
        "0, NVIDIA H100 80GB HBM3, GPU-x, 575.57.08, 81559, 9.0, extra",
    ],
)
def test_parse_gpu_line_rejects_non_rows(line: str) -> None:
    assert parse_gpu_line(line) is None
