"""The crawler's own error tree. Backend exceptions are translated at the boundary.

::

    CrawlerError
     ├── UsageError ............ exit 2: bad flag, bad settings key, no valid seed
     ├── StateError ............ exit 2: output or state locked by another crawl, state
     │                           that does not match the output file
     ├── AbortError ............ exit 1: writer lost, disk full; the state can be resumed
     │    └── LeaseLost ........ exit 1: a shared-crawl worker's leases went to the others
     └── FetchError ............ never escapes a crawl: becomes a record's "error"
          ├── FetchTimeout ......... "timeout"
          ├── ConnectError ......... "connection"
          ├── HTTPStatusError ...... "http"
          ├── TooLarge ............. "too_large"
          ├── RobotsDenied ......... "robots"
          ├── TooManyRedirects ..... "redirects"
          └── Blocked .............. "blocked"

``error.type = "parse"`` is produced by the parser pool, not raised here.
"""

from __future__ import annotations

ERROR_TYPES = ("timeout", "connection", "http", "too_large", "robots", "redirects", "blocked", "parse")


class CrawlerError(Exception):
    exit_code = 1


class UsageError(CrawlerError):
    """A usage or configuration problem: one line that names the flag, key or line."""

    exit_code = 2


class StateError(CrawlerError):
    exit_code = 2


class AbortError(CrawlerError):
    """The crawl cannot go on (writer lost, disk full). What was committed stays valid."""

    exit_code = 1


class LeaseLost(AbortError):
    """A worker of a shared crawl lost its leases to the others (it was silent for longer than
    ``lease_timeout``, or started again elsewhere): what it wrote after its last commit is
    not its to keep."""


class FetchError(CrawlerError):
    type = "connection"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class FetchTimeout(FetchError):
    type = "timeout"


class ConnectError(FetchError):
    type = "connection"


class HTTPStatusError(FetchError):
    type = "http"


class TooLarge(FetchError):
    type = "too_large"


class RobotsDenied(FetchError):
    type = "robots"


class TooManyRedirects(FetchError):
    type = "redirects"


class Blocked(FetchError):
    type = "blocked"
