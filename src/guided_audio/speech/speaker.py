"""Stage 3: the speaker. Phrases in, session-rate audio out, through the cache: each line
read at a guide's pace, trimmed of the engine's silence, levelled, resampled and faded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from guided_audio.dsp import effects
from guided_audio.dsp.effects import RATE, Audio
from guided_audio.errors import EngineError
from guided_audio.resources import Resources
from guided_audio.script import text
from guided_audio.script.model import Phrase, VoiceSpec
from guided_audio.speech.cache import Entry, SpeechCache, voice_models_folder
from guided_audio.speech.engine import Engine, Reading, Take
from guided_audio.speech.piper import PiperEngine
from guided_audio.speech.registry import engine

# Bump when trimming/fading/resampling, or how word starts are found, changes what an entry
# holds (4: a start for every word, also those espeak runs together).
CACHE_FORMAT = 4
EDGE_FADE_MS = 3.0
TRIM_BELOW_VOICE_DB = 35.0  # edges quieter than this under the voice level are engine silence
VOICED_WPM_MAX = 170.0  # at pace 1.0: a phrase read faster than this is read again, slower
MAX_STRETCH = 1.6  # ...but never stretched by more than this: past it the voice smears
STRETCH_MARGIN = 1.05
UNHURRY_TRIES = 2  # an engine slows less than asked; aim a little under the ceiling
# Piper at pace 1.0 takes about BASE + PER_LETTER x letters seconds to say a line, as heard
# (fitted on the bundled scripts' lines: median error 8%). Four lines in five would be read
# again, slower: a line predicted faster than FIRST_READ_WPM is read that slow at once.
PIPER_LINE_BASE_S = 0.23
PIPER_LINE_PER_LETTER_S = 0.061
FIRST_READ_WPM = 158.0
PACE_STEPS = 24  # bisection steps for a first reading's pace (to 1e-7 of the range)
SLOWED_TOO_FAR_WPM = 140.0  # a line the prediction slowed below this is read again, quicker


# --- the speaker: phrases in, session-rate audio out -----------------------------------------
class Speaker:
    """Renders phrases through the cache; audio comes back trimmed, resampled and faded."""

    def __init__(
        self,
        cache: SpeechCache,
        notify: Callable[[str], None] = lambda _: None,
        resources: Resources | None = None,
        engines: Callable[[str], Engine] = engine,
        models: Path | None = None,
    ) -> None:
        """`resources`: None for the environment's; `engines`: an engine by name (one
        object each per process, so that a voice loads once); `models`: where voice models
        cut in stages are kept (None: `voice_models_folder()`)."""
        self.cache = cache
        self.resources = resources or Resources.from_environment()
        self.engines = engines
        self.reading = Reading(
            models or voice_models_folder(),
            self.resources.inference_threads,
            self.resources.decode_frames,
        )
        self._notify = notify
        self._warned_online = False
        self._damage_noted = 0
        self._keys: dict[Phrase, str] = {}

    def key(self, phrase: Phrase) -> str:
        if phrase not in self._keys:
            spec = phrase.voice
            identity = {
                "format": CACHE_FORMAT,
                "rate": RATE,
                "engine": spec.engine,
                "voice": self._identity(spec),
                "pace": round(spec.pace, 4),
                "unhurried": [VOICED_WPM_MAX, MAX_STRETCH, STRETCH_MARGIN, UNHURRY_TRIES],
                "first read": [
                    PIPER_LINE_BASE_S,
                    PIPER_LINE_PER_LETTER_S,
                    FIRST_READ_WPM,
                    SLOWED_TOO_FAR_WPM,
                ],
                "text": phrase.text,
            }
            blob = json.dumps(identity, sort_keys=True).encode("utf-8")
            self._keys[phrase] = hashlib.sha256(blob).hexdigest()
        return self._keys[phrase]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - bounded; one speaker per run
    def _identity(self, spec: VoiceSpec) -> str:
        return self.engines(spec.engine).identity(spec)

    def missing(self, phrases: Iterable[Phrase]) -> list[Phrase]:
        """Phrases without an intact cache entry (samples checked against their checksum)."""
        unique = list(dict.fromkeys(phrases))
        missing = [p for p in unique if self.cache.entry(self.key(p)) is None]
        self.note_damage()
        return missing

    def note_damage(self) -> None:
        count = len(self.cache.damaged)
        if count > self._damage_noted:
            self._damage_noted = count
            entries = "entry was" if count == 1 else "entries were"
            self._notify(
                f"note: {count} speech cache {entries} damaged (truncated or altered); "
                "rendering again"
            )

    def render(self, phrase: Phrase) -> Audio:
        """Synthesize one phrase and store it; returns what was stored."""
        eng = self.engines(phrase.voice.engine)
        if eng.online and not self._warned_online:
            self._warned_online = True
            self._notify(
                f"note: engine '{eng.name}' sends the script's text to Google to synthesise it"
            )
        spec = self.first_reading(phrase)
        take = eng.synthesize(phrase.text, spec, self.reading)
        for _ in range(UNHURRY_TRIES):
            slower = self._unhurried(phrase, spec, take)
            if slower is None:
                break
            spec = slower
            take = eng.synthesize(phrase.text, spec, self.reading)
        return self.store(phrase, take).samples

    def first_reading(self, phrase: Phrase) -> VoiceSpec:
        """The pace of a line's first reading: slower at once where Piper would rush it
        (from its phoneme lengths, else predicted from its letters; the measured check
        after it still applies)."""
        spec = phrase.voice
        words = text.spoken_words(phrase.text)
        if spec.engine != "piper" or words < 2:
            return spec
        eng = self.engines(spec.engine)
        seconds = eng.voiced_seconds(phrase.text, spec, self.reading)
        if seconds is None:  # from the letters: lengths scale with the pace
            letters = sum(character.isalpha() for character in phrase.text)
            at_one = PIPER_LINE_BASE_S + PIPER_LINE_PER_LETTER_S * letters
            ratio = min(1.0, FIRST_READ_WPM / (words / at_one * 60.0))
            return replace(spec, pace=spec.pace * max(ratio, 1 / MAX_STRETCH))
        wanted = words * 60.0 / (FIRST_READ_WPM * spec.pace)  # as heard at the asked pace

        def seconds_at(pace: float) -> float:
            return eng.voiced_seconds(phrase.text, replace(spec, pace=pace), self.reading) or 0.0

        slowest = spec.pace / MAX_STRETCH
        if seconds >= wanted:
            return spec
        if (
            eng.voiced_seconds(phrase.text, replace(spec, pace=slowest), self.reading) or 0.0
        ) <= wanted:
            return replace(spec, pace=slowest)
        fast, slow = spec.pace, slowest  # too short at `fast`, long enough at `slow`
        for _ in range(PACE_STEPS):
            middle = (fast + slow) / 2
            if (
                eng.voiced_seconds(phrase.text, replace(spec, pace=middle), self.reading) or 0.0
            ) >= wanted:
                slow = middle
            else:
                fast = middle
        return replace(spec, pace=slow)

    @staticmethod
    def _unhurried(phrase: Phrase, spec: VoiceSpec, take: Take) -> VoiceSpec | None:
        """A new pace for a line read too fast (short lines are read fastest), or slowed by
        the prediction more than it needed; None when it is right. Never slower than
        MAX_STRETCH allows, never faster than the script asks."""
        words = text.spoken_words(phrase.text)
        levelled = effects.level_speech(take.samples)
        start, stop = effects.sounding_span(levelled, effects.VOICE_RMS_DB - TRIM_BELOW_VOICE_DB)
        seconds = (stop - start) / take.rate  # as heard: the engine's edge silence goes
        if spec.engine == "gtts" or words < 2 or seconds <= 0:
            return None
        asked = phrase.voice.pace
        wpm = words / seconds * 60.0 / asked  # as if at pace 1.0
        slowest = asked / MAX_STRETCH
        if wpm > VOICED_WPM_MAX and spec.pace > slowest:
            return replace(
                spec, pace=max(slowest, spec.pace / (wpm / VOICED_WPM_MAX * STRETCH_MARGIN))
            )
        if wpm < SLOWED_TOO_FAR_WPM and spec.pace < asked:
            return replace(spec, pace=min(asked, spec.pace * FIRST_READ_WPM / wpm))
        return None

    def store(self, phrase: Phrase, take: Take) -> Entry:
        levelled = effects.level_speech(effects.resample(take.samples, take.rate, RATE))
        start, stop = effects.sounding_span(levelled, effects.VOICE_RMS_DB - TRIM_BELOW_VOICE_DB)
        if stop == start:
            raise EngineError(f"{phrase.voice.engine} produced no sound for {phrase.text!r}")
        audio = effects.fade_out(effects.fade_in(levelled[start:stop], EDGE_FADE_MS), EDGE_FADE_MS)
        words = None
        if take.words is not None:  # to session samples, from the trimmed start
            words = tuple(
                min(max(0, round(w * RATE / take.rate) - start), stop - start - 1)
                for w in take.words
            )
        return self.cache.write(self.key(phrase), Entry(audio, words))

    def words(self, phrase: Phrase) -> tuple[int, ...] | None:
        """Where each spoken word of a phrase starts, in its samples (None: not known)."""
        entry = self.cache.entry(self.key(phrase))
        return None if entry is None else entry.words

    def length(self, phrase: Phrase) -> int:
        """Length in session samples (renders the phrase if it is not cached)."""
        frames = self.cache.frames(self.key(phrase))
        return frames if frames is not None else len(self.render(phrase))

    @functools.lru_cache(maxsize=32)  # noqa: B019 - bounded; one speaker per run
    def audio(self, phrase: Phrase) -> Audio:
        samples = self.cache.read(self.key(phrase))
        if samples is None:
            samples = self.render(phrase)
        samples.setflags(write=False)
        return samples

    def release_voices(self) -> None:
        """Let go of every loaded voice (the mix that follows speech needs none)."""
        self.engines("piper").unload()

    def ready_to_fork(self, phrases: list[Phrase]) -> bool:
        """Load the Piper voices these phrases need, one inference thread each, and say
        whether worker processes may fork now (never from a batch's own workers)."""
        if multiprocessing.current_process().daemon:
            return False
        piper = self.engines("piper")
        if not isinstance(piper, PiperEngine):
            return True
        try:
            models = {
                piper.model_path(p.voice): p.voice for p in phrases if p.voice.engine == "piper"
            }
            ready = all(piper.load_for_workers(spec, self.reading) for spec in models.values())
        except EngineError:
            return False  # rendered here, where the error is raised for its phrase
        return ready and piper.fork_safe()

    def for_worker(self) -> Speaker:
        """This speaker as a worker process forked from this one uses it: the same cache
        and engines (voices loaded before the fork are shared), a worker's resources."""
        return Speaker(
            SpeechCache(self.cache.root), resources=self.resources.for_speech_worker(),
            engines=self.engines,
        )  # fmt: skip
