"""The fetch policy without sockets: its steps are driven by a scripted ``perform``
(sans-IO), so every decision is tested once, whatever the transport."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

from crawler.errors import (Blocked, ConnectError, FetchTimeout, HTTPStatusError, RobotsDenied, TooLarge,
                            TooManyRedirects)
from crawler.fetch.commands import Claim, Response, Send, Sleep, drive
from crawler.fetch.policy import FetchPolicy
from crawler.messages import FetchJob
from crawler.engine.hosts import HostScheduler
from crawler.fetch.retry import RetryableStatus, RetryPolicy, parse_retry_after
from crawler.settings import load_settings


def policy(scheduler=None, **fetch) -> FetchPolicy:
    fetch.setdefault("backoff", 0.001)
    settings = load_settings(None, {f"fetch.{k}": v for k, v in fetch.items()})
    return FetchPolicy(settings.fetch, "test-agent", scheduler=scheduler)


JOB = FetchJob(id=1, url="http://a.test/x", host="a.test", depth=0)


class Script:
    """A fake transport: each ``Send`` takes the next step (an error or a status); a
    ``Sleep`` is remembered and returns at once; a ``Claim`` is granted."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.calls = 0
        self.slept: list[float] = []

    def __call__(self, command):
        if isinstance(command, Sleep):
            self.slept.append(command.seconds)
            return True
        if isinstance(command, Claim):
            return True
        assert isinstance(command, Send)
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if isinstance(step, Exception):
            return step
        status, headers_out = step if isinstance(step, tuple) else (step, {})
        return Response(command.url, status, headers_out, b"<html></html>" if status == 200 else b"", 1.0)


def run_fetch(policy: FetchPolicy, job: FetchJob, perform: Script):
    return drive(policy.fetch(job), perform)


@pytest.mark.parametrize("retries", [0, 1, 3])
@pytest.mark.parametrize("failure", [ConnectError("reset"), FetchTimeout("slow"), 500, 503, 429])
def test_a_url_that_always_fails_is_tried_exactly_retries_plus_one_times(retries, failure):
    send = Script(failure)
    page = run_fetch(policy(retries=retries), JOB, send)
    assert send.calls == retries + 1 and page.attempts == retries + 1
    assert page.error[0] == ("http" if isinstance(failure, int) else failure.type)


@pytest.mark.parametrize("failure", [404, 403, 410, 501, TooLarge("big"), Blocked("no"),
                                     TooManyRedirects("loop")])
def test_other_statuses_and_errors_are_not_retried(failure):
    send = Script(failure)
    page = run_fetch(policy(retries=3), JOB, send)
    assert send.calls == 1 and page.attempts == 1 and page.error is not None


