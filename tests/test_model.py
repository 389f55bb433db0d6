"""Model step and lock command against a local Hub-compatible endpoint (tests/support/hub_server.py).

The Hub (huggingface.co) is not reachable here: HubServer is the stand-in, serving the Hub's URLs
and headers for a small repository the tests make. Everything else is real: huggingface_hub's
download and metadata code, the pyinfra CLI with the ``@local`` connector writing a real
triton_dir, sha256sum and curl on the "host".
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploys.core import model_lock, model_store, paths, settings
from deploys.core.model_lock import LockEntry
from tests.support import leak_probe
from tests.support.hub_server import HubServer, Repo

REPO = "test-org/tiny-embeddinggemma"
COMMIT = "5090578d9565bb06545b4552f76e6bc2c93e4a66"
TOKEN = "hf_MODELTEST_token_77"
DEPLOY = "from deploys.model.step import model\nmodel()\n"


def tiny_files(data_size: int = 300_000, seed: int = 7) -> dict[str, bytes]:
    """Seeded bytes in the repository's layout (content is opaque to this step)."""
    rnd = __import__("random").Random(seed)
    return {
        "onnx/model.onnx": b"onnx-graph:" + bytes(rnd.getrandbits(8) for _ in range(2000)),
        "onnx/model.onnx_data": bytes(rnd.getrandbits(8) for _ in range(data_size)),
        "onnx/model_quantized.onnx": b"q8-graph",
        "onnx/model_quantized.onnx_data": b"q8-data" * 100,
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"vocab": {"a": 0}}}).encode(),
        "tokenizer_config.json": b'{"tokenizer_class": "GemmaTokenizer"}',
        "special_tokens_map.json": b'{"pad_token": "<pad>"}',
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_lock(path: Path, files: dict[str, bytes], unknown: tuple[str, ...] = (), repo: str = REPO) -> Path:
    entries = {p: LockEntry(None if p in unknown else sha(d), len(d)) for p, d in files.items()}
    model_lock.write(repo, COMMIT, entries, path)
    return path


class Env:
    """One test's controller-side world: hub, lock, cache, host directory, CLI runner."""

    def __init__(self, tmp: Path, hub: HubServer, files: dict[str, bytes]) -> None:
        self.tmp, self.hub, self.files = tmp, hub, files
        self.triton_dir = tmp / "host" / "triton"
        self.lock = write_lock(tmp / "model.lock.json", files)
        self.env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "NGC_API_KEY", "SOPS_AGE_KEY_FILE")}
        self.env.update(HF_ENDPOINT=hub.url, HOME=str(tmp / "home"))

    def data(self, **extra: object) -> dict[str, object]:
        return {
            "model_repo_id": REPO,
            "model_revision": COMMIT,
            "model_lock_file": str(self.lock),
            "model_cache_dir": str(self.tmp / "cache"),
            "triton_dir": str(self.triton_dir),
            "secrets_file": str(self.tmp / "no-vault.sops.yaml"),
            **extra,
        }

    def run(self, *args: str, env: dict[str, str] | None = None, **data: object) -> leak_probe.Result:
        (self.tmp / "inventory.py").write_text(f"hosts = [('@local', {self.data(**data)!r})]\n")
        (self.tmp / "deploy.py").write_text(DEPLOY)
        return leak_probe.run(
            self.tmp, [*args, str(self.tmp / "inventory.py"), str(self.tmp / "deploy.py")], env={**self.env, **(env or {})}
        )

    def host_file(self, repo_path: str) -> Path:
        name = Path(repo_path).name
        return self.triton_dir / ("models/embeddinggemma/1" if repo_path.startswith("onnx/") else "tokenizer") / name

    def assert_installed(self, variant: str = "fp32") -> None:
        for p in model_lock.variant_files(variant):
            assert sha(self.host_file(p).read_bytes()) == sha(self.files[p]), p
        assert not list(self.triton_dir.rglob("*.partial"))


@pytest.fixture()
def world(tmp_path: Path):
    with HubServer([Repo(REPO, tiny_files())]) as hub:
        yield Env(tmp_path, hub, tiny_files())


def gets(hub: HubServer, since: int = 0) -> list[dict]:
    return [r for r in hub.requests[since:] if r["method"] == "GET" and r.get("file")]


# -- pure helpers --


