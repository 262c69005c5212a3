"""WARC records back into Pages (the fetchers' hand-off to the parser pool).

Read with FastWARC (about 6x less CPU per record than warcio, which writes them). A WARC
this crawler wrote (its ``warcinfo`` names ``software: crawler/...``) holds, per
record of the JSON lines, every HTTP exchange of that fetch (robots.txt, redirect hops,
the final answer) followed by one ``metadata`` record whose ``WARC-Target-URI`` is the URL
that was requested and whose ``WARC-Refers-To`` is the final response (or revisit). So a
Page is rebuilt exactly: the requested URL, where redirects ended, status, headers, body,
depth, referrer, fetch time, elapsed time and attempts.

Any other WARC (wget, Heritrix, browsertrix ...) gives one Page per ``response`` record,
except robots.txt: the URL is the record's target, the depth 0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterator

from fastwarc.warc import ArchiveIterator, WarcRecordType

from crawler.errors import UsageError
from crawler.fetch.policy import split_content_type
from crawler.messages import FetchJob, Page
from crawler.urls import host_of
from sinks.warc import SOFTWARE_PREFIX, parse_warc_fields, warc_date_to_record

log = logging.getLogger("crawler")


@dataclass
class _Answer:
    url: str
    status: int | None
    content_type: str | None
    charset: str | None
    body: bytes
    fetched_at: str
    etag: str | None
    last_modified: str | None
    robots_tag: str | None = None  # X-Robots-Tag: honoured by the parser as the crawl did


def _answer(record) -> _Answer | None:
    http = record.http_headers
    if http is None:
        return None
    content_type, charset = split_content_type(http.get("Content-Type"))
    body = record.reader.read()  # Content- and Transfer-Encoding decoded (auto_decode)
    return _Answer(record.headers.get("WARC-Target-URI"), http.status_code, content_type, charset, body,
                   warc_date_to_record(record.headers.get("WARC-Date")), http.get("ETag"), http.get("Last-Modified"),
                   http.get("X-Robots-Tag"))


def _page(job_id: int, url: str, answer: _Answer, meta: dict[str, str]) -> Page:
    job = FetchJob(id=job_id, url=url, host=host_of(url) or "", depth=int(meta.get("depth", 0)),
                   referrer=meta.get("via") or None)
    page = Page(job=job, fetched_at=meta.get("fetchedAt", answer.fetched_at), final_url=answer.url,
                status=answer.status, content_type=answer.content_type, charset=answer.charset,
                body=answer.body, elapsed_ms=float(meta.get("fetchTimeMs", 0.0)), robots_tag=answer.robots_tag,
                attempts=int(meta.get("attempts", 1)), etag=answer.etag, last_modified=answer.last_modified)
    # As the fetch recorded it (crawler.fetch.policy.FetchPolicy.page): a page with an error
    # has no body to parse, nor has one whose fetch ended at a redirect to a known URL.
    if meta.get("errorType"):
        page.error, page.body = (meta["errorType"], meta.get("errorMessage", "")), b""
    elif answer.status is not None and answer.status >= 400 and not meta:
        page.error, page.body = ("http", f"HTTP {answer.status}"), b""
    if meta.get("finalURI") and meta["finalURI"] != answer.url:
        page.final_url, page.body, page.content_type, page.charset = meta["finalURI"], b"", None, None
    return page


# Requests are skipped unparsed: a page is rebuilt from its answer and its metadata.
_TYPES = WarcRecordType.warcinfo | WarcRecordType.response | WarcRecordType.revisit | WarcRecordType.metadata
_ANSWERS = (WarcRecordType.response, WarcRecordType.revisit)


def _is_robots(url: str) -> bool:
    return url.split("?", 1)[0].endswith("/robots.txt")


def read_pages(paths: list[str], counts: dict[str, int] | None = None) -> Iterator[Page]:
    """Every page in ``paths``, in file order. ``counts["records"]`` counts WARC records read."""
    counts = counts if counts is not None else {}
    counts.setdefault("records", 0)
    job_id = 0
    for path in paths:
        ours = False
        answers: dict[str, _Answer] = {}  # this page's exchanges, until its metadata record
        try:
            for record in ArchiveIterator(path, record_types=_TYPES, parse_http=True, auto_decode="all",
                                          fsspec_args=False):
                counts["records"] += 1
                kind = record.record_type
                if kind == WarcRecordType.warcinfo:
                    fields = parse_warc_fields(record.reader.read())
                    ours = ours or fields.get("software", "").startswith(SOFTWARE_PREFIX)
                elif kind in _ANSWERS:
                    answer = _answer(record)
                    if answer is None:
                        continue
                    if ours:
                        answers[record.record_id] = answer
                    elif kind == WarcRecordType.response and not _is_robots(answer.url):
                        job_id += 1
                        yield _page(job_id, answer.url, answer, {})
                elif kind == WarcRecordType.metadata and ours:
                    meta = parse_warc_fields(record.reader.read())
                    answer = answers.get(record.headers.get("WARC-Refers-To"))
                    answers.clear()
                    if answer is not None:
                        job_id += 1
                        yield _page(job_id, record.headers.get("WARC-Target-URI"), answer, meta)
        except OSError as exc:  # unreadable, or not a WARC after all (fastwarc says which)
            raise UsageError(f"{path}: not a readable WARC file: {exc}") from None


_MAGIC = (b"WARC/", b"\x1f\x8b")  # WARC, gzipped WARC


def check_paths(paths: list[str]) -> None:
    """Name a missing or unreadable WARC before anything starts (exit 2)."""
    if not paths:
        raise UsageError("extract: give one or more WARC files")
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError(f"{path}: WARC file not found")
        try:
            with open(path, "rb") as f:
                head = f.read(11)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the WARC file: {exc.strerror}") from None
        if not head.startswith(_MAGIC):
            raise UsageError(f"{path}: not a readable WARC file (it starts with neither WARC/ nor gzip)")
