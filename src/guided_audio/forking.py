"""Worker processes forked from this one: they share what it has loaded, and a pool of
them ends cleanly however it ends."""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def forked_pool(
    workers: int, initializer: Callable[..., object], initargs: tuple[object, ...] = ()
) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """`workers` processes forked from this one, to run `task`s. When one dies, the others
    are ended before the pool shuts down: CPython 3.13 leaves them waiting for work, and
    the shutdown would wait for them forever."""
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


def task(function: Callable[P, R]) -> Callable[P, R]:
    """A function a forked pool runs. A stop signal unwinds it (SystemExit, from
    files.exit_quietly_on_signals: its temp files go) and then ends the worker: the pool
    would otherwise take the SystemExit as the task's error, keep the worker waiting for
    work, and wait for that worker forever when it ends broken."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except SystemExit as stop:
            os._exit(stop.code if isinstance(stop.code, int) else 1)

    return run
