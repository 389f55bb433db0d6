"""HAProxy on the front door, read and steered through its runtime API (the admin socket, with socat).

:class:`HaproxyServers` reads one backend's servers (``show servers state`` for the operational and
administrative states, ``show stat`` for the sessions in flight); the command builders give the
shell lines the front-door step and the rollout run on that host: ``set server BACKEND/NAME state
drain|ready|maint``, and a bounded wait until a drained server has no session left. The parsers are
pure (tests/facts/fixtures/haproxy.*/ holds real HAProxy 2.6 output).

The runtime API answers errors on stdout with exit status 0 (``No such server.``), so a command
that changes state checks that the answer is empty.
"""

from __future__ import annotations

from typing import TypedDict

from pyinfra.api import FactBase

from facts._shell import quote, when_present

# How long socat waits for HAProxy's answer after sending the command line (seconds).
_SOCAT_TIMEOUT_S = 5
# ``show stat`` object type: servers only (1 frontends, 2 backends, 4 servers); sid -1: all of them.
_STAT_SERVERS = "4 -1"

# ``show servers state``: srv_op_state (HAProxy's enum srv_state).
OPERATIONAL_STATES = {0: "down", 1: "starting", 2: "up", 3: "stopping"}
# srv_admin_state bits (enum srv_admin): forced/inherited/config/resolution/hostname maintenance, drain.
_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_ADMIN_DRAIN = 0x08 | 0x10
# What ``set server BACKEND/NAME state STATE`` accepts.
ADMIN_STATES = ("ready", "drain", "maint")


class HaproxyServer(TypedDict):
    name: str
    address: str
    port: int
    operational_state: str  # up, down, starting, stopping (health checks' verdict)
    admin_state: str  # ready, drain, maint (what the runtime API set)
    current_sessions: int  # requests in flight on that server (show stat scur)


def runtime_command(socket: str, line: str) -> str:
    """The shell command sending one runtime API ``line`` (``cmd1; cmd2`` runs both) to ``socket``."""
    return f"echo {quote(line)} | socat -t {_SOCAT_TIMEOUT_S} stdio unix-connect:{quote(socket)}"


def set_server_state_command(socket: str, backend: str, server: str, state: str) -> str:
    """``set server BACKEND/SERVER state STATE`` (a subshell): exits 1, HAProxy's answer on stderr, if refused."""
    if state not in ADMIN_STATES:
        raise ValueError(f"server state {state!r}: allowed {', '.join(ADMIN_STATES)}")
    answer = runtime_command(socket, f"set server {backend}/{server} state {state}")
    return f'(out=$({answer}) || exit 1; [ -z "$out" ] || {{ echo "haproxy: $out" >&2; exit 1; }})'


def wait_idle_command(socket: str, backend: str, server: str, timeout_s: int) -> str:
    """A subshell polling ``show stat`` each second until BACKEND/SERVER has no session in flight (exit 0);
    after ``timeout_s`` seconds it exits 1, naming how many are left. The scur column is found by name."""
    stat = runtime_command(socket, f"show stat {backend} {_STAT_SERVERS}")
    # The header is "# pxname,svname,qcur,qmax,scur,...": awk finds scur's column, prints SERVER's value.
    program = 'NR==1{for(i=1;i<=NF;i++) if($i=="scur") c=i} c && $2==s{print $c}'
    scur = f"awk -F, -v s={quote(server)} {quote(program)}"
    left = f'echo "{backend}/{server}: ${{n:-no such server, no}} sessions left after {int(timeout_s)}s" >&2'
    return f'(i=0; while :; do n=$({stat} | {scur}); [ "$n" = 0 ] && exit 0; [ "$i" -ge {int(timeout_s)} ] && {{ {left}; exit 1; }}; i=$((i+1)); sleep 1; done)'


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def parse_stat_csv(output: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    """``show stat`` CSV lines: ``{(pxname, svname): {column: value}}``, columns named by the header.

    Other lines (another command's output, blank lines, ``No such proxy.``) are ignored."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    header: list[str] | None = None
    for line in output:
        if line.startswith("# pxname,"):
            header = line[2:].split(",")
        elif not line.strip():
            header = None  # the runtime API ends each command's answer with an empty line
        elif header and "," in line:
            values = line.split(",")
            rows[(values[0], values[1])] = dict(zip(header, values, strict=False))
    return rows


def current_sessions(output: list[str], backend: str, server: str) -> int | None:
    """Sessions in flight on ``backend/server`` from ``show stat`` output; None when it is not there."""
    row = parse_stat_csv(output).get((backend, server))
    if row is None or not _is_int(row.get("scur", "")):
        return None
    return int(row["scur"])


def admin_state(bits: int) -> str:
    """srv_admin_state as one word: maint wins over drain; ready when neither bit is set."""
    if bits & _ADMIN_MAINT:
        return "maint"
    if bits & _ADMIN_DRAIN:
        return "drain"
    return "ready"


def parse_servers_state(output: list[str], backend: str | None = None) -> list[HaproxyServer]:
    """``show servers state [BACKEND]`` (and ``show stat`` in the same output, for the sessions): the
    servers of ``backend`` (None: of every backend listed) in config order. Columns are found by the
    header's names (``# be_id be_name ...``)."""
    sessions = parse_stat_csv(output)
    servers: list[HaproxyServer] = []
    header: list[str] | None = None
    for line in output:
        if line.startswith("# be_id "):
            header = line[2:].split()
            continue
        fields = line.split()
        if not fields:
            header = None
        if header is None or len(fields) < len(header) or line.startswith("#"):
            continue
        row = dict(zip(header, fields, strict=False))
        if backend is not None and row.get("be_name") != backend:
            continue
        if not (_is_int(row.get("srv_op_state", "")) and _is_int(row.get("srv_admin_state", ""))):
            continue
        stat = sessions.get((row["be_name"], row["srv_name"]), {})
        port = row.get("srv_port", "")
        scur = stat.get("scur", "")
        servers.append(
            {
                "name": row["srv_name"],
                "address": row.get("srv_addr", ""),
                "port": int(port) if _is_int(port) else 0,
                "operational_state": OPERATIONAL_STATES.get(int(row["srv_op_state"]), "unknown"),
                "admin_state": admin_state(int(row["srv_admin_state"])),
                "current_sessions": int(scur) if _is_int(scur) else 0,
            }
        )
    return servers


class HaproxyServers(FactBase[list[HaproxyServer]]):
    """
    The servers of HAProxy backend ``backend`` through the admin ``socket`` (deploys/core/paths.py
    HAPROXY_ADMIN_SOCKET): ``[{"name", "address", "port", "operational_state", "admin_state",
    "current_sessions"}]`` in config order; ``operational_state`` is the health checks' verdict
    (up, down, starting, stopping), ``admin_state`` the runtime API's (ready, drain, maint).
    Empty when socat or the socket is missing, or there is no such backend.
    """

    def command(self, socket: str, backend: str) -> str:
        line = f"show servers state {backend}; show stat {backend} {_STAT_SERVERS}"
        return when_present("socat", f"[ -S {quote(socket)} ] && {runtime_command(socket, line)} || true")

    @staticmethod
    def default() -> list[HaproxyServer]:
        return []

    def process(self, output: list[str]) -> list[HaproxyServer]:
        # The command asked for one backend, so every server row listed is one of its servers.
        return parse_servers_state(output)
