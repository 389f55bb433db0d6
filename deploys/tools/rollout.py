"""Fleet rollout: canary first, then batches, each verified before the next; a host that fails READY
or verify is rolled back; the rollout stops when failures pass a threshold.

    python -m deploys.rollout inventories/prod.py [--canary HOST_OR_GROUP] [--batch-size N]
                              [--max-failures N] [--data key=value ...]

Every step is the standard pyinfra CLI, run from the repository root:

1. ``pyinfra INV deploys/releases.py`` reads each host's live release (before);
2. per wave (the canary, then batches of ``--batch-size``):
   ``pyinfra INV deploys/all.py -y --json --limit <wave>`` (the chain ends with verify, so a host
   that fails READY or parity is a failed host), then ``deploys/releases.py`` again (after);
3. a failed host whose ``current`` moved to a new release gets
   ``pyinfra INV deploys/rollback.py -y --limit <host>`` (back to its previous release, READY,
   verify) and its state is read again;
4. a failed canary stops the rollout; so do more than ``--max-failures`` failed hosts after it.

Behind a front door, each wave's ``deploys/all.py`` itself takes its hosts out of the pool at most
``rollout_max_unavailable`` at a time (drain, switch, READY, parity, restore; a failure is rolled
back there: deploys/lib/rolling.py); the driver reads the roll events it logs.

At the end a table (stderr) and ``reports/rollouts/<UTC time>.json``: per host the old and new
release, the verdict (``pass``, ``rolled back``, ``failed``, ``skipped``), whether it was rolled
back, the release it serves at the end and the roll events (drained, live, checked, back in the
pool, with their UTC times). Exit status 0 when every host passed.
Defaults of the flags: the ``rollout_*`` settings of the first host (group_data/all.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyinfra.api import State
from pyinfra.context import ctx_state

from deploys.lib import redact, settings
from deploys.lib.repo import REPO_ROOT
from deploys.lib.settings import SettingsError

PYINFRA = str(Path(sys.executable).parent / "pyinfra")
# deploys/lib/rolling.py logs "roll HOST: EVENT at TIME ..." for each step of a host's roll.
ROLL_EVENT = re.compile(
    r"roll (?P<host>\S+): (?P<event>drained|live|checked|check skipped|rolled back|back in the pool) at (?P<at>\S+)(?P<detail>.*)$"
)
Runner = Callable[[list[str], dict[str, str]], subprocess.CompletedProcess]


@dataclass
class Outcome:
    """One host's line of the rollout summary."""

    host: str
    old: str | None = None  # the release live before the rollout
    new: str | None = None  # the release the deploy made live (None: it never switched)
    verdict: str = "skipped"  # pass, rolled back, failed, skipped
    rolled_back: bool = False
    serving: str | None = None  # the release the container runs at the end
    ready: bool = False
    message: str = ""
    wave: int | None = None
    # Behind a front door: what the deploy logged for this host (drained, live, checked, rolled back,
    # back in the pool), each with its UTC time (deploys/lib/rolling.py).
    events: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Inventory:
    """Host names in inventory order, groups, and the rollout settings of the first host."""

    hosts: list[str]
    groups: dict[str, list[str]]
    defaults: dict[str, Any] = field(default_factory=dict)


def parse_data(items: list[str]) -> dict[str, Any]:
    """``--data key=value`` as pyinfra parses it (same value parsing)."""
    # Imported here, not at the top: importing pyinfra_cli monkey-patches the whole process with
    # gevent (pyinfra_cli/__init__.py), which the importers of this module (tests) must not get.
    from pyinfra_cli.util import parse_cli_arg

    data: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SettingsError(f"--data {item!r}: expected key=value")
        key, value = item.split("=", 1)
        data[key] = parse_cli_arg(value)
    return data


def load_inventory(path: str, data: dict[str, Any]) -> Inventory:
    """Read the inventory like the pyinfra CLI (group_data/ included); validate the first host."""
    from pyinfra_cli.inventory import make_inventory  # gevent: see parse_data

    with ctx_state.use(State()):
        inventory = make_inventory(path, override_data=data, cwd=str(REPO_ROOT))
    # After pyinfra_cli (gevent) is in: keep deploys.lib imports below it (some bring in ssl).
    from deploys.lib.roles import is_triton_host

    hosts = [host.name for host in inventory if is_triton_host(host)]  # front doors and monitoring hosts are not rolled
    if not hosts:
        raise SettingsError(f"inventory {path}: no hosts")
    groups = {name: [host.name for host in inventory.get_group(name)] for name in inventory.groups}
    first = next(iter(inventory))
    s = settings.parse(first.name, first.data.dict())
    return Inventory(
        hosts, groups, {"canary": s.rollout_canary, "batch_size": s.rollout_batch_size, "max_failures": s.rollout_max_failures}
    )


