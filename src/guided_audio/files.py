"""Writing files so that nothing is ever half-written, and knowing a file by its hash."""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HASH_BLOCK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def temp_beside(target: Path, suffix: str) -> Iterator[Path]:
    """A fresh private (0600) temp file in `target`'s folder, removed however the block ends.

    The caller publishes it inside the block (rename or link): on the same filesystem that
    is atomic, so readers see the old file or the whole new one, never a part.
    """
    temp: Path | None = None
    try:
        # A stop while the file is made waits until it is named here, so it is removed:
        # the deferred signal is raised on leaving the deferral, inside this try.
        with signals_deferred():
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=suffix)
            os.close(fd)
            temp = Path(name)
        yield temp
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)


def replace_with(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` whole: a temp file beside it (0600, or `mode`), renamed over
    it. Readers see the old file or the new one, never a part."""
    with temp_beside(path, ".partial") as temp:
        temp.write_bytes(data)
        if mode is not None:
            temp.chmod(mode)
        os.replace(temp, path)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP wait until the block ends, then act as they would have:
    for steps that must not be cut in two, such as starting a program that writes a file
    (stopped while Popen starts it, the program would run on and write it after the
    cleanup). Outside the main thread, where handlers cannot be set, signals act at once."""
    caught: list[int] = []
    try:
        previous = {
            signum: signal.signal(signum, lambda n, _: caught.append(n)) for signum in STOP_SIGNALS
        }
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, left as it is
                signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])


def exit_quietly_on_signals() -> None:
    """In a worker process: Ctrl-C, SIGTERM or SIGHUP unwind it (its temp files go, by the
    blocks above) and end it with 128 + the signal, without a traceback."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_quietly)


def _exit_quietly(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
