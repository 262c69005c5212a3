"""The threads engine: ``RequestsFetcher``, requests + urllib3 performing the policy's commands.

``start`` runs ``concurrency`` worker threads; each takes the next job the host
scheduler hands out and runs ``FetchPolicy.serve`` over ``perform`` (``commands.drive``).
Each thread has its own ``HTTPAdapter`` (requests' transport, with its connection pools); all
share one cookie jar. What this transport adds to a plain GET:

- connections are opened by ``guard.open_connection`` (the SSRF guard checks every
  address before connecting and the peer after). urllib3 has no public hook for
  opening a connection's socket, so this is the one shim on a private name:
  ``HTTPConnection._new_conn`` is overridden (``_guarded``), and ``require_shim``
  fails at import, loudly, if a urllib3 release no longer calls it
  (tests/fetch/test_transports.py checks it as well);
- the request's socket is put under the watchdog (crawler/fetch/watchdog.py) as soon as it
  exists, so the deadline holds through slow headers, a dripping body and, once the
  handshake is done, TLS;
- a plain-HTTP socket is in blocking mode once connected, and the watchdog bounds each
  wait for the server instead (an idle bound that every receive on the socket restarts,
  ``_ReceiveTouching``): a socket with a timeout costs a ``poll`` and a GIL release and
  re-acquire before each send and receive, and with 64 threads that re-acquire is often
  a wait (docs/performance.md). Connecting, and everything over TLS (where the reads
  happen inside the ssl module), still run under the socket's timeout;
- bodies are streamed with ``read1``: urllib3 inflates at most a chunk at a time, so
  ``max_bytes`` bounds the decoded size and the memory it takes.
"""

from __future__ import annotations

import inspect
import logging
import socket
import threading
import time

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import Timeout

from crawler.errors import ConnectError, FetchError, FetchTimeout, TooLarge
from crawler.fetch.commands import Claim, Response, Send, Sleep, Transport, WaitRobots, drive
from crawler.fetch.guard import AddressGuard, open_connection
from crawler.fetch.policy import CHUNK, ERROR_BODY_BYTES, FetchPolicy
from crawler.fetch.requests_adapter import GuardedAdapter, extract_cookies, prepared_get
from crawler.fetch.watchdog import WATCHDOG

log = logging.getLogger("crawler")

# The deadline of the request this thread is sending, and its watchdog alarm. The
# connection classes below arm the alarm as soon as they have a socket.
_current = threading.local()

SHIM = "_new_conn"  # the one private urllib3 name we override: see the module doc


def require_shim() -> None:
    """Fail loudly if urllib3 no longer opens its sockets through ``HTTPConnection._new_conn``:
    the SSRF guard and the deadline would silently stop applying."""
    hook = getattr(HTTPConnection, SHIM, None)
    if not callable(hook) or f"self.{SHIM}()" not in inspect.getsource(HTTPConnection.connect):
        raise ImportError(f"urllib3 {urllib3.__version__}: HTTPConnection.connect no longer calls "
                          f"{SHIM}(); the crawler's SSRF guard needs a new hook (see docs/design.md)")


require_shim()


class _ReceiveTouching(socket.socket):
    """A plain-HTTP socket that tells its request's alarm about every receive: the
    watchdog's idle bound then works as a read timeout does, so the socket itself can
    block without one."""

    __slots__ = ()

    def recv_into(self, *args):
        n = super().recv_into(*args)
        _touch()
        return n

    def recv(self, *args):
        data = super().recv(*args)
        _touch()
        return data


def _touch() -> None:
    """Bytes came in: restart the idle bound of this thread's request, if it has one."""
    alarm = getattr(_current, "alarm", None)
    if alarm is not None:
        alarm.touch(time.monotonic())


def _arm(sock: socket.socket | None) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None and getattr(_current, "alarm", None) is None:
        # A plain-HTTP socket blocks: the watchdog bounds each wait (the request's timeout).
        idle = _current.timeout if isinstance(sock, _ReceiveTouching) else None
        _current.alarm = WATCHDOG.arm(deadline, sock, idle=idle)


def _request_timeout(default):
    """The timeout of the request this thread is sending (requests is given none, see the
    module doc), or ``default`` outside one."""
    return getattr(_current, "timeout", None) or default