def test_layout_keeps_repository_file_names() -> None:
    s = settings.parse("h", {"model_variant": "q8", "triton_dir": "/opt/t", "model_name": "emb"})
    assert model_store.destination(s, "onnx/model_quantized.onnx_data") == "/opt/t/models/emb/1/model_quantized.onnx_data"
    assert model_store.destination(s, "tokenizer.json") == "/opt/t/tokenizer/tokenizer.json"
    assert paths.onnx_filename("q8") == "model_quantized.onnx" and paths.onnx_filename("fp32") == "model.onnx"
    assert model_lock.variant_files("q4")[:2] == ["onnx/model_q4.onnx", "onnx/model_q4.onnx_data"]


def test_committed_lock_parses_and_pins_the_field_notes_digests() -> None:
    entries = model_lock.read("onnx-community/embeddinggemma-300m-ONNX", "5090578d9565bb06545b4552f76e6bc2c93e4a66")
    assert entries["tokenizer.json"] == LockEntry("4dda02faaf32bc91031dc8c88457ac272b00c1016cc679757d1c441b248b9c47", 20323312)
    assert entries["onnx/model_quantized.onnx_data"].size == 308890624
    # The fp32 digests agree across several published records; q4's come from one (the lock's _doc says so).
    assert entries["onnx/model.onnx"] == LockEntry("ea91fd315a7c152d427d231746f0f811a1ac93beaba656abfdf2b24e091265e4", 479932)
    assert entries["onnx/model.onnx_data"] == LockEntry("ef835ae565d8695236652475903078e8ed794c7c35faf1164d78ec3238e8a88d", 1234521088)
    assert entries["onnx/model_q4.onnx"].sha256 == "ad1dfee81a70f7944b9b9d1cc6e48075b832881cf33fab2f2b248be78f3f0043"
    assert entries["onnx/model_q4.onnx_data"].sha256 == "599962c3143b040de2dd05e5975be3e9091dd067cacc6a8f7186e3203bab9e02"
    # No served graph or weights file goes down the "unknown: trust the Hub for this run" path.
    assert all(entries[p].known for v in model_lock.VARIANT_ONNX for p in model_lock.variant_files(v)[:2])
    assert "one record" in json.loads(model_lock.LOCK_PATH.read_text())["_doc"].lower()


# -- refusals: one line, through the CLI --


@pytest.mark.parametrize(
    "data, expect",
    [
        ({"model_variant": "fp16"}, "65504"),
        ({"model_variant": "q4f16"}, "float16"),
        ({"model_revision": "main"}, "not a branch name"),
    ],
)
def test_refusals_are_one_line(world: Env, data: dict, expect: str) -> None:
    result = world.run(**data)
    assert result.rc != 0
    lines = [line for line in result.output.splitlines() if expect in line]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert not result.records, "refused before any command"


def trusted(hub: HubServer) -> dict[str, object]:
    """Host data that lets the HF token go to the local stand-in (plain http, so that is allowed too)."""
    return {"model_token_endpoints": [hub.url], "allow_plain_http": True}


def test_gated_repo_without_token(tmp_path: Path) -> None:
    with HubServer([Repo(REPO, tiny_files(), gated=True, tokens=(TOKEN,))]) as hub:
        world = Env(tmp_path, hub, tiny_files())
        world.lock = write_lock(tmp_path / "model.lock.json", world.files, unknown=("onnx/model.onnx",))
        result = world.run(**trusted(hub))
        assert result.rc != 0
        assert len([line for line in result.output.splitlines() if "gated and no HF token" in line]) == 1, result.output
        ok = world.run(env={"HF_TOKEN": TOKEN}, **trusted(hub))
        assert ok.rc == 0, ok.output
        world.assert_installed()
        assert TOKEN not in ok.output and not [c for c in ok.commands() if TOKEN in c]


def test_require_lock_refuses_unknown_entries(world: Env) -> None:
    world.lock = write_lock(world.tmp / "model.lock.json", world.files, unknown=("onnx/model.onnx_data",))
    result = world.run(model_require_lock=True)
    assert result.rc != 0 and "model_require_lock is true" in result.output
    assert "python -m deploys.model_lock refresh" in result.output


# -- controller mode --


