"""Parsing, in the parser processes: one Page in, one record and its new links out.

- ``pool.py``: the process pool, one duplex pipe per worker, strikes for a worker that dies.
- ``worker.py``: what one process does with one page (``parse_page``) and its loop.
- ``decode.py``: bytes to text (HTTP charset, BOM, <meta charset>, detection).
- ``extract.py``: the ``[[parse.rules]]`` compiled into callables.
- ``links.py``: links, <meta name="robots"> and <link rel="canonical">, resolved as a
  browser does (``crawler.urls.resolve``).
"""
