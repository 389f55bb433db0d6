"""A local Hugging Face Hub-compatible endpoint for tests (stand-in for huggingface.co, unreachable here).

It serves the Hub's URLs for repositories a test builds in memory, with the headers
``huggingface_hub`` relies on:

- ``HEAD|GET /{repo}/resolve/{revision}/{path}``: ``X-Repo-Commit``, ``ETag`` (git blob sha1 or,
  for LFS files, the sha256), ``X-Linked-Etag`` / ``X-Linked-Size`` for LFS files, ``Range``
  requests (206 + ``Content-Range``) so interrupted downloads resume.
- ``GET /api/models/{repo}/revision/{revision}``: ``{"id", "sha", "siblings"}``.
- ``POST /api/models/{repo}/paths-info/{revision}``: LFS metadata (``lfs.oid`` = sha256) per path.
- Gated repositories answer 401 (no token) or 403 (wrong token) with ``X-Error-Code: GatedRepo``;
  unknown revisions ``X-Error-Code: RevisionNotFound``; missing files ``EntryNotFound``.

Faults a test can arm: ``cut_once[path] = n`` closes the connection after ``n`` body bytes of the
next full GET of ``path`` (a transfer cut halfway); ``tamper[path] = bytes`` serves other content
under the same metadata (a corrupt mirror). Every request is recorded in ``requests``.

Run by hand: ``python -m tests.support.hub_server DIR --repo owner/name`` serves DIR's files as one commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_MIN_BYTES = 1024  # files this big (and every *.onnx*) are "LFS" files, like the Hub's .gitattributes


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub's ETag is for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One model repository at one commit, optionally gated behind ``tokens``."""

    repo_id: str
    files: dict[str, bytes]
    commit: str = "5090578d9565bb06545b4552f76e6bc2c93e4a66"
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit; "main" added by default
    gated: bool = False
    tokens: tuple[str, ...] = ()  # tokens with access when gated

    def __post_init__(self) -> None:
        self.branches.setdefault("main", self.commit)

    def is_lfs(self, path: str) -> bool:
        return ".onnx" in path or len(self.files[path]) >= LFS_MIN_BYTES

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if self.is_lfs(path) else git_blob_sha1(data)