def test_controller_downloads_once_sends_only_what_differs(world: Env) -> None:
    world.lock = write_lock(world.tmp / "model.lock.json", world.files, unknown=("onnx/model.onnx",))
    first = world.run("--json")
    assert first.rc == 0, first.output
    world.assert_installed()
    assert "no recorded sha256 for onnx/model.onnx" in first.output  # the unknown entry is said plainly
    assert "came from upstream" in first.output and "sending 5 files" in first.output
    assert sorted(r["file"] for r in gets(world.hub)) == sorted(model_lock.variant_files("fp32"))

    seen = len(world.hub.requests)
    again = world.run("--json")
    assert again.rc == 0 and again.changed_ops() == {}, again.output
    assert gets(world.hub, seen) == [] and "all 5 files match" in again.output

    # A host file changed behind our back: only it moves, from the controller cache (0 B upstream).
    world.host_file("tokenizer.json").write_text("{}")
    seen = len(world.hub.requests)
    fix = world.run("--json")
    assert fix.rc == 0
    assert fix.changed_ops() == {
        "Model files (pinned, checksummed) | Upload model file tokenizer.json (48 B)": 1,
        "Model files (pinned, checksummed) | Check sha256 and install tokenizer.json": 1,
    }
    assert gets(world.hub, seen) == [] and "0 B came from upstream" in fix.output
    world.assert_installed()


def test_transfer_cut_halfway_then_resumed(tmp_path: Path) -> None:
    files = tiny_files(data_size=24_000_000)  # > huggingface_hub's 10 MB read chunk, so the cut lands mid-file
    with HubServer([Repo(REPO, files)]) as hub:
        world = Env(tmp_path, hub, files)
        hub.cut_once["onnx/model.onnx_data"] = 15_000_000
        result = world.run()
        assert result.rc == 0, result.output
        world.assert_installed()
        data_gets = hub.file_requests("GET", "onnx/model.onnx_data")
        assert data_gets[0]["cut_at"] == 15_000_000
        resumed = data_gets[1]["range"]
        assert resumed and resumed.startswith("bytes=") and int(resumed[6:].rstrip("-")) >= 10_000_000, data_gets
        assert len(data_gets) == 2
        # Upstream bytes < file + cut part: the resumed request did not start over.
        assert hub.body_bytes < sum(len(d) for d in files.values()) + 15_000_000


def test_checksum_mismatch_refuses_and_drops_the_bad_copy(world: Env) -> None:
    good = world.files["onnx/model.onnx_data"]
    world.hub.tamper["onnx/model.onnx_data"] = bytes(reversed(good))  # same size, other bytes
    bad = world.run()
    assert bad.rc != 0
    lines = [line for line in bad.output.splitlines() if "refusing to deploy" in line]
    assert len(lines) == 1 and "onnx/model.onnx_data" in lines[0] and sha(good) in lines[0], bad.output
    assert not world.host_file("onnx/model.onnx_data").exists()
    # The corrupt blob left the cache, so the next run (source fixed) downloads it again.
    world.hub.tamper.clear()
    ok = world.run()
    assert ok.rc == 0, ok.output
    world.assert_installed()


def test_lock_mismatch_refuses(world: Env) -> None:
    lock = json.loads(world.lock.read_text())
    lock["models"][REPO][COMMIT]["tokenizer.json"]["sha256"] = "0" * 64
    world.lock.write_text(json.dumps(lock))
    result = world.run()
    assert result.rc != 0 and "lock says " + "0" * 64 in result.output
    assert not world.host_file("tokenizer.json").exists()


def test_variant_switch_removes_the_other_graph(world: Env) -> None:
    assert world.run().rc == 0
    switched = world.run("--json", model_variant="q8")
    assert switched.rc == 0, switched.output
    world.assert_installed("q8")
    assert not world.host_file("onnx/model.onnx_data").exists()


# -- host and mirror modes --


