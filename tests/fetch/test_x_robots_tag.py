"""X-Robots-Tag response headers are honoured like <meta name="robots"> (issue 11, part 2):
noindex drops a page's data, nofollow its links, none both; directives addressed to another
crawler are not ours; with obey_robots off the header is ignored."""

from __future__ import annotations

from crawler.demo.shop.server import Response, Site
from parsers.worker import robots_tag_directives
from tests.conftest import FAST
from tests.fetch.test_fetch_faults import links

H = "127.0.0.1"


def tagged(title: str, tag: str | None, *paths: str) -> Response:
    headers = (("X-Robots-Tag", tag),) if tag else ()
    return Response.html(f"<html><head><title>{title}</title></head><body>{links(*paths)}</body></html>",
                         headers=headers)


def site_with_tags() -> Site:
    site = Site()
    site.add(H, "/", tagged("home", None, "/noindex", "/nofollow", "/none", "/other-bot", "/pdf"))
    site.add(H, "/noindex", tagged("ni", "noindex", "/from-noindex"))
    site.add(H, "/nofollow", tagged("nf", "nofollow", "/from-nofollow"))
    site.add(H, "/none", tagged("none", "NONE", "/from-none"))
    site.add(H, "/other-bot", tagged("ob", "otherbot: noindex, nofollow", "/from-other-bot"))
    site.add(H, "*", tagged("page", None))
    return site


def crawl(serve, cli, engine_name, obey: bool):
    server = serve(site_with_tags(), [H])
    settings = FAST.replace("[crawl]\n", f"[crawl]\nobey_robots = {str(obey).lower()}\n")
    run = cli("crawl", server.url(H), "-o", "out.jsonl", "-q", "--engine", engine_name, settings=settings)
    assert run.code == 0, run.stderr
    base = server.url(H, "/")[:-1]
    return server, {r["url"].removeprefix(base): r for r in run.records}


def test_x_robots_tag_noindex_nofollow_and_none_are_honoured(serve, cli, engine_name):
    server, records = crawl(serve, cli, engine_name, obey=True)
    assert (records["/noindex"]["rule"], records["/noindex"]["data"]) == (None, {})
    assert server.hits(H, "/from-noindex") == 1, "noindex alone still follows links"
    assert records["/nofollow"]["data"] == {"title": "nf"}
    assert records["/nofollow"]["links"] == 0 and server.hits(H, "/from-nofollow") == 0
    assert (records["/none"]["data"], server.hits(H, "/from-none")) == ({}, 0)
    assert records["/other-bot"]["data"] == {"title": "ob"}, "directives for another crawler are not ours"
    assert server.hits(H, "/from-other-bot") == 1
    assert set(records) == {"/", "/noindex", "/nofollow", "/none", "/other-bot", "/pdf", "/from-noindex",
                            "/from-other-bot"}


def test_x_robots_tag_is_ignored_when_robots_are_not_obeyed(serve, cli, engine_name):
    server, records = crawl(serve, cli, engine_name, obey=False)
    assert records["/noindex"]["data"] == {"title": "ni"}
    assert all(server.hits(H, p) == 1 for p in ("/from-noindex", "/from-nofollow", "/from-none"))


def test_robots_tag_directives_parse_like_meta_robots():
    assert robots_tag_directives("noindex, NoFollow") == {"noindex", "nofollow"}
    assert robots_tag_directives("none") == {"none", "noindex", "nofollow"}
    assert robots_tag_directives("unavailable_after: 25 Jun 2010 15:00:00 PST, nofollow") >= {"nofollow"}
    assert robots_tag_directives("googlebot: noindex") == set()
    assert robots_tag_directives("noarchive, bingbot: noindex") == {"noarchive"}
