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

from urllib.parse import urlsplit

from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


class SiteSpider(CrawlSpider):
    name = "site"
    custom_settings = {
        "DOWNLOAD_DELAY": 0,
        "ROBOTSTXT_OBEY": True,
        "AUTOTHROTTLE_ENABLED": False,
        "DEPTH_LIMIT": 0,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
        "FEED_EXPORT_ENCODING": "utf-8",
        "USER_AGENT": "scrapy-bench (+https://scrapy.org)",
    }

    def __init__(self, seeds_file: str, *args, **kwargs) -> None:
        with open(seeds_file) as f:
            self.start_urls = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        self.allowed_domains = sorted({urlsplit(url).hostname for url in self.start_urls})
        self.rules = (Rule(LinkExtractor(), callback="parse_item", follow=True),)
        super().__init__(*args, **kwargs)

    def parse_start_url(self, response):
        return self.parse_item(response)

    def parse_item(self, response):
        title = response.xpath("//title/text()").get() if hasattr(response, "xpath") else None
        yield {"url": response.url, "status": response.status,
               "title": title.strip() if title is not None else None}