def waves(inv: Inventory, canary: str, batch_size: int) -> list[list[str]]:
    """The canary (a group, a host, or else the first host), then the rest in batches, inventory order."""
    if not canary:
        first = [inv.hosts[0]]
    elif canary in inv.groups:
        first = [h for h in inv.hosts if h in inv.groups[canary]]
    elif canary in inv.hosts:
        first = [canary]
    else:
        raise SettingsError(
            f"setting rollout_canary={canary!r} names no host or group of the inventory; use one of {', '.join(sorted(inv.groups))} or a host name"
        )
    rest = [h for h in inv.hosts if h not in first]
    return [first] + [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a pyinfra command; its log goes to our stderr as it runs and is kept (stdout: --json)."""
    print(redact.mask("$ pyinfra " + " ".join(cmd[1:])), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    stderr = []
    for line in proc.stderr:  # type: ignore[union-attr]
        sys.stderr.write(redact.mask(line))
        stderr.append(line)
    reader.join()
    return subprocess.CompletedProcess(cmd, proc.wait(), "".join(stdout), "".join(stderr))


class Rollout:
    """One rollout of ``deploy`` over an inventory (the pyinfra commands go through ``runner``)."""

    def __init__(self, inventory: str, data_args: list[str], runner: Runner = _run, deploy: str = "deploys/all.py") -> None:
        self.inventory = inventory
        self.data_args = data_args
        self.runner = runner
        self.deploy = deploy
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.events: dict[str, list[dict[str, str]]] = {}

    def pyinfra(self, deploy: str, hosts: list[str], *extra: str) -> subprocess.CompletedProcess:
        cmd = [PYINFRA, self.inventory, deploy, "-y", *extra]
        for host in hosts:
            cmd += ["--limit", host]
        for item in self.data_args:
            cmd += ["--data", item]
        return self.runner(cmd, self.env)

    def states(self, hosts: list[str]) -> dict[str, dict[str, Any]]:
        """Each host's releases and serving release (deploys/releases.py; {} for a host that did not answer)."""
        with tempfile.TemporaryDirectory(prefix="rollout-state-") as out:
            self.env["TRITON_RELEASES_OUT"] = out
            try:
                self.pyinfra("deploys/releases.py", hosts)
            finally:
                self.env.pop("TRITON_RELEASES_OUT", None)
            found = {}
            for host in hosts:
                path = Path(out) / f"{host}.json"
                found[host] = json.loads(path.read_text()) if path.exists() else {}
            return found

    def deploy_wave(self, hosts: list[str]) -> tuple[set[str], str]:
        """Run the deploy on ``hosts``; the failed hosts, and a message when the run as a whole failed.
        The roll events the deploy logged (behind a front door) go to ``self.events``."""
        proc = self.pyinfra(self.deploy, hosts, "--json")
        for line in (proc.stderr or "").splitlines():
            found = ROLL_EVENT.search(line)
            if found:
                self.events.setdefault(found["host"], []).append(
                    {"event": found["event"], "at": found["at"], "detail": found["detail"].strip()}
                )
        try:
            failed = set(json.loads(proc.stdout)["results"]["failed_hosts"])
        except (ValueError, KeyError, TypeError):
            if "--> Beginning operation run" in (proc.stderr or ""):
                return set(hosts), ""  # every host failed ("No hosts remaining!"): pyinfra prints no JSON
            # The run ended before any host executed (bad setting, unreachable host…).
            return set(hosts), f"the deploy ended before running (exit {proc.returncode}); see its error above"
        if proc.returncode != 0 and not failed:
            return set(hosts), f"the deploy failed (exit {proc.returncode})"
        return failed, ""

    def run(self, plan: list[list[str]], max_failures: int) -> list[Outcome]:
        """Deploy wave after wave; roll back failed hosts; stop past the threshold."""
        everyone = [h for wave in plan for h in wave]
        before = self.states(everyone)
        outcomes = {
            h: Outcome(host=h, old=before[h].get("current"), serving=before[h].get("serving"), ready=bool(before[h].get("model_ready")))
            for h in everyone
        }
        failures = 0
        for index, wave in enumerate(plan):
            label = "canary" if index == 0 else f"batch {index}"
            print(f"rollout: {label}: {', '.join(wave)}", file=sys.stderr, flush=True)
            failed, message = self.deploy_wave(wave)
            after = self.states(wave)
            for host in wave:
                o = outcomes[host]
                o.wave = index
                current = after[host].get("current")
                o.new = current
                o.serving, o.ready = after[host].get("serving"), bool(after[host].get("model_ready"))
                if host not in failed and o.ready and o.serving == current:
                    o.verdict = "pass"
                    continue
                o.verdict, o.message = (
                    "failed",
                    message
                    or ("deploy failed" if host in failed else f"serves {o.serving or 'nothing'}, not the current release {current}"),
                )
                failures += 1
                rolled = [e for e in self.events.get(host, []) if e["event"] == "rolled back"]
                if rolled and o.ready and current == o.old and o.serving == o.old:
                    # Behind a front door the deploy itself rolled the host back before restoring it.
                    o.verdict, o.rolled_back = "rolled back", True
                    o.message += f"; the deploy rolled it back{rolled[-1]['detail'] and ' ' + rolled[-1]['detail']}"
                elif current and current != o.old and o.old:
                    self.roll_back(o)
            if index == 0 and failures:
                print(f"rollout: the canary failed; stopping (hosts left untouched: {len(everyone) - len(wave)})", file=sys.stderr)
                break
            if failures > max_failures:
                print(f"rollout: {failures} failed host(s) > --max-failures {max_failures}; stopping", file=sys.stderr)
                break
        for h in everyone:
            outcomes[h].events = self.events.get(h, [])
        return [outcomes[h] for h in everyone]

    def roll_back(self, o: Outcome) -> None:
        """deploys/rollback.py on one host, then read back what it serves."""
        print(f"rollout: {o.host}: rolling back {o.new} -> {o.old}", file=sys.stderr, flush=True)
        proc = self.pyinfra("deploys/rollback.py", [o.host])
        state = self.states([o.host])[o.host]
        o.serving, o.ready = state.get("serving"), bool(state.get("model_ready"))
        if proc.returncode == 0 and state.get("current") == o.old and o.serving == o.old and o.ready:
            o.verdict, o.rolled_back = "rolled back", True
        else:
            o.message += f"; rollback did not bring back {o.old} READY (exit {proc.returncode})"


def table(outcomes: list[Outcome]) -> str:
    """The summary table: host, old, new, verdict, rolled back, serving at the end."""
    rows = [("host", "old release", "new release", "verdict", "rolled back", "serving")]
    for o in outcomes:
        serving = f"{o.serving or '-'}{' READY' if o.ready else ''}"
        rows.append((o.host, o.old or "-", o.new or "-", o.verdict, "yes" if o.rolled_back else "no", serving))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)


