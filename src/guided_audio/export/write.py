"""Stage 5: a session written to a file, atomically (a temp file renamed into place), and
measured as written; small files beside it the same way.
"""

from __future__ import annotations

import errno
import os
import wave
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from guided_audio import memory
from guided_audio.dsp import effects
from guided_audio.dsp.effects import CHANNELS, RATE, Audio
from guided_audio.dsp.loudness import loudness_and_peak
from guided_audio.errors import GuidedAudioError, UsageError
from guided_audio.export import mpeg
from guided_audio.export.encode import FORMATS, package_streams, run_encoders
from guided_audio.export.ffmpeg import ffmpeg
from guided_audio.export.follow import Measured, as_measured, decoded_blocks
from guided_audio.export.parts import EncodingPart, encoding_parts
from guided_audio.export.tags import Metadata
from guided_audio.files import temp_beside
from guided_audio.mix.mixer import Windowed


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


@contextmanager
def atomic_path(path: Path, exclusive: bool = False) -> Iterator[Path]:
    """A temp path beside `path`, renamed over it on success and removed on any failure
    (`exclusive`: linked into place, so an existing file is never replaced)."""
    try:
        with temp_beside(path, ".partial") as temp:
            yield temp
            umask = os.umask(0)
            os.umask(umask)
            temp.chmod(0o666 & ~umask)  # exports are for sharing: the usual permissions
            if exclusive:
                os.link(temp, path)
            else:
                os.replace(temp, path)
    except FileExistsError:
        raise UsageError(f"{path} already exists; nothing was written") from None
    except OSError as exc:
        raise write_error(path, exc) from exc


def write_error(path: Path, exc: OSError) -> GuidedAudioError:
    """One line for a file that could not be written, naming the cause and the way out."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return GuidedAudioError(
            f"{path} was not written: the disk holding {path.parent} is full; "
            "free some space there or export elsewhere with -o"
        )
    return GuidedAudioError(
        f"{path} was not written: {exc.strerror or exc}; export elsewhere with -o"
    )


def write_file(
    path: Path,
    source: Windowed,
    metadata: Metadata = Metadata(),
    progress: Callable[[int], None] = lambda _: None,
    encoders: int = 1,
) -> Measured:
    """Encode the whole session into `path` (format from its suffix), atomically, and measure
    what was written: decoded back while it is written where the format streams (a WAV is
    measured as its samples are written), else read back afterwards. An MP3 of some length
    is encoded in up to `encoders` parts at once (one per core), joined as one stream."""
    memory.keep_freed_memory()  # from here on, blocks of the same sizes come and go
    make_folder(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as temp:
        if suffix == ".wav":
            with wave.open(str(temp), "wb") as wav:
                wav.setnchannels(CHANNELS)
                wav.setsampwidth(2)
                wav.setframerate(RATE)
                measured = as_measured(loudness_and_peak(_written_wav(wav, source, progress)))
            return measured
        parts = encoding_parts(
            source.total, encoders if suffix == ".mp3" else 1, source.quiet_spans()
        )
        try:
            followed = _encode_parts(path, temp, suffix, source, metadata, progress, parts)
        except mpeg.CannotJoin:  # rare (no clean frame near a join): one part, as ever
            parts = encoding_parts(source.total, 1)
            followed = _encode_parts(path, temp, suffix, source, metadata, progress, parts)
        if followed is None:
            followed = loudness_and_peak(decoded_blocks(temp, suffix))
        # The length is the plan's: a stream decoded as it grows keeps the encoder's delay.
        measured = as_measured((source.total, *followed[1:]))
    return measured


def _encode_parts(
    path: Path,
    temp: Path,
    suffix: str,
    source: Windowed,
    metadata: Metadata,
    progress: Callable[[int], None],
    parts: list[EncodingPart],
) -> tuple[int, float, float] | None:
    with ExitStack() as stack:
        streams = [stack.enter_context(temp_beside(path, ".stream")) for _ in parts]
        followed = run_encoders(streams, suffix, source, parts, progress)
        package_streams(streams, parts, temp, suffix, metadata, source.total)
    return followed


def _written_wav(
    wav: wave.Wave_write, source: Windowed, progress: Callable[[int], None]
) -> Iterator[Audio]:
    """Each block as the file holds it (16-bit), after writing it."""
    for block in source.blocks():
        pcm = effects.to_int16(block)
        wav.writeframes(pcm.tobytes())
        progress(len(block))
        yield effects.from_int16(pcm)


def write_text(path: Path, text: str, exclusive: bool = False) -> None:
    """A small file beside an export, atomically and with the usual permissions;
    `exclusive`: never replace an existing file (even one that appears meanwhile)."""
    make_folder(path)
    with atomic_path(path, exclusive) as temp:
        temp.write_text(text, encoding="utf-8")
