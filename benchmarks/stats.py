"""The one percentile definition of every benchmark, so that p99s are comparable.

Nearest rank: the p-th percentile of n sorted samples is the smallest sample with at least
p% of the samples at or below it (index ceil(p/100 * n) - 1). It is always a value that was
measured, and an infinite sample (an event that never arrived) stays infinite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values; `p` in percent (99 for p99)."""
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def ratio(ours_value: float | None, base_value: float | None) -> float | None:
    """ours / baseline, or None when either is missing or the baseline is zero."""
    if ours_value is None or base_value is None or base_value == 0:
        return None
    return ours_value / base_value
