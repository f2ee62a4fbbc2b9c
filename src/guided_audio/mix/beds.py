"""Music beds: files made into seamless loops, generated beds, and the gains that shape a
bed in time (ducking under the voice, fades, crossfades and level changes).
"""

from __future__ import annotations

import bisect
import functools
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from guided_audio.dsp import effects, sounds
from guided_audio.dsp.decode import decode
from guided_audio.dsp.effects import Audio
from guided_audio.plan.timeline import CROSS, BedSpan

DUCK_ATTACK_S = 0.15  # the bed starts going down this long before speech
DUCK_RELEASE_S = 0.5  # and comes back up over this long after it
DUCK_BRIDGE_S = 1.5  # gaps in speech shorter than this (a sentence pause) stay ducked
BED_LOOP_CROSSFADE_S = 2.0


@functools.lru_cache(maxsize=4)
def _bed_loop(path: Path) -> Audio:
    """A file made seamless for looping: its tail crossfades into its head."""
    audio = decode(path)
    fade = min(effects.seconds_to_samples(BED_LOOP_CROSSFADE_S), len(audio) // 4)
    if fade == 0:
        return audio
    period = len(audio) - fade
    ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade)[:, None]  # equal power
    loop = audio[:period].copy()
    loop[:fade] = audio[:fade] * ramp + audio[period:] * np.sqrt(1 - ramp**2)
    rms = float(np.sqrt(np.mean(loop**2))) or 1.0
    loop = (loop / rms).astype(np.float32)  # unit RMS, like the generated beds
    loop.setflags(write=False)
    return loop


def bed_loop_length(bed: str | Path) -> int:
    """Samples after which a bed repeats."""
    return sounds.GENERATED_LOOPS[bed] if isinstance(bed, str) else len(_bed_loop(bed))


def bed_audio(bed: str | Path, start: int, stop: int, drone_tiles: int | None = None) -> Audio:
    """Unit-RMS stereo bed samples for [start, stop) of the bed's own time (`drone_tiles`:
    how much of a generated loop stays built, see sounds.drone)."""
    if isinstance(bed, str):
        return sounds.GENERATED_BEDS[bed](start, stop, drone_tiles)
    loop = _bed_loop(bed)
    index = np.arange(start, stop) % len(loop)
    return loop[index]


# --- envelopes -------------------------------------------------------------------------------
def _smooth(x: NDArray[np.float64]) -> NDArray[np.float64]:
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def duck_spans(voice_spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Voice spans with short gaps bridged: the bed stays down through them."""
    bridge = effects.seconds_to_samples(DUCK_BRIDGE_S)
    out: list[tuple[int, int]] = []
    for start, end in voice_spans:
        if out and start - out[-1][1] < bridge:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _within(positions: NDArray[np.float64], lo: int, hi: int) -> slice:
    """Where [lo, hi) falls in sorted positions."""
    first, last = np.searchsorted(positions, (lo, hi))
    return slice(int(first), int(last))


def _ramp(
    positions: NDArray[np.float64], lo: int, hi: int, rising: bool
) -> tuple[slice, NDArray[np.float64]] | None:
    """The part of a smooth 0→1 (or 1→0) ramp over [lo, hi) at sorted positions: where
    they fall in it, and its values there. None if it misses them all."""
    where = _within(positions, lo, hi)
    if where.start >= where.stop:
        return None
    progress = (positions[where] - lo) / (hi - lo)
    return where, _smooth(progress if rising else 1.0 - progress)


def duck_depth_at(
    spans: list[tuple[int, int]], starts: list[int], positions: NDArray[np.float64]
) -> NDArray[np.float64]:
    """How far the bed is ducked (0..1) at each of sorted sample positions."""
    attack = effects.seconds_to_samples(DUCK_ATTACK_S)
    release = effects.seconds_to_samples(DUCK_RELEASE_S)
    depth = np.zeros(len(positions))
    if not len(positions):
        return depth
    a, last = positions[0], positions[-1]
    first = max(0, bisect.bisect_right(starts, a - release) - 1)
    for start, end in spans[first:]:
        if start - attack > last:
            break
        if end + release <= a:
            continue
        depth[_within(positions, start, end)] = 1.0
        for ramp in (
            _ramp(positions, start - attack, start, rising=True),
            _ramp(positions, end, end + release, rising=False),
        ):
            if ramp is not None:
                where, values = ramp
                np.maximum(depth[where], values, out=depth[where])
    return depth


def bed_envelope_at(positions: NDArray[np.float64], bed: BedSpan) -> NDArray[np.float64]:
    """Gain at sorted sample positions for a bed's edges: smooth fades from and to silence,
    equal-power crossfades into another bed, and complementary weights where the same bed
    changes level (two gains of one signal: they add to a smooth move between the levels)."""
    gain = np.ones(len(positions))
    edges = (
        (bed.start, bed.start + bed.fade_in, True, bed.edge_in),
        (bed.end - bed.fade_out, bed.end, False, bed.edge_out),
    )
    for lo, hi, rising, edge in edges:
        if hi <= lo:
            continue
        # and silence beyond a fade's far end (a gain interpolated there starts from it)
        where = _within(positions, -(2**62), hi) if rising else _within(positions, lo, 2**62)
        progress = np.clip((positions[where] - lo) / (hi - lo), 0.0, 1.0)
        progress = progress if rising else 1.0 - progress
        # A crossfade keeps the power (cos² + sin² = 1); a blend's two weights add up to 1.
        gain[where] *= np.sin(0.5 * np.pi * progress) if edge == CROSS else _smooth(progress)
    return gain
