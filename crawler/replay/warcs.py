"""WARC records back into Pages (the fetchers' hand-off to the parser pool).

A WARC this crawler wrote (its ``warcinfo`` names ``software: crawler/...``) holds, per
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

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

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


def _answer(record) -> _Answer | None:
    http = record.http_headers
    if http is None:
        return None
    try:
        status = int(http.get_statuscode())
    except (TypeError, ValueError):
        status = None
    content_type, charset = split_content_type(http.get_header("Content-Type"))
    body = record.content_stream().read()
    return _Answer(record.rec_headers.get_header("WARC-Target-URI"), status, content_type, charset, body,
                   warc_date_to_record(record.rec_headers.get_header("WARC-Date")),
                   http.get_header("ETag"), http.get_header("Last-Modified"))


def _page(job_id: int, url: str, answer: _Answer, meta: dict[str, str]) -> Page:
    job = FetchJob(id=job_id, url=url, host=host_of(url) or "", depth=int(meta.get("depth", 0)),
                   referrer=meta.get("via") or None)
    page = Page(job=job, fetched_at=meta.get("fetchedAt", answer.fetched_at), final_url=answer.url,
                status=answer.status, content_type=answer.content_type, charset=answer.charset,
                body=answer.body, elapsed_ms=float(meta.get("fetchTimeMs", 0.0)),
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
            with open(path, "rb") as f:
                for record in ArchiveIterator(f):
                    counts["records"] += 1
                    kind = record.rec_type
                    if kind == "warcinfo":
                        fields = parse_warc_fields(record.content_stream().read())
                        ours = ours or fields.get("software", "").startswith(SOFTWARE_PREFIX)
                    elif kind in ("response", "revisit"):
                        answer = _answer(record)
                        if answer is None:
                            continue
                        if ours:
                            answers[record.rec_headers.get_header("WARC-Record-ID")] = answer
                        elif kind == "response" and not _is_robots(answer.url):
                            job_id += 1
                            yield _page(job_id, answer.url, answer, {})
                    elif kind == "metadata" and ours:
                        refers = record.rec_headers.get_header("WARC-Refers-To")
                        meta = parse_warc_fields(record.content_stream().read())
                        answer = answers.get(refers)
                        answers.clear()
                        if answer is not None:
                            job_id += 1
                            yield _page(job_id, record.rec_headers.get_header("WARC-Target-URI"), answer, meta)
        except FileNotFoundError:
            raise UsageError(f"{path}: WARC file not found") from None
        except IsADirectoryError:
            raise UsageError(f"{path}: is a directory, not a WARC file") from None
        except ArchiveLoadFailed as exc:
            raise UsageError(f"{path}: not a readable WARC file: {exc.msg}") from None


_MAGIC = (b"WARC/", b"\x1f\x8b", b"filedesc://")  # WARC, gzipped WARC, ARC (warcio reads all three)


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
