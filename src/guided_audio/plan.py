"""Stage 2: the timeline. Pure data: every sound of the session at an exact sample time.

`build` walks the script once. Speech lengths come from a `measure` function (the real
rendered length from the speech cache, or a word-count estimate), so the same code gives
both the accurate plan and `plan --estimate`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path

from guided_audio import sounds, text
from guided_audio.effects import RATE, seconds_to_samples
from guided_audio.errors import DecodeError, Location, Problem, ScriptError
from guided_audio.grammar import MAX_EVENTS, MAX_SESSION_S
from guided_audio.model import (
    Bell,
    Breathe,
    Music,
    Pause,
    Phrase,
    Reflect,
    Say,
    Script,
    Section,
    Sound,
    Step,
    VoiceSpec,
)
from guided_audio.text import Word

LEAD_IN_S = 0.5  # silence before the first sound, so players do not clip it
TAIL_S = 1.5  # silence after the last sound, for the bed's fade and a calm ending

# What each breath phase says when cues include the voice.
CUE_WORDS = {"in": "in", "hold": "hold", "out": "out", "rest": "rest"}
TOP_UP_WORD = "more"  # a second inhale in a row (the sigh pattern)


@dataclass(frozen=True)
class Tone:
    """A breath tone: rising for an inhale, falling for an exhale."""

    direction: str
    seconds: float


@dataclass(frozen=True)
class BellStrike:
    name: str


Source = Phrase | Tone | BellStrike | Path


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

    def __post_init__(self) -> None:
        self._starts.extend(e.start for e in self.events)
        self._breath_starts.extend(b.start for b in self.breaths)
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


def clock(samples: int) -> str:
    """'mm:ss', or 'h:mm:ss' past an hour."""
    seconds = int(samples // RATE)
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{rest // 60:02d}:{rest % 60:02d}"


Measure = Callable[[Phrase], int]
FileLength = Callable[[Path], int]


def estimate_speech(phrase: Phrase) -> int:
    """A quick length guess: about 150 words a minute at pace 1.0."""
    words = max(1, len(phrase.text.split()))
    return seconds_to_samples(words * 0.4 / phrase.voice.pace + 0.2)


def phrases(script: Script) -> list[Phrase]:
    """Every phrase the session speaks, in order (cues included), for pre-rendering."""
    out: list[Phrase] = []
    for section in script.sections:
        for step in section.steps:
            kind = step.kind
            if isinstance(kind, Say | Reflect):
                said = kind if isinstance(kind, Say) else kind.question
                out.extend(
                    Phrase(fragment.spoken, section.voice)
                    for part in said.parts
                    if isinstance(part, str)
                    for fragment in _fragments(part, section)
                )
            elif isinstance(kind, Breathe) and kind.cues in ("voice", "both"):
                out.extend(Phrase(word, section.voice) for word in _cue_words(kind))
    return out


def _fragments(said: str, section: Section) -> list[text.Fragment]:
    """A text's fragments; [[ phonemes ]] in the pronounce map are for Piper voices only."""
    piper = section.voice.engine == "piper"
    pronounce = {w: s for w, s in section.pronounce if piper or not s.startswith("[[")}
    return text.fragments(said, pronounce)


def cue_phrases(script: Script) -> set[Phrase]:
    """The spoken breath cues, whose real lengths validation must check against phases."""
    return {
        Phrase(word, section.voice)
        for section in script.sections
        for step in section.steps
        if isinstance(step.kind, Breathe) and step.kind.cues in ("voice", "both")
        for word in _cue_words(step.kind)
    }


def _cue_words(breathe: Breathe) -> list[str]:
    words, previous = [], ""
    for phase in breathe.pattern.phases:
        words.append(TOP_UP_WORD if phase.kind == previous == "in" else CUE_WORDS[phase.kind])
        previous = phase.kind
    return words


