"""URL resolution, canonicalization and crawl scope.

One URL has one form everywhere (frontier key, record ``url``, scope checks), and it is made
by one function, ``resolve(href, base)``:

1. **Resolution as a browser does it**: ``href`` is parsed against ``base`` by the WHATWG URL
   Standard, with ada (the ``ada-url`` package), the parser Node.js uses. Leading and
   trailing C0 controls and spaces are stripped, tabs and newlines removed, backslashes are
   slashes, ``https:x`` on an http page is absolute, hosts are IDNA-mapped and checked, and
   what a browser cannot parse gives None.
2. **Canonical form for dedup** on top of the browser's URL: only http(s) URLs are kept;
   w3lib's ``canonicalize_url`` then normalises percent-encoding (case, needless escapes) and
   sorts query arguments, and the fragment is dropped. Scheme and host are already
   lower-case, the default port dropped and dot-segments resolved by step 1.

The canonical form is a fixed point: ``resolve(u) == u`` for every canonical ``u``.

Speed: a crawl resolves the same hrefs from the same directories over and over, so results
are cached per process, twice: by (base directory, href) for hrefs whose result depends on
the base only through its directory, and by the browser's absolute URL before step 2. Both
caches are bounded (cleared when full). ``resolve_all`` resolves a page's hrefs with the base
parsed once.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from functools import partial
from typing import Iterable, Iterator
from urllib.parse import urlsplit

from ada_url import join_url, normalize_url
from w3lib.url import canonicalize_url

FOLLOWED_SCHEMES = ("http", "https")
CACHE_MAX = 50_000  # entries per cache: at most about 40 MB per process, then cleared
CACHED_LENGTH = 4096  # longer hrefs and URLs (data: URIs, say) are resolved, never kept
_UTF = ("utf-8", "utf-16", "utf-16-le", "utf-16-be")  # pages whose URLs are UTF-8
_C0_SPACE = "".join(map(chr, range(0x21)))  # what the URL parser strips from both ends


# The browser's URLs that w3lib leaves as they are (most links of most sites): a plain host
# and port, a path of characters w3lib never escapes or unescapes, no query. Checked against
# w3lib by tests/test_urls.py; it only saves time.
_ALREADY_CANONICAL = re.compile(r"https?://[a-z0-9.-]+(?::[0-9]+)?/[A-Za-z0-9!$&'()*+,\-./:;=@_~]*").fullmatch


class BadURL(ValueError):
    pass


Resolved = tuple[str, str]  # (canonical URL, host): the host is the politeness key
_by_dir: dict[tuple[str, str], Resolved | None] = {}
_by_absolute: dict[str, Resolved | None] = {}


def resolve(href: str, base: str | None = None, encoding: str = "utf-8") -> str | None:
    """The canonical form of the URL a browser gets from ``href`` on a page at ``base``
    whose character encoding is ``encoding`` (a Python codec name; it only matters for
    non-ASCII characters in a query, see ``encode_query``).

    None when a browser fails to parse it (or the base, when one is needed) or when the
    result is not http(s). Without ``base``, ``href`` must be absolute.
    """
    for found in resolve_all((href,), base, encoding):
        return found[0] if found is not None else None
    return None


def canonicalize(url: str, base: str | None = None) -> str:
    """``resolve(url, base)``, raising ``BadURL`` (with the reason) instead of giving None."""
    found = resolve(url, base)
    if found is None:
        raise BadURL(_why_not(url, base))
    return found


def resolve_all(hrefs: Iterable[str], base: str | None, encoding: str = "utf-8") -> Iterator[Resolved | None]:
    """``(canonical URL, host)`` or None for each href on a page at ``base``, in order."""
    legacy = codecs.lookup(encoding).name not in _UTF
    directory = None
    if base is not None:
        try:
            base = normalize_url(base)
        except ValueError:
            base = None
        if base is not None and base.startswith(("http://", "https://")):
            directory = base.split("#", 1)[0].split("?", 1)[0]
            directory = directory[: directory.rfind("/") + 1]
    by_dir = _by_dir
    for href in hrefs:
        if legacy and not href.isascii():
            href = encode_query(href, encoding)
        # A path (not "?query", "#fragment", "", "http:" or a string the parser strips first)
        # is resolved against the base's directory only, so (directory, href) is a safe key.
        # The fragment is cut first: the canonical form drops it, and hrefs that differ only
        # in it ("api.html#a", "api.html#b") are common. Not after a space or control
        # character, which the cut would turn into a trailing one, which the parser strips.
        first = href[:1]
        if (directory is not None and first > " " and first not in "?#" and len(href) <= CACHED_LENGTH
                and _dir_only(href)):
            path = href.partition("#")[0]
            key = (directory, path if path[-1:] > " " else href)
            found = by_dir.get(key, False)
            if found is False:
                found = _absolute(_join(base, key[1]))
                if len(by_dir) >= CACHE_MAX:
                    by_dir.clear()
                by_dir[key] = found
            yield found
        elif base is not None:
            yield _absolute(_join(base, href))
        else:
            yield _absolute(_join(None, href))


def encode_query(href: str, encoding: str) -> str:
    """``href`` with the non-ASCII characters of its query percent-encoded in ``encoding``.

    The URL Standard's encoding override: a link on a page in a legacy encoding (GBK,
    Shift_JIS, windows-1252, ...) has its query, and only its query, encoded in the page's
    encoding; a character the encoding lacks becomes "%26%23<decimal>%3B" ("&#NNN;"). The
    query starts at the first "?" before any "#" (no scheme, host or path may hold one).
    UTF-8 and UTF-16 pages use UTF-8, which is what the parser does anyway.
    """
    question, hash_ = href.find("?"), href.find("#")
    if question == -1 or -1 < hash_ < question:
        return href
    end = len(href) if hash_ == -1 else hash_
    query = href[question + 1 : end]
    if query.isascii():
        return href
    return href[: question + 1] + "".join(map(partial(_encode_char, encoding), query)) + href[end:]


def _encode_char(encoding: str, char: str) -> str:
    if char.isascii():
        return char
    try:
        data = char.encode(encoding)
    except UnicodeEncodeError:
        return f"%26%23{ord(char)}%3B"
    return "".join(f"%{byte:02X}" for byte in data)


def _dir_only(href: str) -> bool:
    """False for "http:", "http:?q" and the like: on an http page they keep the page's last
    path segment (and query), like "?q" and "" do. (Also false for some hrefs that would be
    safe, such as "mailto:": they are only not cached per directory.)"""
    colon = href.find(":")
    if colon == -1:
        return True
    after = href[colon + 1 : colon + 2]
    return after > " " and after not in "?#"


def whatwg_join(href: str, base: str | None = None) -> str | None:
    """The URL a browser gets from ``href`` on a page at ``base`` (no canonicalization, any
    scheme), or None if it fails to parse."""
    return _join(base, href)


def clear_caches() -> None:
    """Forget every cached resolution (the results never change; this only frees memory)."""
    _by_dir.clear()
    _by_absolute.clear()


def _join(base: str | None, href: str) -> str | None:
    try:
        return join_url(base, href) if base is not None else normalize_url(href)
    except ValueError:  # a browser fails to parse it
        return None


def _absolute(url: str | None) -> Resolved | None:
    """Step 2 of the module docstring, for the browser's URL ``url``."""
    if url is None or not url.startswith(("http://", "https://")):
        return None
    url = url.split("#", 1)[0]
    by_absolute = _by_absolute
    found = by_absolute.get(url, False)
    if found is False:
        found = _canonical(url)
        if len(url) <= CACHED_LENGTH:
            if len(by_absolute) >= CACHE_MAX:
                by_absolute.clear()
            by_absolute[url] = found
    return found


