"""Worker processes forked from this one: they share what it has loaded, and a pool of
them ends cleanly however it ends."""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, TypeVar

R = TypeVar("R")


class Pool:
    """What a forked pool offers: its tasks run through `_until_stopped`."""

    def __init__(self, executor: concurrent.futures.ProcessPoolExecutor) -> None:
        self._executor = executor

    def submit(self, function: Callable[..., R], /, *args: Any) -> concurrent.futures.Future[R]:
        return self._executor.submit(functools.partial(_until_stopped, function), *args)

    def map(self, function: Callable[[Any], R], items: Iterable[Any]) -> Iterator[R]:
        return self._executor.map(functools.partial(_until_stopped, function), items)


@contextmanager
def forked_pool(
    workers: int, initializer: Callable[..., object], initargs: tuple[object, ...] = ()
) -> Iterator[Pool]:
    """`workers` processes forked from this one. When one dies, the others are ended
    before the pool shuts down: CPython 3.13 leaves them waiting for work, and the
    shutdown would wait for them forever."""
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as executor:
        try:
            yield Pool(executor)
        except BrokenProcessPool:
            for process in list(getattr(executor, "_processes", {}).values()):
                process.terminate()
            raise


def _until_stopped(function: Callable[..., R], *args: Any) -> R:
    """Run a task in a worker. A stop signal unwinds it (SystemExit, from
    files.exit_quietly_on_signals: its temp files go) and then ends the worker: the pool
    would otherwise take the SystemExit as the task's error, keep the worker waiting for
    work, and wait for that worker forever when it ends broken."""
    try:
        return function(*args)
    except SystemExit as stop:
        os._exit(stop.code if isinstance(stop.code, int) else 1)
