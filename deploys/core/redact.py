"""Credentials inside URLs (a proxy's ``http://user:password@host:3128``): masked wherever the deploy
prints, logs or saves them, and detected so that files holding them are written 0600.

``mask`` turns ``scheme://user:password@`` into ``scheme://user:****@`` and a bare
``scheme://token@`` into ``scheme://****@``; masking a masked text changes nothing. The host-side
twin, :data:`SED_SCRIPT`, masks the same way before a file's content reaches pyinfra's output
(facts.docker.DockerDaemonJson; ``-vvv`` prints every fact's output).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

MASK = "****"
# The password runs to the authority's last '@' (a raw '@' in a password stays hidden); none of
# these classes crosses '/', whitespace or '"', so one JSON string or one word is one match.
_WITH_PASSWORD = re.compile(r'(://[^/@:\s"]*):[^/\s"]*@')
_USER_ONLY = re.compile(r'(://)[^/@:\s"]+@')
# The same two substitutions for sed -E on the host (POSIX classes; GNU and busybox sed).
SED_SCRIPT = r's#(://[^/@:[:space:]"]*):[^/[:space:]"]*@#\1:****@#g; s#(://)[^/@:[:space:]"]+@#\1****@#g'

# Every URL userinfo (``://user:password@``, ``://token@``), for a digest of a file's credentials;
# the same regex for grep -oE on the host (facts.docker.UrlCredentialsDigest).
_USERINFO = re.compile(r'://[^/@:\s"]*(?::[^/\s"]*)?@')
GREP_PATTERN = r'://[^/@:[:space:]"]*(:[^/[:space:]"]*)?@'


class Secret(str):
    """A str whose repr shows no content: pyinfra's ``--debug-operations`` prints operations'
    global arguments with repr(), ``_stdin`` included; the connectors write it as the str it is."""

    def __repr__(self) -> str:
        return f"'<secret, {len(self)} characters>'"


def mask(text: str) -> str:
    """``text`` with every URL's user:password (or bare user) masked."""
    return _USER_ONLY.sub(rf"\g<1>{MASK}@", _WITH_PASSWORD.sub(rf"\g<1>:{MASK}@", text))


def has_credentials(text: str) -> bool:
    """Whether ``text`` holds a URL with userinfo (masked or not)."""
    return bool(_WITH_PASSWORD.search(text) or _USER_ONLY.search(text))


def credentials_digest(text: str) -> str:
    """sha256 of the userinfo parts of every URL in ``text``, sorted, one a line: what
    facts.docker.UrlCredentialsDigest prints for a file holding ``text``. Equal digests and equal
    masked content: the file holds these credentials, though nobody printed them."""
    found = sorted(match.group(0) for match in _USERINFO.finditer(text))
    return hashlib.sha256("".join(f"{item}\n" for item in found).encode()).hexdigest()


def mask_tree(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every string masked."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {key: mask_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_tree(item) for item in value]
    return value


def unmask_tree(value: Any, known: Iterable[str]) -> Any:
    """``value`` read masked, with each masked string that is the mask of one of ``known`` (values
    the controller has in clear: the settings) put back in clear; others stay masked."""
    clear = {mask(k): k for k in known if has_credentials(k)}

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return clear.get(item, item)
        if isinstance(item, dict):
            return {key: walk(v) for key, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def still_masked(value: Any) -> list[str]:
    """The masked strings left in ``value`` (credentials the controller only knows masked)."""
    if isinstance(value, str):
        return [value] if MASK + "@" in value and has_credentials(value) else []
    if isinstance(value, dict):
        return [found for item in value.values() for found in still_masked(item)]
    if isinstance(value, list):
        return [found for item in value for found in still_masked(item)]
    return []