def _connection_class(base, guard: AddressGuard | None):
    """``base`` (a urllib3 connection class) that connects through the SSRF guard and puts
    its socket under the request's deadline."""
    tls = issubclass(base, HTTPSConnection)

    def _guarded(self) -> socket.socket:
        timeout = _request_timeout(Timeout.resolve_default_timeout(self.timeout))
        try:
            sock = open_connection(self.host, self.port, guard=guard, timeout=timeout,
                                   deadline=getattr(_current, "deadline", None),
                                   family=allowed_gai_family(), source_address=self.source_address,
                                   socket_options=self.socket_options,
                                   sock_class=socket.socket if tls else _ReceiveTouching)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except socket.timeout as exc:
            raise ConnectTimeoutError(self, f"connection to {self.host} timed out") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"failed to establish a new connection: {exc}") from exc
        _arm(sock)
        return sock

    class Conn(base):
        def connect(self):
            super().connect()
            alarm = getattr(_current, "alarm", None)
            if alarm is not None and alarm.sock is not self.sock:  # wrapped in TLS
                WATCHDOG.retarget(alarm, self.sock)

        def request(self, *args, **kwargs):
            _arm(self.sock)  # a reused keep-alive connection: its socket blocks while sending too
            if tls:  # TLS reads stay under the socket's timeout (urllib3 sets it from this)
                self.timeout = _request_timeout(self.timeout)
            return super().request(*args, **kwargs)

        def getresponse(self, *args, **kwargs):
            _current.sent_at = time.monotonic()  # the request head has just been written
            _touch()  # the wait for the answer starts now (request() armed the alarm)
            if tls:
                self.timeout = _request_timeout(self.timeout)
            return super().getresponse(*args, **kwargs)

    setattr(Conn, SHIM, _guarded)
    return Conn


def _guarded_pools(guard: AddressGuard | None):
    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = _connection_class(HTTPConnectionPool.ConnectionCls, guard)

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _connection_class(HTTPSConnectionPool.ConnectionCls, guard)

    return {"http": HTTPPool, "https": HTTPSPool}