class _Builder:
    def __init__(self, script: Script, measure: Measure, file_length: FileLength) -> None:
        self.script = script
        self.measure = measure
        self.file_length = file_length
        self.cursor = seconds_to_samples(LEAD_IN_S)
        self.pending_gap = 0
        self.events: list[Event] = []
        self.breaths: list[BreathSpan] = []
        self.problems: list[Problem] = []
        self.section = 0
        self.sentence = 0
        self.step_index = -1

    def _fail(self, step: Step, message: str, hint: str | None = None) -> None:
        path = str(self.script.path)
        self.problems.append(Problem(Location(path, step.line, step.column), path, message, hint))

    def _begin_sound(self) -> int:
        """Start of the next sound: after the gap owed by the previous sound, if any."""
        self.cursor += self.pending_gap
        self.pending_gap = 0
        return self.cursor

    def _silence(self, seconds: float) -> None:
        # An explicit silence replaces the gap: what the author writes is what is heard.
        self.pending_gap = 0
        self.cursor += seconds_to_samples(seconds)

    def _add(
        self, start: int, length: int, source: Source, kind: str, caption: Caption | None = None
    ) -> None:
        if len(self.events) >= MAX_EVENTS:
            raise _TooMany
        self.events.append(
            Event(start, length, source, self.section, kind, caption, self.step_index)
        )

    def say(self, say: Say, section: Section) -> None:
        voice = section.voice
        # Sentence and clause pauses are owed gaps like `gap`: an inline pause replaces them.
        owed = {
            text.SENTENCE: seconds_to_samples(voice.sentence_pause_s),
            text.CLAUSE: seconds_to_samples(voice.clause_pause_s),
            text.END: 0,
        }
        self._begin_sound()
        for part in say.parts:
            if isinstance(part, Pause):
                self._silence(part.seconds)
                continue
            for fragment in _fragments(part, section):
                start = self._begin_sound()
                phrase = Phrase(fragment.spoken, voice)
                length = self.measure(phrase)
                self._add(start, length, phrase, "speech", Caption(self.sentence, fragment.words))
                self.cursor += length
                self.pending_gap = owed[fragment.ends]
                if fragment.ends != text.CLAUSE:
                    self.sentence += 1
        self.pending_gap = seconds_to_samples(voice.gap_s)

    def breathe(self, step: Step, breathe: Breathe, voice: VoiceSpec) -> None:
        start = self._begin_sound()
        words = _cue_words(breathe)
        # Phase boundaries come from cumulative seconds, so no rounding drift over many cycles.
        cycle_s = breathe.pattern.cycle_s
        for cycle in range(breathe.cycles):
            offset_s = cycle * cycle_s
            for phase, word in zip(breathe.pattern.phases, words, strict=True):
                phase_start = start + seconds_to_samples(offset_s)
                phase_length = start + seconds_to_samples(offset_s + phase.seconds) - phase_start
                offset_s += phase.seconds
                self.breaths.append(BreathSpan(phase.kind, phase_start, phase_start + phase_length))
                if breathe.cues in ("voice", "both"):
                    phrase = Phrase(word, voice)
                    length = self.measure(phrase)
                    if length > phase_length:
                        if cycle == 0:
                            self._fail(
                                step,
                                f"the spoken cue '{word}' lasts {length / RATE:.2f}s, longer "
                                f"than its {phase.seconds:g}s '{phase.kind}' phase",
                                "lengthen the phase, raise the pace, or use cues: tone",
                            )
                        continue
                    self._add(phase_start, length, phrase, "cue")
                if breathe.cues in ("tone", "both") and phase.kind in ("in", "out"):
                    tone = Tone(phase.kind, sounds.tone_seconds(phase_length / RATE))
                    self._add(phase_start, seconds_to_samples(tone.seconds), tone, "tone")
        self.cursor = start + seconds_to_samples(breathe.cycles * cycle_s)
        self.pending_gap = seconds_to_samples(voice.gap_s)

    def bell(self, bell: Bell, voice: VoiceSpec) -> None:
        start = self._begin_sound()
        spacing = seconds_to_samples(sounds.BELLS[bell.name].strike_interval_s)
        ring = seconds_to_samples(sounds.BELLS[bell.name].ring_s)
        for strike in range(bell.strikes):
            self._add(start + strike * spacing, ring, BellStrike(bell.name), "bell")
        self.cursor = start + (bell.strikes - 1) * spacing + ring
        self.pending_gap = seconds_to_samples(voice.gap_s)

    def sound(self, step: Step, sound: Sound, voice: VoiceSpec) -> None:
        start = self._begin_sound()
        try:
            length = self.file_length(sound.path)
        except DecodeError:
            self._fail(step, f"cannot decode the sound file {sound.path.name}", "is it damaged?")
            return
        self._add(start, length, sound.path, "sound")
        self.cursor = start + length
        self.pending_gap = seconds_to_samples(voice.gap_s)

    def step(self, step: Step, section: Section) -> None:
        self.step_index += 1
        kind = step.kind
        if isinstance(kind, Say):
            self.say(kind, section)
        elif isinstance(kind, Pause):
            self._silence(kind.seconds)
        elif isinstance(kind, Reflect):
            self.say(kind.question, section)
            self._silence(kind.silence_s)
        elif isinstance(kind, Breathe):
            self.breathe(step, kind, section.voice)
        elif isinstance(kind, Bell):
            self.bell(kind, section.voice)
        else:
            self.sound(step, kind, section.voice)
        if self.cursor > seconds_to_samples(MAX_SESSION_S) and not self.problems:
            self._fail(
                step, "the session passes the 4h limit here", "split it into several scripts"
            )


