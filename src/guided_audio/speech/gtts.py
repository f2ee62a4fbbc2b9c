"""gTTS: Google's speech service, online and opt-in (it sends the text to Google)."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np

from guided_audio.dsp import effects
from guided_audio.dsp.effects import Audio
from guided_audio.errors import EngineError
from guided_audio.script.model import VoiceSpec
from guided_audio.speech.engine import Engine, Reading, Take

GTTS_TIMEOUT_S = 4.0


class GttsEngine(Engine):
    """Google Translate's TTS: online, opt-in. It sends the text to Google."""

    name = "gtts"
    online = True
    DEFAULT = "en-us"
    # voice name -> (language, Google domain that gives the accent)
    VOICES: ClassVar[dict[str, tuple[str, str]]] = {
        "en-us": ("en", "com"),
        "en-gb": ("en", "co.uk"),
        "en-au": ("en", "com.au"),
        "en-ca": ("en", "ca"),
        "en-in": ("en", "co.in"),
        "de": ("de", "de"),
        "es": ("es", "es"),
        "fr": ("fr", "fr"),
        "it": ("it", "it"),
        "nl": ("nl", "nl"),
        "pt": ("pt", "com.br"),
    }
    SLOW_BELOW_PACE = 0.8  # gTTS has one rate control: normal or slow

    def default_voice(self) -> str:
        return self.DEFAULT

    def voices(self) -> list[str] | None:
        return sorted(self.VOICES)

    def status(self) -> tuple[bool, str]:
        try:
            import gtts  # noqa: F401
        except ImportError:
            return False, "gTTS is not installed"
        return True, "ONLINE, opt-in: sends the script's text to Google; needs ffmpeg"

    def identity(self, spec: VoiceSpec) -> str:
        lang, tld = self.VOICES[spec.name or self.DEFAULT]
        return f"gtts {lang} {tld} slow={spec.pace < self.SLOW_BELOW_PACE}"

    def synthesize(self, text: str, spec: VoiceSpec, reading: Reading) -> Take:
        from gtts import gTTS, gTTSError
        from pydub import AudioSegment

        lang, tld = self.VOICES[spec.name or self.DEFAULT]
        buffer = io.BytesIO()
        try:
            gTTS(
                text,
                lang=lang,
                tld=tld,
                slow=spec.pace < self.SLOW_BELOW_PACE,
                lang_check=False,
                timeout=GTTS_TIMEOUT_S,
            ).write_to_fp(buffer)
        except (gTTSError, OSError, TypeError) as exc:  # gTTS wraps odd failures in TypeError
            raise EngineError(
                f"gtts could not reach Google's speech service ({exc}); "
                "use the offline engine instead: voice: {engine: piper}"
            ) from None
        segment = AudioSegment.from_file(io.BytesIO(buffer.getvalue()), format="mp3")
        return Take(*segment_to_array(segment))


def segment_to_array(segment: Any) -> tuple[Audio, int]:
    """A pydub AudioSegment as mono float32 samples and its rate."""
    mono = segment.set_channels(1).set_sample_width(2)
    samples = np.frombuffer(mono.raw_data, dtype=np.int16)
    return effects.from_int16(samples), int(mono.frame_rate)
