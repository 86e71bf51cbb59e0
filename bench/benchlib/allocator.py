"""Pin the CPU memory allocator's behaviour for benchmarks (glibc ``malloc``).

PyTorch allocates CPU tensors with the C library's ``malloc``. With glibc's defaults a
freed block above the (dynamic) mmap threshold goes back to the kernel, and so does free
memory at the top of the heap beyond the trim threshold; the next step's tensors of the same
size then page-fault their memory back in, and the kernel zeroes every page. How much of a
training or attack step that costs depends on what ran before in the process (which
thresholds glibc has adapted to), not on the code being measured: on this project's 2-core
CPU it was up to half of a deterministic CNN step (``sys`` time 8 ms of a 17 ms step) and it
moved ratios such as ``attacks.pgd_l2.ours_vs_torchattacks`` between 1.0 and 2.0 from one
process to the next.

:func:`keep_freed_memory` fixes that state: freed memory stays in the process (as with
PyTorch's CUDA caching allocator, or with jemalloc/tcmalloc, which PyTorch's CPU tuning guide
recommends), so every step sees warm memory. ``bench/mnist.py`` and ``bench/regression.py``
call it by default (``--allocator default`` to leave glibc alone): the quick MNIST profile's
BL and MIX ran 20% faster with identical numbers. ``bench/perf.py`` leaves the allocator
alone unless run with ``--allocator warm``, and records the state either way. Memory
measurements (peak RSS growth) call :func:`release_freed_memory` first, so that memory kept
from earlier steps does not hide the growth.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30
"""Free memory kept at the top of the heap before glibc returns any (bytes)."""
MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap (glibc's largest allowed value on 64-bit)."""

_state = "the C library's default malloc"


def state() -> str:
    """What this process's allocator was set to, in words (recorded with results)."""
    return _state


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Return the process's free heap memory to the kernel (glibc ``malloc_trim(0)``).

    Returns:
        Whether anything could be asked of the C library (``False`` without glibc).
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def keep_freed_memory() -> str:
    """Ask glibc to keep freed memory in the process; return what was done, in words.

    A no-op (with a message saying so) where the C library is not glibc or lacks
    ``mallopt``, e.g. on macOS or Windows. The message is also what :func:`state` returns.
    """
    global _state
    _state = _keep_freed_memory()
    return _state


def _keep_freed_memory() -> str:
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return f"default allocator (no glibc mallopt on {sys.platform})"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and ok
    if not ok:
        return "default allocator (mallopt refused the thresholds)"
    return (
        f"glibc malloc keeps freed memory (trim threshold {TRIM_THRESHOLD >> 20} MiB, "
        f"mmap threshold {MMAP_THRESHOLD >> 20} MiB)"
    )
