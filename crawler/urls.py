"""URL canonicalization and crawl scope.

Canonical form (the frontier's dedup key and a record's ``url``) is w3lib's
``canonicalize_url`` (lower-case scheme and host, dot-segments resolved, fragment
dropped, percent-encoding normalised, query arguments sorted), plus dropping the
scheme's default port, which w3lib keeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from w3lib.url import canonicalize_url

DEFAULT_PORTS = {"http": 80, "https": 443}
FOLLOWED_SCHEMES = ("http", "https")


class BadURL(ValueError):
    pass


@lru_cache(maxsize=65536)
def canonicalize(url: str) -> str:
    """The canonical form of an absolute http(s) URL; ``BadURL`` for anything else."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise BadURL(f"unparseable URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in FOLLOWED_SCHEMES:
        raise BadURL(f"not an http(s) URL: {url[:200]!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # bad port
        raise BadURL(f"bad port in {url[:200]!r}: {exc}") from None
    if not host:
        raise BadURL(f"no host in {url[:200]!r}")
    canon = canonicalize_url(url, keep_fragments=False)
    if port is not None and port == DEFAULT_PORTS[scheme]:
        parts = urlsplit(canon)
        host_part = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        canon = urlunsplit((parts.scheme, host_part, parts.path, parts.query, ""))
    return canon


def host_of(url: str) -> str:
    """The politeness key of a canonical URL: its host name, port ignored."""
    return urlsplit(url).hostname or ""


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
        def host(domain: str) -> str:
            """The host of an allowed_domains entry or a seed's host: lower case, no trailing
            dot, no port. An IPv6 literal, bare or in brackets, keeps its colons."""
            domain = domain.strip().lower().strip(".")
            if domain.count(":") > 1 and not domain.startswith("["):  # bare IPv6: no port to drop
                return domain
            return urlsplit("//" + domain).hostname or domain

        domains = settings.crawl.allowed_domains or [host_of(s) for s in seeds]
        return cls(
            domains=frozenset(host(d) for d in domains),
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

    def allows(self, url: str) -> bool:
        """``url`` must already be canonical."""
        if len(url) > self.max_url_length:
            return False
        if not domain_matches(host_of(url), self.domains):
            return False
        if self.deny is not None and self.deny.search(url):
            return False
        if self.allow is not None and not self.allow.search(url):
            return False
        return True
