"""The local sample site: a fast loopback HTTP server and a generated catalog to crawl.

Used by the tests, `crawler demo` and bench/. Everything binds 127.0.0.0/8 only; different
"hosts" are different loopback addresses on one port.

    site = Site()
    with SiteServer(site, ["127.0.0.1", "127.0.0.2"]) as server:
        catalog = build_catalog(server.hosts, server.port, 50, site=site)
        ...crawl catalog.seeds with catalog.rules_toml, compare with catalog.expected...
"""

import importlib

_EXPORTS = {
    "HANG": "server", "RESET": "server", "Drip": "server", "Request": "server",
    "Response": "server", "Site": "server", "SiteServer": "server",
    "Catalog": "catalog", "build_catalog": "catalog", "canonical_url": "catalog",
    "loopback_hosts": "catalog",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Imported lazily so that `python -m crawler.sample.server` does not find its own module
    # already imported by the package (runpy warns, and there would be two copies of it).
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"crawler.sample.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
