"""A parse rule that logs every call (one line per URL) to $CRAWLER_TEST_PARSE_LOG, so tests
can prove which pages were parsed again on a recrawl."""

import os


def parse(url, text, tree):
    with open(os.environ["CRAWLER_TEST_PARSE_LOG"], "a") as log:
        log.write(url + "\n")
    return {"title": tree.xpath("string(//title)"), "price": tree.xpath("string(//span[@class='price'])")}
