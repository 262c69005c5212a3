"""The Scrapy contender of bench/run.py: the spider a Scrapy user would write for the catalog.

A CrawlSpider that follows every link within the catalog's hosts and extracts the same four
fields with the same XPaths and regex as our crawler's rules, with the settings the benchmark
fixes (64 concurrent, 16 per host, no delay, robots.txt obeyed, no autothrottle).

    python -m scrapy runspider bench/scrapy_spider.py -a seeds_file=SEEDS -O out.jsonl

Items are written as {"url", "status", "depth", "data": {...}} so run.py checks both
contenders' output with one function.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


class CatalogSpider(CrawlSpider):
    name = "catalog"
    custom_settings = {
        "CONCURRENT_REQUESTS": 64,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
        "DOWNLOAD_DELAY": 0,
        "ROBOTSTXT_OBEY": True,
        "AUTOTHROTTLE_ENABLED": False,
        "DEPTH_LIMIT": 0,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,  # nothing to bind that the benchmark does not need
        "FEED_EXPORT_ENCODING": "utf-8",
        "USER_AGENT": "scrapy-bench (+https://scrapy.org)",
    }

    def __init__(self, seeds_file: str, *args, **kwargs) -> None:
        with open(seeds_file) as f:
            self.start_urls = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        # Scoping the Scrapy way: allowed_domains (host names, no port) and the offsite
        # middleware. (LinkExtractor(allow_domains=...) would compare host:port and drop all.)
        self.allowed_domains = sorted({urlsplit(url).hostname for url in self.start_urls})
        self.rules = (Rule(LinkExtractor(), callback="parse_item", follow=True),)
        super().__init__(*args, **kwargs)  # compiles self.rules

    def parse_start_url(self, response):
        return self.parse_item(response)

    def parse_item(self, response):
        yield {
            "url": response.url,
            "status": response.status,
            "depth": response.meta.get("depth", 0),
            "data": {
                "title": _first(response.xpath("//title/text()").get()),
                "price": response.xpath("//span[@class='price']/text()").re_first(r"([\d.]+)"),
                "sku": _first(response.xpath("//td[@class='sku']/text()").get()),
                "category": _first(response.xpath("//a[@class='cat']/text()").get()),
            },
        }


def _first(text: str | None) -> str | None:
    return text.strip() if text is not None else None
