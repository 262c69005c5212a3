"""``crawler inspect``: read crawl output back, summarise it, query it, diff it, report it.

::

    files, globs, .gz, stdin ──► sources.py ──blocks──► scanning.py ──records──► summary.py / query.py
                                 (bounded reads)        (decode, validate)       diffing.py / follow.py
                                                                                  validating.py
                                                                                       │
                                                                              render/ (console text,
                                                                               tables, JSON, CSV,
                                                                               HTML + SVG report)

Files, in flow order: command.py (the argument surface and dispatch), sources.py,
scanning.py, query.py (``--where``/``--fields``), summary.py, latency.py and completeness.py
(the default summary), diffing.py (``--diff``), follow.py (``--follow``), validating.py
(``--validate``), and render/ for everything shown or written.

This package reads output files only: it never imports the crawl engine
(``crawler.engine``, ``crawler.fetch``), a rule the test suite enforces.
"""
