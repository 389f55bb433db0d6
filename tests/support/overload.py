"""A bounded overload through the front door: many clients sending multi-input requests back to back,
every answer classified (issue 24). Used by tests/test_e2e_front_door.py (which also checks every
vector) and ``make bench`` (tests/sandbox/bench.py: the figures only).

Each answer must be one of: a 200 with one embedding per input, or a 429 with OpenAI's error JSON
(code ``rate_limit_exceeded``) and a ``Retry-After`` header. Anything else (a 5xx, another status,
a 200 with the wrong count, a 429 without Retry-After, a transport error) is counted as bad, and its
first few descriptions kept. The loop is tests/support/load.py's: loopback targets only, stops by itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tests.support.load import LoadResult, run_async

KEPT = 5


def load_texts() -> list[str]:
    """The parity samples that load tests draw their inputs from: all but the long documents. The
    batcher pads a request to its longest input, so one ~2,000-token text among 32 costs as much as
    32 of them; with the window's long samples (issue 25) in the mix, the sandbox's CPU fleet admitted
    4 overload requests a second instead of 38, and the admitted p95 (9.9 s) measured the padding."""
    from verify.samples import samples

    return [sample.text for sample in samples() if not sample.id.startswith("d-long")]


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


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a lean client, so that on a machine whose
    cores the fleet saturates the load generator is not what makes answers late (httpx's parsing of
    ~180 KB answers was: seen here, client-side p95 of 16 s for a front door whose gateways answered
    in under 1 s on average)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + f"Content-Length: {len(body)}\r\n\r\n"
        try:
            self.writer.write(head.encode() + body)
            await self.writer.drain()
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            got = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if "content-length" not in got:
                raise ConnectionError(f"HTTP {status} without Content-Length")
            payload = await self.reader.readexactly(int(got["content-length"]))
        except BaseException:
            await self.close()
            raise
        if got.get("connection", "").lower() == "close":
            await self.close()
        return status, got, payload


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
    back to back for ``seconds``, each on its own keep-alive connection; ``check(inputs, vectors)``
    returns '' or what is wrong with a 200."""
    result = Overload()
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.hostname and parts.port, url
    headers = {"Authorization": f"Bearer {api_key}"}
    rng = random.Random(24)
    free: list[Connection] = [Connection(parts.hostname, parts.port) for _ in range(clients)]

    async def call() -> int:
        chosen = [rng.choice(texts) for _ in range(inputs)]
        body = json.dumps({"model": "embeddinggemma", "input": chosen, "encoding_format": "base64"}).encode()
        connection = free.pop()
        start = time.perf_counter()
        try:
            status, got, payload = await connection.post("/v1/embeddings", body, headers)
        except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as error:
            result.note_bad(f"{type(error).__name__}: {error}")
            return 0
        finally:
            free.append(connection)
        took = time.perf_counter() - start
        result.statuses[status] += 1
        try:
            answer = json.loads(payload)
        except ValueError:
            result.note_bad(f"HTTP {status}, not JSON: {payload[:120]!r}")
            return 0
        if status == 200:
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
        if status == 429 and got.get("retry-after", "").isdigit():
            if isinstance(error, dict) and error.get("code") == "rate_limit_exceeded" and set(error) >= {"message", "type"}:
                return 0
        result.note_bad(f"HTTP {status} retry-after={got.get('retry-after')}: {payload[:160]!r}")
        return 0

    started = time.perf_counter()
    try:
        result.load = await run_async(
            call, targets=[url], allow=allow, concurrency=clients, max_requests=1_000_000, max_seconds=seconds, grace_s=60
        )
    finally:
        await asyncio.gather(*(c.close() for c in free))
    result.seconds = time.perf_counter() - started
    for message in result.load.errors[: max(0, KEPT - len(result.bad_samples))]:
        result.bad_samples.append(message)
    result.bad += result.load.failures  # a call that raised (a timeout past the loop's grace, a bug)
    return result


def run_overload(*args: Any, **kwargs: Any) -> Overload:
    return asyncio.run(overload(*args, **kwargs))