class RequestsFetcher(Transport):
    """The threads engine: ``start`` its workers, or ``call`` policy steps from any thread."""

    def __init__(self, policy: FetchPolicy, guard: AddressGuard | None = None):
        self.policy = policy
        self.guard = guard
        self.local = threading.local()
        self.proxies: dict = {}  # none: requests is not asked to read them from the environment
        self.verify: bool | str = True  # check TLS certificates (a CA bundle path: trust that)
        # One cookie jar for all threads, as the async engine has one for its session:
        # a cookie a host set is sent back whichever thread fetches its next page.
        self.cookies = requests.cookies.RequestsCookieJar()
        self.died: str | None = None

    # -- workers ---------------------------------------------------------------------------------
    def start(self, scheduler, on_page, on_release, try_page=None) -> list[threading.Thread]:
        """``try_page`` (the non-blocking ``on_page``) is for the async engine: a fetcher
        thread may block, so it hands every page to ``on_page``."""
        threads = []
        for i in range(self.policy.settings.concurrency):
            t = threading.Thread(target=self.work, args=(scheduler, on_page, on_release),
                                 name=f"fetcher-{i}", daemon=True)
            t.start()
            threads.append(t)
        return threads

    def work(self, scheduler, on_page, on_release) -> None:
        """One worker: jobs from the scheduler until it is closed. If anything escapes,
        the engine is ``broken`` and the crawl aborts (the coordinator checks)."""
        try:
            while (job := scheduler.next_job()) is not None:
                self.hand_on(job, self.call(self.policy.serve(job)), on_page, on_release)
        except BaseException as exc:
            self.died = f"{threading.current_thread().name} died: {type(exc).__name__}: {exc}"
            log.exception("fetcher thread died")
        finally:
            self.close()

    @property
    def broken(self) -> str | None:
        """Why the engine cannot go on (a worker died), or None."""
        return self.died

    # -- the commands ----------------------------------------------------------------------------
    def call(self, steps):
        return drive(steps, self.perform)

    def perform(self, command):
        match command:
            case Send():
                return self.exchange_or_error(command)
            case Sleep(seconds):
                return not self.policy.stop.wait(seconds)
            case WaitRobots(origin):
                return self.policy.robots.wait_ready(origin)
            case Claim(url):
                return self.policy.claim_target(url)
        raise TypeError(f"not a fetch command: {command!r}")

    def adapter(self) -> GuardedAdapter:
        """This thread's transport adapter and its connection pools (one per thread, as a
        ``requests.Session`` would have)."""
        adapter = getattr(self.local, "adapter", None)
        if adapter is None:
            adapter = self.local.adapter = GuardedAdapter(
                _guarded_pools(self.guard), pool_connections=16,
                pool_maxsize=max(2, self.policy.settings.per_host_concurrency), max_retries=0)
        return adapter

    def close(self) -> None:
        adapter = getattr(self.local, "adapter", None)
        if adapter is not None:
            adapter.close()

    def exchange_or_error(self, send: Send) -> Response | FetchError:
        """``Send``: one GET, redirects not followed. A 2xx body is read up to ``limit``
        decoded bytes (more is TooLarge, or cut off with ``truncate``); other bodies are
        dropped. A failure is returned, not raised."""
        timeout = self.policy.settings.timeout
        started = time.monotonic()
        deadline = started + send.deadline
        _current.deadline, _current.alarm, _current.sent_at = deadline, None, None
        _current.timeout = timeout
        try:
            result = self._exchange(send, timeout, started, deadline)
        except FetchError as exc:
            result = exc
        finally:
            alarm = _current.alarm
            _current.deadline = _current.alarm = _current.timeout = None
            if alarm is not None:
                WATCHDOG.disarm(alarm)
        result.sent_at = _current.sent_at
        return result

    @staticmethod
    def _timed_out(send: Send, deadline: float, timeout: float) -> FetchTimeout | None:
        """The time limit a failed read ran into, if any: the watchdog shut the socket down
        (``timeout`` seconds without a byte from the server, or the deadline), or the
        deadline has passed."""
        alarm = getattr(_current, "alarm", None)
        if alarm is not None and alarm.idle_fired:
            return FetchTimeout(f"read timed out after {timeout:g}s: {send.url}")
        if (alarm is not None and alarm.fired) or time.monotonic() >= deadline:
            return FetchTimeout(f"no complete answer within the deadline of {send.deadline:g}s: {send.url}")
        return None

    def _exchange(self, send: Send, timeout: float, started: float, deadline: float) -> Response:
        url, limit = send.url, send.limit
        try:
            prep = prepared_get(url, send.headers, self.cookies)
            # The adapter directly, not Session.send: redirects are the policy's, there are no
            # hooks, and the session's per-request cookie and redirect bookkeeping parsed the
            # URL three more times (docs/performance.md).
            resp = self.adapter().send(prep, stream=True, timeout=None, verify=self.verify, proxies=self.proxies)
        except FetchError:
            raise
        except requests.exceptions.Timeout as exc:
            step = "connect" if isinstance(exc, requests.exceptions.ConnectTimeout) else "read"
            raise FetchTimeout(f"{step} timed out after {timeout:g}s: {url}") from exc
        except requests.exceptions.RequestException as exc:
            raise self._timed_out(send, deadline, timeout) or ConnectError(f"{_reason(exc)}: {url}") from exc
        try:
            extract_cookies(self.cookies, prep, resp.raw)
            ok = 200 <= resp.status_code < 300
            cap = limit if ok else ERROR_BODY_BYTES
            body = bytearray()
            raw = resp.raw
            try:
                # read1: whatever has arrived, at most CHUNK decoded bytes (urllib3 inflates
                # no more than that at a time), so memory stays bounded and the deadline is
                # looked at often.
                while chunk := raw.read1(CHUNK, decode_content=True):
                    body += chunk
                    if len(body) > cap:
                        if ok and not send.truncate:
                            too_large = TooLarge(f"body larger than max_bytes={cap}: {url}")
                            too_large.response = Response(  # the record still shows the answer
                                url, resp.status_code, {k.lower(): v for k, v in resp.headers.items()},
                                b"", (time.monotonic() - started) * 1000)
                            raise too_large
                        del body[cap:]
                        break
                    if time.monotonic() >= deadline:
                        raise self._timed_out(send, deadline, timeout)
            except (urllib3.exceptions.ReadTimeoutError, requests.exceptions.Timeout, socket.timeout) as exc:
                raise FetchTimeout(f"read timed out after {timeout:g}s: {url}") from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise self._timed_out(send, deadline, timeout) or ConnectError(f"{_reason(exc)}: {url}") from exc
            if timed_out := self._timed_out(send, deadline, timeout):  # the watchdog cut the body short
                raise timed_out
            headers_out = {k.lower(): v for k, v in resp.headers.items()}
            return Response(url, resp.status_code, headers_out, bytes(body) if ok else b"",
                            (time.monotonic() - started) * 1000)
        finally:
            resp.close()


def _reason(exc: BaseException) -> str:
    """A short, one-line reason from a requests/urllib3 exception chain."""
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    text = str(exc) or type(exc).__name__
    for marker in ("Connection refused", "Connection reset", "Name or service not known",
                   "Remote end closed connection", "IncompleteRead", "Connection aborted"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200]
