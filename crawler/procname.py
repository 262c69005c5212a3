"""Give a child process a recognisable name in ps/top (Linux: the main thread's comm).

``crawler-parser`` and ``crawler-writer`` can then be told apart from each other
and from unrelated Python processes; elsewhere this does nothing.

Written to ``/proc/self/comm`` (what prctl(PR_SET_NAME) sets), not through ctypes: finding
libc with ``ctypes.util.find_library`` runs ``ldconfig -p`` in a subprocess, a cost paid
by every child at start-up.
"""

from __future__ import annotations

import sys

COMM_MAX = 15  # bytes the kernel keeps


def set_process_name(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/comm", "wb") as comm:
            comm.write(name.encode()[:COMM_MAX])
    except OSError:
        pass
