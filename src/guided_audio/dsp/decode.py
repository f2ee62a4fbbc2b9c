"""Audio files read as stereo float32 at the session rate: PCM WAV directly, anything else
through ffmpeg (pydub). A file that cannot be read is a `DecodeError`.
"""

from __future__ import annotations

import functools
import shutil
import wave
from pathlib import Path

import numpy as np

from guided_audio.dsp import effects
from guided_audio.dsp.effects import CHANNELS, RATE, Audio
from guided_audio.errors import DecodeError, MissingProgramError

MIN_FILE_RATE, MAX_FILE_RATE = 1000, 768_000  # sample rates a readable audio file may have


# --- decoding files (pydub is the I/O layer) -------------------------------------------------
@functools.lru_cache(maxsize=16)
def decode(path: Path) -> Audio:
    """A whole audio file as stereo float32 at the session rate (read-only)."""
    if path.suffix.lower() == ".wav":
        native = _read_pcm_wav(path)
        if native is not None:
            return native
    if shutil.which("ffmpeg") is None:
        raise MissingProgramError(
            f"reading {path.name} needs ffmpeg, which is not installed (apt-get install ffmpeg)"
        )
    from pydub import AudioSegment  # only now: without ffmpeg it warns on import
    from pydub.exceptions import CouldntDecodeError

    try:
        with path.open("rb") as handle:  # pydub leaves files it opens itself unclosed
            segment = AudioSegment.from_file(handle)
    except (CouldntDecodeError, OSError, IndexError) as exc:
        raise DecodeError(f"{path}: cannot decode audio ({str(exc)[:200]})") from None
    segment = segment.set_frame_rate(RATE).set_channels(CHANNELS).set_sample_width(2)
    samples = np.frombuffer(segment.raw_data, dtype=np.int16).reshape(-1, CHANNELS)
    out = effects.from_int16(samples)
    out.setflags(write=False)
    return out


def _read_pcm_wav(path: Path) -> Audio | None:
    """A PCM WAV read without ffmpeg (None for other encodings, which ffmpeg reads)."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
    except RuntimeError:  # the wave module's word for a chunk that runs past the file's end
        raise DecodeError(f"{path}: cannot read audio (a damaged WAV file)") from None
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read audio ({exc.strerror})") from None
    if width not in (1, 2, 4) or channels < 1:
        return None
    if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:  # a damaged header: resampling it has no end
        raise DecodeError(f"{path}: cannot read audio (a sample rate of {rate} Hz)")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(data[: len(data) // (width * channels) * width * channels], dtype)
    floats = samples.astype(np.float64)
    floats = (floats - 128.0) / 128.0 if width == 1 else floats / float(2 ** (8 * width - 1))
    frames = floats.reshape(-1, channels)
    stereo = np.repeat(frames, 2, axis=1) if channels == 1 else frames[:, :2]
    left = effects.resample(stereo[:, 0].astype(np.float32), rate)
    right = effects.resample(stereo[:, 1].astype(np.float32), rate)
    out = np.stack([left, right], axis=1).astype(np.float32)
    out.setflags(write=False)
    return out


def file_length(path: Path) -> int:
    return len(decode(path))
