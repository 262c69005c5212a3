"""What one parser process does with one Page: decode, extract fields and links, and
serialize the record. ``parse_page`` is a pure function of the page and the worker's
compiled state, so it is tested directly; ``main`` is the process loop around it.
"""

from __future__ import annotations

import hashlib
import queue
import signal
import threading
from dataclasses import dataclass

from lxml import etree

from crawler.messages import Page, ParseResult
from crawler.settings import Rule
from crawler.urls import Scope
from parsers.decode import decode
from parsers.extract import RuleSet
from parsers.links import extract_links, meta_robots
from sinks.jsonl import encode, record_for

HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class WorkerConfig:
    """Plain data sent to each parser process; it compiles its own state from this."""

    crawl_id: str
    rules: tuple[Rule, ...]
    scope: Scope
    obey_robots: bool
    max_depth: int
    max_links: int


class WorkerState:
    def __init__(self, config: WorkerConfig):
        self.config = config
        self.rules = RuleSet(config.rules)
        self.scope = config.scope.compile()
        self.parser = etree.HTMLParser(encoding="utf-8", recover=True, no_network=True,
                                       remove_blank_text=False, huge_tree=False)


def content_hash(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def is_html(page: Page) -> bool:
    if page.content_type is None:
        head = page.body[:512].lstrip().lower()
        return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head
    return page.content_type in HTML_TYPES


def parse_page(page: Page, state: WorkerState) -> ParseResult:
    cfg = state.config
    job = page.job
    if page.error is not None:
        return ParseResult(job.id, encode(record_for(page, cfg.crawl_id)), error_type=page.error[0])
    digest = content_hash(page.body) if page.body else None
    if page.status == 304 or (digest is not None and digest == job.content_hash):
        record = record_for(page, cfg.crawl_id, changed=False)
        return ParseResult(job.id, encode(record), content_hash=job.content_hash, changed=False)
    changed = True if job.content_hash else None
    if not is_html(page):
        return ParseResult(job.id, encode(record_for(page, cfg.crawl_id, changed=changed)),
                           content_hash=digest, changed=changed)
    try:
        text, _ = decode(page.body, page.charset)
        tree = etree.fromstring(text.encode("utf-8"), state.parser) if text.strip() else None
        directives = meta_robots(tree) if (cfg.obey_robots and tree is not None) else set()
        url = page.final_url or job.url
        rule = None if "noindex" in directives else state.rules.rule_for(job.url)
        data = rule.apply(url, tree, lambda: text) if rule is not None else {}
        links: list[str] = []
        if "nofollow" not in directives:
            links = extract_links(tree, url, obey_nofollow=cfg.obey_robots, limit=cfg.max_links)
        found = len(links)
        if cfg.max_depth != -1 and job.depth >= cfg.max_depth:
            links = []
        else:
            allows = state.scope.allows
            links = [link for link in links if allows(link)]
        record = record_for(page, cfg.crawl_id, rule=rule.name if rule else None, data=data,
                            links=found, changed=changed)
        return ParseResult(job.id, encode(record), links, content_hash=digest, changed=changed)
    except Exception as exc:  # hostile HTML or a failing user callable: one parse error record
        message = f"{type(exc).__name__}: {exc}"[:500]
        record = record_for(page, cfg.crawl_id, error=("parse", message), changed=changed)
        return ParseResult(job.id, encode(record), error_type="parse", content_hash=digest)


def main(conn, config: WorkerConfig) -> None:
    """Process entry point. A reader thread drains the pipe into a local queue, so the
    coordinator's sends never wait for a parse to finish (and a large result being sent
    back can never deadlock against a page being sent in)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    state = WorkerState(config)
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def reader() -> None:
        try:
            while True:
                item = conn.recv()
                inbox.put(item)
                if item is None:
                    return
        except (EOFError, OSError):  # parent gone
            inbox.put(None)

    threading.Thread(target=reader, name="parser-reader", daemon=True).start()
    conn.send(("ready", None))
    while True:
        page = inbox.get()
        if page is None:
            break
        try:
            conn.send(("result", parse_page(page, state)))
        except (BrokenPipeError, EOFError, OSError):
            break