def _canonical(url: str) -> Resolved | None:
    try:
        if _ALREADY_CANONICAL(url):  # "scheme://host[:port]/...": the host is cut out directly
            start = url.index("://") + 3
            return url, url[start : url.index("/", start)].partition(":")[0]
        canon = canonicalize_url(url, keep_fragments=False)
        return canon, urlsplit(canon).hostname or ""
    except ValueError:  # never seen on a URL the WHATWG parser accepted; kept safe
        return None


def _why_not(url: str, base: str | None) -> str:
    shown = repr(url[:200])
    if _join(base, url) is None:
        scheme = url.strip(_C0_SPACE).partition(":")[0].lower()
        if scheme in FOLLOWED_SCHEMES:
            return f"unparseable URL (bad host, port or syntax): {shown}"
        return f"not an absolute http(s) URL: {shown}"
    return f"not an http(s) URL: {shown}"


def host_of(url: str) -> str:
    """The politeness key of a canonical URL: its host name, port ignored."""
    return urlsplit(url).hostname or ""


def domain_key(domain: str) -> str:
    """An ``allowed_domains`` entry (or a seed's host) as links' hosts are spelled: lower
    case, IDNA-mapped ("Bücher.example" -> "xn--bcher-kva.example"), any port and outer dots
    dropped; an IPv6 literal, bare or in brackets, keeps its colons ("::1")."""
    domain = domain.strip().strip(".")
    if domain.count(":") > 1 and not domain.startswith("["):  # bare IPv6: no port to drop
        domain = f"[{domain}]"
    found = resolve(f"http://{domain}/")
    if found is not None:
        return host_of(found)
    return domain.lower() if domain.startswith("[") else domain.lower().split(":")[0]


def domain_matches(host: str, domains: frozenset[str] | set[str]) -> bool:
    """True if ``host`` is one of ``domains`` or a subdomain of one."""
    if host in domains:
        return True
    dot = host.find(".")
    while dot != -1:
        if host[dot + 1 :] in domains:
            return True
        dot = host.find(".", dot + 1)
    return False


@dataclass(frozen=True)
class Scope:
    """Which links are followed. Plain data, so each parser process can hold a copy."""

    domains: frozenset[str]
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    max_url_length: int = 2048

    @classmethod
    def from_settings(cls, settings, seeds: list[str]) -> "Scope":
        domains = settings.crawl.allowed_domains or [host_of(s) for s in seeds]
        return cls(
            domains=frozenset(map(domain_key, domains)),
            allow=tuple(settings.crawl.allow),
            deny=tuple(settings.crawl.deny),
            max_url_length=settings.crawl.max_url_length,
        )

    def compile(self) -> "CompiledScope":
        return CompiledScope(self)


class CompiledScope:
    def __init__(self, scope: Scope):
        self.domains = scope.domains
        self.allow = re.compile("|".join(f"(?:{p})" for p in scope.allow)) if scope.allow else None
        self.deny = re.compile("|".join(f"(?:{p})" for p in scope.deny)) if scope.deny else None
        self.max_url_length = scope.max_url_length

    def allows(self, url: str, host: str | None = None) -> bool:
        """``url`` must already be canonical; ``host`` is its ``host_of`` if known."""
        if len(url) > self.max_url_length:
            return False
        if not domain_matches(host_of(url) if host is None else host, self.domains):
            return False
        if self.deny is not None and self.deny.search(url):
            return False
        if self.allow is not None and not self.allow.search(url):
            return False
        return True
