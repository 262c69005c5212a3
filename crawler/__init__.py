"""crawler: a parallel, polite, crash-safe web-scraping crawler.

Data flow (one crawl)::

    seeds ─► Frontier ──FetchJob──► HostScheduler ──► fetch engine ──Page──► ParserPool ──ParseResult──┐
             (SQLite)               (per-host slots,  (one policy,           (processes: decode,         │
                ▲                    delays, turns)    two transports:        XPath/regex fields,        │
                │                                      requests threads       links, scope)              ▼
                │                                      or aiohttp loop)                             Coordinator
                │  links (canonical, in scope)                                                     (one thread:
                ├────────────────────────────────────────────────────────────────────────────────  owns the
                │  done ids + committed file size                                                   frontier)
                └──────────────────────────── Writer process (append, flush, fsync, ack) ◄─lines─┘

The packages, in the order a URL travels:

- ``crawler.engine``: seeds, the state directory, the frontier, per-host scheduling
  (``HostScheduler``), the ``Crawl`` and its coordinator, progress, recurring runs,
  ``crawler status``; ``crawler.engine.shared``: the same frontier and scheduling in
  Redis, for a crawl shared by any number of workers (``[state] backend = "redis"``).
- ``crawler.fetch``: one fetch policy (robots.txt, retries, redirects, limits, the SSRF
  guard, the deadline) and the two transports that carry it out; sitemaps.
- ``parsers`` (top level): the parser process pool: decoding, fields, links.
- ``sinks`` (top level): the writer process and the record schema.
- ``crawler.inspection``: ``crawler inspect``, which reads output files back.
- ``crawler.demo``: ``crawler demo`` and the sample site the tests and bench crawl.
- ``crawler.replay``: ``crawler extract``, the rules re-run over WARC files offline
  (the parser pool and the writer, fed from a WARC instead of the fetchers).

Beside them, the neutral modules every stage may use: messages.py (the types that
cross threads and processes), urls.py, errors.py, settings.py (+ defaults.toml), rules.py
([[parse.rules]] types and checks), hostrules.py ([[fetch.hosts]] per-host rules) and
procname.py; and the surfaces: api.py (the Python API), cli.py and __main__.py.
The import rules between these are contracts in pyproject.toml, checked by the tests.
"""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/crawler-dev/crawler"
