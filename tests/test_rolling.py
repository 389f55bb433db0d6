"""The roll mark (deploys/core/rolling.py, issue 28): a roll marks its host before the drain and
unmarks it once the host is back in every pool, so the next run finishes a roll a killed run left; a
drain by hand leaves no mark. The host and front doors are stand-ins that record the commands sent
(the e2e test test_a_roll_killed_with_a_host_drained_pages_once_its_silence_ends runs the real thing)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from deploys.core import paths, rolling

PLAN = rolling.RollPlan(what="embeddings gateway", doors=("front1",), server="host1", start="true", start_timeout_s=5)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """What the roll runs, in order: (target, command or HAProxy state set)."""
    log: list[tuple[str, str]] = []
    silencer = SimpleNamespace(silence=lambda *a: [], expire=lambda *a, **k: log.append(("mon1", "expire")), margin_s=lambda: 0)
    monkeypatch.setattr(rolling, "_silencer", lambda host: silencer)
    monkeypatch.setattr(rolling, "_event", lambda *a, **k: None)
    up = {"name": "host1", "operational_state": "up", "current_sessions": 0}
    monkeypatch.setattr(rolling, "_server", lambda door, plan: up)
    monkeypatch.setattr(rolling, "_wait", lambda door, plan, done, timeout_s: (True, up))
    monkeypatch.setattr(rolling, "_set_state", lambda door, plan, wanted: log.append((door.name, f"state {wanted}")))

    def shell(target: Any, command: str, timeout_s: int) -> tuple[bool, list[str], list[str]]:
        log.append((target.name, command))
        return True, [], []

    monkeypatch.setattr(rolling, "_shell", shell)
    return log


HOST, DOOR = SimpleNamespace(name="host1", print_prefix=""), SimpleNamespace(name="front1")


def test_a_roll_marks_its_host_before_the_drain_and_unmarks_it_once_back(sent: list[tuple[str, str]]) -> None:
    drained: list[Any] = []
    rolling._drain(HOST, [DOOR], PLAN, drained)
    assert sent == [("host1", rolling.mark_command("embeddings gateway")), ("front1", "state drain")]
    assert paths.ROLL_PENDING in sent[0][1] and "embeddings gateway" in sent[0][1]
    sent.clear()
    assert rolling._restore(HOST, drained, PLAN) is None
    assert sent == [("front1", "state ready"), ("mon1", "expire"), ("host1", rolling.UNMARK_COMMAND)]


def test_a_drain_by_hand_leaves_no_mark(sent: list[tuple[str, str]]) -> None:
    rolling._drain(HOST, [DOOR], PLAN, [], silence_s=60, mark=False)
    assert sent == [("front1", "state drain")]


def test_a_host_not_back_in_the_pool_keeps_its_mark(sent: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    down = {"name": "host1", "operational_state": "down", "current_sessions": 0}
    monkeypatch.setattr(rolling, "_wait", lambda door, plan, done, timeout_s: (False, down))
    problem = rolling._restore(HOST, [(DOOR, True)], PLAN)
    assert problem and "not UP" in problem
    assert rolling.UNMARK_COMMAND not in [command for _, command in sent]


def test_the_mark_command_writes_what_is_rolled(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    mark = tmp_path / "state" / "roll-pending"
    monkeypatch.setattr(paths, "ROLL_PENDING", str(mark))
    subprocess.run(["sh", "-c", rolling.mark_command("Triton release 1a2b 'quoted'")], check=True)
    assert mark.read_text() == "Triton release 1a2b 'quoted'\n"
