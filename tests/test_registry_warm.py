"""The cache warm script (deploys/registry_cache/registry_warm.py, run on the cache host) against a storage tree
laid out as the distribution registry lays it out and a stand-in for the cache's HTTP API: it
serves manifests, and on a blob request it answers the headers, streams the body slowly and
"stores" the blob after a moment, as the 2.8 proxy does (one copy to storage, one to the client).
The real registry is not started here (the sandbox e2e does that)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploys.registry_cache import registry_warm as warm

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploys/registry_cache/registry_warm.py"
REPO = "nvidia/tritonserver"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(storage: Path, data: bytes, repo: str | None = REPO) -> str:
    """The blob's data, and (with ``repo``) the repository's layer link, as registry/storage/paths.go has them."""
    d = digest(data)
    path = Path(warm.blob_path(str(storage), d))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if repo:
        link = storage / "docker/registry/v2/repositories" / repo / "_layers/sha256" / d[7:] / "link"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(d)
    return d


def put_manifest(storage: Path, manifest: dict, tag: str | None = None) -> str:
    data = json.dumps(manifest).encode()
    d = put_blob(storage, data, repo=None)
    base = storage / "docker/registry/v2/repositories" / REPO / "_manifests"
    (base / "revisions/sha256" / d[7:]).mkdir(parents=True, exist_ok=True)
    (base / "revisions/sha256" / d[7:] / "link").write_text(d)
    if tag:
        (base / "tags" / tag / "current").mkdir(parents=True, exist_ok=True)
        (base / "tags" / tag / "current/link").write_text(d)
    return d


class Image:
    """A two-platform image: an index, per platform a manifest, a config and a layer."""

    def __init__(self, layer_size: int = 1000) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        children = []
        for arch in ("amd64", "arm64"):
            config = json.dumps({"architecture": arch}).encode()
            layer = (arch.encode() * (layer_size // len(arch) + 1))[:layer_size]
            self.blobs[digest(config)] = config
            self.blobs[digest(layer)] = layer
            manifest = {
                "schemaVersion": 2,
                "mediaType": warm.MANIFEST_TYPES[0],
                "config": {"digest": digest(config), "size": len(config)},
                "layers": [{"digest": digest(layer), "size": len(layer)}],
            }
            data = json.dumps(manifest).encode()
            self.manifests[digest(data)] = data
            children.append({"digest": digest(data), "platform": {"os": "linux", "architecture": arch}, "size": len(data)})
        self.index = json.dumps({"schemaVersion": 2, "mediaType": warm.INDEX_TYPES[0], "manifests": children}).encode()
        self.manifests[digest(self.index)] = self.index
        self.amd64 = children[0]["digest"]
        self.arm64 = children[1]["digest"]

    def layers(self, child: str) -> list[str]:
        manifest = json.loads(self.manifests[child])
        return [manifest["config"]["digest"], manifest["layers"][0]["digest"]]

    def store(self, storage: Path, tag: str = "25.05-py3", platforms: tuple[str, ...] = ("amd64", "arm64")) -> None:
        """Everything in storage, as after a full pull of ``platforms``."""
        put_manifest(storage, json.loads(self.index), tag=tag)
        for arch, child in (("amd64", self.amd64), ("arm64", self.arm64)):
            put_manifest(storage, json.loads(self.manifests[child]))
            if arch in platforms:
                for blob in self.layers(child):
                    put_blob(storage, self.blobs[blob])


# -- check: reads the storage only ----------------------------------------------------------------------


def test_check_is_cold_until_every_wanted_piece_is_stored(tmp_path: Path) -> None:
    image = Image()
    with pytest.raises(warm.Cold, match="no manifest for nvidia/tritonserver:25.05-py3"):
        warm.check(str(tmp_path), REPO, "25.05-py3", ["linux/amd64"])
    image.store(tmp_path, platforms=("amd64",))
    warm.check(str(tmp_path), REPO, "25.05-py3", ["linux/amd64"])  # arm64's layers are not needed
    warm.check(str(tmp_path), REPO, digest(image.index), ["linux/amd64"])  # by digest too
    with pytest.raises(warm.Cold, match=f"no blob {image.layers(image.arm64)[0]}"):
        warm.check(str(tmp_path), REPO, "25.05-py3", ["linux/arm64"])
    with pytest.raises(warm.Cold, match="no manifest nvidia/tritonserver@sha256:"):
        warm.check(str(tmp_path), REPO, "sha256:" + "0" * 64, ["linux/amd64"])


def test_a_blob_without_the_repository_link_is_not_served_locally(tmp_path: Path) -> None:
    image = Image()
    image.store(tmp_path, platforms=())
    for blob in image.layers(image.amd64):
        put_blob(tmp_path, image.blobs[blob], repo=None)  # data there, but not linked into the repository
    with pytest.raises(warm.Cold, match="no blob"):
        warm.check(str(tmp_path), REPO, "25.05-py3", ["linux/amd64"])


def test_check_prints_one_word_for_the_fact(tmp_path: Path) -> None:
    run = [sys.executable, "-I", str(SCRIPT), "check", "--storage", str(tmp_path), "--repo", REPO, "--ref", "25.05-py3"]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == "cold: no manifest for nvidia/tritonserver:25.05-py3\n"
    Image().store(tmp_path)
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == "warm\n"


# -- warm: against a stand-in of the cache's API --------------------------------------------------------


class StandInCache:
    """Serves the image's manifests (and stores them, as the proxy does); a blob request streams the
    body slowly, and the blob appears in the storage ``store_after_s`` later (the proxy's copy to
    storage), whatever the client does."""

    def __init__(self, image: Image, storage: Path, store_after_s: float = 0.2) -> None:
        self.image, self.storage, self.store_after_s = image, storage, store_after_s
        self.requests: list[str] = []
        self.body_bytes_sent: dict[str, int] = {}
        cache = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                cache.requests.append(self.path)
                kind, _, ref = self.path.removeprefix(f"/v2/{REPO}/").partition("/")
                if kind == "manifests":
                    data = cache.image.index if not ref.startswith("sha256:") else cache.image.manifests.get(ref)
                    if data is None:
                        self.send_error(404)
                        return
                    # The proxy stores a manifest it serves (and the tag it was asked by).
                    put_manifest(cache.storage, json.loads(data), tag=None if ref.startswith("sha256:") else ref)
                    self.send_response(200)
                    self.send_header("Content-Type", json.loads(data)["mediaType"])
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                data = cache.image.blobs[ref]
                threading.Timer(cache.store_after_s, put_blob, (cache.storage, data)).start()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                sent = 0
                try:
                    for start in range(0, len(data), 16384):
                        self.wfile.write(data[start : start + 16384])
                        self.wfile.flush()
                        sent += len(data[start : start + 16384])
                        time.sleep(0.001)
                except OSError:
                    pass
                cache.body_bytes_sent[ref] = sent

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandInCache:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_warm_fetches_the_wanted_platform_once_and_hangs_up_early(tmp_path: Path) -> None:
    image = Image(layer_size=32 * 2**20)
    with StandInCache(image, tmp_path) as cache:
        fetched = warm.warm(warm.Cache(cache.url), str(tmp_path), REPO, "25.05-py3", ["linux/amd64"], timeout_s=30)
        time.sleep(0.5)  # let the stand-in notice the hang-up
    warm.check(str(tmp_path), REPO, "25.05-py3", ["linux/amd64"])
    amd64 = image.layers(image.amd64)
    assert fetched == sum(len(image.blobs[b]) for b in amd64)
    blob_requests = [r for r in cache.requests if "/blobs/" in r]
    assert sorted(r.rsplit("/", 1)[1] for r in blob_requests) == sorted(amd64), "each amd64 blob once, no arm64 blob"
    layer = amd64[1]
    assert cache.body_bytes_sent[layer] < len(image.blobs[layer]) // 2, "the client read the whole layer instead of hanging up"


def test_warm_skips_what_the_storage_holds_and_the_command_line_reports(tmp_path: Path) -> None:
    image = Image()
    image.store(tmp_path, platforms=("amd64",))
    with StandInCache(image, tmp_path) as cache:
        result = subprocess.run(
            [
                sys.executable,
                "-I",
                str(SCRIPT),
                "warm",
                "--url",
                cache.url,
                "--storage",
                str(tmp_path),
                "--repo",
                REPO,
                "--ref",
                digest(image.index),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert "(0 bytes fetched from the upstream)" in result.stderr
    assert not [r for r in cache.requests if "/blobs/" in r]


def test_warm_fails_in_one_line_when_the_blob_never_lands(tmp_path: Path) -> None:
    image = Image()
    with StandInCache(image, tmp_path, store_after_s=3600) as cache:
        result = subprocess.run(
            [
                sys.executable,
                "-I",
                str(SCRIPT),
                "warm",
                "--url",
                cache.url,
                "--storage",
                str(tmp_path),
                "--repo",
                REPO,
                "--ref",
                "25.05-py3",
                "--timeout",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "not in the cache's storage after 1s (journalctl -u docker-registry)" in line


def test_warm_says_when_the_cache_cannot_be_reached(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            str(SCRIPT),
            "warm",
            "--url",
            "http://127.0.0.1:9",
            "--storage",
            str(tmp_path),
            "--repo",
            REPO,
            "--ref",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stderr.startswith("registry warm: cannot reach the cache:")


def test_split_ref_and_warm_command() -> None:
    from deploys.core import settings
    from deploys.registry_cache import logic as registry_cache

    assert registry_cache.split_ref("10.0.0.7:5000/nvidia/tritonserver:25.05-py3@sha256:ab") == ("nvidia/tritonserver", "sha256:ab")
    assert registry_cache.split_ref("[fd00::7]:5000/nvidia/k8s/dcgm-exporter:4.2.3") == ("nvidia/k8s/dcgm-exporter", "4.2.3")
    s = settings.parse("c", {"registry_cache_listen_address": "10.0.0.7", "registry_cache_insecure": True})
    assert registry_cache.warm_command(s, "nvidia/tritonserver", "25.05-py3") == (
        f"python3 -I {registry_cache.WARM_SCRIPT} warm --url http://10.0.0.7:5000 --storage /var/lib/docker-registry "
        "--repo nvidia/tritonserver --ref 25.05-py3 --platform linux/amd64 --timeout 3600"
    )
