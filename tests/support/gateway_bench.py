"""Gateway vs straight-to-Triton throughput: embeddings/s and p50/p95 at concurrency 1, 8 and 32.

Both paths embed the same texts one per request: through the gateway as text (OpenAI-style POST
with httpx, base64 like the openai SDK's default), and straight to Triton gRPC
(tritonclient.grpc.aio) as token ids tokenized here with the same prompt and padded to the same
bucket. Triton's mean executed batch (nv_inference_count / nv_inference_exec_count deltas) is read
from its metrics around each run. Loops are bounded (tests/support/load.py: loopback or allowed addresses).

    python -m tests.support.gateway_bench --gateway http://127.0.0.1:6080 --triton 127.0.0.1:6001 \
        --metrics http://127.0.0.1:6002/metrics --tokenizer DIR --api-key-file FILE

Without URLs it starts its own tritonserver (tiny model) and gateway on loopback. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from embeddinggemma import ATTENTION_MASK, INPUT_IDS, SENTENCE_EMBEDDING, TextEncoder, query_text
from embeddings_gateway.api import DEFAULTS, plan_batches
from tests.support.load import LoadResult, check_targets, run_async
from tests.support.net import free_port

DEFAULT_BUCKETS: tuple[int, ...] = DEFAULTS["length_buckets"]  # the gateway's own default
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class GatewayProcess:
    """A gateway started as a real process: ``python -m embeddings_gateway --config FILE``."""

    process: subprocess.Popen
    port: int
    config_path: Path
    log_path: Path
    key_file: Path | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        """The health responder (its own thread and port: embeddings_gateway/health.py)."""
        return f"http://127.0.0.1:{json.loads(self.config_path.read_text())['health_port']}"

    @classmethod
    def start(
        cls, work_dir: Path, triton_grpc_url: str, tokenizer_dir: str | Path, api_key: str | None = None, **config: Any
    ) -> GatewayProcess:
        """Write the config (and key file when ``api_key``) under ``work_dir`` and start; no wait."""
        work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        key_file = None
        if api_key is not None:
            key_file = work_dir / "api-keys.sha256"
            key_file.write_text(hashlib.sha256(api_key.encode()).hexdigest() + "\n")
        data = {
            "model_name": "embeddinggemma",
            "triton_grpc_url": triton_grpc_url,
            "tokenizer_dir": str(tokenizer_dir),
            "listen_address": "127.0.0.1",
            "listen_port": port,
            "health_port": free_port(),  # the health responder's own port (6081 by default: clashes between tests)
            "api_key_sha256_file": str(key_file or ""),
            **config,
        }
        config_path = work_dir / "gateway.json"
        config_path.write_text(json.dumps(data, indent=2))
        log_path = work_dir / "gateway.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "embeddings_gateway", "--config", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                start_new_session=True,
            )
        return cls(process, port, config_path, log_path, key_file)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Until GET /health answers 200; RuntimeError with the log tail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway not healthy within {timeout_s:.0f}s; log:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (graceful), SIGKILL when it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)

    @staticmethod
    @contextlib.contextmanager
    def all_healthy(gateways: dict[str, GatewayProcess]) -> Iterator[dict[str, GatewayProcess]]:
        """``gateways`` (already started) once each is healthy; all stopped however the block ends."""
        try:
            for gateway in gateways.values():
                gateway.wait_healthy()
            yield gateways
        finally:
            for gateway in gateways.values():
                gateway.stop()

    @classmethod
    @contextlib.contextmanager
    def started(
        cls, work_dir: Path, triton_grpc_url: str, tokenizer_dir: str | Path, api_key: str | None = None, **config: Any
    ) -> Iterator[GatewayProcess]:
        gateway = cls.start(work_dir, triton_grpc_url, tokenizer_dir, api_key=api_key, **config)
        try:
            gateway.wait_healthy()
            yield gateway
        finally:
            gateway.stop()


_WORDS = "triton serves embedding models over grpc with dynamic batching and metrics for every host in the fleet".split()


def bench_texts(count: int = 64) -> list[str]:
    """Query-like texts of 4 to 24 words, fixed (seeded): different lengths, mostly one bucket."""
    rng = np.random.default_rng(12)
    return [" ".join(rng.choice(_WORDS, size=int(rng.integers(4, 25)))) for _ in range(count)]


def triton_counts(metrics_url: str, model_name: str) -> tuple[float, float]:
    """(nv_inference_count, nv_inference_exec_count) of the model, summed over versions."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    totals = {}
    for name in ("nv_inference_count", "nv_inference_exec_count"):
        pattern = re.compile(rf'^{name}{{[^}}]*model="{re.escape(model_name)}"[^}}]*}} ([0-9.e+]+)$', re.M)
        totals[name] = sum(float(v) for v in pattern.findall(text))
    return totals["nv_inference_count"], totals["nv_inference_exec_count"]


def mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float:
    executions = after[1] - before[1]
    return round((after[0] - before[0]) / executions, 3) if executions else 0.0


class RawHttpPool:
    """A minimal HTTP/1.1 keep-alive client for load generation: one connection per worker, no
    parsing beyond status and Content-Length. httpx's AsyncClient costs several ms of CPU per
    request at concurrency 32 (measured here), on the same 2 cores as the gateway and Triton."""

    def __init__(self, url: str, size: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.idle: asyncio.Queue = asyncio.Queue()
        for _ in range(size):
            self.idle.put_nowait(None)  # connections open on first use

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        connection = await self.idle.get()
        try:
            if connection is None:
                connection = await asyncio.open_connection(self.host, self.port)
            reader, writer = connection
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            self.idle.put_nowait(connection)
            return int(status_line.split()[1]), payload
        except BaseException:
            if connection is not None:
                connection[1].close()
            self.idle.put_nowait(None)
            raise

    async def close(self) -> None:
        while not self.idle.empty():
            connection = self.idle.get_nowait()
            if connection is not None:
                connection[1].close()


async def _gateway_run(
    url: str,
    api_key: str,
    model_name: str,
    texts: Sequence[str],
    concurrency: int,
    max_requests: int,
    seconds: float,
    allow: Iterable[str],
    client: str = "raw",
) -> LoadResult:
    bodies = [json.dumps({"model": model_name, "input": [t], "input_type": "query", "encoding_format": "base64"}).encode() for t in texts]
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    counter = iter(range(10**9))
    if client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        session = httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30)

        async def call() -> int:
            response = await session.post("/v1/embeddings", content=bodies[next(counter) % len(bodies)])
            response.raise_for_status()
            return len(response.json()["data"])

        close = session.aclose
    else:
        pool = RawHttpPool(url, concurrency)

        async def call() -> int:
            status, payload = await asyncio.wait_for(pool.post("/v1/embeddings", bodies[next(counter) % len(bodies)], headers), 30)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
            return 1

        close = pool.close
    try:
        for _ in range(3):  # warm-up: connections and the first Triton executions
            await call()
        return await run_async(call, targets=[url], concurrency=concurrency, max_requests=max_requests, max_seconds=seconds, allow=allow)
    finally:
        await close()


async def _direct_run(
    grpc_url: str,
    model_name: str,
    batches: Sequence[tuple[np.ndarray, np.ndarray]],
    concurrency: int,
    max_requests: int,
    seconds: float,
    allow: Iterable[str],
) -> LoadResult:
    import tritonclient.grpc.aio as grpcclient

    counter = iter(range(10**9))
    async with grpcclient.InferenceServerClient(grpc_url) as client:

        async def call() -> int:
            ids, mask = batches[next(counter) % len(batches)]
            inputs = [
                grpcclient.InferInput(INPUT_IDS, list(ids.shape), "INT64"),
                grpcclient.InferInput(ATTENTION_MASK, list(mask.shape), "INT64"),
            ]
            inputs[0].set_data_from_numpy(ids)
            inputs[1].set_data_from_numpy(mask)
            result = await client.infer(
                model_name, inputs, outputs=[grpcclient.InferRequestedOutput(SENTENCE_EMBEDDING)], client_timeout=30
            )
            return int(result.as_numpy(SENTENCE_EMBEDDING).shape[0])

        for _ in range(3):
            await call()
        return await run_async(
            call, targets=[grpc_url], concurrency=concurrency, max_requests=max_requests, max_seconds=seconds, allow=allow
        )


LARGE_INPUTS = 2048  # OpenAI's (and the gateway's default) inputs per request
LARGE_REQUESTS = 3  # sequential 2048-input requests in the large-request run


