"""Docker facts: daemon config and runtimes, images, one container, registry login, compose plugin.

Every command is read-only and exits 0 when Docker, its daemon or the object is missing, so the
facts can be read on a bare host before Docker is installed (they return their defaults).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, TypedDict

from pyinfra.api import FactBase

from deploys.core.paths import DOCKER_CLIENT_CONFIG, DOCKER_DAEMON_JSON
from deploys.core.redact import GREP_PATTERN, SED_SCRIPT
from facts._shell import quote, when_present

# A wedged daemon makes every docker call hang; facts give up instead.
DOCKER_TIMEOUT_S = 30
# Printed before daemon.json's content so an empty (but present) file reads as {} not "missing".
_PRESENT = "__FACT_FILE_PRESENT__"


def _docker(args: str) -> str:
    """A docker CLI call that prints nothing and exits 0 when docker or its daemon is missing."""
    return when_present("docker", f"timeout {DOCKER_TIMEOUT_S} docker {args} 2>/dev/null || true")


def _joined_json(output: list[str]) -> Any:
    """Parse JSON printed over several lines; None when it is not JSON."""
    try:
        return json.loads("\n".join(output))
    except ValueError:
        return None


class DockerDaemonJson(FactBase[dict[str, Any] | None]):
    """
    ``/etc/docker/daemon.json`` as a dict; None when the file is missing; ``{}`` when it is empty
    (dockerd accepts that); ``{"__invalid__": "<why>"}`` when it is not a JSON object, so the deploy
    can refuse to overwrite a file it cannot merge into.

    Credentials in URLs (a proxy's ``user:password@``) are masked on the host
    (``user:****@``, deploys/core/redact.py): pyinfra prints fact output at ``-vvv``. The deploy
    compares digests to see a changed password (deploys/host_base/docker_engine.py).
    """

    def command(self, path: str = DOCKER_DAEMON_JSON) -> str:
        path_q = quote(path)
        return f"if [ -f {path_q} ]; then echo {_PRESENT}; sed -E {quote(SED_SCRIPT)} {path_q}; fi"

    def process(self, output: list[str]) -> dict[str, Any] | None:
        if output and output[0] == _PRESENT:
            output = output[1:]
        text = "\n".join(output)
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError as error:
            return {"__invalid__": str(error)}
        if not isinstance(data, dict):
            return {"__invalid__": f"top level is a JSON {type(data).__name__}, not an object"}
        return data


class UrlCredentialsDigest(FactBase[str | None]):
    """
    sha256 of the userinfo (``://user:password@``) of every URL in the file at ``path``, sorted,
    one a line (deploys/core/redact.py ``credentials_digest`` gives the same for a text); None when
    the file is missing. Tells whether daemon.json holds the current proxy credentials while
    DockerDaemonJson shows them only masked; the credentials never appear in the output.
    """

    def command(self, path: str) -> str:
        path_q = quote(path)
        return f"if [ -f {path_q} ]; then {{ grep -oE {quote(GREP_PATTERN)} {path_q} || true; }} | LC_ALL=C sort | sha256sum; fi"

    def process(self, output: list[str]) -> str | None:
        for line in output:
            digest = line.split()[0] if line.split() else ""
            if re.fullmatch(r"[0-9a-f]{64}", digest):
                return digest
        return None


class DockerRuntimes(FactBase[list[str]]):
    """
    Sorted names of the runtimes the running daemon knows (``["nvidia", "runc", …]``);
    ``[]`` when docker is absent or its daemon is not running.
    """

    def command(self) -> str:
        return _docker("info --format '{{json .Runtimes}}'")

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        data = _joined_json(output)
        return sorted(data) if isinstance(data, dict) else []


class DockerImageId(FactBase[str | None]):
    """Image Id (``sha256:…``) of a local image reference, or None when it is not pulled."""

    def command(self, ref: str) -> str:
        return _docker(f"image inspect --format '{{{{.Id}}}}' {quote(ref)}")

    def process(self, output: list[str]) -> str | None:
        ids = [line.strip() for line in output if line.strip()]
        return ids[0] if ids else None


class ContainerInfo(TypedDict):
    status: str  # created, running, restarting, paused, exited, dead
    health: str | None  # healthy, starting, unhealthy; None without a healthcheck
    image: str  # the reference it was created from (Config.Image)
    image_id: str  # the image Id it runs (sha256:…)
    restart_count: int
    labels: dict[str, str]


class DockerContainer(FactBase[ContainerInfo | None]):
    """
    One container from ``docker container inspect``, or None when it does not exist:

    .. code:: python

        {"status": "running", "health": "healthy",
         "image": "nvcr.io/nvidia/tritonserver:25.05-py3", "image_id": "sha256:…",
         "restart_count": 0, "labels": {"com.docker.compose.project": …}}
    """

    # `name` is one of pyinfra's global operation arguments, so the argument is `container`.
    def command(self, container: str) -> str:
        return _docker(f"container inspect {quote(container)}")

    def process(self, output: list[str]) -> ContainerInfo | None:
        data = _joined_json(output)
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return None
        item = data[0]
        state = item.get("State") or {}
        config = item.get("Config") or {}
        health = state.get("Health") or {}
        return {
            "status": state.get("Status", ""),
            "health": health.get("Status") or None,
            "image": config.get("Image", ""),
            "image_id": item.get("Image", ""),
            "restart_count": int(item.get("RestartCount") or 0),
            "labels": dict(config.get("Labels") or {}),
        }


# Runs on the host: prints sha256(auths[registry].auth) and never the auth value itself. Docker
# Hub logins are stored under https://index.docker.io/v1/ whatever name was used, hence host().
_AUTH_DIGEST_SCRIPT = """\
import hashlib, json, sys
registry, path = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        auths = json.load(f).get("auths") or {}
except (OSError, ValueError, AttributeError):
    sys.exit(0)
def host(key):
    key = key.split("://", 1)[-1].split("/", 1)[0]
    return "index.docker.io" if key in ("docker.io", "registry-1.docker.io") else key
entry = auths.get(registry)
if entry is None:
    entry = next((v for k, v in auths.items() if host(k) == host(registry)), None)
auth = entry.get("auth") if isinstance(entry, dict) else None
if auth:
    print(hashlib.sha256(auth.encode()).hexdigest())
"""


def registry_auth_digest(username: str, password: str) -> str:
    """What :class:`DockerRegistryAuth` reports once ``docker login`` stored these credentials.

    Docker stores ``base64("user:password")`` in config.json; comparing digests of it tells the
    controller whether the stored key is the current one without the key leaving the controller.
    """
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return hashlib.sha256(auth.encode()).hexdigest()


class DockerRegistryAuth(FactBase[str | None]):
    """
    sha256 hex digest of the ``auths[registry].auth`` value stored in Docker's config.json, or
    None when not logged in there (no file, no entry, or the credentials live in a credential
    helper). Compare with :func:`registry_auth_digest` to detect a rotated key. The auth value is
    hashed on the host: it never appears in the fact's output.
    """

    def command(self, registry: str, config_path: str = DOCKER_CLIENT_CONFIG) -> str:
        script = quote(_AUTH_DIGEST_SCRIPT)
        return when_present("python3", f"python3 -I -c {script} {quote(registry)} {quote(config_path)}")

    def process(self, output: list[str]) -> str | None:
        for line in output:
            line = line.strip()
            if re.fullmatch(r"[0-9a-f]{64}", line):
                return line
        return None


class ImageInfo(TypedDict):
    repository: str
    tag: str  # "<none>" for an image pulled by digest only
    digest: str  # "sha256:…", or "<none>"
    id: str  # the image Id (sha256:…)


class DockerImages(FactBase[list[ImageInfo]]):
    """
    The local images of one repository (``docker image ls --digests REPOSITORY``, full ids), one
    entry per tag or digest it is known by:

    .. code:: python

        [{"repository": "nvcr.io/nvidia/tritonserver", "tag": "25.05-py3",
          "digest": "sha256:…", "id": "sha256:…"}]

    ``[]`` when Docker is absent or the repository has no image here.
    """

    def command(self, repository: str) -> str:
        return _docker(
            f"image ls --digests --no-trunc --format '{{{{.Repository}}}} {{{{.Tag}}}} {{{{.Digest}}}} {{{{.ID}}}}' {quote(repository)}"
        )

    @staticmethod
    def default() -> list[ImageInfo]:
        return []

    def process(self, output: list[str]) -> list[ImageInfo]:
        images: list[ImageInfo] = []
        for line in output:
            parts = line.split()
            if len(parts) == 4 and parts[3].startswith("sha256:"):
                images.append({"repository": parts[0], "tag": parts[1], "digest": parts[2], "id": parts[3]})
        return images