def test_host_mode_downloads_on_the_host_with_token_on_stdin(tmp_path: Path) -> None:
    files = tiny_files()
    with HubServer([Repo(REPO, files, gated=True, tokens=(TOKEN,))]) as hub:
        world = Env(tmp_path, hub, files)
        result = world.run("-vvv", model_fetch="host", env={"HF_TOKEN": TOKEN}, **trusted(hub))
        assert result.rc == 0, result.output
        world.assert_installed()
        curl_gets = [r for r in gets(hub) if r["file"] == "onnx/model.onnx_data"]
        assert curl_gets and all(r["auth"] == f"Bearer {TOKEN}" for r in curl_gets)
        assert TOKEN not in result.output and not [c for c in result.commands() if TOKEN in c]
        assert f"Authorization: Bearer {TOKEN}" in result.stdins()
        assert "0 B sent from the controller" in result.output
        assert world.run("--json", model_fetch="host", env={"HF_TOKEN": TOKEN}, **trusted(hub)).changed_ops() == {}

        # A corrupt source is refused on the host: the file is not installed, the run fails.
        world.host_file("onnx/model.onnx_data").unlink()
        hub.tamper["onnx/model.onnx_data"] = bytes(reversed(files["onnx/model.onnx_data"]))
        bad = world.run(model_fetch="host", env={"HF_TOKEN": TOKEN}, **trusted(hub))
        assert bad.rc != 0 and "refusing this host" in bad.output
        assert not world.host_file("onnx/model.onnx_data").exists()


def test_host_mode_resumes_a_partial_file(world: Env) -> None:
    part = Path(str(world.host_file("onnx/model.onnx_data")) + ".partial")
    part.parent.mkdir(parents=True)
    part.write_bytes(world.files["onnx/model.onnx_data"][:100_000])
    result = world.run(model_fetch="host")
    assert result.rc == 0, result.output
    world.assert_installed()
    ranges = [r["range"] for r in world.hub.file_requests("GET", "onnx/model.onnx_data")]
    assert ranges == ["bytes=100000-"]


def test_mirror_url_gets_no_token(tmp_path: Path) -> None:
    files = tiny_files()
    with HubServer([Repo(REPO, files)]) as mirror:
        world = Env(tmp_path, mirror, files)
        result = world.run(
            model_fetch="mirror",
            model_mirror=mirror.url,
            allow_plain_http=True,
            env={"HF_TOKEN": TOKEN, "HF_ENDPOINT": "http://127.0.0.1:9"},
        )
        assert result.rc == 0, result.output
        world.assert_installed()
        assert gets(mirror) and all(r["auth"] is None for r in mirror.requests)


NOT_THE_HUB = "is not the Hub (https://huggingface.co) nor listed in model_token_endpoints: no HF token is sent to it"


@pytest.mark.parametrize("fetch", ["controller", "host"])
def test_an_endpoint_that_is_not_the_hub_gets_no_token(world: Env, fetch: str) -> None:
    # HF_ENDPOINT points at the stand-in (not https://huggingface.co) and names no
    # model_token_endpoints: the files come, the token does not, and the log says so once.
    world.lock = write_lock(world.tmp / "model.lock.json", world.files, unknown=("onnx/model.onnx",))  # a metadata call too
    result = world.run("-vvv", model_fetch=fetch, env={"HF_TOKEN": TOKEN})
    assert result.rc == 0, result.output
    world.assert_installed()
    assert world.hub.requests and all(r["auth"] is None for r in world.hub.requests), world.hub.requests
    assert TOKEN not in result.output and not [s for s in result.stdins() if TOKEN in s]
    assert result.output.count(NOT_THE_HUB) == 1, result.output
    assert f"model: {world.hub.url} {NOT_THE_HUB}" in result.output


def test_a_gated_repo_behind_an_unlisted_endpoint_says_why(tmp_path: Path) -> None:
    with HubServer([Repo(REPO, tiny_files(), gated=True, tokens=(TOKEN,))]) as hub:
        world = Env(tmp_path, hub, tiny_files())
        world.lock = write_lock(tmp_path / "model.lock.json", world.files, unknown=("onnx/model.onnx",))
        result = world.run(env={"HF_TOKEN": TOKEN})
        assert result.rc != 0
        lines = [line for line in result.output.splitlines() if f"no HF token is sent to {hub.url} (not the Hub)" in line]
        assert len(lines) == 1 and "model_token_endpoints" in lines[0], result.output
        assert all(r["auth"] is None for r in hub.requests)


def test_a_listed_mirror_url_gets_the_token(tmp_path: Path) -> None:
    with HubServer([Repo(REPO, tiny_files(), gated=True, tokens=(TOKEN,))]) as mirror:
        world = Env(tmp_path, mirror, tiny_files())
        result = world.run(
            model_fetch="mirror", model_mirror=mirror.url, env={"HF_TOKEN": TOKEN, "HF_ENDPOINT": "http://127.0.0.1:9"}, **trusted(mirror)
        )
        assert result.rc == 0, result.output
        world.assert_installed()
        assert gets(mirror) and all(r["auth"] == f"Bearer {TOKEN}" for r in gets(mirror))
        assert NOT_THE_HUB not in result.output


