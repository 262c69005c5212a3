"""WARC/1.1 capture: the HTTP exchanges of each fetch, as WARC records (warcio).

What one Page becomes (``page_records``), written as one unit right after the page's JSON
line is built, so that the writer commits the two together::

    warcinfo                      once per file, first: software, format, crawl id
    request  + response           per exchange: robots.txt fetched for this page, each
                                  redirect hop, the final answer (a 304 is a revisit)
    metadata                      WARC-Target-URI = the requested URL, WARC-Refers-To = the
                                  final response; fields via, depth, fetchedAt,
                                  fetchTimeMs, attempts (Heritrix's names where it has one)

Payloads are the bodies as the crawler parsed them: decompressed, so Content-Encoding and
Transfer-Encoding are dropped from the stored headers and Content-Length is the stored
length; WARC-Payload-Digest is the sha1 of exactly that body.
"""

from __future__ import annotations

from datetime import datetime, timezone

SOFTWARE_PREFIX = "crawler/"


def parse_warc_fields(data: bytes) -> dict[str, str]:
    """``application/warc-fields`` ("name: value" lines) as a dict."""
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


def warc_date_to_record(value: str | None) -> str:
    """A WARC-Date as a record's ``fetched_at`` ("2026-11-22T01:00:00.123Z")."""
    if not value:
        return "1970-01-01T00:00:00.000Z"
    when = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
