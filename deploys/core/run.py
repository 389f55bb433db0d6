"""This pyinfra run's identity on the controller: when it started and its run id.

``STAMP`` (UTC start time to the second) names the verify report directory; ``RUN_ID`` adds the
controller process id, so two runs started in the same second still differ: it names the deploy
lock's holder (deploys/deploy_lock/logic.py) and the temporary names a run uses on a host
(``current.new.<run>``, the verify report's temporary file).
"""

from __future__ import annotations

import getpass
import os
import socket
import time

STARTED = time.time()
STAMP = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(STARTED))
RUN_ID = f"{STAMP}-{os.getpid()}"
CONTROLLER = socket.gethostname()


def holder() -> str:
    """``user@controller-hostname`` of this run."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{CONTROLLER}"
