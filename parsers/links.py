"""Link extraction: ``a``/``area`` hrefs, resolved as a browser does against the page's URL
or its ``<base href>``, in canonical form (``crawler.urls.resolve``).

Skipped: URLs that are not http(s) once resolved (mailto:, javascript:, tel:, data:, ...),
hrefs a browser fails to parse, fragment-only hrefs ("#top": a browser scrolls and requests
nothing), and with robots obeyed, links with rel="nofollow" and every link of a page whose
<meta name="robots"> says nofollow (or none).

Speed (link-heavy pages carry thousands of hrefs, most of them repeated): the hrefs come out
of the page's one tree walk (``parsers.walk.Walker``, shared with the robots meta tags and
the rule's simple field paths); each distinct href of a page is resolved once; and
``resolve_all`` parses the base once per page and caches results per process.
"""

from __future__ import annotations

from crawler.urls import Resolved, encode_query, resolve, resolve_all, whatwg_join
from parsers.walk import Walked, Walker


def base_url(href: str | None, page_url: str, encoding: str = "utf-8") -> str:
    """What hrefs resolve against, given the first <base href> (None if the page has none):
    that href resolved against the page's URL, or the page's URL if it does not parse
    (HTML's rule)."""
    if href is None:
        return page_url
    return whatwg_join(encode_query(href, encoding), page_url) or page_url


def canonical_link(tree, page_url: str, base: str, encoding: str = "utf-8") -> str | None:
    """The page's <link rel="canonical"> in <head> (where search engines read it), resolved
    like a link against ``base`` (``base_url`` of the page); None if there is none, it is
    not http(s), or it is the page's own URL."""
    head = tree.find("head") if tree is not None else None
    if head is None:
        return None
    for el in head.iter("link"):
        rel, href = el.get("rel"), el.get("href")
        if href is not None and rel is not None and "canonical" in rel.lower().split():
            found = resolve(href, base, encoding)
            return found if found is not None and found != resolve(page_url) else None
    return None


def extract_links(tree, page_url: str, *, obey_nofollow: bool, limit: int,
                  encoding: str = "utf-8", walked: Walked | None = None) -> list[Resolved]:
    """Distinct (canonical http(s) URL, host) pairs in document order, at most ``limit``.
    ``encoding`` is the page's (it decides how non-ASCII query characters are escaped).
    ``walked``: what a ``Walker`` with ``links`` (and the same ``nofollow``) found in
    ``tree``, if the caller walked it already."""
    if tree is None:
        return []
    if walked is None:
        walked = Walker([], links=True, nofollow=obey_nofollow, robots=False).walk(tree)
    seen: set[str] = set()
    out: list[Resolved] = []
    for found in resolve_all(walked.hrefs, base_url(walked.base, page_url, encoding), encoding):
        if found is None or found[0] in seen:
            continue
        seen.add(found[0])
        out.append(found)
        if len(out) >= limit:
            break
    return out
