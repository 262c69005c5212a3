"""``crawler demo`` and the sample site it crawls (also used by the tests and bench/).

::

    shop/catalog.py ──builds──► shop/responses.py (Site: pre-rendered responses per host and path)
                                        │
                                        ▼
                                shop/server.py (SiteServer: raw asyncio on 127.0.0.x, counts what it saw)
                                        ▲
    command.py ──crawls it with crawler.api and checks every record against Catalog.expected

- command.py: ``crawler demo``.
- shop/: the generated product site, its responses and its server;
  ``python -m crawler.demo.shop`` serves the bench catalog in a process of its own.
"""
