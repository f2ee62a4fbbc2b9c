"""What the player plays from: a timeline and its source, fixed (`StaticFeed`), or growing
as speech not yet cached is synthesised ahead (`LiveFeed`).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from guided_audio.dsp.decode import file_length
from guided_audio.dsp.effects import seconds_to_samples
from guided_audio.dsp.truepeak import LIMIT_EDGE
from guided_audio.mix.beds import DUCK_ATTACK_S
from guided_audio.mix.master import LIMIT_LOOKAHEAD
from guided_audio.mix.mixer import Mixer, Windowed
from guided_audio.plan.builder import build, estimate_speech, phrases
from guided_audio.plan.timeline import Timeline
from guided_audio.script.model import Phrase, Script
from guided_audio.speech.speaker import Speaker


@dataclass(frozen=True)
class Snapshot:
    """The timeline as known now; samples before `final` play exactly as exported."""

    timeline: Timeline
    source: Windowed
    final: int

    @property
    def exact(self) -> bool:
        return self.final >= self.timeline.total


class Feed(ABC):
    @abstractmethod
    def snapshot(self) -> Snapshot: ...

    def wait(self, timeout_s: float) -> None:
        """Until the snapshot may have changed (or the timeout)."""
        time.sleep(timeout_s)

    def close(self) -> None:  # noqa: B027 - most feeds hold nothing to close
        pass


class StaticFeed(Feed):
    """A source that is final from the start (everything cached, or a bell preview)."""

    def __init__(self, timeline: Timeline, source: Windowed) -> None:
        self._snapshot = Snapshot(timeline, source, timeline.total)

    def snapshot(self) -> Snapshot:
        return self._snapshot


def final_guard(script: Script) -> int:
    """How far before the first unsynthesised phrase the mix is certainly final.

    A bed's fades depend on where its span ends (up to two fade lengths back), ducking
    starts an attack before speech, and the limiter looks ahead.
    """
    fades = [s.music.fade_s for s in script.sections if s.music is not None]
    reach_s = max([2 * f for f in fades] + [DUCK_ATTACK_S])
    return seconds_to_samples(reach_s) + LIMIT_LOOKAHEAD + LIMIT_EDGE + 1


def cached_lengths(script: Script, speaker: Speaker) -> tuple[dict[Phrase, int], list[Phrase]]:
    """The lengths of the phrases already cached, and the others in session order (one
    look at each cache entry)."""
    lengths: dict[Phrase, int] = {}
    todo: list[Phrase] = []
    for phrase in dict.fromkeys(phrases(script)):
        frames = speaker.cache.frames(speaker.key(phrase))
        if frames is None:
            todo.append(phrase)
        else:
            lengths[phrase] = frames
    return lengths, todo


class LiveFeed(Feed):
    """Synthesises missing phrases in session order while the session plays."""

    def __init__(
        self,
        script: Script,
        speaker: Speaker,
        master: Callable[[Mixer], Windowed],
        cached: tuple[dict[Phrase, int], list[Phrase]] | None = None,
        length: int | None = None,  # samples: fitted to a --length (speech all measured)
    ) -> None:
        self.script = script
        self.length = length
        self.speaker = speaker
        self._master = master
        self._guard = final_guard(script)
        self._changed = threading.Condition()
        self._lengths: dict[Phrase, int] = {}
        self._version = 0
        self._error: BaseException | None = None
        self._closed = False
        self._built: tuple[int, Snapshot] | None = None
        self._build_lock = threading.Lock()
        self._lengths, self._todo = cached or cached_lengths(script, speaker)
        self._thread = threading.Thread(target=self._synthesize, name="synthesise", daemon=True)
        self._thread.start()

    def _synthesize(self) -> None:
        try:
            for phrase in self._todo:
                if self._closed:
                    return
                length = len(self.speaker.render(phrase))
                with self._changed:
                    self._lengths[phrase] = length
                    self._version += 1
                    self._changed.notify_all()
        except BaseException as exc:  # reported by the renderer, which owns the session
            with self._changed:
                self._error = exc
                self._changed.notify_all()

    def snapshot(self) -> Snapshot:
        with self._changed:
            if self._error is not None:
                raise self._error
            version, lengths = self._version, dict(self._lengths)
        with self._build_lock:
            if self._built is None or self._built[0] != version:
                self._built = (version, self._build(lengths))
            return self._built[1]

    def _build(self, lengths: dict[Phrase, int]) -> Snapshot:
        def measure(phrase: Phrase) -> int:
            known = lengths.get(phrase)
            return estimate_speech(phrase) if known is None else known

        timeline = build(self.script, measure, file_length, self.length)
        unknown = [
            e.start
            for e in timeline.events
            if isinstance(e.source, Phrase) and e.source not in lengths
        ]
        final = max(0, min(unknown) - self._guard) if unknown else timeline.total
        return Snapshot(
            timeline,
            self._master(Mixer(timeline, self.speaker, self.speaker.resources.drone_tiles)),
            final,
        )

    def wait(self, timeout_s: float) -> None:
        with self._changed:
            self._changed.wait(timeout_s)

    def close(self) -> None:
        """Stop after the phrase being synthesised, so no cache entry is left half-made."""
        self._closed = True
        self._thread.join(timeout=30)