def test_attempts_counts_the_retries_that_led_to_success():
    page = run_fetch(policy(retries=3), JOB, Script(503, ConnectError("reset"), 200))
    assert (page.status, page.error, page.attempts) == (200, None, 3)


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    p = RetryPolicy(retries=10, statuses=frozenset(), backoff=1.0, cap=5.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (8, 5.0)]:
        waits = [p.wait_seconds(attempt, ConnectError("x")) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 10  # jittered, not one fixed value


def test_retry_after_replaces_the_backoff_and_is_capped():
    p = RetryPolicy(retries=3, statuses=frozenset({429}), backoff=10.0, cap=30.0)
    assert p.wait_seconds(1, RetryableStatus("x", status=429, retry_after=1.0)) == 1.0
    assert p.wait_seconds(1, RetryableStatus("x", status=429, retry_after=3600.0)) == 30.0


def test_retry_after_pushes_the_hosts_next_start_back_capped_at_max_crawl_delay():
    clock = [100.0]
    scheduler = HostScheduler(2, 0.0, clock=lambda: clock[0])
    p = policy(scheduler=scheduler, max_crawl_delay=7)
    scheduler.offer([FetchJob(id=2, url="http://a.test/y", host="a.test", depth=0)])
    with pytest.raises(RetryableStatus) as exc:
        p.on_status(JOB, Response(JOB.url, 503, {"retry-after": "120"}, b"", 1.0))
    assert exc.value.retry_after == 7
    assert scheduler.try_next() == (None, 7.0)  # nothing starts on a.test for 7 s


def test_parse_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 120 ") == 120.0
    when = datetime.now(timezone.utc) + timedelta(seconds=60)
    assert 55 <= parse_retry_after(format_datetime(when, usegmt=True)) <= 60
    assert parse_retry_after(format_datetime(when - timedelta(hours=1), usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_a_redirect_loop_and_too_many_hops_are_redirects_errors():
    loop = Script((302, {"location": "/b"}), (302, {"location": "/x"}))
    page = run_fetch(policy(), JOB, loop)
    assert page.error[0] == "redirects" and "loop" in page.error[1] and loop.calls == 2
    endless = Script(*[(301, {"location": f"/{i}"}) for i in range(1, 30)])
    page = run_fetch(policy(max_redirects=3), JOB, endless)
    assert page.error[0] == "redirects" and endless.calls == 4  # the first request and 3 hops


def test_every_error_type_the_fetch_raises_is_in_the_record_contract():
    from crawler.errors import ERROR_TYPES

    for cls in (FetchTimeout, ConnectError, HTTPStatusError, TooLarge, RobotsDenied, TooManyRedirects, Blocked):
        assert cls.type in ERROR_TYPES


def test_the_host_scheduler_offers_what_the_policy_needs():
    """``HostTurns`` is the scheduler interface of the policy; any scheduler (a shared one
    for the Redis frontier, say) must offer it, and HostScheduler does."""
    from crawler.fetch.commands import HostTurns

    scheduler = HostScheduler(1, 0.0)
    assert isinstance(scheduler, HostTurns)
    token = scheduler.token("a.test")  # a sitemap request: holds no slot until it moves there
    assert scheduler.try_move(token, "a.test") == 0.0
    scheduler.done(token)


def test_the_hosts_delay_counts_from_when_the_request_was_sent():
    clock = [100.0]
    scheduler = HostScheduler(2, 0.5, clock=lambda: clock[0])
    p = policy(scheduler=scheduler)
    first, second = (FetchJob(id=i, url=f"http://a.test/{i}", host="a.test", depth=0) for i in (1, 2))
    scheduler.offer([first, second])
    assert scheduler.try_next()[0] is first  # the turn is taken at 100.0 ...

    def perform(command):
        clock[0] = 100.3  # ... and the request leaves 0.3 s later (thread hand-off, connect)
        return Response(command.url, 200, {}, b"", 1.0, sent_at=100.3)

    drive(p.fetch(first), perform)
    assert scheduler.try_next() == (None, pytest.approx(0.5))  # 0.5 after the send, not 0.2


def test_the_hosts_delay_counts_from_the_end_of_the_exchange_which_the_server_saw_begin():
    """The server stamps a request when it reads it, which can be later than the send (a new
    connection, a busy server), but always before it answers: counting from the end of the
    exchange keeps every two starts it sees the delay apart (fault-site test: 0.17 s between
    robots.txt on a new connection and the next request, under a 0.2 s Crawl-delay)."""
    clock = [100.0]
    scheduler = HostScheduler(2, 0.5, clock=lambda: clock[0])
    p = policy(scheduler=scheduler)
    first, second = (FetchJob(id=i, url=f"http://a.test/{i}", host="a.test", depth=0) for i in (1, 2))
    scheduler.offer([first, second])
    assert scheduler.try_next()[0] is first

    def perform(command):
        clock[0] = 100.9  # sent at 100.1, answered 0.8 s later
        return Response(command.url, 200, {}, b"", 800.0, sent_at=100.1)

    drive(p.fetch(first), perform)
    assert scheduler.try_next() == (None, pytest.approx(0.5))  # from 100.9, not from 100.1