def test_a_plain_http_token_endpoint_needs_allow_plain_http(world: Env) -> None:
    result = world.run(model_token_endpoints=[world.hub.url])
    assert result.rc != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "setting model_token_endpoints=" in line]
    assert len(lines) == 1 and "plain http:// is refused" in lines[0], result.output
    assert not result.records


@pytest.mark.parametrize(
    "url, allowed, expected",
    [
        ("https://huggingface.co", [], True),
        ("https://HuggingFace.co:443/", [], True),
        ("http://huggingface.co", [], False),  # plain http is not the Hub
        ("https://huggingface.co.evil.example", [], False),
        ("https://huggingface.co@evil.example", [], False),
        ("https://hf-mirror.example", [], False),
        ("https://hf-mirror.example/", ["https://HF-mirror.example"], True),
        ("https://hf-mirror.example/hub", ["https://hf-mirror.example"], False),  # another path is another endpoint
        ("https://hf-mirror.example:8443", ["https://hf-mirror.example"], False),
        ("https://hf-mirror.example:bad", ["https://hf-mirror.example"], False),
    ],
)
def test_token_allowed(url: str, allowed: list[str], expected: bool) -> None:
    assert model_lock.token_allowed(url, allowed) is expected


def test_mirror_directory_pushes_from_the_controller(world: Env) -> None:
    mirror = world.tmp / "mirror"
    for p, d in world.files.items():
        (mirror / p).parent.mkdir(parents=True, exist_ok=True)
        (mirror / p).write_bytes(d)
    result = world.run("--json", model_fetch="mirror", model_mirror=str(mirror), env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert result.rc == 0, result.output
    world.assert_installed()
    assert not world.hub.requests
    (mirror / "tokenizer.json").write_text("{}")  # a corrupt mirror is refused
    world.host_file("tokenizer.json").unlink()
    bad = world.run(model_fetch="mirror", model_mirror=str(mirror), env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert bad.rc != 0 and "refusing to deploy" in bad.output


# -- the lock command --


def test_lock_refresh_fills_from_lfs_metadata(world: Env) -> None:
    lock = world.tmp / "fresh.lock.json"
    cmd = [
        sys.executable,
        "-m",
        "deploys.model_lock",
        "refresh",
        "--repo-id",
        REPO,
        "--revision",
        COMMIT,
        "--endpoint",
        world.hub.url,
        "--lock",
        str(lock),
        "--secrets-file",
        str(world.tmp / "none.yaml"),
    ]
    env = {**world.env}
    proc = subprocess.run(cmd, cwd=leak_probe.REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    entries = model_lock.read(REPO, COMMIT, lock)
    for p, d in world.files.items():
        assert entries[p] == LockEntry(sha(d), len(d)), p
    # LFS files came from metadata alone: no GET of the big data file.
    assert not world.hub.file_requests("GET", "onnx/model.onnx_data")
    branch = subprocess.run([*cmd[:7], "main", *cmd[8:]], cwd=leak_probe.REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert branch.returncode != 0 and f"points at {COMMIT}" in branch.stderr


def test_lock_refresh_sends_the_token_only_to_a_listed_endpoint(tmp_path: Path) -> None:
    with HubServer([Repo(REPO, tiny_files(), gated=True, tokens=(TOKEN,))]) as hub:
        lock = tmp_path / "fresh.lock.json"
        cmd = [sys.executable, "-m", "deploys.model_lock", "refresh", "--repo-id", REPO, "--revision", COMMIT, "--endpoint", hub.url]
        cmd += ["--lock", str(lock), "--secrets-file", str(tmp_path / "none.yaml")]
        env = {**{k: v for k, v in os.environ.items() if k != "HF_ENDPOINT"}, "HF_TOKEN": TOKEN, "HOME": str(tmp_path)}
        withheld = subprocess.run(cmd, cwd=leak_probe.REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert withheld.returncode != 0
        assert f"no HF token is sent to {hub.url} (not the Hub)" in withheld.stderr and "--token-endpoint" in withheld.stderr
        assert hub.requests and all(r["auth"] is None for r in hub.requests)
        sent = subprocess.run(
            [*cmd, "--token-endpoint", hub.url + "/"], cwd=leak_probe.REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == 0, sent.stderr
        assert any(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests)
        assert TOKEN not in withheld.stdout + withheld.stderr + sent.stdout + sent.stderr


# -- the served graph: the attention-window repair (deploys/core/attention_window.py) --

FIXTURE = Path(__file__).parent / "data" / "attention_window" / "eager"
WINDOWED = {"model_attention_layers": 12, "model_sliding_window": 8}  # the fixture's shape


def test_the_served_graph_is_repaired_once_rolled_back_and_a_wrong_shape_served_upstream(tmp_path: Path) -> None:
    files = {**tiny_files(), "onnx/model.onnx": (FIXTURE / "model.onnx").read_bytes()}
    files["onnx/model.onnx_data"] = (FIXTURE / "model.onnx_data").read_bytes()
    with HubServer([Repo(REPO, files)]) as hub:
        world = Env(tmp_path, hub, files)
        graph, data = world.host_file("onnx/model.onnx"), world.host_file("onnx/model.onnx_data")

        first = world.run("--json", **WINDOWED)
        assert first.rc == 0, first.output
        assert "model: attention window repaired: 12 blocks" in first.output
        record = next(iter(json.loads((tmp_path / "cache.served.json").read_text()).values()))
        assert sha(graph.read_bytes()) == record["served_sha256"] != sha(files["onnx/model.onnx"])
        assert record["upstream_sha256"] == sha(files["onnx/model.onnx"])
        assert data.read_bytes() == files["onnx/model.onnx_data"]  # the weights file: untouched, same name
        # what the verify report and the fleet table carry (deploys/triton/verify_run.py)
        said = model_store.fidelity(settings.parse("h", world.data(**WINDOWED)))
        assert said["served"] == "repaired" and said["served_sha256"] == record["served_sha256"] and said["blocks"] == 12
        assert said["inside_max_diff"] <= 1e-5 < said["beyond_max_diff"]
        assert model_store.fidelity(settings.parse("h", world.data(model_attention_window="upstream")))["served"] == "upstream"
        # Triton's release id digests the served graph, so it follows the repair (and the rollback)
        from deploys.triton import release

        weights = release.version_files(settings.parse("h", world.data(**WINDOWED)), None)
        assert weights["model.onnx"] == record["served_sha256"]
        upstream_weights = release.version_files(settings.parse("h", world.data(model_attention_window="upstream", **WINDOWED)), None)
        assert upstream_weights["model.onnx"] == record["upstream_sha256"]

        seen = len(hub.requests)
        again = world.run("--json", **WINDOWED)  # recorded: no repair, no fetch, no change
        assert again.rc == 0 and again.changed_ops() == {}, again.output
        assert gets(hub, seen) == [] and "attention window repaired" in again.output

        back = world.run("--json", model_attention_window="upstream", **WINDOWED)
        assert back.rc == 0 and graph.read_bytes() == files["onnx/model.onnx"], back.output
        assert list(back.changed_ops()) == [
            f"Model files (pinned, checksummed) | Upload model file model.onnx ({model_store.human(len(files['onnx/model.onnx']))})",
            "Model files (pinned, checksummed) | Check sha256 and install model.onnx",
        ]

        wrong = world.run("--json", model_attention_layers=24, model_sliding_window=8)  # config says 24, graph has 12
        assert wrong.rc == 0 and wrong.changed_ops() == {}, wrong.output
        assert "attention window NOT repaired" in wrong.output and "found 12 attention blocks" in wrong.output
        assert graph.read_bytes() == files["onnx/model.onnx"]

        strict = world.run("--json", model_attention_layers=24, model_sliding_window=8, model_attention_window_strict=True)
        assert strict.rc != 0 and "model_attention_window_strict is true: refusing to deploy" in strict.output
        assert "Traceback" not in strict.output


def test_host_fetch_says_the_repair_did_not_run(world: Env) -> None:
    result = world.run("--json", model_fetch="host")
    assert result.rc == 0, result.output
    assert "attention window NOT repaired: the repair runs on the controller and model_fetch=host" in result.output
