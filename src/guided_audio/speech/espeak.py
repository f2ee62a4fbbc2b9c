"""espeak-ng: robotic but always available offline."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from guided_audio.dsp import effects
from guided_audio.dsp.effects import Audio
from guided_audio.errors import EngineError, MissingProgramError
from guided_audio.script.model import VoiceSpec
from guided_audio.speech.engine import Engine, Reading, Take


class EspeakEngine(Engine):
    """espeak-ng: robotic but always available offline (Debian package espeak-ng)."""

    name = "espeak"
    DEFAULT = "en-us"
    WORDS_PER_MINUTE = 165  # pace 1.0; espeak's own default (175) is a newsreader's

    def _binary(self) -> str | None:
        return shutil.which("espeak-ng")

    def default_voice(self) -> str:
        return self.DEFAULT

    @functools.cache  # noqa: B019 - one engine object per run
    def voices(self) -> list[str] | None:
        binary = self._binary()
        if binary is None:
            return None
        listing = subprocess.run(
            [binary, "--voices"], capture_output=True, text=True, check=False
        ).stdout
        names = {line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1}
        return sorted(names)

    def status(self) -> tuple[bool, str]:
        if self._binary() is None:
            return False, "espeak-ng is not installed (apt-get install espeak-ng)"
        return True, "offline, robotic; always-available fallback"

    def identity(self, spec: VoiceSpec) -> str:
        binary = self._binary()
        if binary is None:
            raise MissingProgramError("espeak-ng is not installed (apt-get install espeak-ng)")
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        return f"{version} voice {spec.name or self.DEFAULT} wpm {self.WORDS_PER_MINUTE}"

    def synthesize(self, text: str, spec: VoiceSpec, reading: Reading) -> Take:
        binary = self._binary()
        if binary is None:
            raise MissingProgramError("espeak-ng is not installed (apt-get install espeak-ng)")
        wpm = str(round(self.WORDS_PER_MINUTE * spec.pace))
        result = subprocess.run(
            [binary, "--stdout", "-v", spec.name or self.DEFAULT, "-s", wpm],
            input=text.encode("utf-8"),  # on stdin: text starting with '-' is not an option
            capture_output=True,
            check=False,
        )
        if result.returncode != 0 or not result.stdout:
            message = result.stderr.decode(errors="replace").strip()
            raise EngineError(f"espeak-ng failed: {message or 'no audio'}")
        return Take(*read_wav(io.BytesIO(result.stdout)))


def read_wav(source: io.BytesIO | Path) -> tuple[Audio, int]:
    """Mono float32 samples of a 16-bit WAV file (the first channel if several)."""
    with wave.open(str(source) if isinstance(source, Path) else source, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise EngineError("expected 16-bit WAV audio")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        channels, rate = wav.getnchannels(), wav.getframerate()
    return effects.from_int16(data[::channels].copy()), rate
