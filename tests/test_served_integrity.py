"""Served file integrity, the pure parts: the triton step's decision on each model file of the
release going live (deploys/triton/release.py check_link, fed the TritonModelLinks fact run on a real
filesystem), the restart reason, and verify's check of the served files' sha256 against the lock
(deploys/triton/verify_run.py check_model_files: message, report, the fleet table's cell)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from deploys.triton.release import LinkCheck, check_link, link_command
from deploys.triton.triton_service import forces_recreate, relinked_reason
from deploys.triton.verify_run import check_model_files, outcome_message
from facts.triton import TritonModelLinks, parse_model_links
from verify.fleet import HostResult, model_cell, rows, table

GOOD = hashlib.sha256(b"good").hexdigest()
BAD = hashlib.sha256(b"good+damaged").hexdigest()
NAMES = ("model.onnx", "model.onnx_data")


def links(store: Path, release: Path) -> dict:
    """The TritonModelLinks fact's command run by sh on ``store``/``release``, parsed by its own parser."""
    command = TritonModelLinks().command(str(store), str(release), NAMES)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30, check=True).stdout
    return parse_model_links(out.splitlines())


def sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def decide(store: Path, release: Path, name: str, hashed: list[str]) -> LinkCheck:
    def release_sha() -> str | None:
        hashed.append(name)
        return sha(release / name)

    return check_link(name, links(store, release).get(name), sha(store / name), GOOD, release_sha)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    store, release = tmp_path / "models/emb/1", tmp_path / "releases/abc/models/emb/1"
    store.mkdir(parents=True)
    release.mkdir(parents=True)
    for name in NAMES:
        (store / name).write_bytes(b"good")
        subprocess.run(["sh", "-c", link_command(str(store / name), str(release / name))], check=True)
    return store, release


def test_intact_links_need_nothing_and_hash_nothing_more(dirs) -> None:
    store, release = dirs
    hashed: list[str] = []
    assert [decide(store, release, n, hashed) for n in NAMES] == [LinkCheck(False, False)] * 2
    assert hashed == []  # a converged host reads no more than the model step does


def test_bytes_appended_in_place_damage_both_one_inode(dirs) -> None:
    store, release = dirs
    with (release / "model.onnx_data").open("ab") as f:
        f.write(b"+damaged")
    hashed: list[str] = []
    check = decide(store, release, "model.onnx_data", hashed)
    assert check.relink and check.restart and hashed == []  # the store's sha256 is the served file's
    assert "a link of the store's" in check.why and BAD[:12] in check.why
    assert decide(store, release, "model.onnx", hashed) == LinkCheck(False, False)


def test_damaged_copy_moved_over_the_served_file(dirs) -> None:
    store, release = dirs
    (release / "bad").write_bytes(b"good+damaged")
    (release / "bad").rename(release / "model.onnx_data")
    hashed: list[str] = []
    check = decide(store, release, "model.onnx_data", hashed)
    assert check.relink and check.restart and hashed == ["model.onnx_data"]
    assert "not the store's" in check.why and BAD[:12] in check.why


def test_intact_copy_or_store_replaced_this_run_relinks_without_restart(dirs) -> None:
    store, release = dirs
    # A cut transfer: the store's file is gone (the model step sends it again); the release's is intact.
    (store / "model.onnx_data").unlink()
    hashed: list[str] = []
    assert decide(store, release, "model.onnx_data", hashed) == LinkCheck(
        True, False, "model.onnx_data (an intact copy, not the store's file)"
    )
    # A store file the model step replaces (wrong sha256, its own inode): the release's link goes stale.
    (store / "model.onnx").unlink()
    (store / "model.onnx").write_bytes(b"other")
    check = decide(store, release, "model.onnx", hashed)
    assert check.relink and not check.restart


