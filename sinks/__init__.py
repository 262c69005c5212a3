"""Where records go: the output file, its format, and the WARC capture.

- ``writer.py``: the one process that appends to the output file (lock, batches, fsync, acks).
- ``jsonl.py``: a Record built from a page and encoded as one JSON line.
- ``schema.py``: what a valid line is (``validate_record``), and a fast typed decoder.
- ``warc.py``: the WARC capture format (``[output] warc``), which ``crawler extract`` reads back.
"""
