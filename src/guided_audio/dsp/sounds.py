"""Synthesised sources: bells, breath tones and music beds, all deterministic numpy.

Bells and tones are short and rendered whole (and memoised); beds are functions of the
absolute sample index, so any window of any length renders on demand with flat memory.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from guided_audio.dsp import effects
from guided_audio.dsp.effects import RATE, Audio


# --- bells -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BellDesign:
    """An inharmonic struck bell: partial ratios, their levels and decay times."""

    fundamental_hz: float
    ratios: tuple[float, ...]
    levels_db: tuple[float, ...]
    decays_s: tuple[float, ...]  # time for each partial to fall 60 dB
    ring_s: float  # how long the step lasts (the bell has faded by then)
    strike_interval_s: float  # between strikes when `strikes` > 1
    beat_hz: float  # detuning of each partial's pair: the slow 'wah' of a real bowl
    peak: float
    attack_ms: float


BELLS: dict[str, BellDesign] = {
    # Singing bowl: plate-like partials, long decay, audible beating.
    "bowl": BellDesign(
        196.0,
        (1.0, 2.71, 5.13, 8.27),
        (0.0, -6.0, -14.0, -22.0),
        (9.0, 6.0, 3.5, 2.0),
        8.0,
        5.0,
        0.9,
        0.45,
        3.0,
    ),
    # Tuned chime bar: brighter, shorter.
    "chime": BellDesign(
        880.0,
        (1.0, 2.76, 5.40, 8.93),
        (0.0, -9.0, -17.0, -26.0),
        (3.5, 1.8, 0.9, 0.5),
        4.0,
        2.5,
        0.0,
        0.35,
        1.5,
    ),
    # Gong: low and dense, with a soft swell.
    "gong": BellDesign(
        98.0,
        (1.0, 1.52, 2.01, 2.61, 3.32, 4.19, 5.43),
        (0.0, -3.0, -5.0, -8.0, -11.0, -15.0, -20.0),
        (11.0, 9.0, 7.0, 5.5, 4.0, 3.0, 2.0),
        10.0,
        6.0,
        0.35,
        0.5,
        60.0,
    ),
}


@functools.cache
def bell(name: str) -> Audio:
    """One strike of a bell, `ring_s` long, ending in silence (read-only array)."""
    design = BELLS[name]
    t = np.arange(effects.seconds_to_samples(design.ring_s)) / RATE
    out = np.zeros_like(t)
    for ratio, level_db, decay_s in zip(
        design.ratios, design.levels_db, design.decays_s, strict=True
    ):
        freq = design.fundamental_hz * ratio
        envelope = effects.db_to_gain(level_db) * np.exp(-6.91 * t / decay_s)
        pair = np.sin(2 * np.pi * freq * t) + np.sin(2 * np.pi * (freq + design.beat_hz) * t + 0.7)
        out += envelope * pair * 0.5
    samples = (out / np.max(np.abs(out)) * design.peak).astype(np.float32)
    samples = effects.fade_out(effects.fade_in(samples, design.attack_ms), 400.0)
    samples.setflags(write=False)
    return samples


# --- breath tones ----------------------------------------------------------------------------
TONE_LOW_HZ = 220.0
TONE_HIGH_HZ = 330.0
TONE_PEAK = 0.22
TONE_ATTACK_MS = 25.0
TONE_RELEASE_MS = 250.0
TONE_TAIL_S = 0.15  # a tone ends this much before its phase does


def tone_seconds(phase_s: float) -> float:
    return max(0.3, phase_s - TONE_TAIL_S)


@functools.cache
def tone(direction: str, seconds: float) -> Audio:
    """A soft glide over the phase: up a fifth for an inhale, down for an exhale."""
    n = effects.seconds_to_samples(seconds)
    progress = np.linspace(0.0, 1.0, n)
    shape = 0.5 - 0.5 * np.cos(np.pi * progress)
    low, high = TONE_LOW_HZ, TONE_HIGH_HZ
    freq = low + (high - low) * shape if direction == "in" else high - (high - low) * shape
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    wave = np.sin(phase) + 0.25 * np.sin(2 * phase) + 0.08 * np.sin(3 * phase)
    swell = 0.75 + 0.25 * np.sin(np.pi * progress)  # gently fuller in the middle
    samples = (wave * swell / 1.33 * TONE_PEAK).astype(np.float32)
    samples = effects.fade_out(effects.fade_in(samples, TONE_ATTACK_MS), TONE_RELEASE_MS)
    samples.setflags(write=False)
    return samples


# --- bilateral passes ------------------------------------------------------------------------
PASS_SOUND_S = {"tap": 0.15, "tone": 0.35, "bell": 0.6}  # each shorter than a pass at 1.5/s
PASS_PEAK = 0.5
PASS_FADE_MS = 20.0  # a sound cut to its pass ends in a fade, not a click


def pass_length(name: str) -> int:
    return effects.seconds_to_samples(PASS_SOUND_S[name])


@functools.cache
def pass_sound(name: str) -> Audio:
    """One generated sound of a bilateral set, mono, starting and ending in silence: a soft
    knock (tap), a short sine (tone) or a small bell (bell)."""
    n = pass_length(name)
    t = np.arange(n) / RATE
    if name == "bell":
        wave = np.asarray(bell("chime")[:n], np.float64)
        attack_ms, release_ms = 2.0, 200.0
    elif name == "tone":
        wave = np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 880.0 * t)
        attack_ms, release_ms = 5.0, 120.0
    else:
        wave = (np.sin(2 * np.pi * 300.0 * t) + 0.4 * np.sin(2 * np.pi * 610.0 * t)) * np.exp(
            -t / 0.03
        )
        attack_ms, release_ms = 3.0, 40.0
    samples = (wave / np.max(np.abs(wave)) * PASS_PEAK).astype(np.float32)
    samples = effects.fade_out(effects.fade_in(samples, attack_ms), release_ms)
    samples.setflags(write=False)
    return samples


def on_one_side(mono: Audio, side: int, pan: float, level_db: float) -> Audio:
    """A mono sound placed on one side (-1 left, 1 right): full there, (1 - pan) of it on
    the other side, at `level_db`."""
    near = effects.db_to_gain(level_db)
    far = near * (1.0 - pan)
    gains = np.array([near, far] if side < 0 else [far, near], np.float32)
    out: Audio = mono[:, None] * gains[None, :]
    return out


# --- beds ------------------------------------------------------------------------------------
# The drone is periodic: every partial is a whole number of cycles, and every swell a whole
# number of periods, in DRONE_LOOP_S, so it is built once in tiles and looped (a pass over a
# long session copies samples instead of computing sines).
DRONE_LOOP_S = 120
DRONE_VOICES = (  # (frequency Hz, level, swell period s, left/right detune Hz)
    (110.0, 1.0, 24.0, 0.15),
    (164.81, 0.7, 30.0, 0.225),
    (220.0, 0.5, 40.0, 0.1),
    (246.94, 0.25, 60.0, 0.3),
    (329.63, 0.3, 120.0, 0.175),
)
DRONE_LOOP = RATE * DRONE_LOOP_S
DRONE_TILE = RATE * 10  # built on first use: `play` waits for one tile, not the loop
SWELL_STEP = 64  # swells move over tens of seconds: computed every 64 samples, interpolated
DRONE_RUN = 1050  # samples turned on from one exact phase (a tile holds 420 of them)


def _whole_cycles(hz: float) -> float:
    """The nearest frequency with a whole number of cycles in the loop (< 0.005 Hz away)."""
    return round(hz * DRONE_LOOP_S) / DRONE_LOOP_S


_drone_tiles: OrderedDict[int, Audio] = OrderedDict()  # built tiles, the latest used last
_drone_tiles_lock = threading.Lock()


def _drone_tile(index: int, keep: int | None) -> Audio:
    """Samples [index * DRONE_TILE, (index + 1) * DRONE_TILE) of the drone's loop; `keep`
    tiles stay built, the latest used (None: the whole loop)."""
    with _drone_tiles_lock:
        tile = _drone_tiles.get(index)
        if tile is None:
            tile = _drone_tiles[index] = _build_drone_tile(index)
        _drone_tiles.move_to_end(index)
        while keep is not None and len(_drone_tiles) > keep:
            _drone_tiles.popitem(last=False)
        return tile


def drone_tiles_built() -> int:
    """How many of the drone's tiles are built and kept now."""
    with _drone_tiles_lock:
        return len(_drone_tiles)


