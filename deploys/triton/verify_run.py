"""The verify step's parts: the pinned runtime, the parity command run on the host, its outcome, the
reports saved on the controller and the fleet table (deploys/triton/verify.py routes through these).

Per host (all idempotent; a converged host reports 0 changed operations):

1. the verify runtime in its own venv ``{triton_dir}/verify/venv`` from a hashed lock
   (verify/requirements-{cpu,gpu}.txt, ``--require-hashes``), from the package index or from wheels pushed from the
   controller (``verify_wheels_dir``); pip runs only when the pins changed;
2. verify/ uploaded to ``{triton_dir}/verify/verify``;
3. with the gateway on (``gateway_enabled``) and auth on (vault keys), the verify step's own
   gateway key (:func:`deploys.core.endpoints.verify_key`) written 0600 for root to
   ``{triton_dir}/verify/gateway.key`` through ``_stdin`` (deploys/core/operations.py:secret_file: never
   on a command line, never in pyinfra's output or --diff), only when its sha256 differs;
4. the parity check (``python -m verify.parity``) against Triton's published ports, on the served
   release's model files (``{triton_dir}/current/models/{model_name}/1/``) and the tokenizer in
   ``{triton_dir}/tokenizer/``; with the gateway on, also through the gateway
   (``--gateway-url``, :func:`gateway_args`); the report's sha256 of the served graph and data
   file (hashed there, on the host) must be the lock's (or, for files the lock does not pin, the
   source's metadata for the run): a damaged served file fails the host (:func:`check_model_files`).
   A run that changed nothing on the host reuses the host's last pass while what it vouched for is
   unchanged and younger than ``verify_reuse_s`` (:func:`passed_key_command`, inside the same command).

The check is read-only, so it is not a change: the operation plans nothing, and at execution time
reads the report through a fact (a command that changes nothing on the host) and yields a command
only to fail the host. The report is saved on the controller as
``{verify_report_dir}/<run>/<host>.json``; when the last host has reported, the fleet table (host,
GPU, driver, image, model sha, min cosine, max diff, p50 latency, cross-host cosine, verdict) is
logged (with a ``gateway`` column), to stderr like all pyinfra logging (``--json`` output stays clean).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.state import StateStage

from deploys.core import bounds, context, model_store, paths, run
from deploys.core.endpoints import probe_endpoint, probe_url
from deploys.core.paths import Layout
from deploys.core.repo import VERIFY_SRC
from deploys.core.settings import Settings, SettingsError
from deploys.triton.render import container_name
from facts._shell import RC_MARKER
from facts.verify import LOG_MARKER, NOTHING_TO_CHECK, REPORT_MARKER, REUSED_MARKER, ParityRun, parse_parity_output
from verify import options
from verify.fleet import HostResult, drift, table

# One directory of reports per pyinfra run (UTC start time of the controller process).
RUN_ID = run.STAMP


def requirements_file(cuda: bool) -> Path:
    """The hashed lock of the runtime: onnxruntime-gpu with its CUDA wheels when the local run may use CUDA."""
    return VERIFY_SRC / f"requirements-{'gpu' if cuda else 'cpu'}.txt"


def gateway_args(s: Settings, layout: Layout, key_file: bool) -> list[str]:
    """parity's gateway flags: none when the gateway is off. The gateway truncates at
    gateway_max_tokens (or refuses longer inputs): parity compares with a local run cut there, so a
    gateway_max_tokens other than verify_max_length is no mismatch. ``key_file``: auth is on and the
    verify step wrote its key to ``layout.gateway.verify_key``."""
    if not s.gateway_enabled:
        return []
    args = [
        "--gateway-url", probe_url(s),
        "--gateway-max-tokens", str(s.gateway_max_tokens),
        "--gateway-max-inputs", str(s.gateway_max_inputs),
    ]  # fmt: skip
    if not s.gateway_truncate:
        args.append("--gateway-no-truncate")
    if key_file:
        args += ["--gateway-key-file", layout.gateway.verify_key]
    return args


def passed_key_command(s: Settings, layout: Layout, args: list[str]) -> str:
    """Shell printing what a passing check vouches for, as one sha256: Triton's container (id and start
    time), the gateway's process (pid and start), the served release and its model files (name, size,
    mtime, inode), and the check's own flags and window (``args``, without this run's report name).
    Any restart, re-link or changed setting gives another key; each read is bounded."""
    q, bound = shlex.quote, f"timeout -k {bounds.KILL_AFTER_S} {bounds.STATE_READ_TIMEOUT_S}"
    flags = hashlib.sha256(json.dumps([s.model_sliding_window, *args]).encode()).hexdigest()
    reads = [
        f"{bound} docker inspect -f {q('{{.Id}} {{.State.StartedAt}}')} {q(container_name(s))}",
        *([f"{bound} systemctl show -p MainPID -p ExecMainStartTimestampMonotonic {paths.GATEWAY_UNIT}"] if s.gateway_enabled else []),
        f"readlink {q(layout.current)}",
        f"stat -L -c '%n %s %Y %i' {q(layout.current_release.version_dir)}/*",
        f"echo {flags}",
    ]
    return "{ " + "; ".join(reads) + "; } 2>&1 | sha256sum | cut -d' ' -f1"


def parity_command(
    s: Settings,
    layout: Layout,
    device: str,
    gateway_key_file: bool = False,
    gateway_too: bool = True,
    triton_key: bool = True,
    keep_pass: bool = False,
    reuse_s: int = 0,
) -> str:
    """The check on the host; always exits 0 and prints rc, report and log tail between markers.
    ``gateway_key_file``: pass the verify step's gateway key file (auth on); ``gateway_too``: False
    checks Triton alone; ``triton_key``: False leaves ``--triton-key-file`` out (verify code from
    before the restricted APIs, which does not know it: deploys/triton/triton_api.py:restrict).
    ``keep_pass``: a passing check writes :func:`passed_key_command`'s key to ``verify.passed_key``;
    ``reuse_s`` > 0 (with ``keep_pass``): when that key is still what the host has now and younger
    than ``reuse_s`` seconds, the last report is printed again (after REUSED_MARKER and its age)
    instead of running the check."""
    v = layout.verify
    report, log = f"{v.report}.{run.RUN_ID}.tmp", f"{v.log}.{run.RUN_ID}.tmp"
    settings_values = {option.name: getattr(s, option.setting) for option in options.OPTIONS}
    args = [
        f"{v.venv}/bin/python", "-m", "verify.parity",
        # The served release's files (hard links), not the model store: after a rollback across a
        # model revision the two differ, and parity must check what Triton actually serves.
        "--model-dir", layout.current_release.version_dir,
        "--model-file", paths.onnx_filename(s.model_variant),
        "--tokenizer-dir", layout.tokenizer_dir,
        "--url", probe_endpoint(s, s.triton_http_port),
        "--grpc-url", probe_endpoint(s, s.triton_grpc_port),
        *(["--triton-key-file", layout.triton_key] if triton_key else []),
        "--model-name", s.model_name,
        *options.argv({**settings_values, "device": device}),
        *(gateway_args(s, layout, gateway_key_file) if gateway_too else []),
        "--report", report,
    ]  # fmt: skip
    q = shlex.quote
    # The long samples are sized past the served model's window (verify/samples.py): in the environment,
    # which verify code of any age accepts (the roll check runs the host's code of the previous run).
    # Bytecode goes to its own directory (PYTHONPYCACHEPREFIX), never beside the uploaded code or in the
    # venv: compiled on the first run, read after (compiling the runtime's ~340 modules every run cost
    # 0.6 CPU-s, a quarter of the check). The report and log go to names of this run first, then are
    # renamed over last-report.json and last-run.log: two checks never write one file (no report:
    # last-report.json goes too).
    check = (
        f"cd {q(v.base)} && PYTHONPYCACHEPREFIX={q(v.pycache)} {options.WINDOW_ENV}={s.model_sliding_window} {' '.join(q(a) for a in args)} > {q(log)} 2>&1; "
        f"rc=$?; echo {RC_MARKER}$rc; echo {REPORT_MARKER}; cat {q(report)} 2>/dev/null; echo; "
        f"echo {LOG_MARKER}; tail -n 20 {q(log)} 2>/dev/null; "
        f"if [ -f {q(report)} ]; then mv -f {q(report)} {q(v.report)}; else rm -f {q(v.report)}; fi; "
        f"mv -f {q(log)} {q(v.log)} 2>/dev/null; "
    )
    kept = q(v.passed_key)
    if not keep_pass:  # this check's report is not one a later run may reuse: nor is the last one now
        return f"rm -f {q(report)} {kept}; {check}true"
    # The key is read before the check: a pass vouches for what the host had when it began.
    key = passed_key_command(s, layout, args[:-2])
    check = f'rm -f {kept}; {check}if [ $rc -eq 0 ]; then echo "$key" > {kept}.tmp && mv -f {kept}.tmp {kept}; fi; '
    if reuse_s <= 0:
        return f"rm -f {q(report)}; key=$({key}); {check}true"
    reused = (
        f"echo {REUSED_MARKER}$age; echo {RC_MARKER}0; echo {REPORT_MARKER}; cat {q(v.report)}; echo; "
        f"echo {LOG_MARKER}; tail -n 20 {q(v.log)} 2>/dev/null; "
    )
    fresh = (
        f'[ -f {kept} ] && [ -f {q(v.report)} ] && [ "$(cat {kept})" = "$key" ] '
        f"&& age=$(( $(date +%s) - $(stat -c %Y {kept}) )) && [ $age -ge 0 ] && [ $age -lt {int(reuse_s)} ]"
    )
    return f"rm -f {q(report)}; key=$({key}); if {fresh}; then {reused}else {check}fi; true"


def roll_check_command(s: Settings, layout: Layout, device: str, triton_key: bool = True) -> str:
    """The parity check of Triton alone (HTTP, gRPC vs local ONNX Runtime) on a host rolled behind the
    front door, before it is back in the pool (deploys/core/rolling.py). Prints
    ``NOTHING_TO_CHECK`` when the host has no verify runtime yet: the verify step, later in
    the run, installs it and checks the host (gateway included) as always. ``triton_key``: as in
    :func:`parity_command` (the roll runs before the verify step uploads this run's verify code)."""
    v = layout.verify
    q = shlex.quote
    present = f"[ -x {q(v.venv + '/bin/python')} ] && [ -f {q(v.installed)} ] && [ -d {q(v.code)} ]"
    check = parity_command(s, layout, device, gateway_too=False, triton_key=triton_key)
    return f"if {present}; then {check}; else echo {NOTHING_TO_CHECK}; fi"


def roll_verdict(host_name: str) -> Callable[[list[str]], str | None]:
    """Reads :func:`roll_check_command`'s output: None when parity passed, else the one-line reason."""
    return lambda lines: outcome_message(host_name, parse_parity_output(lines), None)


def outcome_message(host_name: str, outcome: dict[str, Any], saved: str | None) -> str | None:
    """None when the host passed; else one line naming the host, what failed and where to look."""
    report = outcome.get("report") or {}
    where = f" (report: {saved})" if saved else ""
    if outcome.get("rc") == 0 and report.get("verdict") == "pass":
        return None
    if report.get("message"):
        return f"host {host_name}: {report['message']}{where}"
    last = (outcome.get("log") or "").strip().splitlines()
    detail = last[-1] if last else "no output"
    return f"host {host_name}: verify did not run (exit {outcome.get('rc')}): {detail}{where}"


def expected_model_files(s: Settings) -> tuple[dict[str, str], str]:
    """(file name in 1/ → the sha256 it must have, where that comes from: ``lock``, or ``source``
    when the lock pins none of them and the model step trusts the source's metadata for the run)."""
    wanted = [f for f in model_store.expected(s, model_store.hub_token(s)) if f.repo_path.startswith("onnx/")]
    return {PurePosixPath(f.dest).name: f.sha256 for f in wanted}, "lock" if all(f.locked for f in wanted) else "source"


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none (missing)"


def check_model_files(report: dict[str, Any], expected: dict[str, str], source: str) -> dict[str, Any]:
    """The report with the served files' sha256 (hashed on the host, in ``current``: what Triton
    serves) compared with ``expected``: ``model.expected``, ``model.expected_from`` and
    ``model.differs`` (names) added; on a difference the verdict is ``fail`` and the message one
    line naming each file, expected vs found and the fix. A report without hashes (an error
    report: Triton unreachable, say) is returned as it is."""
    model = report.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("files"), dict) or not expected:
        return report
    found = model["files"]
    differs = [name for name in sorted(expected) if found.get(name) != expected[name]]
    report = {**report, "model": {**model, "expected": dict(expected), "expected_from": source, "differs": differs}}
    if not differs:
        return report
    said = "the lock" if source == "lock" else "the source's metadata"
    files = "; ".join(f"{name} has sha256 {_short(found.get(name))}, {said} says {_short(expected[name])}" for name in differs)
    message = (
        f"served model files in {model.get('dir')} differ from {said}: {files}; "
        "re-run the deploy (it re-links the release to the checked model store and restarts Triton)"
    )
    if report.get("verdict") != "pass" and report.get("message"):
        message += f" (parity: {report['message']})"
    return {**report, "verdict": "fail", "message": message}


