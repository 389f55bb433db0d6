"""Model step: the pinned, checksummed EmbeddingGemma ONNX files into Triton's repository layout
(deploys/core/model_store.py: which files and their digests; deploys/model/model_files.py: fetching and the host commands)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server

from deploys.core import model_lock, paths, redact, settings
from deploys.core.model_store import (
    ModelFile,
    _say_once,
    endpoint,
    expected,
    hub_token,
    human,
    mirror_directory,
    prepare_served,
    repairs_here,
    served_files,
    served_record,
)
from deploys.core.settings import Settings
from deploys.model.model_files import download_command, fetch_to_controller, file_url, from_mirror_directory, install_command


def served_graph(s: Settings, token: str | None) -> list[ModelFile]:
    """The host's files, the graph being the served one: repaired on the controller the first time
    (deploys/core/attention_window.py: fetches the upstream files there once), then recorded."""
    upstream = expected(s, token, served=False)
    if s.model_attention_window == "repaired" and not repairs_here(s):
        _say_once(
            f"model: attention window NOT repaired: the repair runs on the controller and model_fetch={s.model_fetch} sends "
            "the files past it; the upstream graph is served (model_fetch: controller, or a mirror directory, repairs it)",
            logger.warning,
        )
    if repairs_here(s):
        record = served_record(s, upstream)
        local: dict = {}
        if record is None or (record.get("served") == "repaired" and not Path(record["path"]).is_file()):
            local = fetch_to_controller(s, upstream, token) if s.model_fetch == "controller" else from_mirror_directory(s, upstream)
        prepare_served(s, upstream, local)  # a recorded outcome is only said again
    return served_files(s, upstream)


@deploy("Model files (pinned, checksummed)")
def model() -> None:
    """Put the variant's ONNX files and the tokenizer on the host; only files whose sha256 differs move."""
    s = settings.load(host)
    token = hub_token(s)
    wanted = served_graph(s, token)
    host_paths = paths.layout(s)
    version_dir = host_paths.version_dir
    for path in (host_paths.root, host_paths.models_dir, host_paths.model_dir, version_dir, host_paths.tokenizer_dir):
        files.directory(name=f"Directory {path}", path=path, mode="755")
    # Another variant's graph left in 1/ would waste disk; Triton loads only default_model_filename.
    for variant in model_lock.VARIANT_ONNX:
        if variant != s.model_variant:
            graph = paths.onnx_filename(variant)
            for name in (graph, graph + "_data"):
                files.file(name=f"Remove {name} (variant {variant} not served)", path=f"{version_dir}/{name}", present=False)

    stale = [f for f in wanted if host.get_fact(Sha256File, path=f.dest) != f.sha256]
    if not stale:
        logger.info(f"{host.print_prefix}model: all {len(wanted)} files match their sha256; 0 B to send")
        return
    size = sum(f.size for f in stale)
    if s.model_fetch == "controller" or mirror_directory(s) is not None:
        # A repaired graph is sent from its own file (f.source); the rest are the upstream's, checked against the lock.
        upstream = [f for f in wanted if not f.source]
        local = fetch_to_controller(s, upstream, token) if s.model_fetch == "controller" else from_mirror_directory(s, upstream)
        logger.info(
            f"{host.print_prefix}model: sending {len(stale)} files ({human(size)}) to this host; {len(wanted) - len(stale)} already match"
        )
        for f in stale:
            rel = PurePosixPath(f.dest).name
            files.put(
                name=f"Upload model file {rel} ({human(f.size)})",
                src=f.source or str(local[f.repo_path]),
                dest=f.dest + ".partial",
                mode="644",
                force=True,
                add_deploy_dir=False,
            )
            server.shell(name=f"Check sha256 and install {rel}", commands=[install_command(f)])
        return
    url = endpoint(s)
    logger.info(
        f"{host.print_prefix}model: this host downloads {len(stale)} files ({human(size)}) from {url} itself; 0 B sent from the controller"
    )
    for f in stale:
        rel = PurePosixPath(f.dest).name
        extra = {"_stdin": redact.Secret(f"Authorization: Bearer {token}")} if token else {}
        server.shell(
            name=f"Download model file {rel} ({human(f.size)}) on the host",
            commands=[download_command(s, f, file_url(s, f.repo_path), with_token=bool(token))],
            **extra,
        )
