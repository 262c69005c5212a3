"""The crawl's child processes: how they start, and a recognisable name in ps/top.

They start from a fork server where the platform has one (Linux, macOS): one process that
imports the parser's and the writer's modules once, then forks each child with them loaded.
Spawning each child instead costs a new interpreter and those imports every time (0.2-0.35 s
of CPU per child, measured; 3 children per crawl), on the cores the crawl's own start-up
needs. ``child_context(start=True)`` starts the server at once, without waiting for it, so
that it boots while the crawl opens its state and imports its fetch engine.

Each child names itself (Linux: the main thread's comm), so that ``crawler-parser`` and
``crawler-writer`` can be told apart from each other and from unrelated Python processes;
elsewhere naming does nothing.

Written to ``/proc/self/comm`` (what prctl(PR_SET_NAME) sets), not through ctypes: finding
libc with ``ctypes.util.find_library`` runs ``ldconfig -p`` in a subprocess, a cost paid
by every child at start-up.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from multiprocessing import forkserver

COMM_MAX = 15  # bytes the kernel keeps


def set_process_name(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/comm", "wb") as comm:
            comm.write(name.encode()[:COMM_MAX])
    except OSError:
        pass


# What the fork server imports once, before it forks any child: each parser and the writer
# then start with these modules loaded instead of importing them in a new interpreter.
PRELOAD = ["parsers.worker", "sinks.writer"]


def child_context(start: bool = False):
    """The multiprocessing context for the crawl's children: forkserver where the platform
    has it, else spawn. With ``start``, the fork server is started now (if it is not running
    yet) and this returns at once: the first child's start waits for it to be ready."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    if start:
        forkserver.ensure_running()
    return ctx
