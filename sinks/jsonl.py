"""The JSON-lines record format (DESIGN §3): building a Record and encoding it.

orjson serializes the Record dataclass directly, in field order; every line ends in
b"\\n" and holds exactly one JSON object.
"""

from __future__ import annotations

import orjson

from crawler.messages import Page, Record


def record_for(page: Page, crawl_id: str, *, rule: str | None = None, data: dict | None = None,
               links: int = 0, changed: bool | None = None,
               error: tuple[str, str] | None = None, canonical: str | None = None) -> Record:
    job = page.job
    err = error or page.error
    return Record(
        url=job.url,
        final_url=page.final_url,
        status=page.status,
        fetched_at=page.fetched_at,
        depth=job.depth,
        referrer=job.referrer,
        content_type=page.content_type,
        bytes=len(page.body),
        elapsed_ms=page.elapsed_ms,
        attempts=page.attempts,
        crawl_id=crawl_id,
        rule=rule,
        data=data if data is not None else {},
        links=links,
        changed=changed,
        error={"type": err[0], "message": err[1]} if err else None,
        canonical=canonical,
    )


def _default(obj):
    # User callables may return sets, tuples of odd things, bytes...: never crash the line.
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


def encode(record: Record, extra: dict | None = None) -> bytes:
    """One JSON line. ``extra`` holds keys that only some records carry (``missing`` and
    ``invalid``, DESIGN §3); they follow the record's own keys."""
    if extra:
        obj = {key: getattr(record, key) for key in Record.__slots__} | extra
        return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    return orjson.dumps(record, default=_default, option=orjson.OPT_NON_STR_KEYS) + b"\n"
