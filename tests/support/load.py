"""Bounded load loops for benchmarks and fault tests: at most N calls, at most T seconds, loopback only.

Usage::

    from tests.support.load import run_async, run_threads

    result = asyncio.run(run_async(call, targets=["http://127.0.0.1:6080"], concurrency=8, max_requests=500, max_seconds=10))
    print(result.as_dict())  # count, failures, errors, items_per_s, p50_ms, p95_ms, p99_ms, ...

``call`` is an async callable (``run_async``) or a sync one run in threads (``run_threads``) that
makes ONE request; it may return the number of items it handled (embeddings, say), else 1 is
counted. An exception counts as a failure (the first few messages are kept). Every loop stops by
itself: no call starts after ``max_requests`` calls or ``max_seconds``; calls still running then
get ``grace_s`` more to finish, after which they are cancelled (in threads: abandoned) and counted
as failures.

Traffic rule: every target must be on loopback (127.0.0.0/8, ::1, localhost) unless its address is
in ``allow`` (IP literals only: the sandbox containers' addresses); anything else is refused
before a single call is made. The loop cannot see where ``call`` sends, so ``targets`` must name
every address it uses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_SECONDS = 900.0  # no loop in this project runs longer
MAX_REQUESTS = 10_000_000
KEPT_ERRORS = 5


class TargetRefused(ValueError):
    """A load target that is neither loopback nor explicitly allowed."""


def target_host(target: str) -> str:
    """The host of a URL (``http://h:p/x``) or of a ``host:port`` / ``[v6]:port`` address."""
    parts = urlsplit(target if "://" in target else f"//{target}")
    if not parts.hostname:
        raise TargetRefused(f"load target {target!r} names no host")
    return parts.hostname


def check_targets(targets: Iterable[str], allow: Iterable[str] = ()) -> None:
    """TargetRefused unless every target's host is loopback or an allowed IP literal."""
    allowed = set()
    for address in allow:
        try:
            allowed.add(ipaddress.ip_address(address))
        except ValueError:
            raise TargetRefused(f"allow-list entry {address!r} is not an IP address") from None
    targets = list(targets)
    if not targets:
        raise TargetRefused("no load target named: pass every address the call sends to")
    for target in targets:
        host = target_host(target)
        if host == "localhost":
            continue
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise TargetRefused(
                f"load target {target!r}: {host!r} is not loopback (name an IP address in allow= for a test host)"
            ) from None
        if not address.is_loopback and address not in allowed:
            raise TargetRefused(f"load target {target!r}: {host} is neither loopback nor in the allow-list")


@dataclass
class LoadResult:
    """What a loop measured; latencies in seconds, of successful calls only."""

    count: int = 0  # calls finished (successes and failures)
    failures: int = 0
    items: int = 0  # items the successful calls reported
    duration_s: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list)

    def record(self, latency: float, items: Any = None, error: BaseException | None = None) -> None:
        self.count += 1
        if error is not None:
            self.failures += 1
            if len(self.errors) < KEPT_ERRORS:
                self.errors.append(f"{type(error).__name__}: {error}"[:300])
            return
        self.latencies.append(latency)
        self.items += items if isinstance(items, int) and not isinstance(items, bool) else 1

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the successful latencies (0 when none)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]

    @property
    def throughput(self) -> float:
        """Successful calls per second."""
        return (self.count - self.failures) / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def items_per_s(self) -> float:
        return self.items / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "failures": self.failures,
            "errors": list(self.errors),
            "duration_s": round(self.duration_s, 3),
            "throughput": round(self.throughput, 2),
            "items_per_s": round(self.items_per_s, 2),
            "p50_ms": round(self.percentile(50) * 1000, 3),
            "p95_ms": round(self.percentile(95) * 1000, 3),
            "p99_ms": round(self.percentile(99) * 1000, 3),
        }


def _bounds(concurrency: int, max_requests: int, max_seconds: float) -> None:
    if not 1 <= concurrency <= 1024:
        raise ValueError(f"concurrency {concurrency}: 1 to 1024")
    if not 1 <= max_requests <= MAX_REQUESTS:
        raise ValueError(f"max_requests {max_requests}: 1 to {MAX_REQUESTS}")
    if not 0 < max_seconds <= MAX_SECONDS:
        raise ValueError(f"max_seconds {max_seconds}: above 0 and at most {MAX_SECONDS}")


async def run_async(
    call: Callable[[], Awaitable[Any]],
    *,
    targets: Iterable[str],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    allow: Iterable[str] = (),
    grace_s: float = 5.0,
) -> LoadResult:
    """``concurrency`` workers call ``call`` until ``max_requests`` calls started or ``max_seconds``
    passed; a call still running ``grace_s`` after that is cancelled (a failure)."""
    check_targets(targets, allow)
    _bounds(concurrency, max_requests, max_seconds)
    result = LoadResult()
    started = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    hard_stop = deadline + min(max(grace_s, 0.0), MAX_SECONDS)

    async def worker() -> None:
        nonlocal started
        while started < max_requests and time.perf_counter() < deadline:
            started += 1
            t0 = time.perf_counter()
            try:
                items = await asyncio.wait_for(call(), max(0.001, hard_stop - t0))
            except asyncio.TimeoutError:
                result.record(time.perf_counter() - t0, error=TimeoutError("call still running after the loop's deadline and grace"))
            except Exception as error:
                result.record(time.perf_counter() - t0, error=error)
            else:
                result.record(time.perf_counter() - t0, items)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.duration_s = time.perf_counter() - start
    return result


def run_threads(
    call: Callable[[], Any],
    *,
    targets: Iterable[str],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    allow: Iterable[str] = (),
    grace_s: float = 5.0,
    stop: threading.Event | None = None,
) -> LoadResult:
    """As :func:`run_async` with a sync ``call`` in ``concurrency`` daemon threads. A call still
    running after the grace cannot be interrupted: it is abandoned and counted as a failure.
    ``stop``: once set, no new call starts (the bounds still hold without it)."""
    check_targets(targets, allow)
    _bounds(concurrency, max_requests, max_seconds)
    result = LoadResult()
    lock = threading.Lock()
    started = 0
    running = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    hard_stop = deadline + min(max(grace_s, 0.0), MAX_SECONDS)

    def worker() -> None:
        nonlocal started, running
        while True:
            with lock:
                if started >= max_requests or time.perf_counter() >= deadline or (stop is not None and stop.is_set()):
                    return
                started += 1
                running += 1
            t0 = time.perf_counter()
            items: Any = None
            error: BaseException | None = None
            try:
                items = call()
            except Exception as exc:
                error = exc
            with lock:
                running -= 1
                if time.perf_counter() <= hard_stop:  # an abandoned call's late result is not counted twice
                    result.record(time.perf_counter() - t0, items, error)

    threads = [threading.Thread(target=worker, daemon=True, name=f"load-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, hard_stop - time.perf_counter()))
    with lock:
        result.duration_s = time.perf_counter() - start
        for _ in range(running):
            result.record(0.0, error=TimeoutError("call still running after the loop's deadline and grace (abandoned)"))
        running = 0
    return result
