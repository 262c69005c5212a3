"""Fetching: ``FetchJob`` in, ``Page`` out, politely and within limits.

One fetch policy, two thin transports (sans-IO, in the manner of h11)::

    FetchJob ──► policy.py  FetchPolicy.serve / fetch / robots_txt / sitemap: generators
                 (robots.txt, scope and guard per hop, redirects and their dedup claim,
                  retries with backoff and Retry-After, the body limit, the deadline,
                  the host's turns, attempts) ──────────────────────────────────────► Page
                      │ yields commands.py: Send, Sleep, WaitRobots, Claim
                      ▼ and receives their results
                 requests_engine.py (worker threads + requests)  or
                 aiohttp_engine.py (one asyncio loop; pages leave it through handoff.py)
                      │ every connection through guard.py (SSRF); deadlines: watchdog.py (threads)

Files, in flow order: policy.py (everything a fetch decides), commands.py (the commands,
``drive``, the ``HostTurns`` scheduler protocol, the transports' shared base), retry.py
(which failures are retried, how long to wait), robots.py (robots.txt cache),
requests_engine.py and aiohttp_engine.py (the two transports; requests_adapter.py: what
the threads one asks of requests; aiohttp_hooks.py: the async one's socket factory,
middleware and trace hook), handoff.py (pages from the
event loop to the parser pool), guard.py (refuses non-public addresses), watchdog.py
(per-request deadline for blocking sockets), sitemaps.py (start URLs from sitemaps), throttle.py (AutoThrottle: the delay follows the
server), seen.py (the URLs this process fetched, for redirect dedup), capture.py (with [output] warc, every HTTP
exchange of a fetch put on its Page for the WARC writer).
"""