def save_report(s: Settings, host_name: str, report: dict[str, Any]) -> str:
    """Write the host's report on the controller: {verify_report_dir}/<run>/<host>.json."""
    path = Path(s.verify_report_dir) / RUN_ID / f"{host_name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return str(path)


def record(state: Any, op_hash: str | None, result: HostResult, min_cosine: float) -> None:
    """Keep ``result``; when every host running this operation has reported, log the fleet table."""
    ctx = context.of(state)  # the results gathered during this run
    with ctx.lock:
        gathered = ctx.verify_results
        gathered[result.host] = result
        expected = {h.name for h in state.inventory.iter_activated_hosts() if op_hash is None or op_hash in state.ops.get(h, {})} - {
            h.name for h in state.failed_hosts
        }
        if not expected <= set(gathered) or ctx.verify_printed:
            return
        ctx.verify_printed = True
        results = list(gathered.values())
    logger.info("Verify: fleet parity (run %s)\n%s", RUN_ID, table(results))
    for line in drift(results, min_cosine):
        logger.warning(line)


def _fail(state: Any, host: Any, message: str) -> bool:  # pyinfra passes state and host
    """FunctionCommand body failing the host with the parity message."""
    logger.error(f"{host.print_prefix}{message}")
    return False


@operation(is_idempotent=True)
def parity_check(
    s: Settings,
    device: str,
    gateway_key_file: bool = False,
    expected: dict[str, str] | None = None,
    expected_from: str = "lock",
    reuse: bool = True,
):
    """Run the parity check at execution time; yields a command only to fail the host. ``reuse``: a
    run that changed nothing on the host may reuse its last pass (verify_reuse_s); False: always check.

    While pyinfra plans (diff stage) nothing runs and nothing is yielded: the check is not a
    change. At execution, the fact runs the check and its report is saved on the controller.
    ``expected``: file name → sha256 the served model files must have (:func:`check_model_files`)."""
    state = host.state
    if state.current_stage != StateStage.Execute:
        return
    reuse_s = s.verify_reuse_s if reuse and not changed_this_run(state, host) else 0
    # The pass is kept even with verify_reuse_s 0: a later run with reuse on may use it.
    command = parity_command(s, paths.layout(s), device, gateway_key_file, keep_pass=True, reuse_s=reuse_s)
    outcome = host.get_fact(ParityRun, command=command)
    if outcome.get("report"):
        outcome = {**outcome, "report": check_model_files(outcome["report"], expected or {}, expected_from)}
        outcome["report"]["fidelity"] = model_store.fidelity(s)  # which graph: repaired or upstream (attention window)
    report = outcome.get("report") or {"verdict": "error", "message": None}
    saved = save_report(s, host.name, report) if outcome.get("report") else None
    result = HostResult(host=host.name, report=report, image=image_label(s))
    record(state, host.executing_op_hash, result, s.verify_min_cosine)
    message = outcome_message(host.name, outcome, saved)
    if message:
        yield FunctionCommand(_fail, (message,), {})
    elif outcome.get("reused_age_s") is not None:
        logger.info(
            f"{host.print_prefix}{report.get('message')} (report: {saved}; the host's check of {outcome['reused_age_s']} s ago, "
            "reused: nothing it checked has changed; verify_reuse_s: 0 checks on every run)"
        )
    else:
        logger.info(f"{host.print_prefix}{report.get('message')} (report: {saved})")


def changed_this_run(state: Any, target: Any) -> bool:
    """Whether an operation of this run has already changed ``target`` (ran commands on it)."""
    for op_data in state.ops.get(target, {}).values():
        meta = op_data.operation_meta
        if meta.is_complete() and meta.executed:
            return True
    return False


def image_label(s: Settings) -> str:
    """The image for the table: repository:tag, plus the digest's first 12 hex when pinned."""
    label = s.triton_image.split("/")[-1]
    return f"{label}@{s.triton_image_digest[7:19]}" if s.triton_image_digest else label


def local_device(s: Settings, gpu: bool) -> str:
    """Device for the local ONNX Runtime: cuda needs a GPU host."""
    if s.verify_device == "cuda" and not gpu:
        raise SettingsError(f"host {s.host}: setting verify_device='cuda' on a host without a GPU; set verify_device: auto or cpu")
    return "cpu" if not gpu else s.verify_device
