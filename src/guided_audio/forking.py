"""Worker processes forked from this one: they share what it has loaded, and a pool of
them ends cleanly however it ends."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager


@contextmanager
def forked_pool(
    workers: int, initializer: Callable[..., object], initargs: tuple[object, ...] = ()
) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """`workers` processes forked from this one. When one dies, the others are ended
    before the pool shuts down: CPython 3.13 leaves them waiting for work, and the
    shutdown would wait for them forever."""
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        try:
            yield pool
        except BrokenProcessPool:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            raise
