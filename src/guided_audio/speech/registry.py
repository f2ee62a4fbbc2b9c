"""The engines by name, one object each per process (so a voice loads once), and the
catalog the validator asks about voice names and phonemes.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from guided_audio.errors import EngineError
from guided_audio.script.model import VoiceSpec
from guided_audio.speech.engine import Engine
from guided_audio.speech.espeak import EspeakEngine
from guided_audio.speech.gtts import GttsEngine
from guided_audio.speech.piper import PiperEngine

_ENGINE_TYPES: dict[str, type[Engine]] = {
    "piper": PiperEngine,
    "espeak": EspeakEngine,
    "gtts": GttsEngine,
}


@functools.cache
def engine(name: str) -> Engine:
    """The engine object for a name, one per process (so Piper models load once)."""
    return _ENGINE_TYPES[name]()


def names(engine_name: str) -> list[str] | None:
    """Voice names an engine accepts, or None when they cannot be known here."""
    return engine(engine_name).voices()


def piper_phonemes(spec: VoiceSpec) -> frozenset[str] | None:
    """The phonemes a Piper voice knows (from its .onnx.json), or None if there is no voice."""
    try:
        path = PiperEngine().model_path(spec)
        config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
        return frozenset(config["phoneme_id_map"])
    except (EngineError, OSError, ValueError, KeyError, TypeError):
        return None


class InstalledVoices:
    """The catalog the validator asks about voice names and phonemes (script.Catalog)."""

    def names(self, engine: str) -> list[str] | None:
        return names(engine)

    def phonemes(self, spec: VoiceSpec) -> frozenset[str] | None:
        return piper_phonemes(spec)


CATALOG = InstalledVoices()
