"""The Python API. The CLI is a thin layer over these functions.

>>> from crawler.api import crawl
>>> result = crawl(["http://127.0.0.1:8000/"], output="out.jsonl", max_pages=100, per_host_delay=0)
>>> result.pages, result.errors

Keyword overrides use the settings key names (they are unique across sections:
``max_pages``, ``concurrency``, ``per_host_delay``, ``rules``...). They win over the
settings file, which wins over the packaged defaults.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterable

from crawler.errors import UsageError
from crawler.engine.crawl import Crawl, CrawlResult
from crawler.engine.progress import Progress, wants_progress
from crawler.engine.seeds import read_seeds, require_seeds
from crawler.replay.extract import ExtractResult
from crawler.settings import Settings, key_section, load_settings


def resolve_settings(settings: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Flat keyword overrides -> a validated Settings (UsageError names a bad key)."""
    dotted: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        section = key.partition(".")[0] if "." in key else key_section(key)
        if section is None:
            raise UsageError(f"unknown setting {key!r}")
        dotted[key if "." in key else f"{section}.{key}"] = value
    return load_settings(settings, dotted)


def crawl(seeds: Iterable[str] = (), *, seeds_files: Iterable[str] | str = (), settings: str | os.PathLike | None = None,
          output: str | os.PathLike | None = None, state: str | os.PathLike | None = None,
          fresh: bool = False, recrawl: bool = False, progress: bool = False,
          handle_signals: bool | None = None, worker_id: str | None = None,
          **overrides: Any) -> CrawlResult:
    """Run one crawl to the end (or until interrupted) and return its summary.

    An interrupted crawl is resumed. With ``recrawl``, a crawl that had finished starts a
    new incremental run over every URL it knows (what ``crawler schedule`` does each time).
    With ``[state] backend = "redis"`` this process is one worker (``worker_id``, by default
    the host name) of the crawl shared in Redis, writing its own shard of the output.
    """
    conf = resolve_settings(settings, overrides)
    files = [seeds_files] if isinstance(seeds_files, (str, os.PathLike)) else list(seeds_files)
    seed_list = read_seeds(list(seeds), [str(f) for f in files], conf.crawl.seeds)
    urls = require_seeds(seed_list)
    out = output or conf.output.path
    job = Crawl(conf, urls, output=out, state_dir=state, fresh=fresh, new_run=recrawl, worker_id=worker_id)
    if handle_signals is None:
        handle_signals = threading.current_thread() is threading.main_thread()
    with contextlib.ExitStack() as stack:
        if handle_signals:
            stack.enter_context(_stop_on_signals(job))
        if progress:
            job.progress = stack.enter_context(Progress())
        return job.run()


DEFAULT_EXTRACT_OUTPUT = "extract.jsonl"


def extract(warcs: Iterable[str | os.PathLike], *, settings: str | os.PathLike | None = None,
            output: str | os.PathLike | None = None, progress: bool = False, **overrides: Any) -> ExtractResult:
    """Re-run the current ``[[parse.rules]]`` over WARC files, offline, into ``output``
    (default ``extract.jsonl``, rewritten from the start): the same parser processes, writer
    and record format as a crawl, and no network."""
    from crawler.replay.extract import run_extract

    conf = resolve_settings(settings, overrides)
    out = str(output or DEFAULT_EXTRACT_OUTPUT)
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(Progress()) if progress else None
        return run_extract(conf, [str(w) for w in warcs], out, bar)


@contextlib.contextmanager
def _stop_on_signals(job: Crawl):
    """First SIGINT/SIGTERM: drain and save. Second: exit at once (still resumable)."""
    hits = {"n": 0}

    def handler(signum, frame):
        hits["n"] += 1
        if hits["n"] == 1:
            job.request_stop("interrupted")
        else:
            os._exit(130)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = ["crawl", "extract", "resolve_settings", "CrawlResult", "ExtractResult", "wants_progress"]
