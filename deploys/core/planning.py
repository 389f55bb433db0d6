"""pyinfra's planning without reading source lines: its call-site lookups take frame positions only.

For every operation call pyinfra 3 walks the Python stack (``inspect.stack()``, ``getframeinfo``) to
order operations by their lines in the deploy files. Both read a line of source context per frame,
which asks ``inspect.getmodule`` (a scan of ``sys.modules``) for every frame: measured with cProfile,
half of the controller's CPU when planning @fake hosts. The lookups use only each frame's file name
and line number, so :func:`install` makes them take no context (``context=0``): the same order, the
same names, without the source reads. And pyinfra's list of its global arguments (``typing.
get_type_hints`` of one fixed class, recomputed at every operation and fact call) is computed once.
"""

from __future__ import annotations

import inspect

from pyinfra.api import arguments, facts, util

_installed = False


def _stack(context: int = 0) -> list[inspect.FrameInfo]:
    return inspect.stack(0)


def _getframeinfo(frame, context: int = 0) -> inspect.Traceback:
    return inspect.getframeinfo(frame, 0)


_global_arguments: list[tuple[str, type]] = []


def _all_global_arguments() -> list[tuple[str, type]]:
    if not _global_arguments:
        _global_arguments.extend(_original_all_global_arguments())
    return list(_global_arguments)  # a fresh list, as the original returns


_original_all_global_arguments = arguments.all_global_arguments


def install() -> None:
    """Swap pyinfra.api.util's stack lookups for context-free ones (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    util.stack = _stack
    util.getframeinfo = _getframeinfo
    arguments.all_global_arguments = facts.all_global_arguments = _all_global_arguments