class _TooMany(Exception):
    """The timeline passed MAX_EVENTS: stop building at once, and say where."""


def build(script: Script, measure: Measure, file_length: FileLength) -> Timeline:
    """The whole session as events at exact sample times; ScriptError for timing problems."""
    builder = _Builder(script, measure, file_length)
    boundaries: list[int] = []
    for index, section in enumerate(script.sections):
        # A section starts where its first step starts: a sound after the owed gap,
        # or a silence right where the previous sound ended.
        first = section.steps[0].kind
        if not isinstance(first, Pause):
            builder._begin_sound()
        else:
            builder.pending_gap = 0
        boundaries.append(builder.cursor)
        builder.section = index
        for step in section.steps:
            try:
                builder.step(step, section)
            except _TooMany:
                builder._fail(
                    step,
                    f"the session passes {MAX_EVENTS:,} sounds here",
                    "fewer or longer breaths, or split it into several scripts",
                )
                raise ScriptError(builder.problems) from None
    if builder.problems:
        raise ScriptError(builder.problems)
    last_sound = max((e.end for e in builder.events), default=builder.cursor)
    total = max(builder.cursor, last_sound) + seconds_to_samples(TAIL_S)
    ends = [*boundaries[1:], total]
    spans = tuple(
        SectionSpan(section.title, start, end)
        for section, start, end in zip(script.sections, boundaries, ends, strict=True)
    )
    return Timeline(
        title=script.title,
        events=tuple(sorted(builder.events, key=lambda e: e.start)),
        sections=spans,
        beds=_beds(script, spans, total),
        total=total,
        breaths=tuple(builder.breaths),
    )


