"""Warm the registry cache: make it fetch an image from its upstream once, before the Triton hosts
pull it in parallel. Runs on the cache host (``python3 -I registry_warm.py ...``): standard library
only, nothing from deploys/ (the registry cache step uploads this file).

Why not just one ``docker pull``: the distribution registry 2.8 fetches a blob it does not hold
from the upstream once to store it *and once more* to stream it to the client (and once more per
concurrent client while the first fetch runs; registry/proxy/proxyblobstore.go, v2.8.2). So this
asks the cache for each blob it lacks and hangs up as soon as the answer's headers arrive, on a
socket with a small receive buffer: the copy to the client stops after a few kilobytes while the
copy to storage goes on; then it waits until the blob is in the cache's storage.

    check  prints ``warm`` when the cache's storage holds the image (manifest, and for each wanted
           platform its manifest, config and layers), else ``cold: <what is missing>``; reads files only
    warm   fetches what is missing as above; exit 1 with one line when it cannot

Arguments: ``--storage DIR`` (registry_cache_storage_dir), ``--repo nvidia/tritonserver``, ``--ref TAG
or sha256:...``, ``--platform linux/amd64`` (repeatable); warm also ``--url`` (the cache's own base
URL) and ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

INDEX_TYPES = ("application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json")
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json")
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)


class Cold(Exception):
    """Something the storage lacks (the message says what)."""


# -- the registry's filesystem storage (registry/storage/paths.go) ----------------------------------


def _v2(storage: str) -> str:
    return os.path.join(storage, "docker", "registry", "v2")


def blob_path(storage: str, digest: str) -> str:
    algorithm, hexdigest = digest.split(":", 1)
    return os.path.join(_v2(storage), "blobs", algorithm, hexdigest[:2], hexdigest, "data")


def _read_link(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def manifest_digest(storage: str, repo: str, ref: str) -> str | None:
    """The digest the storage holds for ``ref`` (a tag, or a digest it has a revision of)."""
    base = os.path.join(_v2(storage), "repositories", repo, "_manifests")
    if ref.startswith("sha256:"):
        return ref if _read_link(os.path.join(base, "revisions", "sha256", ref[7:], "link")) == ref else None
    return _read_link(os.path.join(base, "tags", ref, "current", "link"))


def has_layer(storage: str, repo: str, digest: str) -> bool:
    """The repository links the blob and the blob's data is there (what the proxy serves locally)."""
    link = os.path.join(_v2(storage), "repositories", repo, "_layers", "sha256", digest[7:], "link")
    return _read_link(link) == digest and os.path.isfile(blob_path(storage, digest))


def _load(storage: str, digest: str) -> dict:
    try:
        with open(blob_path(storage, digest), "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as error:
        raise Cold(f"manifest {digest} unreadable ({error})") from None


def _platform(entry: dict) -> str:
    p = entry.get("platform") or {}
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def select(manifest: dict, platforms: list[str]) -> list[str]:
    """The child manifests of an index for ``platforms`` (``linux/amd64``; a variant matches too)."""
    chosen = [
        m["digest"] for m in manifest.get("manifests", []) if any(_platform(m) == p or _platform(m).startswith(p + "/") for p in platforms)
    ]
    if not chosen:
        raise SystemExit(f"registry warm: the image offers none of the platforms {', '.join(platforms)}")
    return chosen


def blobs(manifest: dict) -> list[tuple[str, int]]:
    """(digest, size) of an image manifest's config and layers."""
    return [(d["digest"], int(d.get("size", 0))) for d in [manifest["config"], *manifest.get("layers", [])]]


def check(storage: str, repo: str, ref: str, platforms: list[str]) -> None:
    """Raise :class:`Cold` naming the first thing the storage lacks."""
    digest = manifest_digest(storage, repo, ref)
    if digest is None:
        raise Cold(f"no manifest for {repo}:{ref}" if not ref.startswith("sha256:") else f"no manifest {repo}@{ref}")
    top = _load(storage, digest)
    images = [digest]
    if top.get("mediaType") in INDEX_TYPES or "manifests" in top:
        images = select(top, platforms)
    for image in images:
        if manifest_digest(storage, repo, image) is None:
            raise Cold(f"no manifest {repo}@{image}")
        for blob, _ in blobs(_load(storage, image)):
            if not has_layer(storage, repo, blob):
                raise Cold(f"no blob {blob} of {repo}")


# -- asking the cache over HTTP -------------------------------------------------------------------------


class Cache:
    """The cache's own listener (its address on this host): TLS is not verified, it is our own socket."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.timeout = timeout

    def _socket(self, small: bool) -> socket.socket:
        info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        if small:  # before connect: the window offered in the handshake stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(self.timeout)
        sock.connect(info[4])
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=self.host)
        return sock

    def request(self, path: str, accept: str = "", small: bool = False) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.sock = self._socket(small)
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        return conn, conn.getresponse()

    def manifest(self, repo: str, ref: str) -> dict:
        conn, response = self.request(f"/v2/{repo}/manifests/{ref}", ACCEPT)
        try:
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"registry warm: the cache answered {response.status} for the manifest {repo}:{ref}: {body[:200]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def start_blob(self, repo: str, digest: str) -> None:
        """Ask for a blob and hang up after the headers: the cache goes on storing it."""
        conn, response = self.request(f"/v2/{repo}/blobs/{digest}", small=True)
        try:
            if response.status not in (200, 307):
                raise SystemExit(f"registry warm: the cache answered {response.status} for blob {digest} of {repo}")
        finally:
            conn.close()


def warm(cache: Cache, storage: str, repo: str, ref: str, platforms: list[str], timeout_s: float) -> int:
    """Fetch into the cache what it lacks of the image; returns the bytes it was asked to fetch."""
    top = cache.manifest(repo, ref)
    images = select(top, platforms) if top.get("mediaType") in INDEX_TYPES or "manifests" in top else [None]
    wanted: dict[str, int] = {}
    for digest in images:
        manifest = top if digest is None else cache.manifest(repo, digest)
        wanted.update((blob, size) for blob, size in blobs(manifest) if not has_layer(storage, repo, blob))
    deadline = time.monotonic() + timeout_s

    def one(blob: str) -> None:
        cache.start_blob(repo, blob)
        while not has_layer(storage, repo, blob):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"registry warm: blob {blob} of {repo} not in the cache's storage after {timeout_s:.0f}s (journalctl -u docker-registry)"
                )
            time.sleep(0.5)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, sorted(wanted)))
    return sum(wanted.values())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="registry_warm.py")
    parser.add_argument("mode", choices=("check", "warm"))
    parser.add_argument("--storage", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--platform", action="append", default=[])
    parser.add_argument("--url", default="")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    platforms = args.platform or ["linux/amd64"]
    if args.mode == "check":
        try:
            check(args.storage, args.repo, args.ref, platforms)
        except Cold as missing:
            print(f"cold: {missing}")
        else:
            print("warm")
        return 0
    if not args.url:
        parser.error("warm needs --url")
    fetched = warm(Cache(args.url), args.storage, args.repo, args.ref, platforms, args.timeout)
    check(args.storage, args.repo, args.ref, platforms)  # raises Cold if the cache still lacks something
    print(f"registry warm: {args.repo}:{args.ref} in the cache ({fetched} bytes fetched from the upstream)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Cold as missing:
        sys.exit(f"registry warm: still not in the cache: {missing}")
    except OSError as error:
        sys.exit(f"registry warm: cannot reach the cache: {error}")
