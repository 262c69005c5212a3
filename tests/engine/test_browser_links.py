"""A crawl through the CLI follows links and redirects as a browser does, and records
<link rel="canonical">: hrefs with backslashes, tabs and newlines, "http:x" and padded
spaces reach the page a browser would open; hrefs a browser cannot parse and same-document
"#..." links request nothing; a Location header resolves the same way. Both engines.
"""

from __future__ import annotations

import pytest

from crawler.demo.shop.server import Response, Site

H = "127.0.0.1"
SETTINGS = """
[crawl]
max_depth = -1
[fetch]
engine = "{engine}"
concurrency = 8
per_host_concurrency = 4
per_host_delay = 0
timeout = 5
[parse]
workers = 1
"""

# href on "/dir/index.html" -> the path a browser requests (None: nothing)
HREFS = {
    "..\\back\\slash.html": "/back/slash.html",
    "/tab\t/new\nline.html": "/tab/newline.html",
    "http:same-scheme.html": "/dir/same-scheme.html",
    "  padded.html \n": "/dir/padded.html",
    "./dot/../segments.html?b=2&a=1#frag": "/dir/segments.html?a=1&b=2",
    "/redirect": "/redirect",  # -> Location: ..\target.html (a backslash too)
    "#top": None,
    "  #also-same-document": None,
    "http://exa mple/": None,  # a space in the host: a browser fails
    "http://[::1/": None,
}


def page(title: str, head: str = "", body: str = "") -> Response:
    return Response.html(f"<html><head><title>{title}</title>{head}</head><body>{body}</body></html>")


def build_site() -> Site:
    site = Site()
    links = "".join(f'<a href="{h.replace("&", "&amp;")}">x</a>' for h in HREFS)
    site.add(H, "/", Response.redirect("/dir/index.html", 301))
    site.add(H, "/dir/index.html", page("index", body=links))
    for path in {p.split("?")[0] for p in HREFS.values() if p and p != "/redirect"}:
        site.add(H, path, page(path))
    site.add(H, "/redirect", Response.redirect("..\\target.html", 302))
    site.add(H, "/target.html", page("target", head='<link rel="canonical" href="/dir/..\\canon.html?x=1">'))
    return site


@pytest.mark.parametrize("engine", ["threads", "async"])
def test_links_and_redirects_resolve_as_in_a_browser(serve, cli, engine):
    server = serve(build_site(), [H])
    run = cli("crawl", server.url(H, "/"), "-c", "settings.toml", "-o", "out.jsonl", "--fresh", "-q",
              settings=SETTINGS.format(engine=engine))
    assert run.code == 0, run.stderr
    by_url = {r["url"]: r for r in run.records}
    expected = {server.url(H, p) for p in HREFS.values() if p and p != "/redirect"}
    expected |= {server.url(H, "/"), server.url(H, "/redirect")}  # records of the two redirects
    assert set(by_url) == expected
    assert all(r["status"] in (200, 301) and r["error"] is None for r in by_url.values())
    assert by_url[server.url(H, "/redirect")]["final_url"] == server.url(H, "/target.html")
    assert by_url[server.url(H, "/redirect")]["canonical"] == server.url(H, "/canon.html?x=1")
    index = by_url[server.url(H, "/")]
    assert (index["final_url"], index["links"], index["canonical"]) == (server.url(H, "/dir/index.html"), 6, None)
    # Nothing else was requested: one request per record's URL and per redirect target, and
    # robots.txt.
    assert server.hits(H) == len(expected) + 3
    assert server.hits(H, "/canon.html") == 0  # recorded, not followed
