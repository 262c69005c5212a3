"""How a worker joins a shared crawl: its id, its shard, and the checks made first.

Nothing is changed (no key in Redis, no byte of the shard) until the worker holds its
state lock, has reached Redis, and knows that the crawl there is the one its shard
belongs to. A shard whose crawl has vanished from Redis (a Redis that came back without
its data) is refused instead of being appended to by a new crawl.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import orjson

from crawler.engine.shared.redis_frontier import WORKER_ID, RedisFrontier, connect, crawl_prefix
from crawler.engine.state import start_over
from crawler.errors import StateError, UsageError

MARKER = "shared-crawl.json"  # in the worker's state directory: which crawl its shard belongs to


def worker_id(given: str | None) -> str:
    """``--worker-id``, by default the machine's host name."""
    wid = given or socket.gethostname().split(".")[0]
    if not WORKER_ID.match(wid):
        raise UsageError(f"--worker-id {wid!r}: use letters, digits, '.', '-' and '_' (at most 64)")
    return wid


def shard_path(output: str, worker: str) -> Path:
    """``<output stem>-<worker id><suffix>``: out.jsonl -> out-w1.jsonl."""
    if "{crawl_id}" in output or "{date}" in output:
        raise UsageError("[output] path: {crawl_id} and {date} cannot be used with [state] backend = "
                         '"redis" (each worker writes one shard for the whole crawl)')
    path = Path(output)
    suffix = "".join(path.suffixes) or ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f"{stem}-{worker}{suffix}")


def crawl_name(settings, output: str) -> str:
    """``[state] redis_key``, by default the output file's stem."""
    if settings.state.redis_key:
        return settings.state.redis_key
    name = Path(output).name
    return name.split(".", 1)[0] or "crawl"


def scope_fingerprint(settings) -> str:
    """What every worker of one crawl must agree on: what is crawled, and how deep."""
    c = settings.crawl
    key = orjson.dumps([sorted(c.allowed_domains), c.allow, c.deny, c.max_depth, c.obey_robots])
    return hashlib.sha256(key).hexdigest()[:16]


def join(settings, *, output: str, worker: str, state_dir: Path, shard: Path, fresh: bool,
         also: tuple[Path, ...] = ()) -> tuple[RedisFrontier, bool]:
    """Connect, check, and open the crawl (created if it is not in Redis yet). Returns the
    frontier and whether this worker created the crawl. Call with the state lock held.
    With ``fresh``, nothing is deleted (keys, state, shard) unless every check passed:
    no live lease anywhere, and the shard not locked by a running crawl."""
    url = settings.state.redis_url
    name = crawl_name(settings, output)
    client = connect(url)
    frontier = RedisFrontier(client, url, name, worker, settings=settings)
    marker = state_dir / MARKER
    known = orjson.loads(marker.read_bytes()) if marker.exists() else None
    if known is not None and not fresh and not client.exists(frontier.meta_key):
        raise StateError(f"Redis at {url} has no crawl {crawl_prefix(name)}* although this worker's shard "
                         f"belongs to crawl {known['crawl_id']} there: did Redis lose its data (no AOF)? "
                         "Nothing was changed; use --fresh to start a new crawl")
    if fresh:
        frontier.check_idle()
        start_over(state_dir, shard, also)
        frontier.clear()
    created = frontier.open(scope_fingerprint(settings))
    marker.write_bytes(orjson.dumps({"redis_url": url, "prefix": frontier.prefix,
                                     "crawl_id": frontier.get_meta("crawl_id")}))
    return frontier, created
