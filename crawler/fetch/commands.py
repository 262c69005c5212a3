"""What the fetch policy asks a transport to do, and the small base both transports share.

The policy (crawler/fetch/policy.py) is written as generators that *yield* commands and
*receive* their results, as h11 or urllib3's ``Retry.increment`` keep protocol decisions
apart from I/O. A transport performs the commands and sends the results back:

=============  ===================================================  ===========================
command        the transport ...                                    result sent back
=============  ===================================================  ===========================
``Send``       sends one GET (redirects not followed) through the   ``Response``, or the
               SSRF guard, within the deadline, reading at most     ``FetchError`` (returned,
               ``limit`` decoded bytes of a 2xx body; notes when    never raised), with
               the request went out (``sent_at``)                   ``sent_at``
``Sleep``      waits ``seconds``, or less if the crawl is stopping  True, or False if stopping
``WaitRobots`` waits until another fetch has the origin's           None
               robots.txt answer (never blocking an event loop)
``Claim``      asks the redirect-target claim hook (never on an     True if the hop may be
               event loop: it may read SQLite)                      followed
=============  ===================================================  ===========================

``drive`` runs a generator over a blocking ``perform``; the async engine has its own
awaitable twin. Everything else (robots.txt, scope, guard per hop, redirects, retries,
waits, the host's turns, ``attempts``) is decided in the policy, once.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Protocol, runtime_checkable

from crawler.errors import FetchError
from crawler.messages import FetchJob

log = logging.getLogger("crawler")


@dataclass(frozen=True, slots=True)
class Send:
    url: str
    headers: dict[str, str]
    limit: int  # decoded bytes of a 2xx body; more is TooLarge (or cut off, with truncate)
    deadline: float  # seconds for the whole exchange, whatever the server does
    truncate: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class WaitRobots:
    origin: str


@dataclass(frozen=True, slots=True)
class Claim:
    url: str


Command = Send | Sleep | WaitRobots | Claim
Steps = Generator[Command, Any, Any]


@dataclass
class Response:
    """What one HTTP request returned, engine-independent."""

    url: str
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    elapsed_ms: float
    sent_at: float | None = field(default=None, compare=False)  # time.monotonic() when it went out


@runtime_checkable
class HostTurns(Protocol):
    """What the policy needs from the per-host scheduler (crawler.engine.hosts.HostScheduler
    implements it; any other scheduler, a shared one say, must too). Never blocks."""

    def clock(self) -> float: ...

    def try_turn(self, job: FetchJob) -> float:
        """0.0 once ``job`` (holding its host's slot) may start its next request, else seconds to wait."""

    def try_move(self, job: FetchJob, host: str) -> float:
        """0.0 once ``job`` holds a slot on ``host`` and its turn has come, else seconds to wait."""

    def token(self, host: str) -> FetchJob:
        """A job holding no slot yet, for a request that is not a frontier job (a sitemap)."""

    def done(self, job: FetchJob) -> None: ...

    def requeue(self, job: FetchJob) -> bool: ...

    def defer(self, host: str, seconds: float) -> None: ...

    def set_delay(self, host: str, delay: float) -> None: ...

    def adapt(self, host: str, delay: float) -> None:
        """AutoThrottle's delay for ``host``; the floor and Crawl-delay still hold."""

    def note_start(self, host: str, at: float) -> None: ...

    def give_back_turn(self, job: FetchJob) -> None: ...


def advance(steps: Steps, result) -> tuple[bool, Any]:
    """Send ``result`` into ``steps``: (False, the next command) or (True, their value)."""
    try:
        return False, steps.send(result)
    except StopIteration as end:
        return True, end.value


def drive(steps: Steps, perform: Callable[[Command], Any]):
    """Run policy ``steps`` to their end over a blocking ``perform``; return their value."""
    with closing(steps):
        done, value = advance(steps, None)
        while not done:
            done, value = advance(steps, perform(value))
        return value


def send_once(command: Send) -> Steps:
    """One ``Send`` and nothing else: its ``Response`` (a ``FetchError`` is raised)."""
    result = yield command
    if isinstance(result, FetchError):
        raise result
    return result


class Transport:
    """What both engines offer besides crawling: ``call`` runs policy steps to their end
    from a thread that may block; the rest is built on it."""

    policy: Any  # crawler.fetch.policy.FetchPolicy

    def call(self, steps: Steps):  # pragma: no cover - each engine has its own
        raise NotImplementedError

    @staticmethod
    def hand_on(job: FetchJob, outcome, on_page, on_release):
        """What a worker does with ``FetchPolicy.serve``'s outcome: a Page goes to
        ``on_page``; a job given back goes to ``on_release``, and so does one whose
        ``on_page`` failed (never lose a URL); a requeued job needs nothing. Returns what
        ``on_page`` returned (None otherwise, and when it failed)."""
        if outcome is None:  # RELEASED
            on_release(job)
        elif not isinstance(outcome, str):  # REQUEUED is a str
            try:
                return on_page(job, outcome)
            except Exception:
                log.exception("handing over %s failed", job.url)
                on_release(job)
        return None

    def fetch(self, job: FetchJob):
        """One job's ``Page`` (raises FetchAborted or RetryLater as the policy decides)."""
        return self.call(self.policy.fetch(job))

    def fetch_robots(self, url: str):
        """GET a robots.txt through the policy (guard, deadline, up to 5 redirects): a RobotsAnswer."""
        return self.call(self.policy.robots_txt(url))

    def exchange(self, url: str, headers: dict, *, limit: int, truncate: bool = False) -> Response:
        """One GET, redirects not followed; a FetchError is raised."""
        return self.call(send_once(Send(url, headers, limit, self.policy.deadline, truncate)))

    def send(self, url: str, headers: dict) -> Response:
        return self.exchange(url, headers, limit=self.policy.settings.max_bytes)
