"""Fleet rollout: canary first, then batches, each verified before the next; a host that fails READY
or verify is rolled back; the rollout stops when failures pass a threshold.

    python -m deploys.rollout inventories/prod.py [--canary HOST_OR_GROUP] [--batch-size N]
                              [--max-failures N] [--data key=value ...]

Every step is the standard pyinfra CLI, run from the repository root:

1. ``pyinfra INV deploys/releases.py`` reads each host's live release (before); a host whose state
   the fleet-wide read misses is read alone, so one unreachable host is reported ``unreachable``
   (and left out of its wave) while the others proceed;
2. per wave (the canary, then batches of ``--batch-size``):
   ``pyinfra INV deploys/all.py -y --json --limit <wave>`` (the chain ends with verify, so a host
   that fails READY or parity is a failed host), then ``deploys/releases.py`` again (after), host
   by host where needed: a host that died mid-wave does not hide its healthy neighbours;
3. a failed host whose ``current`` moved to a new release gets
   ``pyinfra INV deploys/rollback.py -y --limit <host>`` (back to its previous release, READY,
   verify) and its state is read again;
4. a failed canary stops the rollout; so do more than ``--max-failures`` failed hosts after it.

``--data`` goes to the deploy and to the state read right after it (the new release), not to the
first state read, the rollback or the read after it: those deal with the release already on the
hosts, which the inventory's own values describe. Each pyinfra run is bounded by
``--child-timeout`` (``rollout_child_timeout_s``): past it the run is terminated (its process
group) and its hosts are reported ``timed out``, and rolled back when their release moved.
SIGINT or SIGTERM does not reach the pyinfra runs (their own session): the wave in flight is
finished (deploy, read, rollbacks), no new wave starts, the report is written and the driver exits
with 128 + the signal number and one line.

Behind a front door, each wave's ``deploys/all.py`` itself takes its hosts out of the pool at most
``rollout_max_unavailable`` at a time (drain, switch, READY, parity, restore; a failure is rolled
back there: deploys/core/rolling.py).

The driver decides from what each pyinfra run writes for programs, never from its log (stderr is
passed through for people, untouched): the run's events (deploys/core/events.py: roll steps, lock
events, hosts it could not connect to, the line that refused a run; each run gets its own
``TRITON_RUN_DIR`` under ``reports/rollouts/<UTC time>.runs/``), pyinfra's ``--json`` result (the
failed hosts) and deploys/releases.py's state files.

At the end a table (stderr) and ``reports/rollouts/<UTC time>.json``: per host the old and new
release, the verdict (``pass``, ``rolled back``, ``failed``, ``timed out``, ``unreachable``,
``skipped``), whether it was rolled back, the release it serves at the end and the roll events (drained, live, checked, back in the
pool, with their UTC times). Exit status 0 when every host passed.
Defaults of the flags: the ``rollout_*`` settings of the first host (group_data/all.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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

from deploys.core import events as run_events
from deploys.core import redact, settings
from deploys.core.fleet_status import one_release
from deploys.core.repo import REPO_ROOT
from deploys.core.settings import SettingsError

PYINFRA = str(Path(sys.executable).parent / "pyinfra")
# The steps of a host's roll behind a front door (deploys/core/rolling.py), as events.
ROLL_STEPS = ("drained", "live", "checked", "check skipped", "rolled back", "back in the pool", "roll failed", "not restarted")
# A runner runs one pyinfra command with a timeout in seconds; past it: subprocess.TimeoutExpired.
# Its env carries TRITON_RUN_DIR, the directory the run writes its events to (deploys/core/events.py).
Runner = Callable[[list[str], dict[str, str], float], subprocess.CompletedProcess]
# Seconds between the SIGTERM to a timed-out pyinfra run's process group and the SIGKILL.
KILL_GRACE_S = 10


@dataclass
class Outcome:
    """One host's line of the rollout summary."""

    host: str
    old: str | None = None  # the release live before the rollout
    new: str | None = None  # the release the deploy made live (None: it never switched)
    verdict: str = "skipped"  # pass, rolled back, failed, timed out, unreachable, skipped
    rolled_back: bool = False
    serving: str | None = None  # the release the container runs at the end
    ready: bool = False
    message: str = ""
    wave: int | None = None
    # Behind a front door: what the deploy logged for this host (drained, live, checked, rolled back,
    # back in the pool), each with its UTC time (deploys/core/rolling.py).
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
    # After pyinfra_cli (gevent) is in: keep the deploys.core imports below it (some bring in ssl).
    from deploys.core.roles import is_triton_host

    hosts = [host.name for host in inventory if is_triton_host(host)]  # front doors and monitoring hosts are not rolled
    if not hosts:
        raise SettingsError(f"inventory {path}: no hosts")
    groups = {name: [host.name for host in inventory.get_group(name)] for name in inventory.groups}
    first = next(iter(inventory))
    s = settings.parse(first.name, first.data.dict())
    return Inventory(
        hosts,
        groups,
        {
            "canary": s.rollout_canary,
            "batch_size": s.rollout_batch_size,
            "max_failures": s.rollout_max_failures,
            "child_timeout_s": s.rollout_child_timeout_s,
        },
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


def _terminate(proc: subprocess.Popen, expired: threading.Event) -> None:
    """A pyinfra run past its timeout: SIGTERM to its process group, SIGKILL after the grace."""
    expired.set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run a pyinfra command; its log goes to our stderr as it runs and is kept (stdout: --json).

    Its own session: a Ctrl-C at the terminal (SIGINT to the foreground group) does not reach it, the
    driver decides (see :meth:`Rollout.run`). Past ``timeout`` seconds its process group is
    terminated and :class:`subprocess.TimeoutExpired` raised, with what it printed."""
    print(redact.mask("$ pyinfra " + " ".join(cmd[1:])), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    expired = threading.Event()
    timer = threading.Timer(timeout, _terminate, (proc, expired))
    timer.daemon = True
    timer.start()
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    stderr = []
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            sys.stderr.write(redact.mask(line))
            stderr.append(line)
        reader.join()
        returncode = proc.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout, output="".join(stdout), stderr="".join(stderr))
    return subprocess.CompletedProcess(cmd, returncode, "".join(stdout), "".join(stderr))


def _why(found: list[dict[str, Any]], hosts: list[str], returncode: int) -> tuple[str, bool]:
    """Why a pyinfra run over ``hosts`` failed, from its events: the line that refused the run (a
    bad setting, an unreachable host) or a host pyinfra could not connect to; and whether SSH
    could not reach a host. No such event: its exit status (its log is above, for people)."""
    down = [e for e in found if e["event"] == "unreachable" and e.get("host") in hosts]
    refused = [e for e in found if e["event"] == "run refused"]
    unreachable = bool(down) or any(e.get("unreachable") for e in refused)
    if refused:
        return redact.mask(str(refused[-1].get("detail", "")))[:300], unreachable
    if down:
        e = down[-1]
        return redact.mask(f"host {e['host']}: could not connect ({e.get('detail', '')})")[:300], True
    return f"pyinfra exited with status {returncode} (its log above says why)", False


class Rollout:
    """One rollout of ``deploy`` over an inventory (the pyinfra commands go through ``runner``)."""

    def __init__(
        self,
        inventory: str,
        data_args: list[str],
        runner: Runner = _run,
        deploy: str = "deploys/all.py",
        child_timeout_s: float = 3600,
        run_root: str | Path | None = None,
    ) -> None:
        self.inventory = inventory
        self.data_args = data_args
        self.runner = runner
        self.deploy = deploy
        self.child_timeout_s = child_timeout_s
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.events: dict[str, list[dict[str, Any]]] = {}
        # Each pyinfra run gets its own directory for its events (TRITON_RUN_DIR) under run_root.
        self.run_root = Path(run_root) if run_root is not None else Path(tempfile.mkdtemp(prefix="rollout-runs-"))
        self.runs = 0
        self.interrupted: str | None = None  # the signal's name once SIGINT/SIGTERM came
        self.not_started = 0  # hosts no wave deployed (skipped), at the end

    def pyinfra(
        self, deploy: str, hosts: list[str], *extra: str, data: bool = True, env: dict[str, str] | None = None
    ) -> tuple[subprocess.CompletedProcess, Path]:
        """``pyinfra INV DEPLOY -y EXTRA --limit …``; ``data``: with the rollout's ``--data``. The
        run writes its events to a directory of its own (returned with the process)."""
        cmd = [PYINFRA, self.inventory, deploy, "-y", *extra]
        for host in hosts:
            cmd += ["--limit", host]
        for item in self.data_args if data else []:
            cmd += ["--data", item]
        self.runs += 1
        run_dir = self.run_root / f"{self.runs:03d}-{Path(deploy).stem}"
        run_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, **(env or {}), run_events.RUN_DIR_ENV: str(run_dir)}
        try:
            return self.runner(cmd, env, self.child_timeout_s), run_dir
        except subprocess.TimeoutExpired as expired:
            expired.run_dir = run_dir  # type: ignore[attr-defined]
            raise

    def _read(self, hosts: list[str], data: bool) -> tuple[dict[str, dict[str, Any]], str, bool]:
        """One deploys/releases.py run over ``hosts``: the states it wrote, why it failed, and
        whether that was SSH not reaching a host."""
        unreachable = False
        with tempfile.TemporaryDirectory(prefix="rollout-state-") as out:
            try:
                proc, run_dir = self.pyinfra("deploys/releases.py", hosts, data=data, env={"TRITON_RELEASES_OUT": out})
                why = ""
                if proc.returncode != 0:
                    why, unreachable = _why(run_events.read(run_dir), hosts, proc.returncode)
            except subprocess.TimeoutExpired:
                why = f"the state read timed out after {self.child_timeout_s:g}s (rollout_child_timeout_s)"
            found = {}
            for host in hosts:
                path = run_events.state_file(out, host)
                if path.exists():
                    found[host] = json.loads(path.read_text())
            return found, why, unreachable

    def states(self, hosts: list[str], data: bool = False) -> dict[str, dict[str, Any]]:
        """Each host's releases and serving release (deploys/releases.py), read per host.

        One run for all first; a host it did not write (one unreachable host fails the whole run:
        settings.validate_fleet) is read alone. A host that cannot be read gets ``{"error": line}``,
        and ``"unreachable": True`` when SSH could not reach it. ``data``: with ``--data`` (the new
        release's values: only right after its deploy)."""
        found, why, unreachable = self._read(hosts, data)
        missing = [h for h in hosts if h not in found]
        if len(hosts) == 1 and missing:
            return {hosts[0]: {"error": why or "no state written", "unreachable": unreachable}}
        for host in missing:
            found[host] = self.states([host], data)[host]
        return {h: found[h] for h in hosts}

    def deploy_wave(self, hosts: list[str]) -> tuple[set[str], str, bool]:
        """Run the deploy on ``hosts``; the failed hosts, a message when the run as a whole failed,
        and whether it timed out. The roll events the deploy logged (behind a front door) go to
        ``self.events``."""
        timed_out = False
        try:
            proc, run_dir = self.pyinfra(self.deploy, hosts, "--json")
        except subprocess.TimeoutExpired as expired:
            timed_out = True
            proc = subprocess.CompletedProcess(expired.cmd, -1, expired.output or "", "")
            run_dir = expired.run_dir  # type: ignore[attr-defined]
        found = run_events.read(run_dir)
        for event in found:
            if event["event"] in ROLL_STEPS and event.get("host") in hosts:
                self.events.setdefault(event["host"], []).append({k: v for k, v in event.items() if k not in ("host", "run")})
        if timed_out:
            return set(hosts), f"the deploy timed out after {self.child_timeout_s:g}s (rollout_child_timeout_s) and was terminated", True
        try:
            failed = set(json.loads(proc.stdout)["results"]["failed_hosts"])
        except (ValueError, KeyError, TypeError):
            if any(e["event"] == "run began" for e in found):
                return set(hosts), "", False  # every host failed ("No hosts remaining!"): pyinfra prints no JSON
            # The run ended before any host executed (bad setting, unreachable host…).
            why, _ = _why(found, hosts, proc.returncode)
            return set(hosts), f"the deploy ended before running (exit {proc.returncode}): {why}", False
        if proc.returncode != 0 and not failed:
            return set(hosts), f"the deploy failed (exit {proc.returncode})", False
        return failed, "", False

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # os.write, not print: the main thread may be inside sys.stderr.write (reentrant call).
        name = signal.Signals(signum).name
        if self.interrupted is None:
            self.interrupted = name
            line = f"rollout: {name}: finishing the wave in flight (its pyinfra runs are not interrupted), then stopping\n"
        else:
            line = f"rollout: {name} again: still finishing the wave in flight (bounded by rollout_child_timeout_s)\n"
        os.write(2, line.encode())

    def run(self, plan: list[list[str]], max_failures: int) -> list[Outcome]:
        """Deploy wave after wave; roll back failed hosts; stop past the threshold or on SIGINT/SIGTERM."""
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            return self._run(plan, max_failures)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self, plan: list[list[str]], max_failures: int) -> list[Outcome]:
        everyone = [h for wave in plan for h in wave]
        before = self.states(everyone)
        outcomes = {
            h: Outcome(host=h, old=before[h].get("current"), serving=before[h].get("serving"), ready=bool(before[h].get("model_ready")))
            for h in everyone
        }
        unreadable = {h for h in everyone if "error" in before[h]}
        for host in sorted(unreadable):
            o = outcomes[host]
            o.verdict = "unreachable" if before[host].get("unreachable") else "failed"
            o.message = f"state not readable before the rollout, not deployed: {before[host]['error']}"
            print(f"rollout: {host}: {o.verdict}: {o.message}", file=sys.stderr, flush=True)
        failures = 0
        for index, wave in enumerate(plan):
            if self.interrupted:
                print(f"rollout: {self.interrupted}: stopping before the next wave", file=sys.stderr, flush=True)
                break
            label = "canary" if index == 0 else f"batch {index}"
            targets = [h for h in wave if h not in unreadable]
            if not targets:
                if index == 0:
                    print(f"rollout: the canary ({', '.join(wave)}) cannot be read; stopping", file=sys.stderr, flush=True)
                    break
                continue
            print(f"rollout: {label}: {', '.join(targets)}", file=sys.stderr, flush=True)
            failed, message, timed_out = self.deploy_wave(targets)
            after = self.states(targets, data=True)
            for host in targets:
                o = outcomes[host]
                o.wave = index
                state = after[host]
                if "error" in state:
                    # Not readable after its deploy (it died mid-wave): whether it moved is unknown.
                    o.verdict = "timed out" if timed_out else "unreachable" if state.get("unreachable") else "failed"
                    o.serving, o.ready = None, False
                    o.message = (
                        f"{message + '; ' if message else ''}state not readable after the deploy: {state['error']}; "
                        f"check it, and roll it back by hand if its release moved (deploys/rollback.py --limit {host})"
                    )
                    failures += 1
                    continue
                current = state.get("current")
                o.new = current
                o.serving, o.ready = state.get("serving"), bool(state.get("model_ready"))
                if host not in failed and o.ready and o.serving == current:
                    o.verdict = "pass"
                    continue
                o.verdict, o.message = (
                    "timed out" if timed_out else "failed",
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
        self.not_started = sum(o.verdict == "skipped" for o in outcomes.values())
        return [outcomes[h] for h in everyone]

    def roll_back(self, o: Outcome) -> None:
        """deploys/rollback.py on one host, then read back what it serves (both without ``--data``:
        the previous release is the one the inventory's own values describe)."""
        print(f"rollout: {o.host}: rolling back {o.new} -> {o.old}", file=sys.stderr, flush=True)
        try:
            returncode = self.pyinfra("deploys/rollback.py", [o.host], data=False)[0].returncode
            why = f"exit {returncode}"
        except subprocess.TimeoutExpired:
            returncode, why = -1, f"timed out after {self.child_timeout_s:g}s (rollout_child_timeout_s)"
        state = self.states([o.host])[o.host]
        o.serving, o.ready = state.get("serving"), bool(state.get("model_ready"))
        if returncode == 0 and state.get("current") == o.old and o.serving == o.old and o.ready:
            if o.verdict != "timed out":
                o.verdict = "rolled back"
            o.rolled_back = True
            if o.verdict == "timed out":
                o.message += f"; rolled back to {o.old}"
        else:
            o.message += f"; rollback did not bring back {o.old} READY ({why})"


def table(outcomes: list[Outcome]) -> str:
    """The summary table: host, old, new, verdict, rolled back, serving at the end."""
    rows = [("host", "old release", "new release", "verdict", "rolled back", "serving")]
    for o in outcomes:
        serving = f"{o.serving or '-'}{' READY' if o.ready else ''}"
        rows.append((o.host, o.old or "-", o.new or "-", o.verdict, "yes" if o.rolled_back else "no", serving))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    # Release ids are the same on every host with the same settings (deploys/triton/release.py).
    return "\n".join([*lines, one_release({o.host: o.serving for o in outcomes}, [o.host for o in outcomes])])


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
    parser.add_argument("--child-timeout", type=int, help="seconds each pyinfra run may take (default: rollout_child_timeout_s)")
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        help="key=value for the deploy and the state read after it (as pyinfra's --data); not for rollbacks",
    )
    parser.add_argument("--report-dir", default="reports", help="where rollouts/<time>.json goes (default: reports)")
    args = parser.parse_args(argv)
    try:
        inv = load_inventory(args.inventory, parse_data(args.data))
        batch = args.batch_size if args.batch_size is not None else inv.defaults["batch_size"]
        max_failures = args.max_failures if args.max_failures is not None else inv.defaults["max_failures"]
        child_timeout = args.child_timeout if args.child_timeout is not None else inv.defaults["child_timeout_s"]
        if batch < 1 or max_failures < 0 or child_timeout < 1:
            raise SettingsError("--batch-size and --child-timeout must be ≥ 1 and --max-failures ≥ 0")
        plan = waves(inv, args.canary if args.canary is not None else inv.defaults["canary"], batch)
    except KeyboardInterrupt:
        print("rollout interrupted (SIGINT) before it started: nothing was deployed", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as error:
        print(redact.mask(f"rollout error: {error}"), file=sys.stderr)
        return 2
    runs = Path(args.report_dir) / "rollouts" / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.runs"
    rollout = Rollout(args.inventory, args.data, child_timeout_s=child_timeout, run_root=runs)
    outcomes = rollout.run(plan, max_failures)
    meta = {"inventory": args.inventory, "data": args.data, "waves": plan, "max_failures": max_failures}
    meta["fleet"] = one_release({o.host: o.serving for o in outcomes}, [o.host for o in outcomes])
    path = save(outcomes, args.report_dir, {**meta, "child_timeout_s": child_timeout, "interrupted": rollout.interrupted})
    print(f"\nRollout summary ({path}):\n{table(outcomes)}", file=sys.stderr)
    if rollout.interrupted:
        print(
            f"rollout interrupted ({rollout.interrupted}): the wave in flight was finished, "
            f"{rollout.not_started} host(s) not started; report: {path}",
            file=sys.stderr,
        )
        return 128 + signal.Signals[rollout.interrupted]
    return 0 if all(o.verdict == "pass" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
