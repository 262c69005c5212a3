"""A crawl shared by many workers over one Redis (``[state] backend = "redis"``).

::

    worker A ─┐                     Redis (one hash tag per crawl)                 ┌─► out-A.jsonl
    worker B ─┼── Lua scripts ──►  seen sets · host queues · leases · host turns ──┼─► out-B.jsonl
    worker C ─┘   (frontier.lua)   counts · shard sizes · heartbeats               └─► out-C.jsonl

Each worker is an ordinary ``crawler crawl`` whose frontier and host scheduler live in
Redis; it writes its own shard under the same exactly-once commit as a local crawl.

- redis_frontier.py: ``RedisFrontier``, the frontier contract over the scripts in
  frontier.lua, and ``connect``.
- turns.py: ``RedisTurns``, per-host politeness for the whole crawl, in place of the
  ``HostScheduler``.
- joining.py: how a worker joins a crawl: its id, its shard, the checks made before
  anything is touched.
- robots.py: ``SharedRobotsCache``, robots.txt fetched once per origin for the whole crawl.
"""