def save(outcomes: list[Outcome], report_dir: str, meta: dict[str, Any]) -> Path:
    """reports/rollouts/<UTC>.json with every host's outcome."""
    path = Path(report_dir) / "rollouts" / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # --data values may carry credentials (a proxy's user:password): the report keeps them masked.
    report = redact.mask_tree({**meta, "hosts": [asdict(o) for o in outcomes]})
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploys.rollout", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory", help="pyinfra inventory file (e.g. inventories/prod.py)")
    parser.add_argument("--canary", help="inventory group or host deployed first (default: rollout_canary, else the first host)")
    parser.add_argument("--batch-size", type=int, help="hosts per batch after the canary (default: rollout_batch_size)")
    parser.add_argument("--max-failures", type=int, help="failed hosts tolerated after the canary (default: rollout_max_failures)")
    parser.add_argument("--data", action="append", default=[], help="key=value passed to every pyinfra run (as pyinfra's --data)")
    parser.add_argument("--report-dir", default="reports", help="where rollouts/<time>.json goes (default: reports)")
    args = parser.parse_args(argv)
    try:
        inv = load_inventory(args.inventory, parse_data(args.data))
        batch = args.batch_size if args.batch_size is not None else inv.defaults["batch_size"]
        max_failures = args.max_failures if args.max_failures is not None else inv.defaults["max_failures"]
        if batch < 1 or max_failures < 0:
            raise SettingsError("--batch-size must be ≥ 1 and --max-failures ≥ 0")
        plan = waves(inv, args.canary if args.canary is not None else inv.defaults["canary"], batch)
    except Exception as error:
        print(redact.mask(f"rollout error: {error}"), file=sys.stderr)
        return 2
    outcomes = Rollout(args.inventory, args.data).run(plan, max_failures)
    path = save(outcomes, args.report_dir, {"inventory": args.inventory, "data": args.data, "waves": plan, "max_failures": max_failures})
    print(f"\nRollout summary ({path}):\n{table(outcomes)}", file=sys.stderr)
    return 0 if all(o.verdict == "pass" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
