"""The crawl engine: where URLs wait, whose turn it is, and who settles each one.

::

    seeds.py ──► frontier.py ──lease──► hosts.py ──FetchJob──► crawler.fetch ──Page──► parsers.pool
    (CLI, -s,    (SQLite: queued →      (HostScheduler:        (one policy,            │
     settings)    leased → done)         per-host slots,        two transports)        │ ParseResult
                    ▲                    delays, turns)                                 ▼
                    └──── links, done ids + committed size ◄──── coordinator.py ──lines──► sinks.writer

Files, in the order a URL meets them:

- seeds.py: seed URLs from the command line, ``-s FILE`` and ``[crawl] seeds``.
- state.py: the state directory: its lock, its paths, which run it is in.
- frontier.py: the durable set of URLs (the ``Frontier`` protocol and ``SQLiteFrontier``).
- hosts.py: ``HostScheduler``, per-host politeness: which job may start now.
- crawl.py: ``Crawl``, one run wired together: state, writer, pool, scheduler, fetchers.
- coordinator.py: ``Coordinator``, the one thread that owns the frontier and the writer
  pipe, with one method per event (result, release, start URLs, acks, flush, refill, end).
- progress.py: the live progress line.
- recurring.py: ``crawler schedule``, runs repeated on an interval or a cron expression.
- status.py: ``crawler status``, how far a local or shared crawl is.
- shared/: the Redis backend, for a crawl shared by many workers: ``RedisFrontier`` and
  ``RedisTurns`` in place of ``SQLiteFrontier`` and ``HostScheduler``.
"""
