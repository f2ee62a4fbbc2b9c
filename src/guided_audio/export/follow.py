"""What was written, measured: a file decoded back while ffmpeg writes it (by a meter
process of its own), or read back afterwards; its length, loudness and true peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from guided_audio.dsp import effects
from guided_audio.dsp.effects import CHANNELS, RATE, Audio
from guided_audio.dsp.loudness import loudness_and_peak
from guided_audio.errors import GuidedAudioError
from guided_audio.export import meter_process
from guided_audio.export.ffmpeg import ffmpeg
from guided_audio.export.meter_process import MEASURE_BLOCK

Measured = tuple[float, float, float]  # seconds, integrated loudness (LUFS), true peak (dBTP)


def as_measured(frames_lufs_peak: tuple[int, float, float]) -> Measured:
    frames, lufs, peak = frames_lufs_peak
    true_peak = 20 * np.log10(peak) if peak > 0 else float("-inf")
    return frames / RATE, lufs, float(true_peak)


# Formats a decoder reads while they grow (suffix -> demuxer); MP4 puts its index at the end.
FOLLOWED = {".mp3": "mp3", ".flac": "flac", ".ogg": "ogg", ".opus": "ogg"}
FOLLOW_POLL_S = 0.02


def measure_file(
    path: Path, progress: Callable[[int], None] = lambda _: None
) -> tuple[float, float, float]:
    """Length (s), integrated loudness (LUFS) and true peak (dBTP) of an audio file, decoded
    back by ffmpeg as floats (so overs past full scale show) and measured block by block;
    our own WAV files are read directly (no ffmpeg needed)."""
    return as_measured(loudness_and_peak(decoded_blocks(path, path.suffix.lower()), progress))


def _decoder(source: str, demuxer: str | None = None) -> subprocess.Popen[bytes]:
    """ffmpeg decoding `source` (a path, or pipe:0) to 32-bit float frames on its stdout."""
    command = [ffmpeg() or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    command += ["-f", demuxer] if demuxer else []
    command += [
        "-i", source, "-map", "0:a", "-f", "f32le", "-ac", str(CHANNELS), "-ar", str(RATE),
        "pipe:1",
    ]  # fmt: skip
    stdin = subprocess.PIPE if source == "pipe:0" else subprocess.DEVNULL
    return subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _float_blocks(process: subprocess.Popen[bytes], path: Path) -> Iterator[Audio]:
    stdout = process.stdout
    assert stdout is not None
    while chunk := stdout.read(MEASURE_BLOCK * CHANNELS * 4):
        yield np.frombuffer(chunk, dtype=np.float32).reshape(-1, CHANNELS)
    error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
    if process.wait() != 0:
        raise GuidedAudioError(f"cannot read back {path} to measure it: {error}")


def decoded_blocks(path: Path, suffix: str) -> Iterator[Audio]:
    if suffix == ".wav":
        with wave.open(str(path), "rb") as wav:
            while data := wav.readframes(MEASURE_BLOCK):
                pcm = np.frombuffer(data, dtype=np.int16).reshape(-1, CHANNELS)
                yield effects.from_int16(pcm)
        return
    with _decoder(str(path)) as process:
        yield from _float_blocks(process, path)


FOLLOWER_NICENESS = 10


def _yield_to_encoder(pid: int) -> None:
    """Lower a helper's priority: with three busy processes on two cores the scheduler would
    give each two thirds of a core, and the encoder (the one that cannot wait) would slow.
    The helpers have slack: they run in the encoder's gaps and finish just after it."""
    with suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, pid, FOLLOWER_NICENESS)


class Follower:
    """Decodes a file while ffmpeg writes it, and measures it in a process of its own (the
    renderer keeps the interpreter to itself): the report a therapist reads comes from the
    written bytes, at no pass of its own. An MP3 is decoded by the meter itself."""

    def __init__(
        self,
        path: Path,
        suffix: str,
        writer: subprocess.Popen[bytes],
        skip: int = 0,
        take: int | None = None,
    ) -> None:
        """Measures frames [skip, skip + take) of the decoded file (to its end: take None)."""
        self.path, self.writer = path, writer
        self.decoder = None if suffix == ".mp3" else _decoder("pipe:0", FOLLOWED[suffix])
        mode = meter_process.MP3_STDIN if self.decoder is None else meter_process.FLOAT_STDIN
        self.meter = subprocess.Popen(
            meter_process.command(mode, skip, take),
            stdin=subprocess.PIPE if self.decoder is None else self.decoder.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        helpers = [self.meter]
        # What the tail writes (and closes): the decoder's stdin, or the meter's own, taken
        # from its Popen so that communicate() leaves it to the tail.
        self._sink = (self.meter if self.decoder is None else self.decoder).stdin
        self.meter.stdin = None
        if self.decoder is not None:
            assert self.decoder.stdout is not None
            widen_pipe(self.decoder.stdout.fileno())
            self.decoder.stdout.close()  # the meter reads it now
            helpers.append(self.decoder)
        for helper in helpers:
            _yield_to_encoder(helper.pid)
        self._tail_thread = threading.Thread(target=self._tail, name="follow-file", daemon=True)
        self._tail_thread.start()

    def _tail(self) -> None:
        stdin = self._sink
        assert stdin is not None
        try:
            while not self.path.exists() and self.writer.poll() is None:
                time.sleep(FOLLOW_POLL_S)
            with self.path.open("rb") as grown:
                while True:
                    done = self.writer.poll() is not None  # before reading: then nothing is missed
                    chunk = grown.read(PIPE_BYTES)
                    if chunk:
                        stdin.write(chunk)
                    elif done:
                        break
                    else:
                        time.sleep(FOLLOW_POLL_S)
        except OSError:
            pass  # the decoder stopped (its error is reported) or the file never came
        finally:
            with suppress(OSError):
                stdin.close()

    def stop(self) -> None:
        if self.decoder is not None:
            self.decoder.kill()
        self.meter.kill()
        self.finish_quietly()

    def finish_quietly(self) -> tuple[bytes, bytes, bytes]:
        self._tail_thread.join()
        measured, failed = self.meter.communicate()
        if self.decoder is None:
            return measured, failed, b""
        stderr = self.decoder.stderr
        assert stderr is not None
        with stderr:
            decoder_failed = stderr.read()
        self.decoder.wait()
        return measured, failed, decoder_failed

    def finish(self) -> Followed:
        measured, failed, decoder_failed = self.finish_quietly()
        decoder_ok = self.decoder is None or self.decoder.returncode == 0
        if not decoder_ok or self.meter.returncode != 0:
            detail = (decoder_failed or failed).decode(errors="replace").strip()
            raise GuidedAudioError(f"cannot read back {self.path} to measure it: {detail}")
        frames, energies, peak = json.loads(measured)
        return Followed(int(frames), np.array(energies, dtype=np.float64), float(peak))


class Followed(NamedTuple):
    frames: int
    energies: NDArray[np.float64]  # K-weighted mean square per METER_STEP (gated later)
    peak: float  # linear


PIPE_BYTES = 1 << 20  # a pipe of 64 KiB wakes ffmpeg and the writer every 0.4 ms of audio


def widen_pipe(fd: int) -> None:
    """Let a pipe hold more (Linux; elsewhere, or past the user's limit, it stays as it is)."""
    with suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
