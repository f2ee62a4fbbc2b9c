"""The allocator keeps freed blocks for the next ones: a block's arrays are not fresh pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHURN = """
import resource, sys
import numpy as np
from guided_audio import memory
if sys.argv[1] == "kept":
    memory.keep_freed_memory()
block = np.ones((441000, 2), np.float32)  # ten seconds of stereo, as an export's blocks are
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    upsampled = np.repeat(block, 4, axis=0) * 0.5  # 14 MB, made and dropped per block
    del upsampled
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_arrays_made_per_block_reuse_freed_memory() -> None:
    pages_per_block = 441000 * 2 * 4 * 4 // 4096
    default, kept = _page_faults("default"), _page_faults("kept")
    assert default > 5 * pages_per_block, default  # fresh pages, block after block
    assert kept < 3 * pages_per_block, kept  # the first blocks' pages, reused
