"""``make bench``: converge 1, 2, 3 and 5 hosts, no-op re-runs (commands per host), model bytes, the embeddings gateway
against Triton straight; one JSON line at the end.

Runs on its own sandbox (``bench``), fresh hosts each time (images reused). The model comes through
``model_fetch: controller`` from tests/support/hub_server.py (a local Hub stand-in serving the tiny model)
so ``upstream_model_bytes`` counts the bytes the Hub really served; ``sent_model_bytes`` adds up
the model-file uploads that changed a host (sizes from the sandbox's lock).

The sandbox's hosts share this machine's cores, so each converge also records the machine's busy
CPU-seconds (``/proc/stat``: every process, hosts and controller alike) and, on stderr, the
operations whose wall time grew most from 1 to 3 hosts. ``converge_3_cpu_s / cpu_cores`` is the
least time 3 hosts can take here, however well the deploy runs them in parallel.

No-op re-runs (issue 27), each through tests/support/command_count.py (pyinfra's Host counting what it
sends): ``noop_{1,3,5}_s`` on the converged 1-, 3- and 5-host fleets, ``noop_N_commands_per_host``
(the most shell commands any host was sent: each one SSH round trip, a figure contention does not
move), ``noop_N_transfers`` (uploads and downloads) and ``noop_N_controller_cpu_s`` (the controller's
process CPU). A no-op reuses each host's last passing parity check (``verify_reuse_s``). On 3 hosts,
``NOOP_ROUNDS`` rounds alternate the no-op checking parity anyway (``verify_reuse_s: 0``;
``noop_3_checked_*``), without deploys/core/fact_cache.py (``--no-fact-cache``: each fact its own
command, as before it; ``noop_3_uncached_*``) and as deployed: ``noop_3_s``, ``noop_3_checked_s`` and
``noop_3_uncached_s`` are medians, ``*_spread`` their max - min. ``plan_50_fake_cpu_s``:
the controller's CPU-seconds for ``pyinfra --dry`` of the whole chain on 50 fresh ``@fake`` hosts.

The front door's overhead: the front-door host front1 is added to the converged 3-host fleet and
deployed, then the controller alternates single requests (concurrency 1) through the front door
and straight to host1's gateway: ``front_door_overhead_p50_ms`` is the difference of the p50s.

The front door under overload (issue 24): on that same fleet, 160 clients send 32-input requests
back to back for 20 s through the front door (tests/support/overload.py): ``overload_200_per_s``,
``overload_429_per_s``, ``overload_5xx`` (answers with a 5xx status), ``overload_bad`` (any answer
that is neither a 200 with 32 vectors nor a 429 with error JSON and Retry-After),
``overload_p95_admitted_ms`` (p95 latency of the 200s).

The image: ``image_bytes`` is one copy of the Triton image's compressed blobs (its manifest in the
sandbox registry, the stand-in for nvcr.io); ``upstream_image_bytes_no_cache`` is what that registry
served as blobs during the 3-host converge (its access log), ``upstream_image_bytes`` the same for a
fresh 3-host converge through the registry cache cache1 (counted at the registry and its anonymous
view, which the cache proxies).

The controller's attention-window repair (issue 25, tests/support/repair_bench.py): ``repair_s`` and
``repair_peak_rss_mb`` (wall time and peak resident memory of the repair and its ONNX Runtime guards)
on a graph of EmbeddingGemma-300m's shapes with ~1.2 GB of random weights; ``repair_served`` and the
two guard figures say the guards held.

``--converge [ROUNDS]`` (``make bench-converge``) measures only the 1-host converge, ROUNDS times (default
CONVERGE_ROUNDS), each on a fresh host with a fresh model cache: ``converge_1_s`` and ``converge_1_cpu_s``
as medians with ``_spread`` and ``_rounds``, ``converge_1_first_s``/``_first_cpu_s`` (the first round: the
controller's runtime-wheel cache as it was), then a counted no-op (``noop_1_*``, ``noop_1_transfers``) and,
on stderr, the operations that took longest. The full bench runs its 1-host converge this way too.
The gateway figures come from host1 of the converged fleet: tests/support/gateway_bench.py runs there, in
the gateway's own venv, against the gateway (text in) and Triton's gRPC (the same texts as token
ids), at concurrency 1, 8 and 32, bounded in time; then 3 sequential requests of 2048 inputs each
(``large_2048_eps``: embeddings per second; ``gateway_rss_peak_2048_mb``: the gateway's peak
resident memory while they run, sampled from its /metrics); every request stays inside that host.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from deploys.core import paths, settings
from tests.sandbox import fleet
from tests.sandbox.dockercli import docker
from tests.support import repair_bench
from tests.support.hub_server import HubServer, Repo
from tests.support.load import check_targets
from tests.support.overload import load_texts, run_overload

NAME = "bench"
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
UPLOAD = re.compile(r"Upload model file (\S+)")  # the name carries the deploy's prefix: search, not match
OPERATION_START = "--> Starting operation: "  # pyinfra's line on stderr as each operation begins
GROWTH_ROWS = 5
# The load generator and what it imports from tests/ (embeddings_gateway/ and embeddinggemma.py are
# already on the host, in the gateway's dir).
GATEWAY_BENCH_FILES = (
    "tests/__init__.py",
    "tests/support/__init__.py",
    "tests/support/net.py",
    "tests/support/load.py",
    "tests/support/gateway_bench.py",
)
GATEWAY_BENCH_SECONDS = 5.0  # per path and concurrency: 6 runs
FRONT_DOOR_REQUESTS = 400  # per path (front door, host1's gateway), alternating
PLAN_FAKE_HOSTS = 50  # the controller's CPU for planning this many @fake hosts (plan_50_fake_cpu_s)
CONVERGE_ROUNDS = 3  # fresh 1-host converges: median and spread
SLOWEST_ROWS = 8  # the 1-host converge's longest operations, on stderr
NOOP_ROUNDS = 3  # no-op re-runs on 3 hosts: checking, without the fact cache, as deployed, alternating: median and spread
OVERLOAD_CLIENTS, OVERLOAD_INPUTS, OVERLOAD_SECONDS = 160, 32, 20.0  # as tests/test_e2e_front_door.py's overload
GATEWAY_KEYS = (
    "gateway_c1_eps", "direct_c1_eps", "gateway_c8_eps", "direct_c8_eps", "gateway_c32_eps", "direct_c32_eps",
    "gateway_c1_p50_ms", "gateway_c1_p95_ms", "direct_c1_p50_ms", "direct_c1_p95_ms",
    "gateway_c32_p50_ms", "gateway_c32_p95_ms", "direct_c32_p50_ms", "direct_c32_p95_ms",
    "gateway_vs_direct_c1_ratio", "gateway_vs_direct_c8_ratio", "gateway_vs_direct_c32_ratio",
    "triton_mean_batch_c32", "direct_triton_mean_batch_c32",
    "gateway_c1_cpu_ms_per_embedding", "gateway_c8_cpu_ms_per_embedding", "gateway_c32_cpu_ms_per_embedding",
    "large_2048_eps", "large_2048_p50_s", "gateway_rss_before_mb", "gateway_rss_peak_2048_mb", "gateway_workers",
)  # fmt: skip


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Converge:
    """One timed deploy: wall seconds, the machine's busy CPU-seconds, wall seconds per operation."""

    seconds: float
    cpu_seconds: float
    operation_seconds: dict[str, float]
    results: dict[str, Any]


