"""crawler: a parallel, polite, crash-safe web-scraping crawler.

Data flow (one crawl)::

    seeds ─► Frontier ──FetchJob──► Scheduler ──► fetchers ──Page──► ParserPool ──ParseResult──┐
             (SQLite)               (per-host     (threads +          (processes: decode,       │
                                     slots and     requests, or        XPath/regex fields,      │
                ▲                    delays,       one asyncio loop    links, scope)            │
                │                    robots)       + aiohttp)                                   ▼
                │  links (canonical, in scope)                                           Coordinator
                ├───────────────────────────────────────────────────────────────────────  (one thread:
                │  done ids + committed file size                                         owns the
                └──────────────────── Writer process (append, flush, fsync, ack) ◄─lines─ frontier)

- Frontier (crawler/frontier.py): the durable set of URLs, queued → leased → done.
- Scheduler (crawler/politeness.py): hands a FetchJob to a fetcher only when that
  job's host has a free slot and its delay has passed; hosts that wait never block
  ready ones.
- Fetchers: ``fetch(job) -> Page``. The policy both engines share (robots, retries,
  redirects, limits) is crawler/fetch.py; the threads engine is crawler/requestsfetch.py,
  the async one crawler/aiofetch.py; crawler/guard.py refuses non-public addresses and
  crawler/watchdog.py enforces each request's deadline.
- ParserPool (parsers/pool.py): worker processes that turn a Page into a record line
  and a list of links.
- Writer (sinks/writer.py): the only process that touches the output file.
- Coordinator (crawler/pipeline.py): the single thread that owns the frontier, so
  the frontier needs no locks; it admits links, forwards lines to the writer and
  marks URLs done when the writer acks them.

Around it: crawler/state.py (the state directory and its runs), crawler/schedule.py
(``crawler schedule``), crawler/inspecting.py and its modules (``crawler inspect``),
crawler/api.py (the Python API) and crawler/cli.py (the command line over it).
"""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/crawler-dev/crawler"
