"""The watchdog's two limits on a request's socket: the deadline of the whole request,
and (``idle``) a wait for the server's next bytes, which every ``touch`` restarts. The
threads engine relies on the idle bound to keep plain-HTTP sockets in blocking mode."""

from __future__ import annotations

import socket
import time

import pytest

from crawler.demo.shop.server import Site
from crawler.fetch import requests_engine
from crawler.fetch.watchdog import Watchdog
from tests.fetch.test_fetch_limits import fetcher
from tests.fetch.test_transports import page
from tests.helpers import wait_until


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def touch_for(alarm, seconds: float, every: float = 0.05) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        alarm.touch(time.monotonic())
        time.sleep(every)


def test_touches_keep_an_idle_bound_from_firing_and_silence_fires_it(pair):
    dog = Watchdog()
    a, b = pair
    started = time.monotonic()
    alarm = dog.arm(started + 30, a, idle=0.3)
    touch_for(alarm, 0.8)  # progress for almost three idle bounds
    assert alarm.armed and not alarm.fired
    silent = time.monotonic()
    wait_until(lambda: alarm.fired, timeout=5, what="the idle bound")
    assert 0.25 <= time.monotonic() - silent < 1.0
    assert alarm.idle_fired
    assert a.recv(1) == b""  # shut down: a read blocked on it returns at once


def test_the_deadline_ends_a_request_that_keeps_making_progress(pair):
    dog = Watchdog()
    a, b = pair
    started = time.monotonic()
    alarm = dog.arm(started + 0.6, a, idle=0.3)
    touch_for(alarm, 2.0, every=0.05)  # touching all the time: only the deadline can end it
    assert alarm.fired and not alarm.idle_fired


def test_an_alarm_without_an_idle_bound_fires_at_its_deadline_only(pair):
    dog = Watchdog()
    a, b = pair
    alarm = dog.arm(time.monotonic() + 0.4, a)
    wait_until(lambda: alarm.fired, timeout=5, what="the deadline")
    assert not alarm.idle_fired


def test_a_disarmed_alarm_never_fires(pair):
    dog = Watchdog()
    a, b = pair
    alarm = dog.arm(time.monotonic() + 0.2, a, idle=0.1)
    dog.disarm(alarm)
    time.sleep(0.4)
    assert not alarm.fired
    b.send(b"x")
    assert a.recv(1) == b"x"  # the socket was never touched


def test_plain_http_reads_block_without_a_socket_timeout(serve, monkeypatch):
    """No timeout on the socket while reading: CPython would poll before every receive
    and give the GIL up around each poll. The watchdog's idle bound stands in for it."""
    timeouts = []
    original = requests_engine._ReceiveTouching.recv_into

    def recording(self, *args):
        timeouts.append(self.gettimeout())
        return original(self, *args)

    monkeypatch.setattr(requests_engine._ReceiveTouching, "recv_into", recording)
    site = Site()
    site.add("127.0.0.1", "*", page("x" * 100_000))
    server = serve(site, ["127.0.0.1"])
    f = fetcher("threads", timeout=5)
    for path in ("/a", "/b"):  # a new connection, then the same one reused
        response = f.send(server.url("127.0.0.1", path), {})
        assert response.status == 200 and len(response.body) > 100_000
    assert timeouts and set(timeouts) == {None}
