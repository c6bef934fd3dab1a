"""The cyclic garbage collector of the long-running processes (`serve`, `worker`), tuned once at start.

Measured (bench/send.py --latency-ms 50 --only sms, 2 workers, docs/benchmarks.md "session 10"):
at Python's defaults (a young collection every 700 net container allocations) the collector ran
8.7 s in each worker of a 120,000-SMS run. With hundreds of sends in flight, each young collection
found their live objects and moved them to older generations, which filled until a full
collection walked the whole heap (44 per worker, each over every object of the imported
libraries). Frozen start-up objects and a young threshold of 50,000: 0.13 s, one young collection
in the run; in 3 A/B pairs 38 % less worker CPU per message (295 -> 182 µs) and 46 % more SMS per
second, peak RSS unchanged (132 MB).

What is given up: cyclic garbage waits longer to be found (at most `young_threshold` net container
allocations; acyclic objects are freed at once, as always), and objects alive at start are never
walked again (they live as long as the process anyway).
"""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 50_000  # the default of Settings.gc_young_threshold (Python's: 700)


def tune_collector(young_threshold: int) -> None:
    """Freeze what start-up built and collect young objects every `young_threshold` net container
    allocations (0: leave Python's collector as it is). Call once, after start-up, before work."""
    if young_threshold <= 0:
        return
    gc.collect()  # garbage made at start-up is freed, not frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
