"""A guide's pace, measured on a timeline: each spoken step's words a minute and the
narration's over consecutive steps (`plan --words`).
"""

from __future__ import annotations

from dataclasses import dataclass

from guided_audio.dsp.effects import RATE, seconds_to_samples
from guided_audio.plan.timeline import Event, Timeline
from guided_audio.script.model import (
    Pause,
    Reflect,
    Say,
    Script,
)

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
