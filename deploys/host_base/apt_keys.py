"""apt signing keys pinned by fingerprint (Docker's and NVIDIA's signed-by keyrings).

A key is downloaded on the host into a temporary file beside its keyring, its primary-key
fingerprints are computed there (facts/apt.py's script, no gpg needed) and only when they are
exactly the pinned one (``docker_ce_key_fingerprint``, ``nvidia_toolkit_key_fingerprint``) is the
file moved into place; otherwise the host fails with one line naming the key, the expected and the
found fingerprint, and the keyring is left as it was. An installed keyring whose fingerprint is the
pinned one is left alone (0 changes); one with any other fingerprint is fetched and checked again.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.operations import server

from facts.apt import AptKeyFingerprints, fingerprint_command

# The temporary download, as a shell word.
TMP = '"$tmp"'
# Bounds for the key download (a key is a few kB).
KEY_DOWNLOAD_TIMEOUT_S = 60


def install_command(label: str, url: str, dest: str, fingerprint: str, setting: str, allow_http: bool = False) -> str:
    """Download ``url`` next to ``dest``, install it only when its fingerprint is ``fingerprint``.

    ``label`` names the key in messages ("Docker"), ``setting`` the fingerprint's setting. Without
    ``allow_http`` curl may use https only, also after a redirect.
    """
    q_url, q_dest = shlex.quote(url), shlex.quote(dest)
    what = f"apt key {label} ({url})"
    proto = "" if allow_http else "--proto =https --proto-redir =https "
    fetch = (
        f'if command -v curl >/dev/null 2>&1; then curl --fail --silent --show-error --location {proto}--max-time {KEY_DOWNLOAD_TIMEOUT_S} --retry 2 -o "$tmp" {q_url}; '
        f'elif command -v wget >/dev/null 2>&1; then wget -q -T {KEY_DOWNLOAD_TIMEOUT_S} -O "$tmp" {q_url}; '
        f"else echo {shlex.quote(f'{what}: neither curl nor wget is on the host; install curl')} >&2; false; fi"
    )
    refused = shlex.quote(f"{what}: fingerprint {fingerprint} expected, found ")
    why = shlex.quote(
        f"; refusing to install it (a tampered download or mirror, or the vendor rotated its key: compare with its documentation, then set {setting})"
    )
    return (
        f"command -v python3 >/dev/null 2>&1 || {{ echo {shlex.quote(f'{what}: python3 is needed on the host to check its fingerprint')} >&2; exit 1; }}; "
        f"tmp=$(mktemp {shlex.quote(dest + '.download.')}XXXXXX) || exit 1; "
        f'{{ {fetch}; }} || {{ rm -f "$tmp"; echo {shlex.quote(f"{what}: download failed")} >&2; exit 1; }}; '
        f"found=$({fingerprint_command(TMP)}); "
        f'if [ "$found" != {shlex.quote(fingerprint)} ]; then rm -f "$tmp"; echo {refused}"$found"{why} >&2; exit 1; fi; '
        f'chmod 644 "$tmp" && mv -f "$tmp" {q_dest}'
    )


def ensure_key(label: str, url: str, dest: str, fingerprint: str, setting: str, allow_http: bool):
    """The key at ``dest`` is ``url``'s and has ``fingerprint``: the operation that makes it so,
    or None when the installed keyring already carries exactly that fingerprint."""
    if host.get_fact(AptKeyFingerprints, path=dest) == [fingerprint]:
        return None
    return server.shell(
        name=f"{label} apt key (signed-by keyring, fingerprint checked)",
        commands=[install_command(label, url, dest, fingerprint, setting, allow_http)],
    )
