"""Link extraction: ``a``/``area`` hrefs, resolved as a browser does against the page's URL
or its ``<base href>``, in canonical form (``crawler.urls.resolve``).

Skipped: URLs that are not http(s) once resolved (mailto:, javascript:, tel:, data:, ...),
hrefs a browser fails to parse, fragment-only hrefs ("#top": a browser scrolls and requests
nothing), and with robots obeyed, links with rel="nofollow" and every link of a page whose
<meta name="robots"> says nofollow (or none).

Speed (link-heavy pages carry thousands of hrefs, most of them repeated): the hrefs come out
of lxml as plain strings in one XPath call, with the nofollow test inside it; each distinct
href of a page is resolved once; and ``resolve_all`` parses the base once per page and caches
results per process.
"""

from __future__ import annotations

from crawler.urls import Resolved, encode_query, resolve, resolve_all, whatwg_join

_C0_SPACE = "".join(map(chr, range(0x21)))


def meta_robots(tree) -> set[str]:
    """Directives of <meta name="robots">, lower-cased: {"noindex", "nofollow", ...}."""
    directives: set[str] = set()
    for el in tree.iter("meta"):  # a walk in C; cheaper than an XPath with translate()
        name, content = el.get("name"), el.get("content")
        if content is not None and name is not None and name.lower() == "robots":
            directives.update(d.strip().lower() for d in content.split(","))
    if "none" in directives:
        directives.update(("noindex", "nofollow"))
    return directives


def document_base(tree, page_url: str, encoding: str = "utf-8") -> str:
    """What hrefs resolve against: the first <base href>, resolved against the page's URL,
    or the page's URL if there is none or it does not parse (HTML's rule).

    ``tree.iter(tag)`` is the cheapest walk lxml has (the tag test runs in C), and a tag the
    document lacks, as "base" mostly is, costs nothing.
    """
    for el in tree.iter("base"):
        href = el.get("href")
        if href is not None:
            return whatwg_join(encode_query(href, encoding), page_url) or page_url
    return page_url


def canonical_link(tree, page_url: str, encoding: str = "utf-8") -> str | None:
    """The page's <link rel="canonical"> in <head> (where search engines read it), resolved
    like a link; None if there is none, it is not http(s), or it is the page's own URL."""
    head = tree.find("head") if tree is not None else None
    if head is None:
        return None
    for el in head.iter("link"):
        rel, href = el.get("rel"), el.get("href")
        if href is not None and rel is not None and "canonical" in rel.lower().split():
            found = resolve(href, document_base(tree, page_url, encoding), encoding)
            return found if found is not None and found != resolve(page_url) else None
    return None


def extract_links(tree, page_url: str, *, obey_nofollow: bool, limit: int,
                  encoding: str = "utf-8") -> list[Resolved]:
    """Distinct (canonical http(s) URL, host) pairs in document order, at most ``limit``.
    ``encoding`` is the page's (it decides how non-ASCII query characters are escaped)."""
    if tree is None:
        return []
    seen: set[str] = set()
    out: list[Resolved] = []
    base = document_base(tree, page_url, encoding)
    for found in resolve_all(_hrefs(tree, obey_nofollow), base, encoding):
        if found is None or found[0] in seen:
            continue
        seen.add(found[0])
        out.append(found)
        if len(out) >= limit:
            break
    return out


def _hrefs(tree, obey_nofollow: bool) -> list[str]:
    """The distinct hrefs to follow, in document order."""
    hrefs: dict[str, None] = {}
    for el in tree.iter("a", "area"):
        href = el.get("href")
        if href is None:
            continue
        if obey_nofollow:
            rel = el.get("rel")
            if rel is not None and "nofollow" in rel.lower().split():
                continue
        # Same-document references ("#top", also after leading spaces) request nothing.
        if href[:1] == "#" or (href[:1] <= " " and href.lstrip(_C0_SPACE)[:1] == "#"):
            continue
        hrefs[href] = None
    return list(hrefs)