def _build_drone_tile(index: int) -> Audio:
    start = index * DRONE_TILE
    coarse = np.arange(start, start + DRONE_TILE + SWELL_STEP, SWELL_STEP, dtype=np.float64)
    out = np.zeros((2, DRONE_TILE), dtype=np.float32)  # channel by channel: contiguous adds
    runs = np.arange(start, start + DRONE_TILE, DRONE_RUN, dtype=np.float64)
    within = 2 * np.pi * np.arange(DRONE_RUN, dtype=np.float64)
    for index_voice, (freq, level, period, detune) in enumerate(DRONE_VOICES):
        swell_coarse = level * (
            0.55 + 0.45 * np.sin(2 * np.pi * coarse / RATE / period + index_voice * 1.3)
        )
        swell = effects.straight_lines(swell_coarse.astype(np.float32), SWELL_STEP)
        for channel, hz in enumerate((freq - detune, freq + detune)):
            per_sample = _whole_cycles(hz) / RATE
            # Each run's first phase exactly (whole cycles dropped in float64: exact at any
            # hour), then turned on by each sample's step: sin(a + b) = sin a cos b +
            # cos a sin b, one product of (runs, 2) by (2, DRONE_RUN), not a sine per sample.
            cycles = runs * per_sample
            cycles -= np.floor(cycles)
            first = 2 * np.pi * cycles + index_voice * (channel + 1)
            steps = within * per_sample
            at_first = np.stack([np.sin(first), np.cos(first)], axis=1).astype(np.float32)
            turned = np.stack([np.cos(steps), np.sin(steps)]).astype(np.float32)
            out[channel] += swell[:DRONE_TILE] * (at_first @ turned).reshape(-1)
    out *= np.float32(1 / 0.6181)  # calibrated to unit RMS
    tile = np.ascontiguousarray(out.T)
    tile.setflags(write=False)
    return tile


