"""Where the music beds play: consecutive sections with the same music share a bed, and
where the music changes the beds hand over across the boundary."""

from __future__ import annotations

from dataclasses import replace

from guided_audio.dsp.effects import seconds_to_samples
from guided_audio.plan.timeline import BLEND, CROSS, BedSpan, SectionSpan
from guided_audio.script.model import Script


def bed_spans(script: Script, spans: tuple[SectionSpan, ...], total: int) -> tuple[BedSpan, ...]:
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
