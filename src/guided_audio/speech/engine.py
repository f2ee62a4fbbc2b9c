"""Stage 3's contract: what a speech engine is (`Engine`) and what it makes of a phrase
(`Take`).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from guided_audio.dsp.effects import Audio
from guided_audio.files import file_sha256
from guided_audio.script.model import VoiceSpec


@dataclass(frozen=True)
class Take:
    """What an engine made of a phrase: mono samples, their rate, and where each spoken word
    starts (in those samples) when the engine can tell."""

    samples: Audio
    rate: int
    words: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Reading:
    """How this process reads speech, passed with every call (never set on an engine):
    where cut voice models are kept (None: voices are read whole), the inference threads
    of a voice loaded now (None: onnxruntime's choice), the latent frames a decoder takes
    at once, and the context it takes either side (None: the voice's receptive field)."""

    models: Path | None
    threads: int | None
    decode_frames: int
    decode_context: int | None = None


# --- engines ---------------------------------------------------------------------------------
class Engine(ABC):
    name: str
    online = False

    @abstractmethod
    def default_voice(self) -> str: ...

    @abstractmethod
    def voices(self) -> list[str] | None:
        """Voice names, or None when the engine is not installed (names unknown)."""

    @abstractmethod
    def status(self) -> tuple[bool, str]:
        """Whether the engine can speak now, and a one-line explanation."""

    @abstractmethod
    def identity(self, spec: VoiceSpec) -> str:
        """Everything about the engine and voice that changes the sound."""

    @abstractmethod
    def synthesize(self, text: str, spec: VoiceSpec, reading: Reading) -> Take: ...

    def unload(self) -> None:  # noqa: B027 - most engines hold no voice in memory
        """Let go of every loaded voice; the next reading loads it again, as it says."""

    def voiced_seconds(self, text: str, spec: VoiceSpec, reading: Reading) -> float | None:
        """How long `text` sounds (as trimmed) at `spec`, known without reading it; None
        when the engine cannot tell."""
        return None


def package_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "missing"


@functools.lru_cache(maxsize=8)
def file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file; size and mtime are in the memo key so a changed file is re-read."""
    return file_sha256(path)