def gateway_process_metric(gateway_url: str, name: str) -> float:
    """One of prometheus_client's process metrics from the gateway's /metrics (0.0 when absent)."""
    with urllib.request.urlopen(f"{gateway_url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return 0.0


def gateway_rss_bytes(gateway_url: str) -> float:
    """The gateway's resident memory, from its /metrics (prometheus_client's process collector)."""
    return gateway_process_metric(gateway_url, "process_resident_memory_bytes")


def gateway_cpu_seconds(gateway_url: str) -> float:
    """The gateway's CPU-seconds (user + system; with several workers, the supervisor's and all the
    workers': embeddings_gateway/app.py:TreeProcessCollector), from its /metrics."""
    return gateway_process_metric(gateway_url, "process_cpu_seconds_total")


def measure_large(gateway_url: str, api_key: str, model_name: str, texts: Sequence[str], requests: int = LARGE_REQUESTS) -> dict[str, Any]:
    """``requests`` sequential requests of LARGE_INPUTS inputs each (the bench texts cycled, base64),
    each bounded by 120 s: ``large_2048_eps`` (embeddings per second over the run), the p50 seconds
    of one request, and the gateway's RSS before and at its peak (sampled every 20 ms from /metrics
    while they run). Standard library only: it runs in the host's gateway venv (make bench)."""
    body = json.dumps(
        {"model": model_name, "input": [texts[i % len(texts)] for i in range(LARGE_INPUTS)], "encoding_format": "base64"}
    ).encode()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    before = gateway_rss_bytes(gateway_url)
    peak = [before]
    import threading

    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            with contextlib.suppress(OSError, ValueError):
                peak[0] = max(peak[0], gateway_rss_bytes(gateway_url))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    seconds, failures = [], 0
    start = time.perf_counter()
    try:
        for _ in range(requests):
            one = time.perf_counter()
            request = urllib.request.Request(f"{gateway_url}/v1/embeddings", data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    if len(json.loads(response.read())["data"]) != LARGE_INPUTS:
                        failures += 1
            except (OSError, ValueError, KeyError):  # urllib's HTTPError (a non-200) is an OSError
                failures += 1
            seconds.append(time.perf_counter() - one)
    finally:
        total = time.perf_counter() - start
        running.clear()
        sampler.join(timeout=5)
    done = (requests - failures) * LARGE_INPUTS
    return {
        "large_2048_eps": round(done / total, 2) if total else 0.0,
        "large_2048_p50_s": round(float(np.median(seconds)), 3) if seconds else 0.0,
        "large_2048_failures": failures,
        "gateway_rss_before_mb": round(before / 2**20, 1),
        "gateway_rss_peak_2048_mb": round(peak[0] / 2**20, 1),
    }


def measure(
    gateway_url: str,
    triton_grpc_url: str,
    triton_metrics_url: str,
    *,
    api_key: str,
    tokenizer_dir: str | Path,
    model_name: str = "embeddinggemma",
    length_buckets: Sequence[int] = DEFAULT_BUCKETS,
    concurrencies: Sequence[int] = (1, 8, 32),
    seconds: float = 5.0,
    max_requests: int = 20_000,
    allow: Iterable[str] = (),
    http_client: str = "raw",
) -> dict[str, Any]:
    """One bounded run per path and concurrency (``seconds`` each, at most ``max_requests``).
    Keys: gateway_c{C}_eps, gateway_c{C}_p50_ms, gateway_c{C}_p95_ms, the same for direct_,
    triton_mean_batch_c{C} (gateway run), direct_triton_mean_batch_c{C}, gateway_vs_direct_c{C}_ratio,
    failures (all runs) and first_errors. ``http_client``: "raw" (tests/gateway_bench.RawHttpPool, the
    default: a load generator light enough not to starve the gateway on a small machine) or "httpx"."""
    allow = list(allow)
    check_targets([gateway_url, triton_grpc_url, triton_metrics_url], allow)
    texts = bench_texts()
    encoder = TextEncoder(tokenizer_dir)
    ids = encoder.encode([query_text(t) for t in texts])
    batches = []
    for length, members in plan_batches([len(row) for row in ids], tuple(length_buckets), 1):
        batches.append(encoder.pad([ids[i] for i in members], length=length))
    out: dict[str, Any] = {"texts": len(texts), "seconds_per_run": seconds, "http_client": http_client, "failures": 0, "first_errors": []}
    out["gateway_workers"] = int(gateway_process_metric(gateway_url, "embeddings_gateway_workers"))
    for concurrency in concurrencies:
        for path in ("gateway", "direct"):
            before = triton_counts(triton_metrics_url, model_name)
            cpu_before = gateway_cpu_seconds(gateway_url) if path == "gateway" else 0.0
            if path == "gateway":
                result = asyncio.run(
                    _gateway_run(gateway_url, api_key, model_name, texts, concurrency, max_requests, seconds, allow, http_client)
                )
            else:
                result = asyncio.run(_direct_run(triton_grpc_url, model_name, batches, concurrency, max_requests, seconds, allow))
            after = triton_counts(triton_metrics_url, model_name)
            summary = result.as_dict()
            out[f"{path}_c{concurrency}_eps"] = summary["items_per_s"]
            out[f"{path}_c{concurrency}_p50_ms"] = summary["p50_ms"]
            out[f"{path}_c{concurrency}_p95_ms"] = summary["p95_ms"]
            out[f"{'triton' if path == 'gateway' else 'direct_triton'}_mean_batch_c{concurrency}"] = mean_batch(before, after)
            if path == "gateway":
                # The gateway's own CPU per embedding served (short inputs, one per request): what caps a
                # host's embeddings/s however fast its GPU, whatever else shares the machine.
                cpu = gateway_cpu_seconds(gateway_url) - cpu_before
                served = summary["items_per_s"] * summary["duration_s"]
                out[f"gateway_c{concurrency}_cpu_ms_per_embedding"] = round(cpu / served * 1000, 3) if served else 0.0
            out["failures"] += summary["failures"]
            out["first_errors"] = (out["first_errors"] + summary["errors"])[:5]
        direct = out[f"direct_c{concurrency}_eps"]
        out[f"gateway_vs_direct_c{concurrency}_ratio"] = round(out[f"gateway_c{concurrency}_eps"] / direct, 3) if direct else 0.0
    out.update(measure_large(gateway_url, api_key, model_name, texts))
    out["failures"] += out["large_2048_failures"]
    return out


def _local(seconds: float, http_client: str = "raw", config_text: str | None = None, workers: int = 0) -> dict[str, Any]:
    """Start a tritonserver (tiny model) and a gateway on loopback, measure, stop both."""
    from tests.support import tinymodel
    from tests.support import tritonserver as ts

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        root = Path(tmp)
        tinymodel.write_all(root / "hub")
        triton_root = ts.triton_dir(root / "triton", root / "hub", config_text or ts.cpu_config())
        (root / "work").mkdir()
        key = "bench-key"
        with ts.serve(triton_root / "models", root / "work") as server:
            with GatewayProcess.started(root / "gw", server.grpc_url, triton_root / "tokenizer", api_key=key, workers=workers) as gateway:
                return measure(
                    gateway.url,
                    server.grpc_url,
                    f"http://127.0.0.1:{server.metrics_port}/metrics",
                    api_key=key,
                    tokenizer_dir=triton_root / "tokenizer",
                    seconds=seconds,
                    http_client=http_client,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.gateway_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", help="gateway base URL, e.g. http://127.0.0.1:6080 (none: start a local one)")
    parser.add_argument("--triton", help="Triton gRPC host:port")
    parser.add_argument("--metrics", help="Triton metrics URL (http://host:port/metrics)")
    parser.add_argument("--tokenizer", help="tokenizer directory of the served model")
    parser.add_argument("--api-key-file", help="file holding the gateway API key")
    parser.add_argument("--allow", action="append", default=[], help="non-loopback IP allowed as a target (sandbox hosts)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per run (6 runs)")
    parser.add_argument("--http-client", choices=("raw", "httpx"), default="raw", help="load generator for the gateway path")
    parser.add_argument("--workers", type=int, default=0, help="local gateway's worker processes (0: its default, from the cores)")
    args = parser.parse_args(argv)
    if args.gateway:
        if not (args.triton and args.metrics and args.tokenizer and args.api_key_file):
            parser.error("--gateway needs --triton, --metrics, --tokenizer and --api-key-file")
        key = Path(args.api_key_file).read_text().strip()
        result = measure(
            args.gateway,
            args.triton,
            args.metrics,
            api_key=key,
            tokenizer_dir=args.tokenizer,
            seconds=args.seconds,
            allow=args.allow,
            http_client=args.http_client,
        )
    else:
        result = _local(args.seconds, args.http_client, workers=args.workers)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
