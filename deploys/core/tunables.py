"""How a setting is declared: once, as a :class:`Setting` attribute of its role's settings class
(deploys/<role>/settings.py), with its default, doc, type and check. deploys/core/settings.py
composes the role classes into the typed ``Settings``; the lookup by name, the did-you-mean, the
fleet validation and the README's tunables table (``make readme``) all read those declarations.

The value checkers below each return the normalised value or raise ``ValueError("allowed: ...")``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from pyinfra.api.exceptions import PyinfraError

from deploys.core import redact

T = TypeVar("T")

# Host-data keys with these prefixes belong to us: an unknown one is a typo, not someone else's data.
OWNED_PREFIXES = (
    "model_",
    "triton_",
    "docker_",
    "nvidia_",
    "registry_",
    "verify_",
    "preflight_",
    "secrets_",
    "rollout_",
    "gateway_",
    "front_door_",
    "monitoring_",
    "deploy_",
    "reboot_",
)
# Plain names we own as well.
OWNED_NAMES = ("gpu", "allow_plain_http")


# How the README's type column reads as a Python type (the typed attributes' annotations).
KIND_TYPES = {"bool | auto": "bool | str"}

# Patterns shared by declarations of several roles.
COMMIT_SHA = r"[0-9a-f]{40}"
IMAGE_REF = r"[a-z0-9.\-]+(:[0-9]+)?(/[a-z0-9._\-]+)+:[A-Za-z0-9._\-]+"


class SettingsError(PyinfraError):
    """A user mistake in host data: printed as one line by the pyinfra CLI, no traceback. URL
    credentials in the message (a proxy's user:password) are masked (deploys/core/redact.py)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(redact.mask(str(message)), *args)


class Setting(Generic[T]):
    """One tunable, declared once as a class attribute of a role's settings class:
    ``triton_http_port = Setting(6000, "Host port for HTTP.", "int", _int(1, 65535))``.

    The attribute's name is the setting's name (the inventory key); ``kind`` is the README's type
    column; ``check`` returns the normalised value or raises ValueError("allowed: ..."), and its
    return type is the attribute's static type (``Settings.triton_http_port`` is an ``int`` to a type
    checker). On a ``Settings`` instance the attribute is the host's validated value."""

    def __init__(self, default: Any, doc: str, kind: str, check: Callable[[Any], T], *, name: str = "") -> None:
        self.name = name
        self.default = default
        self.doc = doc
        self.kind = kind
        self.check = check

    def __set_name__(self, owner: type, name: str) -> None:
        if self.name and self.name != name:
            raise TypeError(f"setting {self.name!r} is declared as {owner.__name__}.{name}: the attribute must carry its name")
        self.name = name

    @property
    def type(self) -> Any:
        """The Python type of the value, from the README's type column (``bool | auto`` is ``bool | str``)."""
        return eval(KIND_TYPES.get(self.kind, self.kind))  # the kind strings are ours: int, list[str], dict[str, str], ...

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Setting[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> Setting[T] | T:
        if obj is None:
            return self  # on the class: the declaration
        raise AttributeError(f"{type(obj).__name__} has no value for setting {self.name!r}")  # values live in the instance


def declared(cls: type) -> list[Setting[Any]]:
    """The settings ``cls`` declares itself, in declaration order."""
    return [value for value in vars(cls).values() if isinstance(value, Setting)]


# -- value checkers: each returns the normalised value or raises ValueError with what is allowed --


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("allowed: true or false")


def _gpu(value: Any) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError('allowed: true, false or "auto" (read the GPU fact)')


def _int(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"allowed: an integer from {low} to {high}")
        return value

    return check


def _float(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"allowed: a number from {low} to {high}")
        return float(value)

    return check


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError("allowed: " + ", ".join(choices))
        return value

    return check


def _text(pattern: str, allowed: str) -> Callable[[Any], str]:
    regex = re.compile(pattern)

    def check(value: Any) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise ValueError(f"allowed: {allowed}")
        return value

    return check


def _ip(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise ValueError("allowed: an IP address such as 127.0.0.1 or 0.0.0.0") from None


def _ip_or_empty(value: Any) -> str:
    if value == "":
        return value
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise ValueError("allowed: an IP address such as 10.0.0.5, or empty") from None


def _host_dir(value: Any) -> str:
    """An absolute host directory; ``..`` is refused (the deploy removes and links files under it)."""
    if not isinstance(value, str) or not re.fullmatch(r"/[A-Za-z0-9_./\-]+", value) or ".." in value.split("/"):
        raise ValueError("allowed: an absolute path without '..' components")
    return value


def _subnet(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(value))
    except (ValueError, TypeError):
        raise ValueError("allowed: a CIDR network such as 10.57.0.0/24 (host bits zero)") from None


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("allowed: a list of non-empty strings")
    return list(value)


def _platforms(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) and re.fullmatch(r"[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?", v) for v in value
    ):
        raise ValueError("allowed: a list of OS/architecture[/variant] platforms such as linux/amd64, or []")
    return list(value)


def _fingerprint(value: Any) -> str:
    """An OpenPGP fingerprint as gpg prints it (spaces allowed), normalised to uppercase hex."""
    text = value.replace(" ", "").upper() if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", text):
        raise ValueError("allowed: a 40-hex-digit (v4) or 64-hex-digit (v6) key fingerprint, as `gpg --show-keys` prints it")
    return text


def _url_list(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and re.fullmatch(r"https?://\S+", v) for v in value):
        raise ValueError("allowed: a list of http(s) URLs, e.g. ['https://hf-mirror.example']")
    return [v.rstrip("/") for v in value]


def _batch_sizes(value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ValueError("allowed: a list of positive integers, e.g. [4, 8]")
    return sorted(set(value))


def _env_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("allowed: a mapping of environment variable names to strings")
    return dict(value)
