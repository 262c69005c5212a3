"""CPU cost of parsing one page, in one process, with a given set of field rules.

Parses the sample shop's pages (the pages `bench/run.py` crawls, 16 KiB each) with
``parsers.worker.parse_page``, the whole per-page job of a parser process (decode, tree,
fields, links, record), and prints microseconds per page: the best and the median of
``--repeat`` passes over all pages. No sockets and no processes, so it isolates the parse.

    .venv/bin/python bench/parse_fields.py [--pages 1000] [--repeat 7] [--rules xpath|css|typed]

``xpath`` is the catalog's four XPath fields (what `bench/run.py` uses); ``css`` the same
four fields written as CSS selectors; ``typed`` the CSS fields plus a number type, a
required field and a JSON-LD field. Run it from two checkouts (PYTHONPATH=<checkout>) in one
sitting to compare them; only ``xpath`` exists before CSS selectors were added.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tomllib

from crawler.demo.shop.catalog import build_catalog
from crawler.messages import FetchJob, Page
from crawler.settings import build_rules
from crawler.urls import Scope
from parsers.worker import WorkerConfig, WorkerState, parse_page

# The catalog's four fields (crawler.demo.shop.catalog.FIELDS) as CSS selectors.
CSS_FIELDS = {"title": 'css = "title::text"', "price": "css = \"span.price::text\", regex = '([\\d.]+)'",
              "sku": 'css = "td.sku::text"', "category": 'css = "a.cat::text"'}
CSS_RULES = '[[parse.rules]]\nname = "catalog"\nmatch = "."\n' + "".join(
    f"fields.{name} = {{ {spec} }}\n" for name, spec in CSS_FIELDS.items())
TYPED_EXTRA = """fields.price_number = { css = "span.price::text", type = "number" }
fields.title_required = { css = "title::text", required = true }
fields.ld_name = { jsonld = "Product", path = "name" }
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--rules", choices=("xpath", "css", "typed"), default="xpath")
    args = ap.parse_args()
    catalog = build_catalog(["127.0.0.1"], 8000, args.pages, page_bytes=16384)
    text = {"xpath": catalog.rules_toml, "css": CSS_RULES, "typed": CSS_RULES + TYPED_EXTRA}[args.rules]
    rules = build_rules(tomllib.loads(text)["parse"]["rules"], "bench")
    config = WorkerConfig(crawl_id="bench", rules=rules, scope=Scope(domains=frozenset({"127.0.0.1"})),
                          obey_robots=True, max_depth=-1, max_links=1000)
    pages = []
    for i, ((host, path), response) in enumerate(catalog.site.routes().items()):
        if response.headers and response.headers[0][1].startswith("text/html"):
            url = f"http://127.0.0.1:8000{path}"
            pages.append(Page(job=FetchJob(id=i, url=url, host="127.0.0.1", depth=1), fetched_at="2026-01-01T00:00:00.000Z",
                              final_url=url, status=200, content_type="text/html", charset="utf-8", body=response.body))
    per_page = []
    for _ in range(args.repeat):
        state = WorkerState(config)  # a fresh links cache each pass, as in a new process
        start = time.process_time()
        for page in pages:
            parse_page(page, state)
        per_page.append((time.process_time() - start) / len(pages) * 1e6)
    print(f"rules={args.rules} pages={len(pages)} repeat={args.repeat} "
          f"cpu_us_per_page best={min(per_page):.1f} median={statistics.median(per_page):.1f}")


if __name__ == "__main__":
    main()
