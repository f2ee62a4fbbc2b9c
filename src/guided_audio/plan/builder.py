"""Stage 2: a script turned into its timeline, given how long each phrase and file lasts."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from guided_audio.dsp import sounds
from guided_audio.dsp.effects import RATE, seconds_to_samples
from guided_audio.errors import DecodeError, Location, Problem, ScriptError
from guided_audio.plan import fit
from guided_audio.plan.bedspans import bed_spans
from guided_audio.plan.fit import Stretch
from guided_audio.plan.timeline import (
    LEAD_IN_S,
    TAIL_S,
    BellStrike,
    BreathSpan,
    Caption,
    Event,
    FileLength,
    Measure,
    Pass,
    SectionSpan,
    Source,
    Timeline,
    Tone,
)
from guided_audio.script import text
from guided_audio.script.grammar import MAX_EVENTS, MAX_SESSION_S, STRETCH
from guided_audio.script.model import (
    Bell,
    Bilateral,
    Bounds,
    Breathe,
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

# What each breath phase says when cues include the voice.
CUE_WORDS = {"in": "in", "hold": "hold", "out": "out", "rest": "rest"}
TOP_UP_WORD = "more"  # a second inhale in a row (the sigh pattern)
FREE = Bounds()  # a silence the author did not bound: the grammar's defaults


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
            said = kind if isinstance(kind, Say) else getattr(kind, "question", None)
            said = kind.say if isinstance(kind, Bilateral) else said
            if said is not None:
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
    def __init__(
        self,
        script: Script,
        measure: Measure,
        file_length: FileLength,
        lengths: Sequence[int] | None = None,
    ) -> None:
        self.script = script
        self.measure = measure
        self.file_length = file_length
        self.lengths = lengths  # the stretchable elements' lengths, in order (None: natural)
        self.stretches: list[Stretch] = []
        self.cursor = seconds_to_samples(LEAD_IN_S)
        self.pending_gap = 0
        self.pending_kind: str | None = None
        self.events: list[Event] = []
        self.breaths: list[BreathSpan] = []
        self.problems: list[Problem] = []
        self.section = 0
        self.sentence = 0
        self.step_index = -1

    def _fail(self, step: Step, message: str, hint: str | None = None) -> None:
        path = str(self.script.path)
        self.problems.append(Problem(Location(path, step.line, step.column), path, message, hint))

    def _stretch(self, natural: int, kind: str | None, bounds: Bounds = FREE) -> int:
        """A stretchable element's length: natural, or as fitted to a --length."""
        if kind is None or natural == 0:
            return natural
        tier, shortest, longest = STRETCH[kind]
        low, high = round(natural * shortest), round(natural * longest)
        if bounds.fixed:
            low = high = natural
        if bounds.min_s is not None:
            low = seconds_to_samples(bounds.min_s)
        if bounds.max_s is not None:
            high = seconds_to_samples(bounds.max_s)
        self.stretches.append(Stretch(natural, min(low, natural), max(high, natural), tier))
        return natural if self.lengths is None else self.lengths[len(self.stretches) - 1]

    def _owe(self, samples: int, kind: str | None) -> None:
        self.pending_gap, self.pending_kind = samples, kind

    def _begin_sound(self) -> int:
        """Start of the next sound: after the gap owed by the previous sound, if any."""
        self.cursor += self._stretch(self.pending_gap, self.pending_kind)
        self.pending_gap = 0
        return self.cursor

    def _silence(self, seconds: float, kind: str, bounds: Bounds = FREE) -> None:
        # An explicit silence replaces the gap: what the author writes is what is heard.
        self.pending_gap = 0
        self.cursor += self._stretch(seconds_to_samples(seconds), kind, bounds)

    def _whole(self, count: int, span: tuple[int, int] | None, unit_s: float) -> int:
        """Whole units (breath cycles, bilateral passes): as written, or fitted to a --length."""
        if span is None:
            return count
        low, high = span
        choices = tuple(seconds_to_samples(k * unit_s) for k in range(low, high + 1))
        natural = seconds_to_samples(count * unit_s)
        tier = STRETCH["breathe"][0]
        self.stretches.append(Stretch(natural, choices[0], choices[-1], tier, choices))
        if self.lengths is None:
            return count
        return low + choices.index(self.lengths[len(self.stretches) - 1])

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
            text.SENTENCE: (seconds_to_samples(voice.sentence_pause_s), "sentence"),
            text.CLAUSE: (seconds_to_samples(voice.clause_pause_s), None),
            text.END: (0, None),
        }
        self._begin_sound()
        for part in say.parts:
            if isinstance(part, Pause):
                self._silence(part.seconds, "sentence")
                continue
            for fragment in _fragments(part, section):
                start = self._begin_sound()
                phrase = Phrase(fragment.spoken, voice)
                length = self.measure(phrase)
                self._add(start, length, phrase, "speech", Caption(self.sentence, fragment.words))
                self.cursor += length
                self._owe(*owed[fragment.ends])
                if fragment.ends != text.CLAUSE:
                    self.sentence += 1
        self._owe(seconds_to_samples(voice.gap_s), "gap")

    def breathe(self, step: Step, breathe: Breathe, voice: VoiceSpec) -> None:
        start = self._begin_sound()
        words = _cue_words(breathe)
        # Phase boundaries come from cumulative seconds, so no rounding drift over many cycles.
        cycle_s = breathe.pattern.cycle_s
        cycles = self._whole(breathe.cycles, breathe.cycle_range, cycle_s)
        for cycle in range(cycles):
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
        self.cursor = start + seconds_to_samples(cycles * cycle_s)
        self._owe(seconds_to_samples(voice.gap_s), "gap")

    def bell(self, bell: Bell, voice: VoiceSpec) -> None:
        start = self._begin_sound()
        spacing = seconds_to_samples(sounds.BELLS[bell.name].strike_interval_s)
        ring = seconds_to_samples(sounds.BELLS[bell.name].ring_s)
        for strike in range(bell.strikes):
            self._add(start + strike * spacing, ring, BellStrike(bell.name), "bell")
        self.cursor = start + (bell.strikes - 1) * spacing + ring
        self._owe(seconds_to_samples(voice.gap_s), "gap")

    def bilateral(self, step: Step, bilateral: Bilateral, section: Section) -> None:
        voice = section.voice
        start = self._begin_sound()
        unit_s = 1 / bilateral.speed
        sound = bilateral.sound
        heard = self.file_length(sound) if isinstance(sound, Path) else sounds.pass_length(sound)
        span = bilateral.pass_range
        if bilateral.say is not None and span is not None:
            # A --length never makes the set shorter than the line spoken over it.
            spoken = self._over(bilateral.say, section, 0, add=False)
            span = (max(span[0], min(bilateral.passes, math.ceil(spoken / RATE / unit_s))), span[1])
        for index in range(self._whole(bilateral.passes, span, unit_s)):
            at = start + seconds_to_samples(index * unit_s)
            side = -1 if index % 2 == 0 else 1  # the first on the left
            source = Pass(sound, side, bilateral.pan, bilateral.level_db, unit_s)
            self._add(at, min(heard, seconds_to_samples(unit_s)), source, "bilateral")
            self.cursor = start + seconds_to_samples((index + 1) * unit_s)
        if bilateral.say is not None and self._over(bilateral.say, section, start) > self.cursor:
            self._fail(step, "the spoken line is longer than its set", "add passes or say less")
        self._owe(seconds_to_samples(voice.gap_s), "gap")

    def _over(self, say: Say, section: Section, at: int, add: bool = True) -> int:
        """A line spoken over other sounds from `at`, its pauses as written (they do not
        stretch: the set under it does); returns where it ends (`add`: else only measured)."""
        voice = section.voice
        after = {text.SENTENCE: voice.sentence_pause_s, text.CLAUSE: voice.clause_pause_s}
        for part in say.parts:
            if isinstance(part, Pause):
                at += seconds_to_samples(part.seconds)
                continue
            for fragment in _fragments(part, section):
                phrase = Phrase(fragment.spoken, voice)
                length = self.measure(phrase)
                if add:
                    self._add(at, length, phrase, "speech", Caption(self.sentence, fragment.words))
                    self.sentence += fragment.ends != text.CLAUSE
                at += length + seconds_to_samples(after.get(fragment.ends, 0.0))
        return at

    def sound(self, step: Step, sound: Sound, voice: VoiceSpec) -> None:
        start = self._begin_sound()
        try:
            length = self.file_length(sound.path)
        except DecodeError:
            self._fail(step, f"cannot decode the sound file {sound.path.name}", "is it damaged?")
            return
        self._add(start, length, sound.path, "sound")
        self.cursor = start + length
        self._owe(seconds_to_samples(voice.gap_s), "gap")

    def step(self, step: Step, section: Section) -> None:
        self.step_index += 1
        kind = step.kind
        if isinstance(kind, Say):
            self.say(kind, section)
        elif isinstance(kind, Pause):
            self._silence(kind.seconds, "pause", kind.bounds)
        elif isinstance(kind, Reflect):
            self.say(kind.question, section)
            self._silence(kind.silence_s, "silence", kind.bounds)
        elif isinstance(kind, Breathe):
            self.breathe(step, kind, section.voice)
        elif isinstance(kind, Bell):
            self.bell(kind, section.voice)
        elif isinstance(kind, Bilateral):
            self.bilateral(step, kind, section)
        else:
            self.sound(step, kind, section.voice)
        if self.cursor > seconds_to_samples(MAX_SESSION_S) and not self.problems:
            self._fail(
                step, "the session passes the 4h limit here", "split it into several scripts"
            )


