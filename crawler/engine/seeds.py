"""Seed URLs from the command line, ``-s FILE`` and ``[crawl] seeds``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from crawler.errors import UsageError
from crawler.urls import BadURL, canonicalize

log = logging.getLogger("crawler")


@dataclass
class SeedList:
    urls: list[str] = field(default_factory=list)  # canonical, deduplicated, in order
    problems: list[str] = field(default_factory=list)  # one line each, naming where

    def add(self, raw: str, where: str) -> None:
        try:
            url = canonicalize(raw)
        except BadURL as exc:
            self.problems.append(f"{where}: invalid seed: {exc}")
            return
        if url not in self.urls:
            self.urls.append(url)


def read_seeds(args: list[str], files: list[str], configured: list[str]) -> SeedList:
    """Collect and validate seeds. Bad lines are reported (by the caller) and skipped;
    no valid seed at all is a usage error."""
    seeds = SeedList()
    for i, raw in enumerate(configured):
        seeds.add(raw, f"[crawl] seeds[{i}]")
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"{path}: cannot read seeds file: {exc.strerror}") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            seeds.add(line, f"{path}:{lineno}")
    for raw in args:
        seeds.add(raw, "command line")
    return seeds


def require_seeds(seeds: SeedList) -> list[str]:
    for problem in seeds.problems:
        log.warning("%s", problem)
    if not seeds.urls:
        detail = f" ({len(seeds.problems)} invalid)" if seeds.problems else ""
        raise UsageError(f"no valid seed URL{detail}: give URLs, -s FILE or [crawl] seeds")
    return seeds.urls
