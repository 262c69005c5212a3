"""`crawler demo`: the bundled sample shop on loopback, crawled end to end.

It serves a few hundred generated product pages on three loopback addresses
(127.0.0.1-3, one port), writes the settings and seeds it uses next to the output so
they can be read and reused, crawls, checks every record against what the site is
known to contain, and prints what to try next.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import orjson

from crawler.api import crawl
from crawler.engine.progress import wants_progress
from crawler.demo.shop.catalog import build_catalog, loopback_hosts
from crawler.demo.shop.server import Site, SiteServer

PAGES_PER_HOST = 120

SETTINGS = """# Settings used by `crawler demo` (see settings.toml in the repo for every key).
[crawl]
max_depth = -1          # follow links as deep as they go (the shop is 2 links deep)

[fetch]
concurrency = 16
per_host_concurrency = 4
per_host_delay = 0.02   # the demo's own server: be quick, but still polite

"""


def command_name() -> str:
    """How to type `crawler` here: bare if it is on PATH, else the path it was run by."""
    script = sys.argv[0] if sys.argv else ""
    if Path(script).name == "crawler" and shutil.which("crawler") != str(Path(script).resolve()):
        return os.path.relpath(script)
    return "crawler" if shutil.which("crawler") else f"{sys.executable} -m crawler"


def run_demo(output_dir: str = "demo-output", quiet: bool = False) -> int:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    hosts = loopback_hosts(3)
    site = Site()
    with SiteServer(site, hosts, keep_log=False) as server:
        catalog = build_catalog(hosts, server.port, PAGES_PER_HOST, site=site, page_bytes=8192)
        settings = out / "settings.toml"
        settings.write_text(SETTINGS + catalog.rules_toml)
        (out / "seeds.txt").write_text("\n".join(catalog.seeds) + "\n")
        say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
        say(f"demo: serving {len(catalog.expected)} pages on {', '.join(hosts)} (port {server.port})")
        output = out / "crawl.jsonl"
        result = crawl(catalog.seeds, settings=settings, output=output, fresh=True,
                       progress=wants_progress(quiet))
    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    wrong = [r["url"] for r in records if catalog.expected.get(r["url"]) != r["data"]]
    missing = set(catalog.expected) - {r["url"] for r in records}
    say(result.summary())
    if wrong or missing:
        say(f"demo: {len(wrong)} records differ from the site and {len(missing)} pages are missing")
        return 1
    say(f"demo: all {len(records)} records match the site's known contents.\n")
    cmd = command_name()
    say("Try next:")
    say(f"  {cmd} inspect {output}")
    say(f"  {cmd} inspect {output} --where 'to_number(data.price) < 20' --fields url,data.title,data.price")
    say(f"  {cmd} inspect {output} --report {out / 'report.html'}")
    return 0
