"""elapsed_ms percentiles in bounded memory: a log-bucketed histogram, 1 % relative error.

Exact percentiles need every value; a crawl of any size must fit in bounded memory, so the
summary keeps counts per logarithmic bucket instead (the DDSketch construction): bucket ``i``
holds the values in ``(GAMMA**(i-1), GAMMA**i]``, and answers for them with one value that is
within RELATIVE_ERROR of each. From 1 µs to a day that is about 1,200 buckets, whatever the
number of values. Histograms merge by adding counts, so parts summarised in parallel add up.
"""

from __future__ import annotations

import math
from collections import Counter


class LatencyHistogram:
    """Quantiles of positive numbers with bounded memory and bounded relative error.

    Bucket ``i`` holds the values in ``(GAMMA**(i-1), GAMMA**i]`` and answers with
    ``2 * GAMMA**i / (GAMMA + 1)``, which is within RELATIVE_ERROR of anything in it (the
    DDSketch construction). Zero is counted apart.
    """

    RELATIVE_ERROR = 0.01
    GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
    INV_LOG_GAMMA = 1 / math.log(GAMMA)

    __slots__ = ("buckets", "zeros", "count", "total")

    def __init__(self) -> None:
        self.buckets: Counter = Counter()
        self.zeros = 0
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > 0:
            key = math.ceil(math.log(value) * self.INV_LOG_GAMMA)
            self.buckets[key] = self.buckets.get(key, 0) + 1
        else:
            self.zeros += 1

    def add_many(self, values: list[float]) -> None:
        positive = list(filter(None, values))  # drops 0 and 0.0
        self.count += len(values)
        self.total += sum(values)
        self.zeros += len(values) - len(positive)
        self.buckets.update(map(math.ceil, map(self.INV_LOG_GAMMA.__mul__, map(math.log, positive))))

    def merge(self, other: LatencyHistogram) -> None:
        self.count += other.count
        self.total += other.total
        self.zeros += other.zeros
        self.buckets.update(other.buckets)

    def bucket_value(self, key: int) -> float:
        return 2 * self.GAMMA**key / (self.GAMMA + 1)

    def bucket_bounds(self, key: int) -> tuple[float, float]:
        return self.GAMMA ** (key - 1), self.GAMMA**key

    def quantile(self, q: float) -> float | None:
        """The nearest-rank q-quantile (0 < q <= 1), or None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        if rank <= self.zeros:
            return 0.0
        seen = self.zeros
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return self.bucket_value(key)
        raise AssertionError("bucket counts do not add up to count")
