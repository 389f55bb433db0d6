"""Settings: every bad value ends with one line naming host, key, value and what is allowed."""

import types
import typing

import pytest

from deploys.core import settings
from deploys.core.settings import SettingsError, parse
from deploys.tools import readme

BAD = [
    ({"gpu": "yes"}, "setting gpu='yes' is invalid (allowed: true, false or \"auto\""),
    ({"triton_max_batch_size": 0}, "triton_max_batch_size=0 is invalid (allowed: an integer from 1 to 1024)"),
    ({"triton_max_batch_size": "8"}, "triton_max_batch_size='8' is invalid (allowed: an integer"),
    ({"triton_max_batch_size": True}, "triton_max_batch_size=True is invalid"),
    ({"triton_http_port": 70000}, "triton_http_port=70000 is invalid (allowed: an integer from 1 to 65535)"),
    ({"triton_bind_address": "localhost"}, "triton_bind_address='localhost' is invalid (allowed: an IP address"),
    ({"triton_subnet": "10.57.0.1/24"}, "triton_subnet='10.57.0.1/24' is invalid (allowed: a CIDR network"),
    ({"model_variant": "fp16"}, "model_variant='fp16' is invalid (refused: EmbeddingGemma's activations reach ~8e5"),
    ({"model_variant": "q4f16"}, "model_variant='q4f16' is invalid (refused:"),
    ({"model_variant": "int2"}, "model_variant='int2' is invalid (allowed: fp32, q8, q4)"),
    ({"model_revision": "main"}, "model_revision='main' is invalid (allowed: a 40-character commit sha (not a branch name))"),
    ({"docker_source": "snap"}, "docker_source='snap' is invalid (allowed: distro, docker-ce)"),
    ({"triton_image": "tritonserver"}, "triton_image='tritonserver' is invalid (allowed: registry/repository:tag)"),
    ({"triton_image_digest": "sha256:abc"}, "triton_image_digest='sha256:abc' is invalid"),
    (
        {"docker_registry_mirrors": "https://mirror"},
        "docker_registry_mirrors='https://mirror' is invalid (allowed: a list of non-empty strings)",
    ),
    ({"triton_grpc_port": 6000}, "triton_http_port=[6000, 6000, 6002] is invalid (the HTTP, gRPC and metrics ports must differ)"),
    ({"triton_preferred_batch_sizes": [4, 16]}, "triton_preferred_batch_sizes=[4, 16] is invalid (each must be ≤ triton_max_batch_size=8)"),
    ({"triton_tensorrt": True, "gpu": False}, "triton_tensorrt=True is invalid (TensorRT needs a GPU host"),
    ({"model_fetch": "mirror"}, "model_mirror='' is invalid (model_fetch=mirror needs a mirror URL or directory)"),
    ({"docker_ce_version": "5:28.0.0-1"}, "docker_ce_version='5:28.0.0-1' is invalid (only used with docker_source: docker-ce)"),
    ({"triton_dir": "/opt/../etc"}, "triton_dir='/opt/../etc' is invalid (allowed: an absolute path without '..' components)"),
    ({"triton_dir": "/opt/triton/.."}, "triton_dir='/opt/triton/..' is invalid (allowed: an absolute path without '..' components)"),
    ({"triton_dir": "opt/triton"}, "triton_dir='opt/triton' is invalid (allowed: an absolute path"),
    (
        {"docker_ce_apt_url": "http://mirror.example/linux"},
        "docker_ce_apt_url='http://mirror.example/linux' is invalid (plain http:// is refused; use https://, or set allow_plain_http: true to accept it)",
    ),
    (
        {"nvidia_toolkit_apt_url": "http://mirror.example/nvidia"},
        "nvidia_toolkit_apt_url='http://mirror.example/nvidia' is invalid (plain http:// is refused",
    ),
    (
        {"verify_pip_index_url": "http://pypi.example/simple"},
        "verify_pip_index_url='http://pypi.example/simple' is invalid (plain http:// is refused",
    ),
    (
        {"model_fetch": "mirror", "model_mirror": "http://hf.example"},
        "model_mirror='http://hf.example' is invalid (plain http:// is refused",
    ),
    (
        {"model_token_endpoints": "https://hf.example"},
        "model_token_endpoints='https://hf.example' is invalid (allowed: a list of http(s) URLs",
    ),
    ({"model_token_endpoints": ["hf.example"]}, "model_token_endpoints=['hf.example'] is invalid (allowed: a list of http(s) URLs"),
    ({"model_token_endpoints": ["http://hf.example"]}, "model_token_endpoints=['http://hf.example'] is invalid (plain http:// is refused"),
    ({"allow_plain_http": "yes"}, "allow_plain_http='yes' is invalid (allowed: true or false)"),
    ({"gateway_workers": 65}, "gateway_workers=65 is invalid (allowed: an integer from 0 to 64)"),
    ({"gateway_workers": "2"}, "gateway_workers='2' is invalid (allowed: an integer from 0 to 64)"),
    (
        {"docker_ce_key_fingerprint": "0EBFCD88"},
        "docker_ce_key_fingerprint='0EBFCD88' is invalid (allowed: a 40-hex-digit (v4) or 64-hex-digit (v6) key fingerprint",
    ),
    ({"nvidia_toolkit_key_fingerprint": "Z" * 40}, "nvidia_toolkit_key_fingerprint='" + "Z" * 40 + "' is invalid (allowed: a 40-hex-digit"),
    ({"triton_max_batchsize": 8}, "unknown setting 'triton_max_batchsize'; did you mean triton_max_batch_size?"),
    ({"verify_min_cosin": 0.9}, "unknown setting 'verify_min_cosin'; did you mean verify_min_cosine?"),
    ({"registry_qqqqqqqqqq": 1}, "unknown setting 'registry_qqqqqqqqqq'; see the README's tunables table"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[next(iter(d)) + "-" + str(i) for i, (d, _) in enumerate(BAD)])
def test_bad_setting_is_one_clear_line(data, message):
    with pytest.raises(SettingsError) as error:
        parse("gpu-01", data)
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith("host gpu-01: ")
    assert message in text


def test_defaults_are_valid_and_typed():
    s = parse("h", {})
    for setting in settings.SETTINGS:
        assert setting.check(setting.default) == getattr(s, setting.name)
    assert s.triton_bind_address == "127.0.0.1"
    assert s.triton_image_ref == "nvcr.io/nvidia/tritonserver:25.05-py3"


def test_digest_pins_the_image():
    s = parse("h", {"triton_image_digest": "sha256:" + "a" * 64})
    assert s.triton_image_ref == "nvcr.io/nvidia/tritonserver:25.05-py3@sha256:" + "a" * 64


def test_foreign_keys_are_not_ours_to_judge():
    s = parse("h", {"ssh_user": "ubuntu", "_sudo": True, "my_team_key": 3})
    assert s.gpu == "auto"


def test_every_setting_is_documented():
    for setting in settings.SETTINGS:
        assert setting.doc.endswith(".") and len(setting.doc) > 15, setting.name
        assert setting.name in settings.OWNED_NAMES or setting.name.startswith(settings.OWNED_PREFIXES), setting.name


def test_readme_table_is_generated_from_settings():
    text = readme.SETTINGS_PAGE.read_text()  # docs/settings.md
    assert readme.with_table(text) == text, "docs/settings.md tunables table is stale: run `make readme`"


def test_settings_attributes_are_the_table() -> None:
    """Settings declares one typed attribute per row of SETTINGS: same names, order and types."""
    hints = typing.get_type_hints(settings.Settings)
    assert list(hints) == ["host", *(s.name for s in settings.SETTINGS)]
    for s in settings.SETTINGS:
        kind = settings.KIND_TYPES.get(s.kind, s.kind)
        assert hints[s.name] == eval(kind), s.name  # the README's type column, as a Python type
        origin = typing.get_origin(hints[s.name])
        runtime = hints[s.name] if origin in (None, types.UnionType) else origin  # list[int] -> list
        assert isinstance(getattr(parse("h", {}), s.name), runtime), s.name
    with pytest.raises(AttributeError):
        parse("h", {}).triton_max_batchsize  # noqa: B018 - a typo is an AttributeError (and a type checker's error)


def test_triton_dir_refuses_only_dot_dot_components():
    # '..' as a path component would let the deploy's rm/ln/mv land outside the directory it names.
    assert parse("h", {"triton_dir": "/srv/triton..v2/a"}).triton_dir == "/srv/triton..v2/a"
    for bad in ("/..", "/srv/../etc", "/srv/triton/../.."):
        with pytest.raises(SettingsError, match="without '..' components"):
            parse("h", {"triton_dir": bad})


def test_apt_key_fingerprints_and_plain_http():
    s = parse("h", {})
    assert s.docker_ce_key_fingerprint == "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
    assert s.nvidia_toolkit_key_fingerprint == "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    assert s.allow_plain_http is False
    # As gpg prints it (groups of four, lowercase too): normalised.
    spaced = parse("h", {"docker_ce_key_fingerprint": "9dc8 5822 9fc7 dd38 854a  e2d8 8d81 803c 0ebf cd88"})
    assert spaced.docker_ce_key_fingerprint == "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
    assert parse("h", {"docker_ce_key_fingerprint": "ab" * 32}).docker_ce_key_fingerprint == "AB" * 32  # v6: SHA-256
    http = {
        "docker_ce_apt_url": "http://m/linux",
        "verify_pip_index_url": "http://p/simple",
        "model_fetch": "mirror",
        "model_mirror": "http://hf",
    }
    allowed = parse("h", {**http, "allow_plain_http": True})
    assert (allowed.docker_ce_apt_url, allowed.verify_pip_index_url, allowed.model_mirror) == (
        "http://m/linux",
        "http://p/simple",
        "http://hf",
    )
    assert parse("h", {"model_fetch": "mirror", "model_mirror": "/srv/http://not-a-url"}).model_mirror == "/srv/http://not-a-url"
