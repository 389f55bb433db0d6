"""The real pyinfra CLI, counting what it sends each host: ``python -m tests.support.command_count OUT.json
[--profile PROF] [--no-fact-cache] -- INVENTORY DEPLOY ARGS...``.

Every shell command, upload and download goes through pyinfra's ``Host`` (one SSH exec channel or
SFTP transfer each over SSH): counted per host, with the fact (or operation) that sent it, so a
no-op run's round trips are a number that contention on the machine does not move. OUT also gets
the controller's own CPU-seconds (this process's user + system time). ``--profile``: cProfile's
stats of the whole run, to PROF (``python -m pstats PROF``). ``--no-fact-cache``: without
deploys/core/fact_cache.py (each fact read by its own command, as before it), for comparison.
"""

from __future__ import annotations

import atexit
import collections
import json
import resource
import sys
import time


def install(out: str) -> None:
    """Patch pyinfra's Host so every command, upload and download is counted; OUT written at exit."""
    from pyinfra.api import facts
    from pyinfra.api.host import Host

    commands: collections.Counter[str] = collections.Counter()
    uploads: collections.Counter[str] = collections.Counter()
    downloads: collections.Counter[str] = collections.Counter()
    by_fact: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    current_fact: dict[int, str] = {}
    keys: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    seconds: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    run, put, get = Host.run_shell_command, Host.put_file, Host.get_file

    def run_shell_command(self, *args, **kwargs):
        commands[self.name] += 1
        source = current_fact.get(id(self), "operation")
        by_fact[self.name][source] += 1
        started = time.monotonic()
        try:
            return run(self, *args, **kwargs)
        finally:
            seconds[self.name][source] += time.monotonic() - started

    def put_file(self, *args, **kwargs):
        uploads[self.name] += 1
        return put(self, *args, **kwargs)

    def get_file(self, *args, **kwargs):
        downloads[self.name] += 1
        return get(self, *args, **kwargs)

    Host.run_shell_command, Host.put_file, Host.get_file = run_shell_command, put_file, get_file

    inner = facts._get_fact

    def _get_fact(state, host, cls, *args, **kwargs):
        current_fact[id(host)] = f"{cls.__module__}.{cls.__name__}"
        keys[host.name][f"{cls.__name__} {args[0] if args else ''} {args[1] if len(args) > 1 else ''}"] += 1
        try:
            return inner(state, host, cls, *args, **kwargs)
        finally:
            current_fact.pop(id(host), None)

    facts._get_fact = _get_fact

    def write() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result = {
            "commands": dict(commands),
            "uploads": dict(uploads),
            "downloads": dict(downloads),
            "by_fact": {name: dict(counter.most_common()) for name, counter in by_fact.items()},
            "fact_keys": {name: dict(counter.most_common()) for name, counter in keys.items()},
            "seconds_by_fact": {name: {k: round(v, 3) for k, v in counter.most_common()} for name, counter in seconds.items()},
            "controller_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        }
        with open(out, "w") as f:
            json.dump(result, f)

    atexit.register(write)


def main() -> None:
    args = sys.argv[1:]
    out = args.pop(0)
    profile = None
    if args[0] == "--profile":
        args.pop(0)
        profile = args.pop(0)
    if args[0] == "--no-fact-cache":  # the deploy as it was before deploys/core/fact_cache.py: for before/after counts
        args.pop(0)
        from deploys.core import fact_cache

        fact_cache.install = lambda state: None
    if args[0] == "--":
        args.pop(0)
    install(out)
    from pyinfra_cli.main import main as pyinfra_main

    sys.argv = ["pyinfra", *args]
    if profile is None:
        pyinfra_main()
        return
    import cProfile

    profiler = cProfile.Profile()
    atexit.register(lambda: profiler.dump_stats(profile))  # runs before the counts' writer: both land
    profiler.enable()
    pyinfra_main()


if __name__ == "__main__":
    main()