def _beds(script: Script, spans: tuple[SectionSpan, ...], total: int) -> tuple[BedSpan, ...]:
    """Consecutive sections with the same music share one bed span (no restart between);
    where the music changes from one section to the next, the beds hand over across the
    boundary (crossfading, or moving the level of the same bed) and never dip to silence."""
    runs: list[BedSpan] = []
    for index, (section, span) in enumerate(zip(script.sections, spans, strict=True)):
        start = 0 if index == 0 else span.start
        end = total if index == len(spans) - 1 else span.end
        if section.music is None:
            continue
        if runs and runs[-1].music == section.music and runs[-1].end == start:
            runs[-1] = replace(runs[-1], end=end)
        else:
            runs.append(BedSpan(section.music, start, end, origin=start))
    beds = [_edges(b) for b in runs]
    for i in range(len(beds) - 1):
        before, after = beds[i], beds[i + 1]
        if before.end != after.start:
            continue
        same = before.music.bed == after.music.bed
        fade = min(
            seconds_to_samples(after.music.fade_s),
            (before.end - before.start) // 2,
            (after.end - after.start) // 2,
        )
        half = fade // 2
        edge = BLEND if same else CROSS
        beds[i] = replace(before, end=before.end + half, fade_out=fade, edge_out=edge)
        beds[i + 1] = replace(
            after,
            start=after.start - half,
            fade_in=fade,
            edge_in=edge,
            origin=before.origin if same else after.start - half,
        )
    return tuple(beds)


def _edges(bed: BedSpan) -> BedSpan:
    """A bed fading in and out over its music's fade (at most half its length each)."""
    fade = min(seconds_to_samples(bed.music.fade_s), (bed.end - bed.start) // 2)
    return replace(bed, fade_in=fade, fade_out=fade)


# --- pace: how fast the narration is, as a listener hears it ----------------------------------
SENTENCE_WPM = (130.0, 170.0)  # a calm speaker, within one `say` (its inner pauses included)
SENTENCE_WPM_MAX = 185.0
NARRATION_WPM = (90.0, 120.0)  # over consecutive `say` steps, the gaps between them included


@dataclass(frozen=True)
class StepPace:
    """One spoken step: its words over the time from its first sound to its last."""

    section: int
    step: int
    text: str
    words: int
    start: int
    end: int
    inline_pause: int  # explicit [pause]s inside it: the author's, not the pace's

    @property
    def seconds(self) -> float:
        return (self.end - self.start - self.inline_pause) / RATE

    @property
    def wpm(self) -> float:
        return self.words / self.seconds * 60.0 if self.seconds > 0 else 0.0


def step_paces(script: Script, timeline: Timeline) -> list[StepPace]:
    """Every `say` step (and reflect question), with its measured pace."""
    spoken: dict[int, list[Event]] = {}
    for event in timeline.events:
        if event.kind == "speech" and event.caption is not None:
            spoken.setdefault(event.step, []).append(event)
    steps = [(s, step) for s, section in enumerate(script.sections) for step in section.steps]
    out = []
    for index, (section, step) in enumerate(steps):
        kind = step.kind
        said = (
            kind if isinstance(kind, Say) else kind.question if isinstance(kind, Reflect) else None
        )
        if said is None or index not in spoken:
            continue
        events = spoken[index]
        words = sum(w.spoken for e in events if e.caption for w in e.caption.words)
        inline = sum(seconds_to_samples(p.seconds) for p in said.parts if isinstance(p, Pause))
        out.append(
            StepPace(section, index, said.text, words, events[0].start, events[-1].end, inline)
        )
    return out


def narration_wpm(script: Script, paces: list[StepPace]) -> float | None:
    """Words per minute over runs of consecutive `say` steps (gaps and inner pauses in,
    explicit pauses out); None when no two `say` steps follow each other."""
    kinds = [step.kind for section in script.sections for step in section.steps]
    words = samples = 0
    run: list[StepPace] = []
    for pace in [*paces, None]:
        joined = (
            pace is not None
            and run
            and pace.step == run[-1].step + 1
            and isinstance(kinds[pace.step], Say)
            and isinstance(kinds[run[-1].step], Say)
        )
        if not joined:
            if len(run) >= 2:
                words += sum(p.words for p in run)
                samples += run[-1].end - run[0].start - sum(p.inline_pause for p in run)
            run = []
        if pace is not None:
            run.append(pace)
    return words / samples * RATE * 60.0 if samples else None