def drone(start: int, stop: int, keep_tiles: int | None = None) -> Audio:
    """A slowly moving pad, unit RMS, stereo: partials that swell on long, unrelated cycles.

    Its loop is built in tiles on first use; `keep_tiles` of them stay built: the whole loop
    (None, 42 MB) for an export, which passes over it again and again; a few for a player,
    which moves on in real time (a tile takes 26 ms to build, 0.3 % of its own length)."""
    out = np.empty((stop - start, 2), dtype=np.float32)
    at = start
    while at < stop:
        within_loop = at % DRONE_LOOP
        tile, within = divmod(within_loop, DRONE_TILE)
        count = min(stop - at, DRONE_TILE - within)
        out[at - start : at - start + count] = _drone_tile(tile, keep_tiles)[
            within : within + count
        ]
        at += count
    return out


NOISE_TILE = RATE * 2  # noise is made of overlapping 2 s tiles...
_NOISE_HOP = NOISE_TILE // 2
NOISE_LOOP_HOPS = 64  # ...laid around a 64 s circle, so the loop has no seam
NOISE_LOOP = NOISE_LOOP_HOPS * _NOISE_HOP


@functools.cache
def _noise_loop() -> Audio:
    """A seamless 64 s loop of soft noise, unit RMS, stereo (computed once, ~22 MB)."""
    freqs = np.fft.rfftfreq(NOISE_TILE, 1 / RATE)
    # Between pink and brown (1/f^1.5 power), rolled off above 4 kHz: soft, like distant surf.
    shape = (1.0 / np.maximum(freqs, 20.0) ** 0.75 / (1 + (freqs / 4000.0) ** 2))[:, None]
    window = np.sin(np.pi * (np.arange(NOISE_TILE) + 0.5) / NOISE_TILE)[:, None]
    length = NOISE_LOOP
    loop = np.zeros((length, 2))
    rng = np.random.default_rng(0xBED)
    bins = (NOISE_TILE // 2 + 1, 2)
    for index in range(NOISE_LOOP_HOPS):
        spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
        tile = np.fft.irfft(spectrum * shape, n=NOISE_TILE, axis=0) * window
        at = (index * _NOISE_HOP + np.arange(NOISE_TILE)) % length  # wraps around the circle
        loop[at] += tile  # sine windows at 50% overlap keep the power constant
    out: Audio = (loop / np.sqrt(np.mean(loop**2))).astype(np.float32)
    out.setflags(write=False)
    return out


def noise(start: int, stop: int, keep_tiles: int | None = None) -> Audio:
    """Soft brown/pink noise, unit RMS, stereo, any window (its loop, 64 s, is kept whole
    whatever `keep_tiles` says)."""
    loop = _noise_loop()
    first = start % len(loop)
    if first + (stop - start) <= len(loop):
        return loop[first : first + stop - start]
    return loop[np.arange(start, stop) % len(loop)]


GENERATED_BEDS = {"drone": drone, "noise": noise}
GENERATED_LOOPS = {"drone": DRONE_LOOP, "noise": NOISE_LOOP}  # samples before each repeats
