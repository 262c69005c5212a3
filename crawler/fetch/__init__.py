"""Fetching: ``FetchJob`` in, ``Page`` out, politely and within limits.

::

    FetchJob ──► policy.py ──────────────────────────────────────────────► Page
                 (robots.txt, scope and guard per hop, redirects and their
                  dedup claim, retries with backoff and Retry-After, the body
                  limit, the deadline, when to take a host turn)
                      │ one HTTP exchange at a time
                      ▼
                 requests_engine.py (threads + requests)  or  aiohttp_engine.py (one asyncio loop)
                      │ every connection through guard.py (SSRF); deadlines: watchdog.py

Files: policy.py (what a fetch decides), requests_engine.py and aiohttp_engine.py (the two
transports), robots.py (robots.txt cache), retry.py (the retry policy), guard.py (refuses
non-public addresses), watchdog.py (per-request deadline for blocking sockets),
sitemaps.py (start URLs from sitemaps), capture.py (with [output] warc, every HTTP
exchange of a fetch put on its Page for the WARC writer).
"""
