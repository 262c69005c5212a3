"""How ``crawler inspect`` shows what it found: text for the console, and files.

- summary.py: the summary (counts, statuses, errors, latency, fields) as console text.
- records.py: matching records as a table, JSON lines or CSV.
- report.py: the self-contained HTML report, with its charts drawn by svg.py.
- ``warn``: one line on stderr, for warnings and notes that must not wrap.
"""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """One line on stderr, never wrapped."""
    print(message.replace("\n", " "), file=sys.stderr, flush=True)
