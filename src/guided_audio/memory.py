"""How the C allocator keeps memory, in processes that make and drop large arrays per block.

glibc maps each allocation over its threshold (128 KiB at first, raised as blocks are freed)
straight from the kernel and gives it back when freed, and trims the heap's top past 2x that:
every block's arrays were then fresh pages, each faulted in zeroed. An export spent a fifth
of its CPU in the kernel that way (1.2 of 7.8 s for ten minutes, warm). Kept in the heap,
freed blocks are reused as they are: the peak RSS is the same (measured), the kernel time a
third. Elsewhere than glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 << 20
TRIM_THRESHOLD_BYTES = 512 << 20


def keep_freed_memory() -> None:
    """For a process about to stream blocks (encoding, metering). Not before speech is made:
    memory the voice lets go of would then stay with the process (a cold export on one core
    peaked at 303 MiB, not 224)."""
    try:
        libc = ctypes.CDLL(None)  # the process's own C library
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return
    malloc_trim(0)  # what earlier work let go of (a voice) goes back first, holes included
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