def busy_cpu_seconds(proc_stat: str, ticks_per_second: int) -> float:
    """CPU-seconds the machine spent busy since boot, from /proc/stat's aggregate ``cpu`` line
    (user, nice, system, irq, softirq, steal; idle and iowait are not busy, guest is in user)."""
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
            return (user + nice + system + irq + softirq + steal) / ticks_per_second
    raise ValueError("no aggregate cpu line in /proc/stat")


def _machine_cpu_seconds() -> float:
    return busy_cpu_seconds(Path("/proc/stat").read_text(), os.sysconf("SC_CLK_TCK"))


def operation_seconds(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Wall seconds per operation from pyinfra's ``(time, stderr line)`` pairs: an operation lasts
    until the next one starts (pyinfra waits for every host at each operation) or the run ends.
    Operations of the same name add up."""
    marks = [(t, line.split(OPERATION_START, 1)[1].strip()) for t, line in lines if OPERATION_START in line]
    durations: dict[str, float] = {}
    for index, (started, name) in enumerate(marks):
        finished = marks[index + 1][0] if index + 1 < len(marks) else end
        durations[name] = durations.get(name, 0.0) + finished - started
    return durations


def growth(one: dict[str, float], many: dict[str, float], rows: int = GROWTH_ROWS) -> list[tuple[str, float, float]]:
    """The ``rows`` operations whose wall time grew most from ``one`` to ``many``: (name, s1, sN)."""
    names = set(one) | set(many)
    grown = sorted(names, key=lambda n: many.get(n, 0.0) - one.get(n, 0.0), reverse=True)
    return [(n, one.get(n, 0.0), many.get(n, 0.0)) for n in grown[:rows]]


def _deploy(hub: HubServer, cache: Path, counts: Path | None = None, *count_flags: str, data: tuple[str, ...] = ()) -> Converge:
    """One timed ``pyinfra ... --json`` run on the bench fleet; with ``counts``, through
    tests/support/command_count.py (the commands sent per host and the controller's CPU, to that file);
    ``data``: more ``key=value`` settings (``--data``)."""
    env = {**os.environ, "SANDBOX_NAME": NAME, "HF_ENDPOINT": hub.url, "PYTHONUNBUFFERED": "1"}
    counting = [sys.executable, "-m", "tests.support.command_count", str(counts), *count_flags, "--"] if counts else [PYINFRA]
    cmd = [
        *counting,
        "inventories/sandbox.py",
        "deploys/all.py",
        "-y",
        "--json",
        "--data",
        "model_fetch=controller",
        "--data",
        f"model_cache_dir={cache}",
        *(arg for pair in data for arg in ("--data", pair)),
    ]
    lines: list[tuple[float, str]] = []  # every stderr line with its time since the start
    # stdout (the JSON) goes to a file: read from a pipe only at the end, it could fill and stall pyinfra.
    with tempfile.TemporaryFile("w+") as stdout:
        cpu_before, started = _machine_cpu_seconds(), time.monotonic()
        proc = subprocess.Popen(cmd, cwd=fleet.ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append((time.monotonic() - started, line))
        proc.wait()
        elapsed, cpu = time.monotonic() - started, _machine_cpu_seconds() - cpu_before
        stdout.seek(0)
        output = stdout.read()
    if proc.returncode != 0:
        sys.stderr.write("".join(line for _, line in lines[-60:]))
        raise SystemExit(f"bench: the deploy failed (rc {proc.returncode}); see above")
    return Converge(elapsed, cpu, operation_seconds(lines, elapsed), json.loads(output)["results"])


def _changed(results: dict[str, Any]) -> int:
    return sum(len(op["success"]) for op in results["operations"])


def _sent_bytes(results: dict[str, Any], sizes: dict[str, int]) -> int:
    """Bytes of model files uploaded to hosts: each changed upload counts its file once per host."""
    total = 0
    for op in results["operations"]:
        match = UPLOAD.search(op["name"])
        if match and op["success"]:
            name = PurePosixPath(match.group(1)).name
            path = next(p for p in sizes if PurePosixPath(p).name == name)
            total += sizes[path] * len(op["success"])
    return total


def spread(key: str, values: list[float]) -> dict[str, Any]:
    """``key``: the median of ``values``; ``key_spread``: max - min; ``key_rounds``: how many."""
    return {key: round(statistics.median(values), 1), f"{key}_spread": round(max(values) - min(values), 1), f"{key}_rounds": len(values)}


def command_figures(counts: dict[str, Any], prefix: str) -> dict[str, Any]:
    """tests/support/command_count.py's file as the bench's keys: the most shell commands any host was
    sent (each one SSH round trip), uploads and downloads in all, the controller's CPU-seconds."""
    commands = counts["commands"].values()
    return {
        f"{prefix}_commands_per_host": max(commands, default=0),
        f"{prefix}_transfers": sum(counts["uploads"].values()) + sum(counts["downloads"].values()),
        f"{prefix}_controller_cpu_s": counts["controller_cpu_s"],
    }


def plan_fake_cpu_seconds(hosts: int = PLAN_FAKE_HOSTS) -> float:
    """The controller's CPU-seconds (process user + system time) for ``pyinfra --dry`` of the whole chain on
    ``hosts`` fresh ``@fake`` hosts (tests/support/fake_hosts.py, GPU and CPU alternating): planning alone."""
    from tests.support.hub_server import start_with_lock
    from tests.test_plan import CANARY_KEY, FRESH_CPU, FRESH_GPU, MODEL_FILES

    with tempfile.TemporaryDirectory() as tmp:
        server, data = start_with_lock(Path(tmp), MODEL_FILES)
        try:
            rows = [
                (FRESH_GPU if i % 2 == 0 else FRESH_CPU).replace('"gpu-ubuntu"', f'"gpu-{i}"').replace('"cpu-debian"', f'"cpu-{i}"')
                for i in range(hosts)
            ]
            inventory = Path(tmp) / "inventory.py"
            inventory.write_text(
                "import json\nfrom tests.support import fake_hosts as f\n\n"
                f"f.SETTINGS.update(json.loads({json.dumps(json.dumps(data))}))\n"
                "fleet = [\n" + ",\n".join(rows) + "\n]\n"
            )
            counts = Path(tmp) / "counts.json"
            env = {
                **os.environ,
                "NGC_API_KEY": CANARY_KEY,
                "HF_ENDPOINT": server.url,
                "PYINFRA_FAKE_DELAY": "0",
                "PYINFRA_FAKE_DELAY_JITTER": "0",
            }
            cmd = [sys.executable, "-m", "tests.support.command_count", str(counts), "--", str(inventory), "deploys/all.py", "--dry"]
            proc = subprocess.run(cmd, cwd=fleet.ROOT, env=env, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"bench: planning {hosts} @fake hosts failed (rc {proc.returncode}); see above")
            return json.loads(counts.read_text())["controller_cpu_s"]
        finally:
            server.stop()


def gateway_figures(host: dict[str, Any], api_key: str, seconds: float = GATEWAY_BENCH_SECONDS) -> dict[str, Any]:
    """tests/support/gateway_bench.py inside sandbox host ``host`` (its gateway venv), against its gateway on the
    host's own address and its Triton on loopback; the bench's JSON line."""
    container = host["container"]
    s = settings.parse(host["name"], {"gateway_listen_address": host["address"]})
    layout = paths.layout(s)
    work = "/tmp/gateway-bench"
    docker("exec", container, "sh", "-c", f"rm -rf {work} && mkdir -p {work}/tests/support")
    for name in GATEWAY_BENCH_FILES:
        docker("exec", "-i", container, "sh", "-c", f"cat > {work}/{name}", stdin=(fleet.ROOT / name).read_bytes())
    docker("exec", "-i", container, "sh", "-c", f"umask 077; cat > {work}/key", stdin=api_key)
    command = (
        f"cd {layout.gateway.base} && PYTHONPATH={work} PYTHONDONTWRITEBYTECODE=1 {layout.gateway.venv}/bin/python -m tests.support.gateway_bench "
        f"--gateway http://{host['address']}:{s.gateway_listen_port} --triton 127.0.0.1:{s.triton_grpc_port} "
        f"--metrics http://127.0.0.1:{s.triton_metrics_port}/metrics --tokenizer {layout.tokenizer_dir} "
        f"--api-key-file {work}/key --allow {host['address']} --seconds {seconds}"
    )
    out = docker("exec", container, "timeout", str(int(seconds * 6 + 480)), "sh", "-c", command)
    return json.loads(out.strip().splitlines()[-1])


def front_door_figures(state: dict[str, Any], api_key: str, requests: int = FRONT_DOOR_REQUESTS) -> dict[str, Any]:
    """p50 latency at concurrency 1 through the front door and straight to host1's gateway, from the
    controller, alternating one request each (both cross Docker's loopback publishing once; the
    front door adds HAProxy and the hop to a host). Bounded by ``requests`` per path and 120 s."""
    front, direct = fleet.front_door_url(state), fleet.gateway_url(state["hosts"][0])
    check_targets([front, direct])
    body = {"model": "embeddinggemma", "input": ["The quick brown fox jumps over the lazy dog."], "encoding_format": "base64"}
    headers = {"Authorization": f"Bearer {api_key}"}
    latencies: dict[str, list[float]] = {"front": [], "direct": []}
    failures = 0
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=10) as client:
        for _ in range(5):  # warm both connections (keep-alive) and both paths
            for url in (front, direct):
                client.post(f"{url}/v1/embeddings", json=body, headers=headers)
        for _ in range(requests):
            if time.monotonic() > deadline:
                break
            for path, url in (("front", front), ("direct", direct)):
                start = time.perf_counter()
                response = client.post(f"{url}/v1/embeddings", json=body, headers=headers)
                if response.status_code == 200:
                    latencies[path].append(time.perf_counter() - start)
                else:
                    failures += 1
    p50 = {path: statistics.median(values) * 1000 for path, values in latencies.items()}
    return {
        "front_door_c1_p50_ms": round(p50["front"], 3),
        "direct_gateway_c1_p50_ms": round(p50["direct"], 3),
        "front_door_overhead_p50_ms": round(p50["front"] - p50["direct"], 3),
        "front_door_bench_requests": len(latencies["front"]),
        "front_door_failures": failures,
    }


def overload_figures(state: dict[str, Any], api_key: str) -> dict[str, Any]:
    """tests/support/overload.py through the front door (the controller's loopback): 200s/s, 429s/s, 5xx, p95 of the 200s."""
    result = run_overload(
        fleet.front_door_url(state), api_key, load_texts(), clients=OVERLOAD_CLIENTS, inputs=OVERLOAD_INPUTS, seconds=OVERLOAD_SECONDS
    )
    if result.bad_samples:
        _log(f"overload: {result.bad} bad answers, e.g. {result.bad_samples[0]}")
    return result.figures()


def _noop(hub: HubServer, work: Path, hosts: int, cache: Path | None = None) -> dict[str, Any]:
    """A counted no-op re-run on the converged ``hosts``-host bench fleet, with the model cache its
    converge used (``cache``, default ``cache-<hosts>``: another one is a changed setting, so no no-op):
    its keys (time, changed operations, commands per host, the controller's CPU) and, under
    ``_converge``, the run itself."""
    _log(f"no-op re-run on {hosts} host{'s' if hosts > 1 else ''}, commands counted")
    counts = work / f"counts-noop-{hosts}.json"
    run = _deploy(hub, cache or work / f"cache-{hosts}", counts)
    return {
        f"noop_{hosts}_s": round(run.seconds, 1),
        f"noop_{hosts}_changed": _changed(run.results),
        **command_figures(json.loads(counts.read_text()), f"noop_{hosts}"),
        "_converge": run,
    }


def _fresh_fleet(hosts: int, registry_cache: bool = False) -> dict[str, Any]:
    fleet.down(NAME)
    return fleet.up(NAME, hosts, registry_cache=registry_cache, model="tiny")


def _model_repo(state: dict[str, Any]) -> tuple[Repo, dict[str, int]]:
    """The sandbox's model as the Hub stand-in serves it, and its files' sizes (from the sandbox's lock)."""
    model = state["model"]
    mirror = Path(model["model_mirror"])
    lock = json.loads((fleet.ROOT / model["model_lock_file"]).read_text())["models"][model["model_repo_id"]][model["model_revision"]]
    sizes = {path: entry["size"] for path, entry in lock.items()}
    return Repo(model["model_repo_id"], {p: (mirror / p).read_bytes() for p in sizes}, commit=model["model_revision"]), sizes


def converge_one(repo: Repo, rounds: int = CONVERGE_ROUNDS) -> tuple[Converge, dict[str, Any]]:
    """``rounds`` converges of 1 fresh host (fresh model cache each), then a counted no-op on the last:
    the median run's figures, the first round's, each figure's spread, and the last converge."""
    work = fleet.state_dir(NAME)
    runs: list[Converge] = []
    figures: dict[str, Any] = {}
    with HubServer([repo]) as hub:
        for index in range(rounds):
            if index:
                _fresh_fleet(1)
            _log(f"converge 1 host, round {index + 1}/{rounds}")
            runs.append(_deploy(hub, work / f"cache-1-round-{index + 1}"))
        figures.update(_noop(hub, work, 1, work / f"cache-1-round-{rounds}"))  # the last converge's model cache
        figures.pop("_converge")
    figures.update(spread("converge_1_s", [r.seconds for r in runs]))
    figures.update(spread("converge_1_cpu_s", [r.cpu_seconds for r in runs]))
    figures["converge_1_first_s"], figures["converge_1_first_cpu_s"] = round(runs[0].seconds, 1), round(runs[0].cpu_seconds, 1)
    last = runs[-1]
    _log("the 1-host converge's longest operations (wall s, last round):")
    for name, seconds in sorted(last.operation_seconds.items(), key=lambda item: -item[1])[:SLOWEST_ROWS]:
        _log(f"  {seconds:6.1f}  {name}")
    return last, figures


def converge_stage(rounds: int) -> int:
    """``--converge``: the 1-host converge figures only (one JSON line)."""
    repo, _ = _model_repo(_fresh_fleet(1))
    _, figures = converge_one(repo, rounds)
    fleet.down(NAME)
    print(json.dumps({**figures, "cpu_cores": os.cpu_count() or 1}))
    return 0


def main() -> int:
    """Measure and print the JSON line."""
    if len(sys.argv) > 1 and sys.argv[1] == "--converge":
        return converge_stage(int(sys.argv[2]) if len(sys.argv) > 2 else CONVERGE_ROUNDS)
    repo, sizes = _model_repo(_fresh_fleet(1))
    work = fleet.state_dir(NAME)
    converged: dict[int, Converge] = {}
    noops: dict[str, Any] = {}
    converged[1], one_figures = converge_one(repo)
    noops.update(one_figures)
    with HubServer([repo]) as hub:
        for hosts in (2, 3):
            _fresh_fleet(hosts)
            hub.body_bytes = 0
            _log(f"converge {hosts} hosts")
            converged[hosts] = _deploy(hub, work / f"cache-{hosts}")
        upstream = hub.body_bytes  # of the 3-host converge
        # A fresh fleet has a fresh registry: its access log holds the 3 hosts' pulls only.
        image_no_cache = fleet.upstream_blob_bytes(NAME)
        image = fleet.image_bytes(NAME)
        noops.update(_noop(hub, work, 3))
        noop = noops.pop("_converge")
        # Rounds: the no-op checking parity on every host (verify_reuse_s: 0), without
        # deploys/core/fact_cache.py (each fact its own command, as before it), and as deployed,
        # alternating, so one noisy moment on a shared machine does not decide the comparison.
        rounds: dict[str, list[float]] = {"noop_3_s": [noop.seconds], "noop_3_uncached_s": [], "noop_3_checked_s": []}
        for index in range(NOOP_ROUNDS):
            _log(f"no-op round {index + 1}/{NOOP_ROUNDS} on 3 hosts: checking parity, without the fact cache, then as deployed")
            checked = _deploy(hub, work / "cache-3", data=("verify_reuse_s=0",))
            rounds["noop_3_checked_s"].append(checked.seconds)
            noops["noop_3_checked_changed"] = max(noops.get("noop_3_checked_changed", 0), _changed(checked.results))
            counts = work / "counts-noop-3-uncached.json"
            uncached = _deploy(hub, work / "cache-3", counts, "--no-fact-cache")
            rounds["noop_3_uncached_s"].append(uncached.seconds)
            noops["noop_3_uncached_changed"] = max(noops.get("noop_3_uncached_changed", 0), _changed(uncached.results))
            noops.update(command_figures(json.loads(counts.read_text()), "noop_3_uncached"))
            if index + 1 < NOOP_ROUNDS or len(rounds["noop_3_s"]) < NOOP_ROUNDS:
                again = _deploy(hub, work / "cache-3")
                rounds["noop_3_s"].append(again.seconds)
                noops["noop_3_changed"] = max(noops["noop_3_changed"], _changed(again.results))
        for key, values in rounds.items():
            noops.update(spread(key, values))
    _log("embeddings gateway vs Triton straight, on host1 (concurrency 1, 8, 32)")
    bench_state = fleet.load_state(NAME) or {}
    gateway = gateway_figures(bench_state["hosts"][0], fleet.api_key_file(NAME).read_text().strip())
    _log("front door overhead: front1 added to the 3-host fleet, then p50 through it vs host1's gateway (concurrency 1)")
    door_state = fleet.up(NAME, 3, front_door=True, model="tiny")
    with HubServer([repo]) as hub:
        _deploy(hub, work / "cache-3")
    front_door = front_door_figures(door_state, fleet.api_key_file(NAME).read_text().strip())
    _log(f"overload through the front door: {OVERLOAD_CLIENTS} clients x {OVERLOAD_INPUTS} inputs for {OVERLOAD_SECONDS:g} s")
    front_door.update(overload_figures(door_state, fleet.api_key_file(NAME).read_text().strip()))
    _log("converge 3 fresh hosts pulling through the registry cache cache1")
    _fresh_fleet(3, registry_cache=True)
    with HubServer([repo]) as hub:
        cached = _deploy(hub, work / "cache-3-registry")
    image_cached = fleet.upstream_blob_bytes(NAME)
    _log("converge 5 fresh hosts, then a no-op re-run")
    _fresh_fleet(5)
    with HubServer([repo]) as hub:
        converge_5 = _deploy(hub, work / "cache-5")
        noops.update(_noop(hub, work, 5))
        noops.pop("_converge")
    fleet.down(NAME)
    _log("attention-window repair on the controller, on a graph of EmbeddingGemma-300m's size (random weights, ~1.2 GB)")
    repair = repair_bench.figures()
    _log(f"planning {PLAN_FAKE_HOSTS} fresh @fake hosts (pyinfra --dry): the controller's CPU")
    plan_cpu = plan_fake_cpu_seconds()
    cores = os.cpu_count() or 1
    one, three = converged[1], converged[3]
    _log(f"{cores} cores; 3 hosts kept them busy {three.cpu_seconds:.1f} CPU-s: at least {three.cpu_seconds / cores:.1f} s here")
    _log("operations that grew most from 1 to 3 hosts (wall s):")
    for name, s1, s3 in growth(one.operation_seconds, three.operation_seconds):
        _log(f"  {s1:6.1f} -> {s3:6.1f}  {name}")
    line = {
        "converge_3_s": round(three.seconds, 1),
        **noops,
        "converge_5_s": round(converge_5.seconds, 1),
        f"plan_{PLAN_FAKE_HOSTS}_fake_cpu_s": plan_cpu,
        "upstream_model_bytes": upstream,
        "sent_model_bytes": _sent_bytes(three.results, sizes),
        "converge_2_s": round(converged[2].seconds, 1),
        "cpu_cores": cores,
        **{f"converge_{n}_cpu_s": round(c.cpu_seconds, 1) for n, c in converged.items() if n > 1},
        **{key: gateway[key] for key in GATEWAY_KEYS},
        "gateway_failures": gateway["failures"],
        **front_door,
        "image_bytes": image,
        "upstream_image_bytes": image_cached,
        "upstream_image_bytes_no_cache": image_no_cache,
        "upstream_image_ratio": round(image_cached / image, 3),
        "upstream_image_ratio_no_cache": round(image_no_cache / image, 3),
        "converge_3_registry_cache_s": round(cached.seconds, 1),
        **repair,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
