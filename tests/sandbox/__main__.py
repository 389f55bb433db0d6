"""CLI: ``python -m tests.sandbox up [--hosts N] [--front-door] [--monitoring] [--registry-cache] [--model gemma3|tiny] | down [--all] | status [--json] | pager`` (``--name`` picks a sandbox)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.sandbox import fleet
from tests.sandbox.dockercli import SandboxError

DAEMON_SCRIPT = Path(__file__).resolve().parent / "docker_daemon.sh"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command; errors end in one line on stderr."""
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox", description=__doc__)
    parser.add_argument(
        "--name", default=os.environ.get("SANDBOX_NAME", "default"), help="sandbox name (env SANDBOX_NAME; default: default)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create or update the sandbox (re-runnable; images are reused)")
    up.add_argument("--hosts", type=int, default=3, help="number of Triton hosts (default 3)")
    up.add_argument("--front-door", action="store_true", help="add the front-door host front1 (HAProxy in front of the gateways)")
    up.add_argument("--monitoring", action="store_true", help="add the monitoring host mon1 (Prometheus scraping every host)")
    up.add_argument("--registry-cache", action="store_true", help="add the registry cache host cache1 (the Triton hosts pull through it)")
    up.add_argument(
        "--model",
        choices=fleet.SANDBOX_MODELS,
        default="gemma3",
        help="the model the hosts serve: gemma3 (default; EmbeddingGemma-shaped, exported without its window) or tiny (the load tests')",
    )
    down = sub.add_parser("down", help="remove the sandbox's containers, volumes and network")
    down.add_argument("--all", action="store_true", help="remove every sandbox on this machine")
    status = sub.add_parser("status", help="show the sandbox's containers and endpoints")
    status.add_argument("--json", action="store_true", help="one JSON object: hosts (name, ssh_port, gateway_url), api_key_file")
    sub.add_parser("pager", help="the pager stand-in: print what mon1's Alertmanager notifies, one JSON line each (Ctrl-C ends it)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            if not 1 <= args.hosts <= 20:
                raise SandboxError("--hosts: allowed 1 to 20")
            subprocess.run(["bash", str(DAEMON_SCRIPT)], check=True)
            fleet.up(
                args.name,
                args.hosts,
                front_door=args.front_door,
                monitoring=args.monitoring,
                registry_cache=args.registry_cache,
                model=args.model,
            )
            print(fleet.status(args.name))
        elif args.command == "pager":
            with fleet.pager(args.name) as sink:
                print(
                    f"pager: webhook sink on {sink.url()}, mon1's Alertmanager reaches it through an SSH tunnel",
                    file=sys.stderr,
                    flush=True,
                )
                seen = 0
                try:
                    while True:
                        now = sink.notifications()
                        for note in now[seen:]:
                            if note["path"].startswith("/hook"):
                                print(json.dumps(note["body"]), flush=True)
                        seen = len(now)
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
        elif args.command == "down":
            fleet.down(None if args.all else args.name)
        elif args.json:
            print(json.dumps(fleet.status_json(args.name)))
        else:
            print(fleet.status(args.name))
    except (SandboxError, subprocess.CalledProcessError) as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
