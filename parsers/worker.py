"""What one parser process does with one Page: decode, extract fields and links, and
serialize the record. ``parse_page`` is a pure function of the page and the worker's
compiled state, so it is tested directly; ``main`` is the process loop around it.
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import threading
from dataclasses import dataclass

import orjson
from lxml import etree

from crawler.messages import Page, ParseResult
from crawler.procname import set_process_name
from crawler.settings import Rule
from crawler.urls import Scope
from parsers.decode import for_parser
from parsers.extract import RuleSet
from parsers.links import base_url, canonical_link, extract_links
from parsers.walk import Walker
from sinks.jsonl import encode, record_for
from sinks.warc import page_records

HTML_TYPES = ("text/html", "application/xhtml+xml")
# Results go back in batches of at most this many pages, one message each: the
# GIL-bound coordinator side pays per message, not per page (batch 4 measured the same).
RESULT_BATCH = 16
# Parser processes run this much nicer than the crawl's main process. The main process is
# the pipeline's critical path and is GIL-bound: when the OS preempts the thread that holds
# its GIL to run a parser, every fetcher waits. Parsers have pages queued and lose nothing
# by yielding; a full pool blocks the fetchers, which then leave the CPU to them. Measured
# on 2 cores: the threads engine's CPU-bound crawl 10% faster (docs/performance.md). With
# Linux's autogroup scheduling this only orders the crawl's own processes.
NICENESS = 10


@dataclass(frozen=True)
class WorkerConfig:
    """Plain data sent to each parser process; it compiles its own state from this."""

    crawl_id: str
    rules: tuple[Rule, ...]
    scope: Scope
    obey_robots: bool
    max_depth: int
    max_links: int
    recrawl: bool = False  # a later run of a scheduled crawl: set `changed`
    warc_gzip: bool = True  # [output] warc ends in .gz: each WARC record is its own gzip member


def html_parser() -> etree.HTMLParser:
    """The lxml parser every page is parsed with (``for_parser`` hands it UTF-8)."""
    return etree.HTMLParser(encoding="utf-8", recover=True, no_network=True, remove_blank_text=False,
                            huge_tree=False)


class WorkerState:
    def __init__(self, config: WorkerConfig):
        self.config = config
        self.rules = RuleSet(config.rules)
        self.scope = config.scope.compile()
        self.parser = html_parser()
        self.reported: set[str] = set()
        # One Walker per rule (and one for pages no rule matches): the page's single tree
        # walk finds its links, robots meta tags and the rule's simple field paths.
        self.walkers: dict[int, Walker] = {}

    def walker(self, rule) -> Walker:
        key = id(rule)
        walker = self.walkers.get(key)
        if walker is None:
            obey = self.config.obey_robots
            walker = self.walkers[key] = Walker(rule.paths if rule is not None and rule.func is None else [],
                                                links=True, nofollow=obey, robots=obey)
        return walker

    # Links this process already sent to the coordinator are not sent again: most links
    # on a site repeat on every page, and each one costs the coordinator (a single
    # thread) a frontier insert. The frontier still deduplicates; this cache only saves
    # work, so it may forget: it is cleared when full, which bounds its memory.
    REPORTED_MAX = 100_000

    def new_links(self, links: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The (URL, host) pairs of ``links`` in scope and not sent before."""
        allows, reported = self.scope.allows, self.reported
        out = []
        for link in links:
            url = link[0]
            if url in reported:
                continue
            if allows(url, link[1]):
                out.append(link)
            reported.add(url)
        if len(reported) > self.REPORTED_MAX:
            reported.clear()
        return out


# X-Robots-Tag directives that take a value after a colon; any other "name:" is a user agent
# the directives after it are meant for ("googlebot: noindex"), and those are not ours.
VALUED_DIRECTIVES = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})


def robots_tag_directives(value: str) -> set[str]:
    """Directives of X-Robots-Tag header values (joined with ", "), lower-cased, as the
    robots meta tags give them (``Walked.robots``): {"noindex", "nofollow", ...}; "none"
    stands for both. Those addressed to a named user agent are left out: only unaddressed
    ones apply to every crawler."""
    directives: set[str] = set()
    ours = True
    for token in value.lower().split(","):
        token = token.strip()
        name, colon, rest = token.partition(":")
        if colon and name.strip() not in VALUED_DIRECTIVES:
            ours, token = False, rest.strip()  # "agent: d1, d2": d1 and d2 are for agent
        if ours and token:
            directives.add(token)
    if "none" in directives:
        directives.update(("noindex", "nofollow"))
    return directives


