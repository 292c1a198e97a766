"""What a trial process holds in memory, and handing a finished trial's memory back.

Reported with every epoch (peak_rss_mb, rss_mb, anon_mb, shared_lib_mb, pss_mb) because Ray reuses
one process for trial after trial; docs/benchmarks.md has what was measured.
"""

from __future__ import annotations

import ctypes
import gc
import resource
from pathlib import Path


def _fields(path: str, skip: int = 0) -> dict[str, str]:
    """A /proc file of "Name: value" lines as a dict (after `skip` header lines)."""
    return dict(line.split(":", 1) for line in Path(path).read_text().splitlines()[skip:])


def memory_mb() -> dict[str, float]:
    """Peak resident memory of the process running the trial, and what it is made of: its own
    (anonymous) memory, pages of shared libraries (torch's CUDA build maps ~600 MB of them, held
    once by the page cache for every process), and its proportional share (PSS), which divides
    shared pages between the processes that map them."""
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        status, rollup = _fields("/proc/self/status"), _fields("/proc/self/smaps_rollup", skip=1)
    except OSError:  # not Linux
        return peak

    def mb(table: dict[str, str], key: str) -> float:
        return int(table[key].split()[0]) / 1024  # the kernel counts kB

    return {**peak, **cuda_mb(), "rss_mb": mb(status, "VmRSS"), "anon_mb": mb(status, "RssAnon"),
            "shared_lib_mb": mb(status, "RssFile"), "pss_mb": mb(rollup, "Pss")}


def cuda_mb() -> dict[str, float]:
    """The trial's peak GPU memory so far (allocated by tensors, and reserved by torch's caching
    allocator), where this process uses CUDA; release_memory starts the count again for the
    next trial."""
    import torch

    if not torch.cuda.is_initialized():
        return {}
    return {"cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20,
            "cuda_reserved_peak_mb": torch.cuda.max_memory_reserved() / 2**20}


def release_memory() -> None:
    """Hand a finished trial's memory back to the system. Ray reuses the process for the next
    trial, and glibc keeps freed tensors' pages in its arenas unless asked (measured on 16 trials
    in one actor: +18 MB per trial without this, +3 MB with it)."""
    gc.collect()
    _release_cuda()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _release_cuda() -> None:
    """The GPU memory torch's caching allocator holds for a finished trial, handed back (the next
    trial in this process, or another process on the GPU, can use it), and the peak counted
    again; nothing where this process never used CUDA."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
