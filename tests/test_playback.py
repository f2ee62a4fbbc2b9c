"""Real playback through simpleaudio into an ALSA file sink, compared sample by sample."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import interrupt_when_ready, read_wav, write

SHORT = """\
title: Short
sections:
  - title: Hello
    steps:
      - say: This is a short playback test.
      - pause: 6s
  - title: Goodbye
    steps:
      - bell: chime
      - say: Goodbye.
      - pause: 4s
      - say: One more line after the pause.
"""


def _alsa_config(tmp_path: Path, default: str) -> Path:
    config = tmp_path / "asound.conf"
    config.write_text(default + "\npcm.nullsink { type null }\n")
    return config


def _run(args: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALSA_CONFIG_PATH": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "guided_audio", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _captured(capture: Path) -> np.ndarray:
    """The sink keeps one file per device open: capture, capture.0001, ... in order."""
    files = sorted(capture.parent.glob(capture.name + "*"), key=lambda p: p.name)
    data = b"".join(p.read_bytes() for p in files)
    return np.frombuffer(data, dtype=np.int16).reshape(-1, 2).astype(np.float64) / 32768.0


def test_play_sounds_exactly_like_the_export(tmp_path: Path) -> None:
    script = write(tmp_path, SHORT)
    capture = tmp_path / "capture.raw"
    config = _alsa_config(
        tmp_path,
        f'pcm.!default {{ type file slave.pcm "nullsink" file "{capture}" '
        'format "raw" truncate false }',
    )
    exported = tmp_path / "short.wav"
    assert _run(["export", str(script), "-o", str(exported), "-q"], config).returncode == 0
    played = _run(["play", str(script)], config)
    assert played.returncode == 0, played.stderr
    assert "[1/2] Hello" in played.stderr and "[2/2] Goodbye" in played.stderr
    assert "ALSA lib" not in played.stderr
    heard, wav = _captured(capture), read_wav(exported)
    assert heard.shape == wav.shape
    assert np.array_equal(heard, wav)


def test_play_without_a_device_says_so_in_one_line(tmp_path: Path) -> None:
    script = write(tmp_path, SHORT)
    config = _alsa_config(tmp_path, "pcm.!default { type hw card 7 }")
    played = _run(["play", str(script), "-q"], config)
    assert played.returncode == 1
    lines = played.stderr.strip().splitlines()
    assert len(lines) == 1, played.stderr
    assert lines[0].startswith("no audio output device is available")
    assert "guided-audio export" in lines[0]


def test_bell_preview_plays_one_strike(tmp_path: Path) -> None:
    from guided_audio import sounds

    capture = tmp_path / "bell.raw"
    config = _alsa_config(
        tmp_path,
        f'pcm.!default {{ type file slave.pcm "nullsink" file "{capture}" format "raw" }}',
    )
    played = _run(["bells", "--preview", "chime"], config)
    assert played.returncode == 0, played.stderr
    heard = _captured(capture)
    bell = sounds.bell("chime")
    assert len(heard) == len(bell)
    assert np.abs(heard[:, 0] - bell).max() < 1 / 32767 + 1e-6


def test_ctrl_c_stops_playback_cleanly(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "title: Long\nsections:\n  - title: A\n    steps:\n"
        "      - say: Hello.\n      - pause: 40m\n      - say: Goodbye.\n",
    )
    capture = tmp_path / "capture.raw"
    config = _alsa_config(
        tmp_path,
        f'pcm.!default {{ type file slave.pcm "nullsink" file "{capture}" '
        'format "raw" truncate false }',
    )
    env = {**os.environ, "ALSA_CONFIG_PATH": str(config)}
    process = subprocess.Popen(
        [sys.executable, "-m", "guided_audio", "play", str(script), "--loudness", "off"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stderr = interrupt_when_ready(
        process, lambda: len(list(tmp_path.glob("capture.raw*"))) >= 3, "playback"
    )
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted")
    played = sum(p.stat().st_size for p in tmp_path.glob("capture.raw*")) // 4
    assert played < 40 * 60 * 44100  # it stopped, long before the end