class HubServer:
    """Threaded HTTP server on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, repos: list[Repo] | None = None) -> None:
        self.repos: dict[str, Repo] = {r.repo_id: r for r in repos or []}
        self.cut_once: dict[str, int] = {}
        self.tamper: dict[str, bytes] = {}
        self.requests: list[dict[str, Any]] = []
        self.body_bytes = 0  # file bytes written to clients
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(self, repo: Repo) -> None:
        self.repos[repo.repo_id] = repo

    def start(self) -> HubServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def file_requests(self, method: str, path: str) -> list[dict[str, Any]]:
        """Recorded ``method`` requests for a file path (any repo, any revision)."""
        return [r for r in self.requests if r["method"] == method and r.get("file") == path]

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def count_body(self, n: int) -> None:
        with self._lock:
            self.body_bytes += n


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet: pytest shows failures, not access logs
            pass

        # -- helpers --
        def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
            if commit:
                headers["X-Repo-Commit"] = commit
            self._send(status, headers, json.dumps({"error": message}).encode())

        def _authorised(self, repo: Repo) -> bool:
            """Gate check: answers 401/403 itself and returns False when access is refused."""
            if not repo.gated:
                return True
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            if token in repo.tokens:
                return True
            status = 403 if token else 401
            self._error(
                status,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.",
            )
            return False

        def _repo_and_rest(self, path: str, prefix: str = "") -> tuple[Repo | None, str]:
            path = path[len(prefix) :]
            for repo_id in sorted(hub.repos, key=len, reverse=True):
                if path.startswith(repo_id + "/"):
                    return hub.repos[repo_id], path[len(repo_id) + 1 :]
            return None, path

        def _commit(self, repo: Repo, revision: str) -> str | None:
            revision = unquote(revision)
            if revision == repo.commit:
                return repo.commit
            return repo.branches.get(revision)

        def _api_target(self, path: str, method: str, pattern: str) -> tuple[Repo, str] | None:
            """Repository and commit an /api/models/{repo}/<pattern with the revision> call names;
            answers the error itself (404, 401/403 for gated repos) and returns None when refused."""
            repo, rest = self._repo_and_rest(path, "/api/models/")
            match = re.fullmatch(pattern, rest)
            hub.record({"method": method, "path": path, "auth": self.headers.get("Authorization")})
            if repo is None or not match:
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            if not self._authorised(repo):
                return None
            commit = self._commit(repo, match.group(1))
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {match.group(1)}")
                return None
            return repo, commit

        # -- routes --
        def do_HEAD(self) -> None:
            self._resolve()

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path.startswith("/api/models/"):
                self._revision_info(path)
            else:
                self._resolve()

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            found = self._api_target(path, "POST", r"paths-info/(.+)")
            if found is None:
                return
            repo, _commit = found
            if "json" in (self.headers.get("Content-Type") or ""):
                paths = json.loads(body or "{}").get("paths", [])
            else:
                paths = parse_qs(body).get("paths", [])
            items = []
            for p in paths:
                if p not in repo.files:
                    continue
                data = repo.files[p]
                item: dict[str, Any] = {"type": "file", "path": p, "size": len(data), "oid": git_blob_sha1(data)}
                if repo.is_lfs(p):
                    item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                items.append(item)
            self._send(200, {"Content-Type": "application/json"}, json.dumps(items).encode())

        def _revision_info(self, path: str) -> None:
            found = self._api_target(path, "GET", r"revision/(.+)")
            if found is None:
                return
            repo, commit = found
            info = {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": commit,
                "private": False,
                "gated": "auto" if repo.gated else False,
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
            self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode())

        def _resolve(self) -> None:
            path = unquote(urlsplit(self.path).path)
            repo, rest = self._repo_and_rest(path, "/")
            match = re.fullmatch(r"resolve/([^/]+)/(.+)", rest)
            entry: dict[str, Any] = {
                "method": self.command,
                "path": path,
                "range": self.headers.get("Range"),
                "auth": self.headers.get("Authorization"),
                "file": match.group(2) if match else None,
            }
            hub.record(entry)
            if repo is None or not match:
                return self._error(404, "RepoNotFound", "Repository not found")
            if not self._authorised(repo):
                return
            commit = self._commit(repo, match.group(1))
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {match.group(1)}")
            file_path = match.group(2)
            if file_path not in repo.files:
                return self._error(404, "EntryNotFound", f"{file_path} does not exist", commit)
            data = hub.tamper.get(file_path, repo.files[file_path])
            size = len(repo.files[file_path])
            etag = repo.etag(file_path)
            headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if repo.is_lfs(file_path):
                headers["X-Linked-Etag"] = f'"{etag}"'
                headers["X-Linked-Size"] = str(size)
            start = 0
            match_range = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if match_range and self.command == "GET":
                start = int(match_range.group(1))
                if start >= len(data):
                    headers["Content-Range"] = f"bytes */{len(data)}"
                    return self._send(416, headers)
                end = int(match_range.group(2)) if match_range.group(2) else len(data) - 1
                body = data[start : end + 1]
                headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
                status = 206
            else:
                body = data
                status = 200
            headers["Content-Length"] = str(len(body))
            if self.command == "HEAD":
                return self._send(status, headers)
            cut = hub.cut_once.pop(file_path, None) if start == 0 else None
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if cut is not None:
                # A transfer cut halfway: the headers promised the whole file, the connection dies.
                self.wfile.write(body[:cut])
                self.wfile.flush()
                hub.count_body(cut)
                entry["cut_at"] = cut
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)
            hub.count_body(len(body))
            entry["sent"] = len(body)

    return Handler


def start_with_lock(tmp: Path, files: dict[str, bytes], repo_id: str = "test-org/tiny-embeddinggemma") -> tuple[HubServer, dict[str, str]]:
    """Start a hub serving ``files`` as ``repo_id`` and write a complete lock for them under ``tmp``.

    Returns the running server (stop it when done) and the host data that points the model step at
    it: run pyinfra with ``HF_ENDPOINT=server.url`` and merge the dict into the hosts' data.
    """
    from deploys.core import model_lock  # the test helper writes the lock exactly as the deploy reads it

    repo = Repo(repo_id, files)
    entries = {p: model_lock.LockEntry(hashlib.sha256(d).hexdigest(), len(d)) for p, d in files.items()}
    lock = tmp / "model.lock.json"
    model_lock.write(repo_id, repo.commit, entries, lock)
    data = {
        "model_repo_id": repo_id,
        "model_revision": repo.commit,
        "model_lock_file": str(lock),
        "model_cache_dir": str(tmp / "model-cache"),
    }
    return HubServer([repo]).start(), data


def main() -> None:
    """Serve a directory as one repository: ``python -m tests.support.hub_server DIR --repo owner/name``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    files = {str(p.relative_to(args.directory)): p.read_bytes() for p in args.directory.rglob("*") if p.is_file()}
    hub = HubServer([Repo(args.repo, files)])
    hub._httpd = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(hub))
    print(f"serving {len(files)} files of {args.repo} at {hub.url}", flush=True)
    hub._httpd.serve_forever()


if __name__ == "__main__":
    main()
