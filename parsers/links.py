"""Link extraction: ``a``/``area`` hrefs, resolved against ``<base href>``, canonical.

Skipped: non-http(s) schemes (mailto:, javascript:, tel:, data:, ...), and with robots
obeyed, links with rel="nofollow" and every link of a page whose <meta name="robots">
says nofollow (or none).
"""

from __future__ import annotations

from urllib.parse import urljoin

from lxml import etree

from crawler.urls import BadURL, canonicalize

_HREFS = etree.XPath("//a[@href] | //area[@href]")
_BASE = etree.XPath("//base/@href", smart_strings=False)
_META_ROBOTS = etree.XPath(
    "//meta[translate(@name, 'ROBTS', 'robts')='robots']/@content", smart_strings=False
)
SKIP_PREFIXES = ("mailto:", "javascript:", "tel:", "data:", "#", "about:", "ftp:", "file:")


def meta_robots(tree) -> set[str]:
    """Directives of <meta name="robots">, lower-cased: {"noindex", "nofollow", ...}."""
    directives: set[str] = set()
    for content in _META_ROBOTS(tree):
        directives.update(d.strip().lower() for d in content.split(","))
    if "none" in directives:
        directives.update(("noindex", "nofollow"))
    return directives


def extract_links(tree, page_url: str, *, obey_nofollow: bool, limit: int) -> list[str]:
    """Distinct canonical http(s) links in document order, at most ``limit``."""
    if tree is None:
        return []
    base = page_url
    bases = _BASE(tree)
    if bases:
        try:
            base = urljoin(page_url, bases[0].strip())
        except ValueError:
            pass
    seen: set[str] = set()
    out: list[str] = []
    for el in _HREFS(tree):
        href = el.get("href").strip()
        if not href or href.lower().startswith(SKIP_PREFIXES):
            continue
        if obey_nofollow:
            rel = el.get("rel")
            if rel and "nofollow" in rel.lower().split():
                continue
        try:
            url = canonicalize(urljoin(base, href))
        except (BadURL, ValueError):
            continue
        if url not in seen:
            seen.add(url)
            out.append(url)
            if len(out) >= limit:
                break
    return out