def content_hash(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def is_html(page: Page) -> bool:
    if page.content_type is None:
        head = page.body[:512].lstrip().lower()
        return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head
    return page.content_type in HTML_TYPES


def parse_page(page: Page, state: WorkerState) -> ParseResult:
    """One page in, one record, its new links and (with [output] warc) its WARC records out."""
    result = _parse_page(page, state)
    if page.exchanges and not result.warc:  # error pages have theirs already
        result.warc = page_records(page, state.config.warc_gzip)
    return result


def _parse_page(page: Page, state: WorkerState) -> ParseResult:
    """One page in, one record (and its new links) out.

    On a recrawl (``config.recrawl``) a page that answered 304, or whose body hashes as
    before, is not parsed: its record repeats the data kept from the last parse, with
    ``changed: false``. Every other page of a recrawl is ``changed: true``; on a first
    crawl ``changed`` is null.
    """
    cfg = state.config
    job = page.job
    if page.error is not None:
        return error_result(page, cfg.crawl_id, cfg.warc_gzip)
    digest = content_hash(page.body) if page.body else None
    facts = dict(status=page.status, etag=page.etag or job.etag,
                 last_modified=page.last_modified or job.last_modified, final_url=page.final_url)
    if job.snapshot is not None and (page.status == 304 or (digest is not None and digest == job.content_hash)):
        # [rule, data, links(, canonical(, missing/invalid))]: older snapshots are shorter
        rule, data, links, *more = orjson.loads(job.snapshot)
        record = record_for(page, cfg.crawl_id, rule=rule, data=data, links=links, changed=False,
                            canonical=more[0] if more else None)
        problems = more[1] if len(more) > 1 else None
        return ParseResult(job.id, encode(record, problems), changed=False, content_hash=job.content_hash,
                           snapshot=job.snapshot, **facts)
    changed = True if cfg.recrawl else None
    if not is_html(page):
        return ParseResult(job.id, encode(record_for(page, cfg.crawl_id, changed=changed)), changed=changed,
                           content_hash=digest, snapshot=snapshot(None, {}, 0), **facts)
    try:
        source, text, encoding = for_parser(page.body, page.charset)
        # Not text.strip(): that copies the whole page (~30 us for 16 KB) to test for a
        # non-blank character, which isspace() finds at the first one.
        tree = etree.fromstring(source, state.parser) if text and not text.isspace() else None
        url = page.final_url or job.url
        rule = state.rules.rule_for(job.url)
        walked = state.walker(rule).walk(tree) if tree is not None else None
        directives = walked.robots if walked is not None else set()
        if cfg.obey_robots and page.robots_tag:
            directives |= robots_tag_directives(page.robots_tag)
        if "noindex" in directives:
            rule = None
        data, problems = (rule.apply(url, tree, lambda: text, walked.values if walked is not None else None)
                          if rule is not None else ({}, None))
        links: list[str] = []
        if "nofollow" not in directives:
            links = extract_links(tree, url, obey_nofollow=cfg.obey_robots, limit=cfg.max_links,
                                  encoding=encoding, walked=walked)
        found = len(links)
        if cfg.max_depth != -1 and job.depth >= cfg.max_depth:
            links = []
        else:
            links = state.new_links(links)
        rule_name = rule.name if rule else None
        canonical = (canonical_link(tree, url, base_url(walked.base, url, encoding), encoding)
                     if walked is not None else None)
        record = record_for(page, cfg.crawl_id, rule=rule_name, data=data, links=found, changed=changed,
                            canonical=canonical)
        return ParseResult(job.id, encode(record, problems), links, changed=changed, content_hash=digest,
                           snapshot=snapshot(rule_name, data, found, canonical, problems), **facts)
    except Exception as exc:  # hostile HTML or a failing user callable: one parse error record
        message = f"{type(exc).__name__}: {exc}"[:500]
        record = record_for(page, cfg.crawl_id, error=("parse", message), changed=changed)
        return ParseResult(job.id, encode(record), error_type="parse", status=page.status,
                           final_url=page.final_url)


def error_result(page: Page, crawl_id: str, warc_gzip: bool = True) -> ParseResult:
    """The record of a page that could not be fetched (it is never parsed), and the WARC
    records of the exchanges it made, if captured."""
    return ParseResult(page.job.id, encode(record_for(page, crawl_id)), error_type=page.error[0],
                       status=page.status, final_url=page.final_url,
                       warc=page_records(page, warc_gzip) if page.exchanges else b"")


def snapshot(rule: str | None, data: dict, links: int, canonical: str | None = None,
             problems: dict | None = None) -> bytes:
    """What a recrawl repeats for an unchanged page: [rule, data, links, canonical], plus the
    record's missing/invalid keys when there are any."""
    return orjson.dumps([rule, data, links, canonical, problems] if problems else [rule, data, links, canonical],
                        default=str)


def main(conn, config: WorkerConfig) -> None:
    """Process entry point. A reader thread drains the pipe into a local queue, so the
    coordinator's sends never wait for a parse to finish (and a large result being sent
    back can never deadlock against a page being sent in)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    set_process_name("crawler-parser")
    try:
        os.nice(NICENESS)
    except OSError:  # a sandbox that forbids it: run at the parent's priority
        pass
    state = WorkerState(config)
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def reader() -> None:
        try:
            while (pages := conn.recv()) is not None:  # a list of packed pages
                for packed in pages:
                    inbox.put(packed)
        except (EOFError, OSError):  # parent gone
            pass
        inbox.put(None)

    threading.Thread(target=reader, name="parser-reader", daemon=True).start()
    conn.send(("ready", None))
    while True:
        # Parse what has arrived (up to a batch) and answer in one message: fewer,
        # larger messages cost the GIL-bound coordinator side far less.
        batch = [inbox.get()]
        while len(batch) < RESULT_BATCH:
            try:
                batch.append(inbox.get_nowait())
            except queue.Empty:
                break
        stop = batch[-1] is None
        results = [parse_page(Page.unpack(p), state).pack() for p in batch if p is not None]
        try:
            if results:
                conn.send(("results", results))
        except (BrokenPipeError, EOFError, OSError):
            break
        if stop:
            break
