"""Sitemaps (sitemaps.org): more start URLs, found through robots.txt.

For each seed origin, the sitemaps its robots.txt names (``Sitemap:`` lines), or
``/sitemap.xml`` if it names none, are fetched and read:

- ``<urlset>``: every ``<url><loc>`` is a URL to crawl;
- ``<sitemapindex>``: every ``<sitemap><loc>`` is another sitemap, read in turn
  (breadth first, each file once, at most ``MAX_INDEX_DEPTH`` levels down);
- a gzip file (``.xml.gz``) is inflated, at most ``max_bytes`` of it;
- a plain-text sitemap is one URL per line.

What comes out is canonical and in scope, each URL once, at most ``limit`` of them.
The XML parser resolves no entities and loads nothing from the network, so a
hostile sitemap cannot read local files or expand an entity bomb; one that cannot
be parsed yields what was read before the error.

Sitemap URLs are start URLs, not seeds: they do not widen the scope and the SSRF
guard does not trust their hosts. The fetch function is the caller's: ``polite_fetch``
runs the fetch policy's ``sitemap`` steps on the crawl's transport, so sitemap requests
take their host's turns, obey robots.txt and the scope on every redirect hop, and go
through the guard, the deadline and max_bytes, as pages do.
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import Callable, Iterable, Iterator

from lxml import etree

from crawler.urls import BadURL, canonicalize, resolve

MAX_INDEX_DEPTH = 3  # an index of indexes of indexes: deeper is not worth following
MAX_FILES = 1000  # sitemap files read per crawl, at most
_GZIP_MAGIC = b"\x1f\x8b"


def inflate(body: bytes, max_bytes: int) -> bytes:
    """``body`` itself, or inflated (at most ``max_bytes``) if it is gzip."""
    if not body.startswith(_GZIP_MAGIC):
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return inflater.decompress(body, max_bytes)
    except zlib.error:
        return b""


def parse(body: bytes) -> tuple[str, list[str]]:
    """("urlset" | "sitemapindex" | "text", locs) of one sitemap file (already inflated)."""
    head = body[:512].lstrip()
    if not head.startswith(b"<"):
        lines = (line.strip() for line in body.decode("utf-8", "replace").splitlines())
        return "text", [line for line in lines if line.startswith(("http://", "https://"))]
    kind = "urlset"
    locs: list[str] = []
    parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False, no_network=True,
                                 huge_tree=False, recover=True)
    try:
        parser.feed(body)
        parser.close()
    except etree.LxmlError:
        pass  # keep what was read up to the error
    try:
        for event, element in parser.read_events():
            name = etree.QName(element).localname if isinstance(element.tag, str) else ""
            if event == "start":
                if name == "sitemapindex":
                    kind = "sitemapindex"
                continue
            if name == "loc" and element.text:
                locs.append(element.text.strip())
            element.clear()
    except etree.LxmlError:
        pass
    return kind, locs


def discover(origins: Iterable[str], fetch: Callable[[str], bytes | None],
             robots_sitemaps: Callable[[str], Iterable[str]], allows: Callable[[str], bool], *,
             limit: int, max_bytes: int, max_files: int = MAX_FILES) -> Iterator[str]:
    """Canonical, in-scope URLs from the sitemaps of ``origins`` ("http://host:port").

    ``fetch(url)`` returns a sitemap's body, or None if it could not be had;
    ``robots_sitemaps(origin)`` the ``Sitemap:`` URLs of the origin's robots.txt;
    ``allows(url)`` the crawl's scope, for page URLs and for sitemap files alike.
    """
    queue: deque[tuple[str, int]] = deque()
    files: set[str] = set()

    def enqueue(url: str, base: str, depth: int) -> None:
        try:
            url = canonicalize(url, base)
        except (BadURL, ValueError):
            return
        if url not in files and len(files) < max_files and depth <= MAX_INDEX_DEPTH:
            files.add(url)
            queue.append((url, depth))

    for origin in dict.fromkeys(origins):
        named = list(robots_sitemaps(origin))
        for url in named or [origin + "/sitemap.xml"]:
            enqueue(url, origin + "/", 0)
    seen: set[int] = set()  # hashes: a million URLs cost ~60 MB as str, ~30 MB as this
    while queue and len(seen) < limit:
        url, depth = queue.popleft()
        body = fetch(url)
        if not body:
            continue
        kind, locs = parse(inflate(body, max_bytes))
        for loc in locs:
            if kind == "sitemapindex":
                target = resolve(loc, url)
                if target and allows(target):
                    enqueue(target, url, depth + 1)
                continue
            page = resolve(loc, url)
            if page and hash(page) not in seen and allows(page):
                seen.add(hash(page))
                yield page
                if len(seen) >= limit:
                    return


def polite_fetch(transport, *, max_bytes: int) -> Callable[[str], bytes | None]:
    """A ``fetch`` for ``discover`` over either engine: ``FetchPolicy.sitemap`` steps (each
    request takes a slot and a turn of its host, robots.txt and the scope are checked on
    every redirect hop) performed by ``transport`` (guard, deadline, max_bytes)."""
    return lambda url: transport.call(transport.policy.sitemap(url, max_bytes))
