"""Writing files so that nothing is ever half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def temp_beside(target: Path, suffix: str) -> Iterator[Path]:
    """A fresh private (0600) temp file in `target`'s folder, removed however the block ends.

    The caller publishes it inside the block (rename or link): on the same filesystem that
    is atomic, so readers see the old file or the whole new one, never a part.
    """
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=suffix)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
    finally:
        temp.unlink(missing_ok=True)
