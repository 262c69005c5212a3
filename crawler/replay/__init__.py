"""``crawler extract``: the current rules re-run over WARC files, offline.

::

    WARC files ──► warcs.py ──Page──► ParserPool ──ParseResult──► extract.py ──lines──► Writer process
                   (FastWARC: responses   (the crawl's own     (batches, acks,        (the crawl's own
                    back into Pages)       parser processes)    progress, summary)     writer)

Crawl once with ``[output] warc`` set, then iterate on ``[[parse.rules]]`` in seconds: no
network, no robots.txt, the same record format. warcs.py turns WARC records back into the
Pages the fetchers once produced; extract.py drives the pool and the writer.
"""
