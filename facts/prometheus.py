"""Prometheus read through its HTTP API on the monitoring host (curl there: the API listens on a
private or loopback address the controller may not reach).

:class:`PrometheusQueries` runs instant queries and returns, per query, ``{instance: value}``. The
parser is pure (tests/facts/fixtures/prometheus.*/ holds real Prometheus answers).
"""

from __future__ import annotations

import json
import math
from urllib.parse import quote as url_quote

from pyinfra.api import FactBase

from facts._shell import quote, when_present

# One line per query in the output: the marker, the query's index, then Prometheus's JSON answer.
_MARKER = "__PROMQL__"


def parse_vector(answer: str) -> dict[str, float]:
    """``instance`` → value of an instant query's vector answer (``/api/v1/query``); {} for an
    error, an empty vector or anything that is not JSON. NaN (e.g. a quantile with no traffic) is
    left out."""
    try:
        data = json.loads(answer)
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("status") != "success" or data.get("data", {}).get("resultType") != "vector":
        return {}
    values = {}
    for sample in data["data"]["result"]:
        instance = sample.get("metric", {}).get("instance", "")
        try:
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not math.isnan(value):
            values[instance] = value
    return values


class PrometheusQueries(FactBase[list[dict[str, float]]]):
    """
    Instant queries ``queries`` against the Prometheus at ``url`` (run on the host, curl bounded to
    5 s each): one ``{instance: value}`` per query, in order ({} where Prometheus did not answer).
    """

    def command(self, url: str, queries: tuple[str, ...]) -> str:
        lines = [
            f"printf '%s %d ' {_MARKER} {i}; curl -s --max-time 5 {quote(url.rstrip('/') + '/api/v1/query?query=' + url_quote(q, safe=''))}; echo"
            for i, q in enumerate(queries)
        ]
        return when_present("curl", "; ".join(lines))

    @staticmethod
    def default() -> list[dict[str, float]]:
        return []

    def process(self, output: list[str]) -> list[dict[str, float]]:
        found: dict[int, dict[str, float]] = {}
        for line in output:
            if line.startswith(_MARKER + " "):
                _, index, *answer = line.split(" ", 2)
                if index.isdigit():
                    found[int(index)] = parse_vector(answer[0] if answer else "")
        return [found.get(i, {}) for i in range(max(found, default=-1) + 1)]
