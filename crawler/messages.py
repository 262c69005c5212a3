"""One small, picklable type per hop of the pipeline (see the picture in crawler/__init__.py).

Only these cross a thread or process boundary. They hold plain data: no sessions, locks
or compiled rules, which every process builds for itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


def utc_now_iso() -> str:
    """The record timestamp format: UTC, milliseconds, a Z suffix."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class FetchJob:
    """Frontier -> scheduler -> fetcher: one URL to fetch."""

    id: int
    url: str  # canonical
    host: str  # politeness key: the lower-cased host name, port ignored
    depth: int
    referrer: str | None = None
    # What an earlier run learned about this URL: validators for a conditional request,
    # and the last extracted [rule, data, links] to record again if it is unchanged.
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    snapshot: bytes | None = None


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
    # [added] Only with [output] warc: every HTTP exchange of this fetch, robots.txt and
    # redirect hops included, as crawler.fetch.capture.Exchange tuples (plain data).
    exchanges: list[tuple] | None = None
    # [added] The response's X-Robots-Tag header(s), joined with ", " (None if absent):
    # honoured like <meta name="robots"> when obey_robots is on (parsers/worker.py).
    robots_tag: str | None = None

    # Pages cross a pipe as plain tuples: pickling a dataclass costs ~4x more, because
    # pickle looks its class up by name every time, and this happens once per page.
    def pack(self) -> tuple:
        j = self.job
        return ((j.id, j.url, j.host, j.depth, j.referrer, j.etag, j.last_modified, j.content_hash,
                 j.snapshot),
                self.fetched_at, self.final_url, self.status, self.content_type, self.charset,
                self.body, self.elapsed_ms, self.attempts, self.error, self.etag, self.last_modified,
                self.exchanges, self.robots_tag)

    @staticmethod
    def unpack(t: tuple) -> "Page":
        return Page(FetchJob(*t[0]), *t[1:])


@dataclass(slots=True)
class ParseResult:
    """Parser pool (or a fetcher, for pages with an error) -> coordinator."""

    job_id: int
    line: bytes  # the record, serialized, ending in b"\n"
    links: list[tuple[str, str]] = field(default_factory=list)  # (canonical URL, host), in scope
    error_type: str | None = None
    content_hash: str | None = None
    changed: bool | None = None
    # What the frontier keeps for the next run (see FetchJob).
    status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    snapshot: bytes | None = None
    final_url: str | None = None  # where redirects ended: that URL is covered by this record
    warc: bytes = b""  # [added] the page's WARC records (sinks/warc.py), with [output] warc

    def pack(self) -> tuple:
        return (self.job_id, self.line, self.links, self.error_type, self.content_hash, self.changed,
                self.status, self.etag, self.last_modified, self.snapshot, self.final_url, self.warc)

    @staticmethod
    def unpack(t: tuple) -> "ParseResult":
        return ParseResult(*t)


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
    canonical: str | None = None  # [added] the page's <link rel="canonical">, if another URL
