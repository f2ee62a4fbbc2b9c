"""The speech cache: every phrase rendered, one 16-bit WAV each with a checksummed chunk
that WAV readers skip; written to a temp file and linked into place.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from guided_audio.dsp import effects
from guided_audio.dsp.effects import RATE, Audio
from guided_audio.errors import GuidedAudioError
from guided_audio.files import temp_beside


@dataclass(frozen=True)
class Entry:
    """A cached phrase: session-rate samples and its words' starts within them."""

    samples: Audio
    words: tuple[int, ...] | None


# --- cache -----------------------------------------------------------------------------------
PROJECT_CACHE = "audio_cache"


def user_cache_folder() -> Path:
    """`$XDG_CACHE_HOME/guided-audio`, or `~/.cache/guided-audio` (the XDG default, also
    when the variable holds a relative path, which the specification says to ignore)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "guided-audio"


def voice_models_folder() -> Path:
    """Where voice models derived from the installed ones (Piper's, cut in stages) are
    kept: `$GUIDED_AUDIO_MODELS`, else `$XDG_DATA_HOME/guided-audio/voices`
    (`~/.local/share/...`). Apart from the speech cache: clearing it costs no re-cut."""
    chosen = os.environ.get("GUIDED_AUDIO_MODELS")
    if chosen:
        return Path(chosen)
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "guided-audio" / "voices"


class SpeechCache:
    """Rendered phrases as 16-bit WAV files under a folder readable by its owner only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.damaged: set[Path] = set()  # entries found broken this run (rendered again)

    @classmethod
    def default(cls) -> SpeechCache:
        """`$GUIDED_AUDIO_CACHE`; else the project's `audio_cache/` folder, in the current
        folder or one above it; else the user's cache folder. Never a new folder where a
        command happens to run."""
        chosen = os.environ.get("GUIDED_AUDIO_CACHE")
        if chosen:
            return cls(Path(chosen))
        here = Path.cwd()
        for folder in (here, *here.parents):
            if (folder / PROJECT_CACHE).is_dir():
                return cls(folder / PROJECT_CACHE)
        return cls(user_cache_folder())

    def ensure_writable(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.root.stat()
            if info.st_mode & 0o077 and info.st_uid == os.getuid():
                self.root.chmod(0o700)  # e.g. the checkout's audio_cache/: private all the same
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise GuidedAudioError(
                f"cannot write the speech cache in {self.root}: {exc.strerror or exc}; "
                "set GUIDED_AUDIO_CACHE to a writable folder"
            ) from None

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.wav"

    def _measurement_path(self, key: str) -> Path:
        return self.root / "measurements" / f"{key}.json"

    def measurement(self, key: str) -> float | None:
        """A number remembered for `key` (a mix's loudness), or None."""
        try:
            value = json.loads(self._measurement_path(key).read_text())["value"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return float(value) if isinstance(value, int | float) else None

    def remember(self, key: str, value: float) -> None:
        target = self._measurement_path(key)
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with temp_beside(target, ".tmp") as temp:
                temp.write_text(json.dumps({"value": value}))
                os.replace(temp, target)
        except OSError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: OSError) -> GuidedAudioError:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        cause = f"the disk holding {self.root} is full" if full else (exc.strerror or str(exc))
        return GuidedAudioError(
            f"cannot write the speech cache in {self.root}: {cause}; "
            "free some space there or set GUIDED_AUDIO_CACHE to another folder"
        )

    def frames(self, key: str) -> int | None:
        """An entry's length from its header, or None when it is absent or malformed."""
        try:
            with self.path(key).open("rb") as handle:
                return _read_entry(handle, with_samples=False)[0]
        except (OSError, ValueError):
            return None

    def entry(self, key: str) -> Entry | None:
        """A whole entry, its samples checked against its checksum; None: render it again."""
        path = self.path(key)
        try:
            with path.open("rb") as handle:
                _, samples, words = _read_entry(handle, with_samples=True)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self.damaged.add(path)  # truncated, altered or unreadable: never played
            return None
        return Entry(samples, words)

    def read(self, key: str) -> Audio | None:
        entry = self.entry(key)
        return None if entry is None else entry.samples

    def write(self, key: str, entry: Entry) -> Entry:
        """Store a phrase; returns what the cache holds for `key` afterwards.

        Not every engine is deterministic (gTTS, espeak versions; a Piper voice read whole
        samples its noise), so when two renders race the first complete entry wins and both
        use it: every process hears the same take.
        """
        return self._store(key, _entry_bytes(entry))

    def _store(self, key: str, data: bytes) -> Entry:
        target = self.path(key)
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Temp file, then link: a crash leaves no half entry, and nothing is overwritten.
            with temp_beside(target, ".tmp") as temp:
                temp.write_bytes(data)
                try:
                    os.link(temp, target)
                except FileExistsError:
                    winner = self.entry(key)
                    if winner is not None:
                        return winner
                    os.replace(temp, target)  # the existing entry is damaged: repair it
        except OSError as exc:
            raise self._write_error(exc) from exc
        stored = self.entry(key)
        if stored is None:
            raise GuidedAudioError(f"the speech cache entry {target} could not be read back")
        return stored

    def raw(self, key: str) -> bytes | None:
        """An intact entry's file as it is, to send elsewhere; None when there is none."""
        try:
            data = self.path(key).read_bytes()
            _read_entry(io.BytesIO(data), with_samples=True)
        except (OSError, ValueError):
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        """Store an entry made elsewhere (`raw` of another cache); a ValueError if it is
        not a whole, intact entry."""
        _read_entry(io.BytesIO(data), with_samples=True)
        self._store(key, data)


# A cache entry is a plain 16-bit mono WAV (any player opens it) with one chunk after the
# audio that WAV readers skip: the length, a checksum of the samples, and the word starts.
_ENTRY_CHUNK = b"gaMD"
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # RIFF, WAVE, fmt (16 bytes), data header
_CHUNK = struct.Struct("<4sI")


def _entry_bytes(entry: Entry) -> bytes:
    pcm = effects.to_int16(entry.samples).tobytes()
    meta = json.dumps(
        {
            "frames": len(entry.samples),
            "sha256": hashlib.sha256(pcm).hexdigest(),
            "words": list(entry.words) if entry.words is not None else None,
        }
    ).encode()
    meta += b" " * (len(meta) % 2)  # RIFF chunks are word-aligned
    riff_size = _HEADER.size - 8 + len(pcm) + _CHUNK.size + len(meta)
    header = _HEADER.pack(
        b"RIFF", riff_size, b"WAVE", b"fmt ", 16, 1, 1, RATE, RATE * 2, 2, 16, b"data", len(pcm)
    )
    return header + pcm + _CHUNK.pack(_ENTRY_CHUNK, len(meta)) + meta


def _read_entry(handle: BinaryIO, with_samples: bool) -> tuple[int, Audio, tuple[int, ...] | None]:
    """(frames, samples, word starts); ValueError for anything but a whole, intact entry."""
    header = handle.read(_HEADER.size)
    if len(header) != _HEADER.size:
        raise ValueError("short header")
    fields = _HEADER.unpack(header)
    expected = (b"RIFF", fields[1], b"WAVE", b"fmt ", 16, 1, 1, RATE, RATE * 2, 2, 16, b"data")
    if fields[:12] != expected:
        raise ValueError("not a cache entry")
    data_size = fields[12]
    if with_samples:
        pcm = handle.read(data_size)
    else:
        handle.seek(data_size, io.SEEK_CUR)
    tag, meta_size = _CHUNK.unpack(handle.read(_CHUNK.size).ljust(_CHUNK.size, b"\0"))
    meta_bytes = handle.read(meta_size)
    if tag != _ENTRY_CHUNK or len(meta_bytes) != meta_size or handle.read(1):
        raise ValueError("truncated or extended entry")
    meta = json.loads(meta_bytes)
    frames = meta["frames"]
    if not isinstance(frames, int) or frames * 2 != data_size or frames == 0:
        raise ValueError("length does not match")
    words = meta.get("words")
    starts = tuple(int(w) for w in words) if isinstance(words, list) else None
    if not with_samples:
        return frames, np.zeros(0, np.float32), starts
    if len(pcm) != data_size or hashlib.sha256(pcm).hexdigest() != meta["sha256"]:
        raise ValueError("checksum does not match")
    return frames, effects.from_int16(np.frombuffer(pcm, dtype=np.int16)), starts
