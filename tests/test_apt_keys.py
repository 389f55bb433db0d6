"""apt signing keys pinned by fingerprint (deploys/host_base/apt_keys.py, facts/apt.py).

The fingerprint script is checked against gpg on real OpenPGP keys (tests/data/apt_keys: three
throwaway public keys made with gpg 2.2, ed25519 and RSA); the install command runs for real through
pyinfra's ``@local`` connector against a local HTTP server serving the right, a wrong or a garbled
key: curl, python3, mktemp and mv on this machine, the keyring in a temporary directory.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploys.host_base import apt_keys
from facts.apt import KEY_FINGERPRINT_SCRIPT, AptKeyFingerprints, parse_fingerprints
from tests.support import leak_probe

KEYS = Path(__file__).parent / "data" / "apt_keys"
# What `gpg --show-keys --with-colons` prints in the fpr line after each pub line of these files.
KEY_1 = "BBC1D111292E543AF26A95CD9F6FFA925A0F173F"  # ed25519
KEY_2 = "21DE425651F7F7E6DCFAB7F30872227395AC1514"  # ed25519
KEY_RSA = "2FCE4272EF6A6842099B592823D1139E2C1DAC75"  # rsa2048 (old-format packets, 2-octet lengths)
EXPECTED = {"test-key-1.asc": [KEY_1], "test-key-2.asc": [KEY_2], "test-key-rsa.asc": [KEY_RSA]}


def script_on(path: Path) -> list[str]:
    out = subprocess.run(["python3", "-I", "-c", KEY_FINGERPRINT_SCRIPT, "label", str(path)], capture_output=True, text=True, check=True)
    assert out.stderr == ""
    return parse_fingerprints(out.stdout)


def gpg_fingerprints(path: Path, home: Path) -> list[str]:
    """Primary-key fingerprints as gpg reports them (fpr lines right after pub lines)."""
    out = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--show-keys", "--with-colons", str(path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [b.split(":")[9] for a, b in itertools.pairwise(out) if a.startswith("pub:") and b.startswith("fpr:")]


def dearmor(path: Path) -> bytes:
    """The binary packets of an armored file (python's own base64, not the script's)."""
    import base64

    lines = path.read_text().splitlines()
    body = lines[lines.index("") + 1 : -2]  # after the blank line, before the =CRC and END lines
    return base64.b64decode("".join(body))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_script_reads_armored_and_binary_keys(tmp_path: Path, name: str) -> None:
    assert script_on(KEYS / name) == EXPECTED[name]
    binary = tmp_path / "key.gpg"
    binary.write_bytes(dearmor(KEYS / name))
    assert script_on(binary) == EXPECTED[name]


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed here")
def test_script_agrees_with_gpg(tmp_path: Path) -> None:
    combined = tmp_path / "two.asc"
    combined.write_text((KEYS / "test-key-1.asc").read_text() + (KEYS / "test-key-rsa.asc").read_text())
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    for path in [*(KEYS / n for n in sorted(EXPECTED)), combined]:
        assert script_on(path) == gpg_fingerprints(path, home), path.name
    assert script_on(combined) == [KEY_1, KEY_RSA]


def test_new_format_packet_headers(tmp_path: Path) -> None:
    # gpg writes old-format headers; other tools write new-format ones: same packets, same fingerprint.
    data = dearmor(KEYS / "test-key-rsa.asc")
    assert data[0] == 0x99  # old format, tag 6, 2-octet length
    length = int.from_bytes(data[1:3], "big")
    body, rest = data[3 : 3 + length], data[3 + length :]
    assert 192 <= length < 8384
    two_octets = bytes([((length - 192) >> 8) + 192, (length - 192) & 0xFF])
    for header in (bytes([0xC6]) + two_octets, bytes([0xC6, 0xFF]) + length.to_bytes(4, "big")):
        path = tmp_path / "new.gpg"
        path.write_bytes(header + body + rest)
        assert script_on(path) == [KEY_RSA]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key\n",
        b"<html>404 Not Found</html>\n",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
    ],
    ids=["empty", "text", "html", "bad-armor"],
)
def test_script_reports_none_for_what_is_not_a_key(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    out = subprocess.run(["python3", "-I", "-c", KEY_FINGERPRINT_SCRIPT, "label", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "none\n" and out.stderr == ""
    assert AptKeyFingerprints().process(["none"]) == []


def test_truncated_key_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "cut.gpg"
    path.write_bytes(dearmor(KEYS / "test-key-rsa.asc")[:100])
    assert script_on(path) == []


# -- the install command, for real through pyinfra's @local connector --


@pytest.fixture
def key_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server (loopback) over a directory: (base URL, directory)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


DEPLOY = """\
from pyinfra import host
from deploys.host_base import apt_keys
apt_keys.ensure_key("Test", host.data.key_url, host.data.key_dest, host.data.key_fingerprint, "test_key_fingerprint", host.data.key_allow_http)
"""


def run_key(tmp_path: Path, url: str, dest: Path, fingerprint: str, allow_http: bool = True, *args: str) -> leak_probe.Result:
    data = {"key_url": url, "key_dest": str(dest), "key_fingerprint": fingerprint, "key_allow_http": allow_http}
    (tmp_path / "inventory.py").write_text(f"hosts = [('@local', {data!r})]\n")
    (tmp_path / "deploy.py").write_text(DEPLOY)
    return leak_probe.run(tmp_path, [*args, str(tmp_path / "inventory.py"), str(tmp_path / "deploy.py")])


OP = "Test apt key (signed-by keyring, fingerprint checked)"


def test_right_key_is_installed_then_left_alone(tmp_path: Path, key_server: tuple[str, Path]) -> None:
    url, served = key_server
    shutil.copy(KEYS / "test-key-1.asc", served / "gpg")
    dest = tmp_path / "keyrings" / "test.asc"
    dest.parent.mkdir()
    first = run_key(tmp_path, f"{url}/gpg", dest, KEY_1, True, "--json")
    assert first.rc == 0, first.output
    assert first.changed_ops() == {OP: 1}
    assert dest.read_bytes() == (KEYS / "test-key-1.asc").read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in dest.parent.iterdir()) == ["test.asc"]  # no download left behind
    again = run_key(tmp_path, f"{url}/gpg", dest, KEY_1, True, "--json")
    assert again.rc == 0 and again.changed_ops() == {}, again.output


def test_wrong_key_is_refused_with_one_line(tmp_path: Path, key_server: tuple[str, Path]) -> None:
    url, served = key_server
    shutil.copy(KEYS / "test-key-2.asc", served / "gpg")
    dest = tmp_path / "keyrings" / "test.asc"
    dest.parent.mkdir()
    result = run_key(tmp_path, f"{url}/gpg", dest, KEY_1)
    assert result.rc != 0
    lines = [line for line in result.output.splitlines() if "refusing to install it" in line]
    assert len(lines) == 1, result.output
    assert f"apt key Test ({url}/gpg): fingerprint {KEY_1} expected, found {KEY_2}; refusing to install it" in lines[0]
    assert "set test_key_fingerprint" in lines[0]
    assert "Traceback" not in result.output
    assert list(dest.parent.iterdir()) == []  # nothing installed, no temporary file left


def test_extra_key_in_the_file_is_refused(tmp_path: Path, key_server: tuple[str, Path]) -> None:
    # apt would trust every key of a signed-by file: a second key appended to the right one is refused.
    url, served = key_server
    (served / "gpg").write_text((KEYS / "test-key-1.asc").read_text() + (KEYS / "test-key-2.asc").read_text())
    dest = tmp_path / "keyrings" / "test.asc"
    dest.parent.mkdir()
    result = run_key(tmp_path, f"{url}/gpg", dest, KEY_1)
    assert result.rc != 0 and f"expected, found {KEY_1},{KEY_2}; refusing" in result.output, result.output
    assert not dest.exists()


def test_a_keyring_with_another_fingerprint_is_replaced(tmp_path: Path, key_server: tuple[str, Path]) -> None:
    url, served = key_server
    shutil.copy(KEYS / "test-key-1.asc", served / "gpg")
    dest = tmp_path / "keyrings" / "test.asc"
    dest.parent.mkdir()
    shutil.copy(KEYS / "test-key-2.asc", dest)
    result = run_key(tmp_path, f"{url}/gpg", dest, KEY_1, True, "--json")
    assert result.rc == 0 and result.changed_ops() == {OP: 1}, result.output
    assert dest.read_bytes() == (KEYS / "test-key-1.asc").read_bytes()


def test_garbage_and_missing_downloads_fail_cleanly(tmp_path: Path, key_server: tuple[str, Path]) -> None:
    url, served = key_server
    (served / "gpg").write_text("<html>a captive portal</html>\n")
    dest = tmp_path / "keyrings" / "test.asc"
    dest.parent.mkdir()
    garbage = run_key(tmp_path, f"{url}/gpg", dest, KEY_1)
    assert garbage.rc != 0 and f"fingerprint {KEY_1} expected, found none; refusing" in garbage.output, garbage.output
    missing = run_key(tmp_path, f"{url}/nothing-here", dest, KEY_1)
    assert missing.rc != 0 and f"apt key Test ({url}/nothing-here): download failed" in missing.output, missing.output
    assert list(dest.parent.iterdir()) == []


def test_plain_http_is_refused_by_curl_unless_allowed(tmp_path: Path, key_server: tuple[str, Path]) -> None:
    url, served = key_server
    shutil.copy(KEYS / "test-key-1.asc", served / "gpg")
    dest = tmp_path / "keyrings" / "test.asc"
    dest.parent.mkdir()
    result = run_key(tmp_path, f"{url}/gpg", dest, KEY_1, False)
    assert result.rc != 0 and "download failed" in result.output, result.output
    assert not dest.exists()
    assert "--proto =https --proto-redir =https" in apt_keys.install_command("T", "https://x/gpg", "/k", KEY_1, "s")
    assert "--proto" not in apt_keys.install_command("T", "http://x/gpg", "/k", KEY_1, "s", allow_http=True)
