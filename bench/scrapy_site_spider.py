"""The Scrapy contender of bench/realsite.py: the generic spider a Scrapy user would write to
crawl a whole site and keep each page's title.

A CrawlSpider over the seeds' hosts with a default LinkExtractor (every <a>/<area> href,
Scrapy's default list of ignored file extensions), robots.txt obeyed, no delay, no
autothrottle; the concurrency comes from the command line (the bench passes the figures it
gives the other contenders):

    python -m scrapy runspider bench/scrapy_site_spider.py -a seeds_file=SEEDS \\
        -s CONCURRENT_REQUESTS=16 -s CONCURRENT_REQUESTS_PER_DOMAIN=16 -O out.jsonl:jsonlines

Items are {"url", "status", "title"}.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scrapy_spider import CatalogSpider  # noqa: E402  (seeds, scope and link rule: the same)


class SiteSpider(CatalogSpider):
    name = "site"
    custom_settings = {key: value for key, value in CatalogSpider.custom_settings.items()
                       if not key.startswith("CONCURRENT_")}  # given with -s

    def parse_item(self, response):
        title = response.xpath("//title/text()").get() if hasattr(response, "xpath") else None
        yield {"url": response.url, "status": response.status,
               "title": title.strip() if title is not None else None}