class _TooMany(Exception):
    """The timeline passed MAX_EVENTS: stop building at once, and say where."""


def build(
    script: Script, measure: Measure, file_length: FileLength, length: int | None = None
) -> Timeline:
    """The whole session as events at exact sample times, `length` samples long if given
    (OutOfRange if it cannot be); ScriptError for timing problems."""
    timeline, stretches = _build(script, measure, file_length)
    if length is None or length == timeline.total:
        return timeline
    for candidate in _shorter_versions(script):
        if candidate is not script:
            timeline, stretches = _build(candidate, measure, file_length)
        shorter, longer = fit.reach(stretches)
        if timeline.total - shorter <= length:
            break
    if not timeline.total - shorter <= length <= timeline.total + longer:
        raise OutOfRange(*reach(script, measure, file_length))
    try:
        lengths = fit.fit(stretches, length - timeline.total)
    except fit.OutOfReach:  # inside the range, but whole cycles leave the silences short
        raise OutOfRange(*reach(script, measure, file_length), whole_cycles=True) from None
    fitted, _ = _build(candidate, measure, file_length, lengths)
    assert fitted.total == length, (fitted.total, length)
    return fitted


class OutOfRange(ValueError):
    """A --length the session cannot be: `shortest` and `longest` say what it can be;
    `whole_cycles`: the length lies between them, but whole breath cycles miss it."""

    def __init__(self, shortest: int, longest: int, whole_cycles: bool = False) -> None:
        super().__init__(shortest, longest)
        self.shortest, self.longest = shortest, longest
        self.whole_cycles = whole_cycles


