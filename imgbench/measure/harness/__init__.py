"""The measurement harness: what every measurement of imgbench does the same way, defined once.

``imgbench compare``, ``imgbench targets``, parallel reads, the PNG trade-off, the asv suite
(benchmarks/) and the perf gate (tests/perf) all take these from here:

- :mod:`.allocator` -- glibc keeps freed memory for reuse (one setting, and why);
- :mod:`.page_cache` -- evict a store before a cold read, load it before a warm one, flush
  before a write;
- :mod:`.repeats` -- interleaved repeats, medians and spreads;
- :mod:`.exactness` -- what was read equals what was written (dtype, shape, values);
- :mod:`.raw_npy` -- the raw ``.npy`` reference the targets and the gate are ratios to;
- :mod:`.environment` -- the machine and library versions a result was measured with;
- :mod:`.progress` -- the one progress bar.
"""

from imgbench.measure.harness.allocator import allocator_tuned, tune_allocator
from imgbench.measure.harness.environment import machine_info, versions
from imgbench.measure.harness.exactness import mismatch, same_images
from imgbench.measure.harness.page_cache import evict, prepare_write, store_files, warm
from imgbench.measure.harness.progress import Progress, ProgressBar, no_progress, progress_bar
from imgbench.measure.harness.raw_npy import (
    RAW_RANDOM_LOOP,
    RAW_RANDOM_MANY,
    RAW_READ,
    RAW_WRITE,
    map_raw_npy,
    read_raw_npy,
    read_raw_npy_loop,
    take_raw_npy,
    write_raw_npy,
)
from imgbench.measure.harness.repeats import interleaved, summarize

__all__ = [
    "RAW_RANDOM_LOOP", "RAW_RANDOM_MANY", "RAW_READ", "RAW_WRITE", "Progress", "ProgressBar", "allocator_tuned",
    "evict", "interleaved", "machine_info", "map_raw_npy", "mismatch", "no_progress", "prepare_write",
    "progress_bar", "read_raw_npy", "read_raw_npy_loop", "same_images", "store_files", "summarize",
    "take_raw_npy", "tune_allocator", "versions", "warm", "write_raw_npy",
]
