"""Stage 5: where the audio goes. Files are written to a temp file and renamed; the
speakers get the same 16-bit samples a WAV export holds, chunk by chunk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import shutil
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from guided_audio import effects
from guided_audio.effects import CHANNELS, RATE, Audio
from guided_audio.errors import AudioDeviceError, GuidedAudioError, UsageError
from guided_audio.files import temp_beside
from guided_audio.mix import Windowed
from guided_audio.plan import Timeline

# suffix -> ffmpeg output arguments (WAV is written directly)
ENCODERS: dict[str, list[str]] = {
    ".mp3": ["-c:a", "libmp3lame", "-q:a", "2", "-id3v2_version", "3", "-f", "mp3"],
    ".flac": ["-c:a", "flac", "-f", "flac"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "5", "-f", "ogg"],
}
FORMATS = (".wav", *ENCODERS)


def check_output(path: Path, force: bool) -> None:
    """Refuse a bad output path before any work is done (creates nothing)."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"{path}: unknown format '{path.suffix}'; use one of {', '.join(FORMATS)}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name like {path / 'session.mp3'}")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; use --force to overwrite it")
    if path.suffix.lower() != ".wav" and ffmpeg() is None:
        raise GuidedAudioError(
            f"writing {path.suffix} needs ffmpeg (apt-get install ffmpeg); or export to .wav"
        )
    existing = path.parent
    while not existing.exists():  # a missing folder is made later, once rendering succeeded
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"cannot write to the folder {existing}")


def make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {path.parent}: {exc.strerror}") from None


def ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside `path`, renamed over it on success and removed on any failure."""
    with temp_beside(path, ".partial") as temp:
        yield temp
        umask = os.umask(0)
        os.umask(umask)
        temp.chmod(0o666 & ~umask)  # exports are for sharing: the usual permissions
        os.replace(temp, path)


def write_file(
    path: Path,
    source: Windowed,
    tags: dict[str, str],
    progress: Callable[[int], None] = lambda _: None,
) -> None:
    """Encode the whole session into `path` (format from its suffix), atomically."""
    make_folder(path)
    with atomic_path(path) as temp:
        if path.suffix.lower() == ".wav":
            with wave.open(str(temp), "wb") as wav:
                wav.setnchannels(CHANNELS)
                wav.setsampwidth(2)
                wav.setframerate(RATE)
                for block in source.blocks():
                    wav.writeframes(effects.to_int16(block).tobytes())
                    progress(len(block))
        else:
            _encode(temp, path.suffix.lower(), source, tags, progress)


def _encode(
    temp: Path, suffix: str, source: Windowed, tags: dict[str, str], progress: Callable[[int], None]
) -> None:
    command = [
        ffmpeg() or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "s16le", "-ar", str(RATE), "-ac", str(CHANNELS), "-i", "pipe:0",
    ]  # fmt: skip
    for key, value in tags.items():
        command += ["-metadata", f"{key}={value}"]
    command += [*ENCODERS[suffix], str(temp)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        stdin, stderr = process.stdin, process.stderr
        assert stdin is not None and stderr is not None
        # A writer thread feeds ffmpeg while the next block renders: both cores stay busy.
        feed: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        broken: list[OSError] = []

        def pump() -> None:
            try:
                while (chunk := feed.get()) is not None:
                    stdin.write(chunk)
                stdin.close()
            except OSError as exc:  # ffmpeg stopped reading
                broken.append(exc)
                while feed.get() is not None:  # drain, so the renderer never blocks
                    pass

        writer = threading.Thread(target=pump, name="ffmpeg-feed", daemon=True)
        writer.start()
        try:
            for block in source.blocks():
                if broken:
                    break
                feed.put(effects.to_int16(block).tobytes())
                progress(len(block))
        except BaseException:
            process.kill()  # unblocks the writer, which then drains
            raise
        finally:
            feed.put(None)
            writer.join()
        error = stderr.read().decode(errors="replace").strip()
        if process.wait() != 0 or broken:
            raise GuidedAudioError(f"ffmpeg could not encode {suffix}: {error or broken[0]}")


# --- speakers --------------------------------------------------------------------------------
CHUNK_MIN_S = 5.0
CHUNK_MAX_S = 30.0
_ALSA_HANDLER: Any = None


def _quiet_alsa() -> None:
    """Stop libasound printing its own lines to stderr when there is no sound card."""
    global _ALSA_HANDLER
    if _ALSA_HANDLER is not None:
        return
    name = ctypes.util.find_library("asound")
    if name is None:
        return
    try:
        library = ctypes.CDLL(name)
    except OSError:
        return
    handler_type = ctypes.CFUNCTYPE(
        None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
    )
    _ALSA_HANDLER = handler_type(lambda *_: None)  # kept alive: libasound holds the pointer
    library.snd_lib_error_set_handler(_ALSA_HANDLER)


def chunk_bounds(timeline: Timeline) -> list[tuple[int, int]]:
    """Playback chunks, cut where nothing sounds when possible (a device reopen is silent)."""
    quiet: list[int] = []
    cursor = 0
    for event in timeline.events:
        if event.start > cursor:
            quiet.append((cursor + event.start) // 2)
        cursor = max(cursor, event.end)
    lo, hi = effects.seconds_to_samples(CHUNK_MIN_S), effects.seconds_to_samples(CHUNK_MAX_S)
    bounds, start = [], 0
    while start < timeline.total:
        candidates = [q for q in quiet if start + lo <= q <= start + hi]
        stop = min(candidates[-1] if candidates else start + hi, timeline.total)
        if timeline.total - stop < lo:
            stop = timeline.total
        bounds.append((start, stop))
        start = stop
    return bounds


class Clip(Windowed):
    """A short, whole piece of audio as a source (a bell preview)."""

    def __init__(self, samples: Audio) -> None:
        self.samples = samples if samples.ndim == 2 else np.repeat(samples[:, None], CHANNELS, 1)

    @property
    def total(self) -> int:
        return len(self.samples)

    def render(self, start: int, stop: int) -> Audio:
        return self.samples[start:stop]


def play(
    source: Windowed,
    chunks: list[tuple[int, int]],
    position: Callable[[int], None] = lambda _: None,
) -> None:
    """Play `chunks` of `source` through the default sound device, one device open each;
    `position` hears the sample being played."""
    import simpleaudio

    _quiet_alsa()
    pending = effects.to_int16(source.render(*chunks[0])).tobytes()
    for index, (start, _stop) in enumerate(chunks):
        try:
            playing = simpleaudio.play_buffer(pending, CHANNELS, 2, RATE)
        except simpleaudio._simpleaudio.SimpleaudioError as exc:
            raise AudioDeviceError(
                f"no audio output device is available ({exc}); "
                "export the session instead: guided-audio export FILE"
            ) from None
        began = time.monotonic()
        position(start)
        try:
            if index + 1 < len(chunks):  # render the next chunk while this one plays
                pending = effects.to_int16(source.render(*chunks[index + 1])).tobytes()
            while playing.is_playing():
                position(start + int((time.monotonic() - began) * RATE))
                time.sleep(0.1)
        except BaseException:
            playing.stop()
            raise
    position(chunks[-1][1])
