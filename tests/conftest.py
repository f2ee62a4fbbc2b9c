"""Shared fixtures: one speech cache for the whole run, helpers that decode and measure."""

from __future__ import annotations

import signal
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from numpy.typing import NDArray

from guided_audio.cli import main

RATE = 44100


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Speech renders once per test run; tests that need a fresh cache make their own."""
    cache = tmp_path_factory.mktemp("audio_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GUIDED_AUDIO_CACHE", str(cache))
        yield cache


def cli(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(main, list(args))


def interrupt_when_ready(
    process: subprocess.Popen[str], ready: Callable[[], bool], what: str
) -> str:
    """Wait (up to a minute) until `ready()`, press Ctrl-C, and return what stderr said."""
    deadline = time.monotonic() + 60
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready(), f"{what} never got going"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    return stderr


def write(tmp_path: Path, text: str, name: str = "session.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read_wav(path: Path) -> NDArray[np.float64]:
    """Decoded samples, shape (n, channels), floats in [-1, 1]."""
    with wave.open(str(path), "rb") as wav:
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        return data.reshape(-1, wav.getnchannels()).astype(np.float64) / 32768.0


def decode(path: Path) -> NDArray[np.float64]:
    """Any format, decoded by ffmpeg through pydub, as (n, 2) floats."""
    from pydub import AudioSegment

    with path.open("rb") as handle:
        segment = AudioSegment.from_file(handle).set_frame_rate(RATE).set_sample_width(2)
    data = np.frombuffer(segment.raw_data, dtype=np.int16).reshape(-1, segment.channels)
    return data.astype(np.float64) / 32768.0


def silences(
    audio: NDArray[np.float64], threshold_db: float = -60.0, min_s: float = 0.3
) -> list[tuple[float, float]]:
    """(start s, length s) of runs quieter than threshold_db (dBFS) lasting at least min_s."""
    level = np.abs(audio).max(axis=1) if audio.ndim == 2 else np.abs(audio)
    quiet = np.concatenate([[0], (level < 10 ** (threshold_db / 20)).astype(np.int8), [0]])
    edges = np.diff(quiet)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        (s / RATE, (e - s) / RATE)
        for s, e in zip(starts, ends, strict=True)
        if e - s >= min_s * RATE
    ]
