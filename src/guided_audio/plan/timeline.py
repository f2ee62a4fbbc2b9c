"""Stage 2's data: the timeline. Every sound of a session as an event at an exact sample
time (44.1 kHz), the sections, the music beds and the breath phases; pure data, no audio.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from guided_audio.dsp.effects import RATE
from guided_audio.script.model import (
    Music,
    Phrase,
)
from guided_audio.script.text import Word

LEAD_IN_S = 0.5  # silence before the first sound, so players do not clip it
TAIL_S = 1.5  # silence after the last sound, for the bed's fade and a calm ending


@dataclass(frozen=True)
class Tone:
    """A breath tone: rising for an inhale, falling for an exhale."""

    direction: str
    seconds: float


@dataclass(frozen=True)
class BellStrike:
    name: str


@dataclass(frozen=True)
class Pass:
    """One sound of a bilateral set, on one side (-1 left, 1 right) at `pan` of the way."""

    sound: str | Path
    side: int
    pan: float
    level_db: float
    seconds: float  # at most this long: the pass's share of the set


Source = Phrase | Tone | BellStrike | Pass | Path


@dataclass(frozen=True)
class Caption:
    """What a speech event says as written; a sentence's fragments share its number."""

    sentence: int
    words: tuple[Word, ...]


@dataclass(frozen=True)
class Event:
    start: int  # sample index at RATE
    length: int
    source: Source
    section: int
    kind: str  # speech | cue | tone | bell | sound
    caption: Caption | None = None
    step: int = -1  # which step of the session (counted across sections) it belongs to

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class SectionSpan:
    title: str
    start: int
    end: int


FADE = "fade"  # from or to silence, at the session's (or the music's) edges
CROSS = "cross"  # equal power, into or out of a different bed
BLEND = "blend"  # the same bed at another level: the gain moves, the sound continues


@dataclass(frozen=True)
class BedSpan:
    """A bed sounding over [start, end), its edges shaped over `fade_in`/`fade_out` samples.

    `origin` is where the bed's own time starts: a bed that only changes level keeps its
    origin, so both spans play the same samples while one hands over to the other.
    """

    music: Music
    start: int
    end: int
    origin: int = 0
    fade_in: int = 0
    fade_out: int = 0
    edge_in: str = FADE
    edge_out: str = FADE


@dataclass(frozen=True)
class BreathSpan:
    """One phase of a `breathe` step, for a pacer that shows it in time with the audio."""

    kind: str  # in | hold | out | rest
    start: int
    end: int


@dataclass(frozen=True)
class Timeline:
    title: str
    events: tuple[Event, ...]  # sorted by start
    sections: tuple[SectionSpan, ...]
    beds: tuple[BedSpan, ...]
    total: int
    breaths: tuple[BreathSpan, ...] = ()
    rate: int = RATE
    _starts: list[int] = field(default_factory=list, repr=False, compare=False)
    _longest: int = field(default=0, repr=False, compare=False)
    _breath_starts: list[int] = field(default_factory=list, repr=False, compare=False)
    sentences: list[tuple[Event, ...]] = field(default_factory=list, repr=False, compare=False)
    _sentence_starts: list[int] = field(default_factory=list, repr=False, compare=False)
    _sets: list[tuple[int, int, int]] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._starts.extend(e.start for e in self.events)
        self._breath_starts.extend(b.start for b in self.breaths)
        passes: dict[int, list[tuple[int, Pass]]] = {}
        for e in self.events:
            if isinstance(e.source, Pass):
                passes.setdefault(e.step, []).append((e.start, e.source))
        self._sets.extend(
            (p[0][0], p[-1][0] + round(p[-1][1].seconds * self.rate), len(p))
            for p in passes.values()
        )
        spoken = [e for e in self.events if e.caption is not None]
        for _, group in groupby(spoken, key=lambda e: e.caption.sentence if e.caption else -1):
            self.sentences.append(tuple(group))  # a sentence's fragments, in order
        self._sentence_starts.extend(s[0].start for s in self.sentences)
        object.__setattr__(self, "_longest", max((e.length for e in self.events), default=0))

    @property
    def seconds(self) -> float:
        return self.total / self.rate

    def events_between(self, start: int, stop: int) -> list[Event]:
        """Events sounding anywhere in [start, stop)."""
        first = bisect.bisect_left(self._starts, start - self._longest)
        last = bisect.bisect_left(self._starts, stop)
        return [e for e in self.events[first:last] if e.end > start]

    def bilateral_sets(self) -> list[tuple[int, int, int]]:
        """Each set of bilateral passes: (start, end, passes), in order (read often: the
        player's light asks every frame)."""
        return self._sets

    def section_at(self, sample: int) -> int:
        """Index of the section playing at `sample` (the first one during the lead-in)."""
        starts = [span.start for span in self.sections]
        return max(0, bisect.bisect_right(starts, sample) - 1)

    def breath_at(self, sample: int) -> BreathSpan | None:
        """The breath phase sounding at `sample`, if any."""
        index = bisect.bisect_right(self._breath_starts, sample) - 1
        if index >= 0 and sample < self.breaths[index].end:
            return self.breaths[index]
        return None

    def sentence_at(self, sample: int) -> str:
        """The written sentence being spoken at `sample` (its clause pauses included), or ''."""
        index = bisect.bisect_right(self._sentence_starts, sample) - 1
        if index >= 0 and sample < self.sentences[index][-1].end:
            fragments = self.sentences[index]
            return " ".join(w.written for e in fragments if e.caption for w in e.caption.words)
        return ""

    def speech_at(self, sample: int) -> Event | None:
        """The spoken phrase (not a breath cue) sounding at `sample`, if any."""
        for event in self.events_between(sample, sample + 1):
            if event.kind == "speech":
                return event
        return None

    def quiet_spans(self) -> list[tuple[int, int]]:
        """Where nothing but a bed sounds (no speech, cue, tone, bell or sound), sorted."""
        quiet, end = [], 0
        for event in self.events:  # sorted by start
            if event.start > end:
                quiet.append((end, event.start))
            end = max(end, event.end)
        if end < self.total:
            quiet.append((end, self.total))
        return quiet

    def voice_spans(self) -> list[tuple[int, int]]:
        """Where a voice speaks (speech and spoken cues), merged and sorted."""
        spans = sorted((e.start, e.end) for e in self.events if e.kind in ("speech", "cue"))
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged


def milliseconds(samples: int) -> int:
    """A sample time in whole milliseconds (nearest)."""
    return round(samples * 1000 / RATE)


def timestamp(samples: int) -> str:
    """HH:MM:SS.mmm for a sample time: WebVTT's cues, chapter marks and comments."""
    seconds, millis = divmod(milliseconds(samples), 1000)
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours:02d}:{m:02d}:{s:02d}.{millis:03d}"


def clock(samples: int) -> str:
    """'mm:ss', or 'h:mm:ss' past an hour."""
    seconds = int(samples // RATE)
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{rest // 60:02d}:{rest % 60:02d}"


Measure = Callable[[Phrase], int]
FileLength = Callable[[Path], int]
