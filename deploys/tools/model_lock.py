"""The model lock command: ``python -m deploys.model_lock refresh|show`` (deploys/core/model_lock.py
reads and writes the lock)::

    python -m deploys.model_lock refresh                      # model_repo_id / model_revision defaults
    python -m deploys.model_lock refresh --revision <sha> --endpoint https://hf-mirror.example
    python -m deploys.model_lock show

A branch or tag is refused (rebuilds must be reproducible); the command says which commit it points
at. The token comes from HF_TOKEN or the vault, never from the command line, and goes only to the
Hub (https://huggingface.co) or to an endpoint named with ``--token-endpoint`` (as the deploy's
``model_token_endpoints``); any other ``--endpoint`` gets none.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import constants
from pyinfra.api.exceptions import PyinfraError

from deploys.core import settings, vault
from deploys.core.model_lock import HUB_ENDPOINT, LOCK_PATH, read, refresh, token_allowed


def _token(secrets_file: str) -> str | None:
    """HF token from HF_TOKEN or the vault (optional), never from the command line."""
    secrets = vault.load(secrets_file)
    if secrets.warning:
        print(secrets.warning, file=sys.stderr)
    return secrets.hf_token.unmask() if secrets.hf_token else None


def main(argv: list[str] | None = None) -> int:
    """``python -m deploys.model_lock refresh|show``."""
    defaults = {s.name: s.default for s in settings.SETTINGS}
    parser = argparse.ArgumentParser(prog="python -m deploys.model_lock", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("refresh", "show"))
    parser.add_argument("--repo-id", default=defaults["model_repo_id"])
    parser.add_argument("--revision", default=defaults["model_revision"])
    parser.add_argument(
        "--endpoint", default=constants.ENDPOINT, help="Hub or HF-compatible mirror (default: HF_ENDPOINT or huggingface.co)"
    )
    parser.add_argument(
        "--token-endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="an endpoint besides the Hub that may receive the HF token (repeatable; like model_token_endpoints)",
    )
    parser.add_argument("--lock", type=Path, default=LOCK_PATH)
    parser.add_argument("--secrets-file", default=defaults["secrets_file"])
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            for repo_path, entry in read(args.repo_id, args.revision, args.lock).items():
                print(f"{repo_path}: {entry.to_json()['sha256']} {entry.to_json()['size']}")
            return 0
        url = args.endpoint.rstrip("/")
        withheld = not token_allowed(url, args.token_endpoint)
        if withheld:
            print(f"{url} is not the Hub ({HUB_ENDPOINT}) nor a --token-endpoint: no HF token is sent to it", file=sys.stderr)
        lines = refresh(args.repo_id, args.revision, url, None if withheld else _token(args.secrets_file), args.lock, withheld=withheld)
    except PyinfraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print(f"wrote {args.lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
