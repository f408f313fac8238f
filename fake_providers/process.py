"""Settings for a process whose job is to be the fake provider (`cancel-harness serve`).

Not applied to in-process use: a test process's garbage collector is its own business.
"""

from __future__ import annotations

import gc

# Young collections every 50k net allocations instead of 700: thousands of connections
# accepted in a burst then mostly survive, and with the default thresholds each burst
# promotes them into repeated full collections that stall every paced stream for tens of
# milliseconds. Young collections stay a few ms; cyclic garbage is still collected.
GC_THRESHOLDS = (50_000, 20, 100)


def configure_server_process() -> None:
    """Tune the cyclic GC for serving many long-lived connections; freeze start-up objects."""
    gc.collect()
    gc.freeze()  # imports and start-up state: never garbage, never worth scanning again
    gc.set_threshold(*GC_THRESHOLDS)