def _shorter_versions(script: Script) -> Iterator[Script]:
    """The script, then without its optional sections one by one: the lowest priority
    first, then the latest."""
    yield script
    optional = sorted(
        (i for i, s in enumerate(script.sections) if s.optional),
        key=lambda i: (script.sections[i].priority, -i),
    )
    left_out: set[int] = set()
    for index in optional:
        left_out.add(index)
        kept = tuple(s for i, s in enumerate(script.sections) if i not in left_out)
        if kept:
            yield replace(script, sections=kept)


def reach(script: Script, measure: Measure, file_length: FileLength) -> tuple[int, int]:
    """The shortest and the longest the session can be made, in samples."""
    shortest = longest = 0
    for candidate in _shorter_versions(script):  # the whole script first, then shorter ones
        timeline, stretches = _build(candidate, measure, file_length)
        shorter, longer = fit.reach(stretches)
        if candidate is script:
            shortest, longest = timeline.total - shorter, timeline.total + longer
        shortest = min(shortest, timeline.total - shorter)
    return shortest, longest


def _build(
    script: Script,
    measure: Measure,
    file_length: FileLength,
    lengths: Sequence[int] | None = None,
) -> tuple[Timeline, list[Stretch]]:
    builder = _Builder(script, measure, file_length, lengths)
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
    timeline = Timeline(
        title=script.title,
        events=tuple(sorted(builder.events, key=lambda e: e.start)),
        sections=spans,
        beds=bed_spans(script, spans, total),
        total=total,
        breaths=tuple(builder.breaths),
    )
    return timeline, builder.stretches
