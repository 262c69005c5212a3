"""The parser process pool: pages in, records and links out (DESIGN §2).

::

    Page ──► pool.py ──pipe──► worker.py ──► decode.py (charset) ──► lxml tree
             (one pipe per      (one process)        │
              process)                               ├──► walk.py: one walk of the tree for the
                                                     │      links, robots tags and simple paths
                                                     ├──► extract.py: fields (xpath, css, regex,
                                                     │      jsonld via structured.py; types via
                                                     │      convert.py; required -> "missing")
                                                     └──► links.py: links and <link
                                                            rel="canonical">, resolved as a
                                                            browser does (crawler.urls.resolve)

- ``pool.py``: the process pool, one duplex pipe per worker, strikes for a worker that dies.
- ``worker.py``: what one process does with one page (``parse_page``) and its loop.
- ``decode.py``: bytes to text (HTTP charset, BOM, <meta charset>, detection).
- ``extract.py``, ``structured.py``, ``convert.py``: the ``[[parse.rules]]`` compiled into
  callables; JSON-LD; typed values.
- ``links.py``: links and <link rel="canonical">, resolved.
- ``walk.py``: the page's one tree walk: hrefs, <base>, <meta name="robots">, and the fields whose
  XPath (or translated CSS) is a simple ``//tag[@attr='v']/text()`` path.
"""
