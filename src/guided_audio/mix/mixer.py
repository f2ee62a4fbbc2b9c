"""Stage 4: the mix. `Mixer.render(start, stop)` renders any window of a timeline on
demand, in float, never the whole: speech, cues, tones, bells, sound files and the beds.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from guided_audio.dsp import effects, sounds
from guided_audio.dsp.decode import decode
from guided_audio.dsp.effects import CHANNELS, RATE, Audio
from guided_audio.mix.beds import bed_audio, bed_envelope_at, duck_depth_at, duck_spans
from guided_audio.plan.timeline import BedSpan, BellStrike, Event, Pass, Timeline, Tone
from guided_audio.script.model import Music, Phrase
from guided_audio.speech.speaker import Speaker

BLOCK = RATE * 10  # samples per streamed block
GAIN_GRID = 32  # samples between the points a bed's gain is computed at (0.7 ms)


# --- the mixer -------------------------------------------------------------------------------
class Windowed(ABC):
    """A source that renders any window of itself; streamed in fixed blocks."""

    @property
    @abstractmethod
    def total(self) -> int: ...

    @abstractmethod
    def render(self, start: int, stop: int) -> Audio: ...

    def quiet_spans(self) -> list[tuple[int, int]]:
        """Where nothing but a steady bed sounds, if known: where an encoder that starts
        late most surely takes over cleanly from the one before (sinks.encoding_parts)."""
        return []

    def blocks(self, block: int = BLOCK) -> Iterator[Audio]:
        for start in range(0, self.total, block):
            yield self.render(start, min(start + block, self.total))


class Mixer(Windowed):
    """Renders windows of a timeline; holds nothing but small sources and caches."""

    def __init__(
        self, timeline: Timeline, speaker: Speaker, drone_tiles: int | None = None
    ) -> None:
        """`drone_tiles`: how much of the drone's loop stays built (None: all of it)."""
        self.timeline = timeline
        self.speaker = speaker
        self.drone_tiles = drone_tiles
        self.duck = duck_spans(timeline.voice_spans())
        self.duck_starts = [s for s, _ in self.duck]

    @property
    def total(self) -> int:
        return self.timeline.total

    def quiet_spans(self) -> list[tuple[int, int]]:
        return self.timeline.quiet_spans()

    def event_audio(self, event: Event) -> Audio:
        source = event.source
        if isinstance(source, Phrase):
            return self.speaker.audio(source)
        if isinstance(source, Tone):
            return sounds.tone(source.direction, source.seconds)
        if isinstance(source, BellStrike):
            return sounds.bell(source.name)
        if isinstance(source, Pass):
            if isinstance(source.sound, Path):
                cut = decode(source.sound)[: effects.seconds_to_samples(source.seconds)]
                mono = effects.fade_out(cut.mean(axis=1), sounds.PASS_FADE_MS)
            else:
                mono = sounds.pass_sound(source.sound)
            return sounds.on_one_side(mono, source.side, source.pan, source.level_db)
        return decode(source)

    def render(self, start: int, stop: int) -> Audio:
        """Samples [start, stop) of the session, shape (n, 2); zeros outside it."""
        out = np.zeros((stop - start, CHANNELS), dtype=np.float32)
        lo_all, hi_all = max(start, 0), min(stop, self.total)
        if lo_all >= hi_all:
            return out
        for event in self.timeline.events_between(lo_all, hi_all):
            audio = self.event_audio(event)
            # Never past its planned length: a phrase rendered again may differ by a little.
            lo, hi = max(lo_all, event.start), min(hi_all, event.end, event.start + len(audio))
            if lo >= hi:
                continue
            piece = audio[lo - event.start : hi - event.start]
            out[lo - start : hi - start] += piece[:, None] if piece.ndim == 1 else piece
        for bed in self.timeline.beds:
            lo, hi = max(lo_all, bed.start), min(hi_all, bed.end)
            if lo < hi:
                out[lo - start : hi - start] += self._bed(bed, lo, hi)
        return out

    def _bed(self, bed: BedSpan, lo: int, hi: int) -> Audio:
        music: Music = bed.music
        level = effects.db_to_gain(effects.VOICE_RMS_DB + music.level_db)
        # The gain moves over a tenth of a second at the fastest: computed on a grid fixed
        # in the session (so every window gets the same samples) and interpolated.
        first = lo // GAIN_GRID * GAIN_GRID
        grid = np.arange(first, hi + GAIN_GRID, GAIN_GRID, dtype=np.float64)
        depth = duck_depth_at(self.duck, self.duck_starts, grid)
        # level x duck_gain ** depth, as exp (a third of pow's time)
        coarse = np.exp(depth * np.log(effects.db_to_gain(-music.duck_db)))
        coarse *= bed_envelope_at(grid, bed) * level
        gain = effects.straight_lines(coarse.astype(np.float32), GAIN_GRID)[lo - first : hi - first]
        samples = bed_audio(
            music.bed, lo - bed.origin, hi - bed.origin, self.drone_tiles
        )  # may be read-only
        out: Audio = samples * gain[:, None]
        return out


MIX_FORMAT = 10  # bump when anything here or in sounds.py changes the mix for the same timeline


def fingerprint(timeline: Timeline, speech_key: Callable[[Phrase], str]) -> str:
    """A hash of everything that shapes the mix, so its loudness can be remembered."""

    def file_id(path: Path) -> list[object]:
        stat = path.stat()
        return [str(path), stat.st_size, stat.st_mtime_ns]

    def source_id(source: object) -> object:
        if isinstance(source, Phrase):
            return speech_key(source)
        if isinstance(source, Path):
            return file_id(source)
        if isinstance(source, Pass) and isinstance(source.sound, Path):
            return [repr(source), file_id(source.sound)]
        return repr(source)

    beds = [
        [
            b.start,
            b.end,
            [b.origin, b.fade_in, b.fade_out, b.edge_in, b.edge_out],
            repr(b.music),
            file_id(b.music.bed) if isinstance(b.music.bed, Path) else 0,
        ]
        for b in timeline.beds
    ]
    events = [[e.start, e.length, e.kind, source_id(e.source)] for e in timeline.events]
    blob = json.dumps([MIX_FORMAT, RATE, timeline.total, beds, events]).encode()
    return hashlib.sha256(blob).hexdigest()
