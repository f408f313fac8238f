"""Settings for a process whose job is to be the fake provider (`cancel-harness serve`).

`configure_server_process` is not applied to in-process use: a test process's garbage
collector is its own business. `release_memory` runs after a large ledger reset.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), after a big reset.

    Without the trim, RSS after forgetting 100,000 ledger records stays where it peaked,
    which reads as a leak to anyone watching a soak run.
    """
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing more to do
        pass
