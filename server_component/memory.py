"""Keep the aggregator's memory O(model size) at the allocator level too.

glibc raises its mmap threshold each time a large mmapped block is freed, after which
model-sized buffers come from per-thread arenas and are not returned to the OS; with one
waitress thread per client, resident memory then grows with the number of clients even
though the aggregator holds only one running sum. Pinning the threshold keeps every
model-sized buffer mmapped, so freeing it gives the memory back (bench.memory shows both).
It is pinned at 2 MiB, not lower: the server loop's 1 MiB socket reads then reuse heap
memory instead of faulting fresh pages in for every read (a quarter of a 25M-parameter
round's time at 128 KiB), while the 2 MiB chunk buffers of each update are still returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 2 * 1024 * 1024


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """True if glibc accepted the fixed threshold; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    log.debug("mallopt(M_MMAP_THRESHOLD, %d) -> %s", threshold, ok)
    return ok
