"""The live progress line (rich), shown only on a terminal and never with -q. rich is
imported only when the line is shown: it costs 30 ms of every start-up otherwise."""

from __future__ import annotations

import logging
import sys
import time


class Progress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self.text = Text
        self.console = Console(stderr=True)
        self.live = Live(Text(""), console=self.console, transient=True, auto_refresh=False,
                         redirect_stderr=True, redirect_stdout=False)
        self.started = time.monotonic()
        self._window: list[tuple[float, int]] = []

    def __enter__(self) -> "Progress":
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def update(self, *, done: int, queued: int, in_flight: int, errors: int) -> None:
        now = time.monotonic()
        self._window.append((now, done))
        while len(self._window) > 2 and now - self._window[0][0] > 5.0:
            self._window.pop(0)
        t0, d0 = self._window[0]
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        line = self.text.assemble(
            ("done ", "dim"), (f"{done}", "bold green"), ("  queued ", "dim"), f"{queued}",
            ("  in flight ", "dim"), f"{in_flight}", ("  errors ", "dim"),
            (f"{errors}", "bold red" if errors else ""), ("  ", ""), (f"{rate:.0f} pages/s", "cyan"),
            ("  ", ""), (f"{now - self.started:.0f}s", "dim"),
        )
        self.live.update(line, refresh=True)


def wants_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is *now*, so lines land above a live progress line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def setup_logging(verbose: bool, quiet: bool) -> None:
    root = logging.getLogger("crawler")
    root.handlers[:] = []
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("crawler: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else (logging.ERROR if quiet else logging.WARNING))
    root.propagate = False
