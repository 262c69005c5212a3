"""The local sample site: a fast loopback HTTP server and a generated catalog to crawl.

- catalog.py: the generated product catalog (``build_catalog``) and what a crawl of it must record;
- responses.py: what is served (``Response``, ``Site``, misbehaviours ``RESET``, ``HANG``, ``Drip``);
- server.py: how it is served (``SiteServer``, raw asyncio, counts hits and in-flight peaks);
- connection.py: one client connection of that server (request parsing, answering in order, ``Stats``);
- __main__.py: ``python -m crawler.demo.shop`` serves the bench catalog in its own process.

Used by the tests, `crawler demo` and bench/. Everything binds 127.0.0.0/8 (or ``::1``) only; different
"hosts" are different loopback addresses on one port.

    site = Site()
    with SiteServer(site, ["127.0.0.1", "127.0.0.2"]) as server:
        catalog = build_catalog(server.hosts, server.port, 50, site=site)
        ...crawl catalog.seeds with catalog.rules_toml, compare with catalog.expected...
"""

from crawler.demo.shop.catalog import Catalog, build_catalog, canonical_url, loopback_hosts
from crawler.demo.shop.responses import HANG, RESET, Drip, Request, Response, Site
from crawler.demo.shop.server import SiteServer

__all__ = ["HANG", "RESET", "Catalog", "Drip", "Request", "Response", "Site", "SiteServer",
           "build_catalog", "canonical_url", "loopback_hosts"]
