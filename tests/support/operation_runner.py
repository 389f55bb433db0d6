"""Run a pyinfra operation's generator on fake facts, as pyinfra's own tests/util.py does: the
operation reads facts from a dict (``{"files.Sha256File": {"path=/etc/x": "ab…"}}``), yields its
commands, or calls ``host.noop`` with the reason it has nothing to do. Used by tests/test_operations.py
(the JSON cases under tests/operations/) and by the tests that run an operation's command in a shell."""

from __future__ import annotations

from contextlib import ExitStack
from inspect import getfullargspec
from pathlib import Path
from typing import Any

from pyinfra.api import Config, FileUploadCommand, Inventory, StringCommand
from pyinfra.api.util import get_kwargs_str
from pyinfra.context import ctx_host, ctx_state

ROOT = Path(__file__).resolve().parents[2]  # the repository (the cases name files from it)


class FakeState:
    """What an operation's generator reads from pyinfra's state (controller paths: from the repository)."""

    active = True
    cwd = str(ROOT)
    in_op = True
    in_deploy = True
    pipelining = False
    is_executing = False
    deploy_name = None
    deploy_kwargs = None

    def __init__(self) -> None:
        self.inventory = Inventory(([], {}))
        self.config = Config()

    def get_temp_filename(*args: Any) -> str:
        return "_tempfile_"


class FakeHost:
    """A host whose facts come from a dict; a fact the case does not give is an error (it would hide a read)."""

    in_op = True
    in_callback_op = False
    current_op_hash = None
    current_op_global_arguments = None
    in_deploy = True
    current_deploy_name = None
    current_deploy_kwargs = None
    current_deploy_data = None
    print_prefix = ""

    def __init__(self, facts: dict[str, Any], name: str = "somehost") -> None:
        self.name = name
        self.facts = facts
        self.noop_description: str | None = None
        self.data: dict[str, Any] = {}
        self.connector_data: dict[str, Any] = {}

    def noop(self, description: str) -> None:
        self.noop_description = description

    def get_temp_filename(*args: Any, **kwargs: Any) -> str:
        return "_tempfile_"

    def get_fact(self, fact_cls: type, **kwargs: Any) -> Any:
        key = f"{fact_cls.__module__.split('.')[-1]}.{fact_cls.__name__}"
        if key not in self.facts:
            raise KeyError(f"missing test fact data: {key}")
        facts = self.facts[key]
        if not kwargs:
            return facts
        real = getfullargspec(fact_cls.command).args
        assert all(k in real for k in kwargs), f"{kwargs} are not all arguments of {key}.command"
        return facts.get(get_kwargs_str(kwargs))


def command_json(command: Any) -> Any:
    """A yielded command as the JSON cases write it: a string; ``["upload", text, dest]``; with
    connector arguments (``_stdin``) a dict holding them and ``command``."""
    if isinstance(command, StringCommand):
        out: Any = command.get_raw_value()
    elif isinstance(command, FileUploadCommand):
        if hasattr(command.src, "read"):
            command.src.seek(0)
            out = ["upload", command.src.read(), command.dest]
        else:  # a controller file, by its path in the repository
            src = Path(command.src)
            out = ["upload", str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else str(src), command.dest]
    else:
        raise TypeError(f"{command!r} is not a command these cases know")
    if command.connector_arguments:
        out = {**{k: str(v) for k, v in command.connector_arguments.items()}, "command": out}
    return out


def run(op: Any, facts: dict[str, Any], *args: Any, **kwargs: Any) -> tuple[list[Any], str | None]:
    """(the commands ``op`` yields on a host with ``facts``, as :func:`command_json`; its noop reason)."""
    host = FakeHost(facts)
    with ExitStack() as stack:
        stack.enter_context(ctx_state.use(FakeState()))
        stack.enter_context(ctx_host.use(host))
        commands = [command_json(c) for c in op._inner(*args, **kwargs)]
    return commands, host.noop_description


def shell_of(op: Any, *args: Any, facts: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """The one shell command ``op`` yields (facts: none known, the file absent)."""
    commands, _ = run(op, facts or {"files.Sha256File": {}}, *args, **kwargs)
    assert len(commands) == 1, commands
    command = commands[0]
    return command["command"] if isinstance(command, dict) else command
