"""What the threads engine asks of requests, without the work a crawl has no use for.

- ``GuardedAdapter``: requests' ``HTTPAdapter`` over the engine's guarded connection pools,
  overriding only the methods requests documents for subclasses;
- ``prepared_get``: a GET built from ``PreparedRequest``'s public steps;
- ``extract_cookies``: an answer's cookies into the crawl's shared jar.

The engine sends with the adapter directly, not through a ``requests.Session``: redirects
are the fetch policy's and no hooks are set, so a session only added per-request
bookkeeping (its cookie and redirect steps parsed each URL three more times;
docs/performance.md, "Fifth round").
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter


class GuardedAdapter(HTTPAdapter):
    """requests' transport adapter with the given pool classes, and without the work the
    crawler has no use for on every request. These are the methods requests documents for
    subclasses to override; with a proxy they do what requests does.

    - the pool for a request is found without looking for a proxy first (``select_proxy``
      parses the URL before it finds there is none to select), and the request target is
      the URL's path and query;
    - the Response's own cookie jar stays empty: the fetcher puts the answer's cookies in
      the crawl's shared jar itself (``extract_cookies``), and nothing reads
      ``Response.cookies`` or ``Response.encoding``.
    """

    KEYS_KEPT = 256  # origins whose pool key attributes are remembered (then forgotten at once)

    def __init__(self, pool_classes: dict | None = None, **kw):
        self.pool_classes = pool_classes  # by scheme (the threads engine's guarded ones); None: urllib3's
        self.keys: dict[tuple, tuple[dict, dict]] = {}
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        super().init_poolmanager(*args, **kw)
        if self.pool_classes is not None:
            self.poolmanager.pool_classes_by_scheme = self.pool_classes

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        """requests' own, remembered per origin: it depends on nothing else, and working it
        out parses the URL. (urllib3 copies what it is given; nobody changes these dicts.)"""
        url = request.url
        end = _path_start(url)
        if end < 0 or cert is not None:
            return super().build_connection_pool_key_attributes(request, verify, cert)
        key = (url[:end], verify)
        found = self.keys.get(key)
        if found is None:
            if len(self.keys) >= self.KEYS_KEPT:
                self.keys.clear()
            found = self.keys[key] = super().build_connection_pool_key_attributes(request, verify, cert)
        return found

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        try:
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        except ValueError as exc:
            raise requests.exceptions.InvalidURL(exc, request=request)
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)

    def request_url(self, request, proxies):
        """The path and query of the URL, which a canonical URL spells out as they are
        sent: cut out of it rather than parsed (``path_url`` for anything else)."""
        if proxies:
            return super().request_url(request, proxies)
        url = request.url
        start = _path_start(url)
        if start < 0 or "#" in url or url.endswith("?"):
            return request.path_url
        return url[start:]

    def build_response(self, req, resp) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = requests.structures.CaseInsensitiveDict(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url
        response.request = req
        response.connection = self
        return response


def _path_start(url: str) -> int:
    """Where the path begins in an absolute URL (the first "/" after its authority), or -1."""
    return url.find("/", url.find("//") + 2)


def prepared_get(url: str, headers: dict, cookies) -> requests.PreparedRequest:
    """A GET of ``url``, a canonical URL (crawler.urls), built from PreparedRequest's public
    steps without ``prepare_url``: that step parses, IDNA-checks and re-quotes a URL the
    canonical form has already made valid, about 25 us of CPU a request under the GIL that
    64 fetcher threads share (``Session.get`` would also merge environment settings on
    every call). urllib3 still escapes the request target as before. Kept: header checks,
    cookies from the shared jar, and credentials in the URL sent as Basic auth."""
    prep = requests.PreparedRequest()
    prep.prepare_method("GET")
    prep.url = url
    prep.prepare_headers(headers)
    if len(cookies):  # an empty jar has no Cookie header to add
        prep.prepare_cookies(cookies)
    if "@" in url:  # user:password@host
        prep.prepare_auth(None, url)
    return prep


def extract_cookies(jar, prep: requests.PreparedRequest, raw) -> None:
    """Keep the cookies an answer sets (what ``Session.send`` does), looking first whether
    it sets any: most answers do not, and the cookie policy's look at one parses the URL."""
    headers = raw.headers
    if "set-cookie" in headers or "set-cookie2" in headers:
        requests.cookies.extract_cookies_to_jar(jar, prep, raw)
