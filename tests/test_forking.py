"""Forked worker pools end however their workers end."""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from guided_audio import files, forking


def _stopped_mid_task() -> int:
    os.kill(os.getpid(), signal.SIGTERM)  # as a pool that ends broken sends it
    signal.pause()  # the handler runs here, and unwinds the task
    return 0


def test_a_worker_stopped_mid_task_ends_rather_than_wait_for_more() -> None:
    # Run bare, the pool would hand the SystemExit back as the task's result and
    # keep the worker waiting for work (a pool that ends broken then waits for it forever).
    with (
        pytest.raises(BrokenProcessPool),
        forking.forked_pool(1, files.exit_quietly_on_signals) as pool,
    ):
        pool.submit(_stopped_mid_task).result(timeout=60)
