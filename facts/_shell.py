"""Shell snippets shared by the facts: guards keeping fact commands read-only, failure-tolerant.

pyinfra fails a host when a fact command exits non-zero, and its own ``requires_command`` guard
logs a warning (an error from pyinfra 4) when the binary is missing at execute time. Our facts are
also read while polling (Triton readiness) and on hosts where the binary is legitimately absent
(no ``nvidia-smi`` on CPU hosts), so each command guards itself and always exits 0: "absent" is
empty output, which pyinfra turns into the fact's ``default()``.
"""

from __future__ import annotations

import shlex

# Printed after a command whose exit status the parser needs (nvidia-smi): ``__FACT_RC__=9``.
RC_MARKER = "__FACT_RC__="


def quote(value: object) -> str:
    """Shell-quote one argument (facts build their commands from controller-side values)."""
    return shlex.quote(str(value))


def when_present(binary: str, command: str) -> str:
    """Run ``command`` only when ``binary`` is on PATH; print nothing (exit 0) otherwise."""
    return f"if command -v {binary} >/dev/null 2>&1; then {command}; fi"


def split_rc(output: list[str]) -> tuple[list[str], int | None]:
    """Separate the ``__FACT_RC__=N`` line from the command's own output lines.

    Returns the other lines and the exit status, or None when no marker was printed (a canned
    output in a test, say): callers then judge success from the content alone.
    """
    lines: list[str] = []
    rc: int | None = None
    for line in output:
        if line.startswith(RC_MARKER):
            try:
                rc = int(line[len(RC_MARKER) :].strip())
            except ValueError:
                rc = None
        else:
            lines.append(line)
    return lines, rc
