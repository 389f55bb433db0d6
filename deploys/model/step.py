"""Model step: the pinned, checksummed EmbeddingGemma ONNX files into Triton's repository layout
(deploys/core/model_store.py: which files and their digests; deploys/model/model_files.py: fetching and the host commands)."""

from __future__ import annotations

from pathlib import PurePosixPath

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server

from deploys.core import model_lock, paths, redact, settings
from deploys.core.model_store import endpoint, expected, hub_token, human, mirror_directory
from deploys.model.model_files import download_command, fetch_to_controller, file_url, from_mirror_directory, install_command


@deploy("Model files (pinned, checksummed)")
def model() -> None:
    """Put the variant's ONNX files and the tokenizer on the host; only files whose sha256 differs move."""
    s = settings.load(host)
    token = hub_token(s)
    wanted = expected(s, token)
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
        local = fetch_to_controller(s, wanted, token) if s.model_fetch == "controller" else from_mirror_directory(s, wanted)
        logger.info(
            f"{host.print_prefix}model: sending {len(stale)} files ({human(size)}) to this host; {len(wanted) - len(stale)} already match"
        )
        for f in stale:
            rel = PurePosixPath(f.dest).name
            files.put(
                name=f"Upload model file {rel} ({human(f.size)})",
                src=str(local[f.repo_path]),
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