def test_missing_release_file_is_linked() -> None:
    check = check_link("model.onnx", {"store": "1:2", "release": None}, GOOD, GOOD, lambda: pytest.fail("nothing to hash"))
    assert check == LinkCheck(True, False, "model.onnx (missing in the release)")
    assert check_link("model.onnx", None, None, GOOD, lambda: None).relink  # a new host: nothing there yet


def test_relinked_reason_forces_a_recreate() -> None:
    reason = relinked_reason(["model.onnx_data (the served file is not the store's and has sha256 1a2b…)"])
    assert reason.startswith("model files re-linked to the store: model.onnx_data")
    assert forces_recreate(reason) and forces_recreate("model not ready")
    assert not forces_recreate("serves release abc") and not forces_recreate(None)


def report(files: dict[str, str], verdict: str = "pass", message: str = "parity PASS: 12 samples") -> dict:
    return {
        "verdict": verdict,
        "message": message,
        "summary": {"min_cosine": 1.0, "max_abs_diff": 0.0},
        "model": {"dir": "/opt/t/current/models/emb/1", "files": files, "graph": "model.onnx", "sha256": files.get("model.onnx_data")},
    }


def test_served_files_equal_to_the_lock_pass() -> None:
    checked = check_model_files(
        report({"model.onnx": GOOD, "model.onnx_data": GOOD}), {"model.onnx": GOOD, "model.onnx_data": GOOD}, "lock"
    )
    assert checked["verdict"] == "pass" and checked["model"]["differs"] == [] and checked["model"]["expected_from"] == "lock"
    assert outcome_message("host1", {"rc": 0, "report": checked}, None) is None
    assert model_cell(checked) == GOOD[:12]


def test_a_served_file_other_than_the_lock_fails_with_one_line() -> None:
    checked = check_model_files(report({"model.onnx": GOOD, "model.onnx_data": BAD}), {"model.onnx": GOOD, "model.onnx_data": GOOD}, "lock")
    assert checked["verdict"] == "fail" and checked["model"]["differs"] == ["model.onnx_data"]
    line = outcome_message("host1", {"rc": 0, "report": checked}, "reports/r/host1.json")
    assert line == (
        "host host1: served model files in /opt/t/current/models/emb/1 differ from the lock: "
        f"model.onnx_data has sha256 {BAD[:12]}, the lock says {GOOD[:12]}; "
        "re-run the deploy (it re-links the release to the checked model store and restarts Triton) (report: reports/r/host1.json)"
    )
    assert "\n" not in line
    assert model_cell(checked) == f"{BAD[:12]} DIFFERS from lock"
    [row] = rows([HostResult("host1", checked, "tritonserver:25.01")])
    assert row[4] == f"{BAD[:12]} DIFFERS from lock" and row[-1] == "FAIL"
    assert f"{BAD[:12]} DIFFERS from lock" in table([HostResult("host1", checked)])


def test_a_missing_served_file_and_digests_from_the_source() -> None:
    checked = check_model_files(report({"model.onnx": GOOD}), {"model.onnx": GOOD, "model.onnx_data": GOOD}, "source")
    assert "model.onnx_data has sha256 none (missing), the source's metadata says" in checked["message"]
    assert model_cell(checked).endswith("DIFFERS from source")


def test_a_parity_failure_is_kept_after_the_integrity_line() -> None:
    failed = report({"model.onnx": BAD, "model.onnx_data": GOOD}, verdict="fail", message="parity FAIL: 'q-short-en' cosine 0.2")
    checked = check_model_files(failed, {"model.onnx": GOOD, "model.onnx_data": GOOD}, "lock")
    assert checked["message"].endswith("(parity: parity FAIL: 'q-short-en' cosine 0.2)")


def test_a_report_without_hashes_is_left_as_it_is() -> None:
    error = {"verdict": "error", "message": "parity ERROR: Triton not ready"}
    assert check_model_files(error, {"model.onnx": GOOD}, "lock") is error
    assert model_cell(error) == "-"
