"""One small, picklable type per hop of the pipeline (see the picture in crawler/__init__.py).

Only these cross a thread or process boundary. They hold plain data: no sessions, locks
or compiled rules, which every process builds for itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class FetchJob:
    """Frontier -> scheduler -> fetcher: one URL to fetch."""

    id: int
    url: str  # canonical
    host: str  # politeness key: the lower-cased host name, port ignored
    depth: int
    referrer: str | None = None
    # What an earlier run learned about this URL, for conditional requests.
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None


@dataclass(slots=True)
class Page:
    """Fetcher -> parser pool: what the server answered (or why it did not)."""

    job: FetchJob
    fetched_at: str
    final_url: str | None = None
    status: int | None = None
    content_type: str | None = None
    charset: str | None = None  # from the Content-Type header, if any
    body: bytes = b""
    elapsed_ms: float = 0.0
    attempts: int = 1
    error: tuple[str, str] | None = None  # (type, message), see crawler.errors.ERROR_TYPES
    etag: str | None = None
    last_modified: str | None = None


@dataclass(slots=True)
class ParseResult:
    """Parser pool (or a fetcher, for pages with an error) -> coordinator."""

    job_id: int
    line: bytes  # the record, serialized, ending in b"\n"
    links: list[str] = field(default_factory=list)  # canonical and in scope
    error_type: str | None = None
    content_hash: str | None = None
    changed: bool | None = None


@dataclass(slots=True)
class Record:
    """One line of output. Field order is the order in the file (DESIGN §3)."""

    url: str
    final_url: str | None
    status: int | None
    fetched_at: str
    depth: int
    referrer: str | None
    content_type: str | None
    bytes: int
    elapsed_ms: float
    attempts: int
    crawl_id: str
    rule: str | None
    data: dict
    links: int
    changed: bool | None
    error: dict | None
