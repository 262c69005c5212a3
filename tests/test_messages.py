"""crawler.messages: the record timestamp."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from crawler.messages import utc_now_iso


def reference(now: float) -> str:
    """The format as the design states it, from the standard library's datetime."""
    when = datetime.fromtimestamp(now, timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def test_timestamps_match_the_datetime_format_across_second_and_day_boundaries():
    # The same second twice (the date part is reused), then the next second, the next
    # day and an earlier time: the cached part must never leak into another second.
    for now in (1_790_000_000.25, 1_790_000_000.999, 1_790_000_001.0, 1_790_006_399.5,
                1_790_006_400.004, 1_700_000_000.5, 1_790_000_000.25):
        assert utc_now_iso(now) == reference(now)


def test_the_current_time_is_utc_with_milliseconds_and_a_z():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = utc_now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert 0 <= (when - before).total_seconds() < 5
