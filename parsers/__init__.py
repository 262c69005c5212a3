"""The parser process pool: pages in, records and links out (DESIGN §2).

::

    Page ──► pool.py ──pipe──► worker.py ──► decode.py (charset) ──► lxml tree
             (one pipe per      (one process)        │
              process)                               ├──► extract.py: fields (xpath, css, regex,
                                                     │      jsonld via structured.py; types via
                                                     │      convert.py; required -> "missing")
                                                     └──► links.py: links, meta robots
"""
