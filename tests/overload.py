"""A bounded overload through the front door: many clients sending multi-input requests back to back,
every answer classified (issue 24). Used by tests/test_e2e_front_door.py (which also checks every
vector) and ``make bench`` (tests/sandbox/bench.py: the figures only).

Each answer must be one of: a 200 with one embedding per input, or a 429 with OpenAI's error JSON
(code ``rate_limit_exceeded``) and a ``Retry-After`` header. Anything else (a 5xx, another status,
a 200 with the wrong count, a 429 without Retry-After, a transport error) is counted as bad, and its
first few descriptions kept. The loop is tests/load.py's: loopback targets only, stops by itself.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from tests.load import LoadResult, run_async

KEPT = 5


@dataclass
class Overload:
    """What one overload run saw."""

    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    admitted_s: list[float] = field(default_factory=list)  # latency of each 200
    bad: int = 0  # answers that are neither a good 200 nor a good 429 (5xx included)
    bad_samples: list[str] = field(default_factory=list)
    load: LoadResult | None = None

    def note_bad(self, what: str) -> None:
        self.bad += 1
        if len(self.bad_samples) < KEPT:
            self.bad_samples.append(what[:300])

    def p95_admitted_s(self) -> float:
        if not self.admitted_s:
            return 0.0
        ordered = sorted(self.admitted_s)
        return ordered[max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))]

    def figures(self) -> dict[str, Any]:
        s = max(self.seconds, 1e-9)
        return {
            "overload_200_per_s": round(self.statuses[200] / s, 2),
            "overload_429_per_s": round(self.statuses[429] / s, 2),
            "overload_5xx": sum(n for code, n in self.statuses.items() if code >= 500),
            "overload_bad": self.bad,
            "overload_p95_admitted_ms": round(self.p95_admitted_s() * 1000, 1),
            "overload_answers": sum(self.statuses.values()),
        }


def decode(row: Any) -> np.ndarray:
    return np.frombuffer(base64.b64decode(row), dtype="<f4") if isinstance(row, str) else np.asarray(row, dtype=np.float32)


async def overload(
    url: str,
    api_key: str,
    texts: list[str],
    *,
    clients: int,
    inputs: int,
    seconds: float,
    check: Callable[[list[str], np.ndarray], str] | None = None,
    allow: tuple[str, ...] = (),
) -> Overload:
    """``clients`` workers POST ``inputs`` texts (drawn from ``texts``, base64 as the openai SDK asks)
    back to back for ``seconds``; ``check(inputs, vectors)`` returns '' or what is wrong with a 200."""
    result = Overload()
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    rng = random.Random(24)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def call() -> int:
            chosen = [rng.choice(texts) for _ in range(inputs)]
            body = {"model": "embeddinggemma", "input": chosen, "encoding_format": "base64"}
            start = time.perf_counter()
            try:
                response = await client.post(f"{url}/v1/embeddings", json=body, headers=headers)
            except httpx.HTTPError as error:
                result.note_bad(f"{type(error).__name__}: {error}")
                return 0
            took = time.perf_counter() - start
            result.statuses[response.status_code] += 1
            try:
                answer = response.json()
            except ValueError:
                result.note_bad(f"HTTP {response.status_code}, not JSON: {response.text[:120]}")
                return 0
            if response.status_code == 200:
                rows = [item["embedding"] for item in answer.get("data", [])]
                if len(rows) != inputs:
                    result.note_bad(f"HTTP 200 with {len(rows)} embeddings for {inputs} inputs")
                    return 0
                wrong = check(chosen, np.stack([decode(r) for r in rows])) if check else ""
                if wrong:
                    result.note_bad(f"HTTP 200, {wrong}")
                    return 0
                result.admitted_s.append(took)
                return 1
            error = answer.get("error") if isinstance(answer, dict) else None
            if response.status_code == 429 and response.headers.get("retry-after", "").isdigit():
                if isinstance(error, dict) and error.get("code") == "rate_limit_exceeded" and set(error) >= {"message", "type"}:
                    return 0
            result.note_bad(f"HTTP {response.status_code} retry-after={response.headers.get('retry-after')}: {response.text[:160]}")
            return 0

        started = time.perf_counter()
        result.load = await run_async(
            call, targets=[url], allow=allow, concurrency=clients, max_requests=1_000_000, max_seconds=seconds, grace_s=60
        )
        result.seconds = time.perf_counter() - started
    for message in result.load.errors[: max(0, KEPT - len(result.bad_samples))]:
        result.bad_samples.append(message)
    result.bad += result.load.failures  # a call that raised (a timeout past the loop's grace, a bug)
    return result


def run_overload(*args: Any, **kwargs: Any) -> Overload:
    return asyncio.run(overload(*args, **kwargs))
