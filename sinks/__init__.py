"""The output side: the single writer process and the record format.

writer.py is the writer process (append, flush, fsync, ack); jsonl.py builds and encodes
one record per line; schema.py says what a valid record is, for the writer and for
``crawler inspect``; warc.py is the WARC capture format (``[output] warc``), which
``crawler extract`` reads back.
"""
