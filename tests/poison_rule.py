"""A parse rule that kills its own parser process on any URL containing "poison"
(used by tests/test_durability.py to prove one poisonous page cannot kill a crawl)."""

import os
import signal


def parse(url, text, tree):
    if "poison" in url:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"title": tree.xpath("string(//title)") if tree is not None else None}
