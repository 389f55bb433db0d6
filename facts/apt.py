"""apt facts: the OpenPGP fingerprints of a signed-by keyring.

The fingerprints are computed on the host by a short python3 script (:data:`KEY_FINGERPRINT_SCRIPT`,
the same one the key install command runs on a freshly downloaded key before it is installed:
deploys/host_base/apt_keys.py), so no gpg is needed: the host's python3 is already a requirement (the
registry login fact, the verify and gateway venvs). It prints what ``gpg --show-keys --with-colons``
prints in its ``fpr`` lines after each ``pub`` line: the primary keys' fingerprints, uppercase hex
(v4: SHA-1 of the public-key packet; v5/v6: SHA-256), comma-separated in file order. Subkeys are not
listed: apt trusts every primary key in a signed-by file, so the deploy pins exactly one.
"""

from __future__ import annotations

import re

from pyinfra.api import FactBase

from facts._shell import quote, when_present

# The first argument of the script: a fixed label, so a test's canned answer can match the command.
SCRIPT_LABEL = "apt-key-fingerprints"
# Printed instead of fingerprints when the file is not an OpenPGP public key (binary or armored).
UNREADABLE = "none"

# Runs on the host with `python3 -I -c SCRIPT apt-key-fingerprints FILE` (Python 3.6 or later):
# prints the primary fingerprints joined by ",", or "none" when FILE holds no readable public key.
KEY_FINGERPRINT_SCRIPT = """\
import base64, binascii, hashlib, sys
def unarmor(data):
    if b"-----BEGIN PGP PUBLIC KEY BLOCK-----" not in data:
        return data
    out, body, state = b"", [], None
    for line in data.decode("ascii", "replace").splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"):
            body, state = [], "headers"
        elif state is None:
            continue
        elif line.startswith("-----END PGP PUBLIC KEY BLOCK-----"):
            out += base64.b64decode("".join(body))
            state = None
        elif state == "headers" and ":" in line:
            continue
        else:
            state = "body"
            if line and not (line.startswith("=") and len(line) == 5):
                body.append(line)
    return out
def packets(data):
    i = 0
    while i < len(data):
        first = data[i]
        i += 1
        if not first & 0x80:
            raise ValueError("not an OpenPGP packet")
        if first & 0x40:
            tag, octet = first & 0x3F, data[i]
            i += 1
            if octet < 192:
                length = octet
            elif octet < 224:
                length = ((octet - 192) << 8) + data[i] + 192
                i += 1
            elif octet == 255:
                length = int.from_bytes(data[i:i + 4], "big")
                i += 4
            else:
                raise ValueError("partial length in a key file")
        else:
            tag, kind = (first >> 2) & 0x0F, first & 3
            if kind == 3:
                raise ValueError("indeterminate length in a key file")
            size = (1, 2, 4)[kind]
            length = int.from_bytes(data[i:i + size], "big")
            i += size
        if i + length > len(data):
            raise ValueError("truncated packet")
        yield tag, data[i:i + length]
        i += length
def fingerprints(data):
    found = []
    for tag, body in packets(unarmor(data)):
        if tag != 6 or not body:
            continue
        if body[0] == 4:
            found.append(hashlib.sha1(b"\\x99" + len(body).to_bytes(2, "big") + body).hexdigest())
        elif body[0] in (5, 6):
            prefix = b"\\x9a" if body[0] == 5 else b"\\x9b"
            found.append(hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest())
        else:
            found.append("v%d-key" % body[0])
    return [f.upper() for f in found]
try:
    with open(sys.argv[2], "rb") as f:
        found = fingerprints(f.read())
except (OSError, ValueError, IndexError, binascii.Error):
    found = []
print(",".join(found) or "none")
"""


def fingerprint_command(path: str) -> str:
    """The script on ``path`` (a shell word: a quoted path, or ``"$tmp"`` in the install command)."""
    return f"python3 -I -c {quote(KEY_FINGERPRINT_SCRIPT)} {SCRIPT_LABEL} {path}"


def parse_fingerprints(line: str) -> list[str]:
    """The script's line as a list: [] when the file held no readable key."""
    line = line.strip()
    if not line or line == UNREADABLE:
        return []
    return [part for part in line.split(",") if part]


class AptKeyFingerprints(FactBase[list[str] | None]):
    """
    Primary-key fingerprints (uppercase hex, file order) of the OpenPGP key file ``path`` (ASCII
    armored or binary), e.g. ``["9DC858229FC7DD38854AE2D88D81803C0EBFCD88"]``; ``[]`` when the
    file holds no readable public key; None when the file is absent (or python3 is).
    """

    def command(self, path: str) -> str:
        return when_present("python3", f"if [ -f {quote(path)} ]; then {fingerprint_command(quote(path))}; fi")

    def process(self, output: list[str]) -> list[str] | None:
        for line in output:
            line = line.strip()
            if line == UNREADABLE:
                return []
            if re.fullmatch(r"[0-9A-Z,\-]+", line):
                return parse_fingerprints(line)
        return None
