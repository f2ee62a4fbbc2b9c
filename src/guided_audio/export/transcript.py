"""A sink beside the audio: the session as WebVTT, timed from the timeline itself.

One cue per spoken sentence, from its first sound to its last; where the engine told us
where words start (Piper's alignments), each word after the first carries an inner
timestamp. Breath phases, bells, sounds and long silences get bracketed cues; each
section opens with a NOTE naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from guided_audio.dsp.effects import RATE, seconds_to_samples
from guided_audio.plan.timeline import TAIL_S, Event, Timeline, timestamp
from guided_audio.script.model import Phrase

LONG_SILENCE_S = 10.0  # a quiet stretch this long is worth telling a reader about
BREATH_WORDS = {"in": "breathe in", "hold": "hold", "out": "breathe out", "rest": "rest"}

WordStarts = Callable[[Phrase], tuple[int, ...] | None]


@dataclass(frozen=True)
class Cue:
    start: int
    end: int
    text: str


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sentence(events: list[Event], word_starts: WordStarts) -> Cue:
    """One cue for the fragments of one sentence, with word times where all are known."""
    start, end = events[0].start, events[-1].end
    pieces: list[str] = []
    last_ms = round(start * 1000 / RATE)
    for event in events:
        assert event.caption is not None and isinstance(event.source, Phrase)
        words = event.caption.words
        starts = word_starts(event.source)
        timed = starts is not None and len(starts) == sum(w.spoken for w in words)
        spoken_index = 0
        for word in words:
            text = _escape(word.written)
            if timed and word.spoken and starts is not None:
                at = event.start + starts[spoken_index]
                at_ms = round(at * 1000 / RATE)
                if pieces and last_ms < at_ms < round(end * 1000 / RATE):
                    text = f"<{timestamp(at)}>{text}"
                    last_ms = at_ms
            spoken_index += word.spoken
            pieces.append(text)
    return Cue(start, end, " ".join(pieces))


def _silences(timeline: Timeline) -> Iterator[Cue]:
    spans = sorted(
        [(e.start, e.end) for e in timeline.events] + [(b.start, b.end) for b in timeline.breaths]
    )
    if not spans:
        return
    reach = spans[0][1]
    ending = (timeline.total - seconds_to_samples(TAIL_S), timeline.total)
    for start, end in [*spans[1:], ending]:
        if start - reach >= LONG_SILENCE_S * RATE:
            yield Cue(reach, start, f"[silence, {round((start - reach) / RATE)} s]")
        reach = max(reach, end)


def cues(timeline: Timeline, word_starts: WordStarts) -> list[Cue]:
    """Every cue of the session, in order of start."""
    out: list[Cue] = []
    out += (_sentence(list(fragments), word_starts) for fragments in timeline.sentences)
    out += (Cue(b.start, b.end, f"[{BREATH_WORDS[b.kind]}]") for b in timeline.breaths)
    out += (
        Cue(start, end, f"[bilateral, {round((end - start) / RATE)} s]")
        for start, end, _ in timeline.bilateral_sets()
    )
    for event in timeline.events:
        if event.kind == "bell":
            out.append(Cue(event.start, event.end, "[bell]"))
        elif event.kind == "sound":
            out.append(Cue(event.start, event.end, "[sound]"))
    out += _silences(timeline)
    return sorted(out, key=lambda c: (c.start, c.end))


def webvtt(timeline: Timeline, word_starts: WordStarts) -> str:
    """The whole transcript as WebVTT text."""
    lines = ["WEBVTT", f"NOTE {_note(timeline.title)}", ""]
    sections = list(enumerate(timeline.sections, start=1))
    for cue in cues(timeline, word_starts):
        while sections and sections[0][1].start <= cue.start:
            number, span = sections.pop(0)
            lines += [f"NOTE Chapter {number}: {_note(span.title)} ({timestamp(span.start)})", ""]
        lines += [f"{timestamp(cue.start)} --> {timestamp(cue.end)}", cue.text, ""]
    for number, span in sections:  # sections with no cue at all (a silence too short to tell)
        lines += [f"NOTE Chapter {number}: {_note(span.title)} ({timestamp(span.start)})", ""]
    return "\n".join(lines)


def _note(text: str) -> str:
    return " ".join(text.replace("-->", "\u2192").split())
