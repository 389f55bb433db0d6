"""One run context per pyinfra State (deploys/core/context.py): nothing of one run leaks into the next
one in the same process, even when the next State gets the freed one's id(); settings are parsed
once per host per run."""

from __future__ import annotations

import builtins
import gc
import weakref
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State

from deploys.core import context, events, fleet_status, settings
from deploys.core.settings import SettingsError
from deploys.triton import release
from tests.support.counting_cli import plan_counting
from tests.test_plan import hub  # noqa: F401 (fixture)


def _state(data: dict) -> State:
    return State(Inventory((["h1", "h2"], data)), Config())


def test_two_states_in_one_process_never_see_each_others_run_state(monkeypatch) -> None:
    # CPython gives a new object the address of a freed one when it can, so id() of a freed State
    # may be the next one's; whether it is in one try depends on the allocator. To make the case
    # certain, id() of every State is the same number here (what reuse would give).
    real_id = builtins.id
    monkeypatch.setattr(builtins, "id", lambda obj: 4242 if isinstance(obj, State) else real_id(obj))

    first = _state({})
    settings.validate_fleet(first)  # the fleet of the first run is valid
    release.record_planned(first, "h1", release.Planned("a1b2c3d4e5f6", "image", ("a1b2c3d4e5f6",)))
    ctx = context.of(first)
    ctx.failed_rolls.append("h1")
    ctx.held_locks.add("h1")
    fleet_status.record(first, "h1", "triton", {"current": "a1b2c3d4e5f6"})
    alive = weakref.ref(first)
    del first, ctx
    gc.collect()
    assert alive() is None  # the first State is freed (and its context with it)

    # The second run, same id(), a bad setting: it is validated, and knows nothing of the first.
    second = _state({"triton_max_batch_size": 0})
    assert id(second) == 4242
    assert release.planned(second, "h1") is None
    ctx = context.of(second)
    assert ctx.failed_rolls == [] and ctx.held_locks == set() and ctx.fleet_reports == {} and not ctx.fleet_printed
    with pytest.raises(SettingsError, match="triton_max_batch_size=0"):
        settings.validate_fleet(second)


def test_settings_are_cached_per_state_not_per_process() -> None:
    first, second = _state({"triton_http_port": 7000}), _state({"triton_http_port": 7100})
    one, two = (next(iter(s.inventory)) for s in (first, second))
    assert settings.load(one).triton_http_port == 7000 and settings.load(two).triton_http_port == 7100
    assert settings.load(one) is settings.load(one)  # parsed once in its run
    assert context.of(first).settings_parsed == {"h1": 1}


def test_settings_are_parsed_once_per_host_per_run(tmp_path: Path, hub) -> None:
    # The real pyinfra CLI plans the whole chain on two fresh @fake hosts; settings.parse counts
    # per host. Before the run context every settings.load parsed again: 12 per host on main
    # (87a1d11) for this very run (this test's count, run on that tree); now one.
    _, counts = plan_counting(tmp_path, hub, "deploys.core.settings:parse", TRITON_RUN_DIR=str(tmp_path / "run"))
    print("settings.parse per host:", counts)  # shown with pytest -s
    assert counts == {"@fake/gpu-ubuntu": 1, "@fake/cpu-debian": 1}, counts


def test_an_event_is_one_json_line_with_credentials_masked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(events.RUN_DIR_ENV, str(tmp_path))
    events.write(None, "run refused", detail="setting docker_http_proxy='http://user:s3cret@proxy:3128 x' is invalid")
    events.write(None, "drained", "host1", door="front1")
    lines = (tmp_path / events.EVENTS_FILE).read_text().splitlines()
    assert len(lines) == 2 and "s3cret" not in lines[0]
    found = events.read(tmp_path)
    assert [(e["event"], e.get("host"), e.get("door")) for e in found] == [("run refused", None, None), ("drained", "host1", "front1")]
