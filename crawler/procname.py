"""Give a child process a recognisable name in ps/top (Linux: prctl PR_SET_NAME).

``crawler-parser`` and ``crawler-writer`` can then be told apart from each other
and from unrelated Python processes; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_NAME = 15


def set_process_name(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass
