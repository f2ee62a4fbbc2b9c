"""Mastering: a gain to a loudness target, then a look-ahead true-peak limiter whose gain at
any sample depends only on a fixed neighbourhood (so block by block gives exactly the
samples of a whole render); and the meter that models that limiter chunk by chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from guided_audio.dsp import effects
from guided_audio.dsp.effects import Audio
from guided_audio.dsp.loudness import CHUNK, METER_STEP, LoudnessMeter, PeakMeter, gated_loudness
from guided_audio.dsp.truepeak import LIMIT_EDGE, block_max, true_peaks
from guided_audio.mix.mixer import Mixer, Windowed

LIMIT_MODEL_SLICE = 30 * 8192  # chunks (13.7 minutes) the limiter's model takes at once


# --- mastering -------------------------------------------------------------------------------
CEILING_DBTP = -2.0  # below the -1 dBTP promise: MP3 encoding lifts peaks ~0.5 dB
LIMIT_LOOKAHEAD = effects.seconds_to_samples(0.02)  # gain ramps down over this, before a peak
LIMIT_HOLD = effects.seconds_to_samples(0.08)  # and stays down this long after it
_GAIN_STEPS = float(2**20)


def running_min(x: NDArray[np.float64], before: int, after: int) -> NDArray[np.float64]:
    """min(x[t - before : t + after + 1]) for every t, the window clipped at the ends.

    van Herk / Gil-Werman: minima running forward and backward within blocks of the
    window's size; every window spans at most two blocks, so it costs O(n).
    """
    size = before + after + 1
    padded = np.concatenate([np.full(before, x[0]), x, np.full(after + size, x[-1])])
    blocks = padded[: len(padded) // size * size].reshape(-1, size)
    forward = np.minimum.accumulate(blocks, axis=1).ravel()
    backward = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    starts = np.arange(len(x))
    return np.minimum(backward[starts], forward[starts + size - 1])


def limiter_gains(
    peaks: NDArray[np.floating[Any]],
    level: float | np.float32,
    hold: int,
    ahead: int,
    quantum: float | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The limiter's gain at each of `peaks` (samples, or chunks of them), in their float
    type, so that none goes over `level`: the gain each requires (never above 1), held at
    the least over [t - hold, t + ahead], then its trailing mean over ahead + 1 (smooth, and
    never above what any peak in reach requires); held gains rounded down to whole steps of
    1 / `quantum` if given. Also the running sums of the held gains, from the first.

    The one limiter: Master applies it to samples, MasteringMeter models it on chunks."""
    required = np.minimum(peaks.dtype.type(1.0), level / np.maximum(peaks, 1e-12))
    held = running_min(required, hold, ahead)
    if quantum is not None:
        held = np.floor(held * quantum) / quantum
    window = ahead + 1
    running = np.cumsum(held, dtype=np.float64)
    sums = np.concatenate([np.zeros(window), running])
    gains: NDArray[np.float64] = (sums[window:] - sums[:-window]) / window
    return gains, running


class Master(Windowed):
    """Gain to a loudness target, then a true-peak limiter; renders any window."""

    def __init__(self, mixer: Mixer, gain_db: float, ceiling_dbtp: float = CEILING_DBTP) -> None:
        self.mixer = mixer
        self.gain = effects.db_to_gain(gain_db)
        self.ceiling = effects.db_to_gain(ceiling_dbtp)

    @property
    def total(self) -> int:
        return self.mixer.total

    def quiet_spans(self) -> list[tuple[int, int]]:
        return self.mixer.quiet_spans()

    def render(self, start: int, stop: int) -> Audio:
        before = LIMIT_LOOKAHEAD + LIMIT_HOLD + LIMIT_LOOKAHEAD + LIMIT_EDGE
        after = LIMIT_LOOKAHEAD + LIMIT_EDGE
        raw = self.mixer.render(start - before, stop + after)
        raw *= np.float32(self.gain)  # a new array: scaled in place
        peak = max(float(raw.max(initial=0.0)), -float(raw.min(initial=0.0)))
        if peak * 2 <= self.ceiling:  # far from the ceiling: no limiting
            return raw[before : before + stop - start]
        peaks = true_peaks(raw, self.ceiling, start - before)
        # Whole steps of 2^-20 (rounded down: never above what is required) make the running
        # sums exact, so every window gives bit-identical gains.
        gains, _ = limiter_gains(peaks, self.ceiling, LIMIT_HOLD, LIMIT_LOOKAHEAD, _GAIN_STEPS)
        gain = gains[before : before + stop - start]
        limited: Audio = (raw[before : before + stop - start] * gain[:, None]).astype(np.float32)
        return limited


# Levelled speech measures about this (gated, so pauses do not count), whatever the engine.
# A `play` before the session's loudness has been measured predicts its gain from it.
SPEECH_LOUDNESS_LUFS = -18.5


def predicted_gain(target_lufs: float) -> float:
    return target_lufs - SPEECH_LOUDNESS_LUFS


MAX_BOOST_DB = 30.0  # above the unlimited gain: past this, a limited mix is as loud as it gets
GAIN_PRECISION_LU = 0.01


class MasteringMeter(PeakMeter):
    """One pass over the raw mix that is enough to master it: its loudness and true peak,
    and for each 3.3 ms CHUNK its K-weighted energy and its peak. The limiter's gain at any
    candidate gain is computed on the chunks (as Master computes it on samples), and so the
    loudness it leaves, without rendering the session again."""

    def __init__(self) -> None:
        super().__init__()
        self._powers: list[NDArray[np.float32]] = []
        self._peaks: list[NDArray[np.float32]] = []

    def feed(self, block: Audio) -> None:
        LoudnessMeter.feed(self, block)
        # Inter-sample peaks sit within a few dB of the sample peaks: oversample near the top.
        loud = max(self.peak, float(np.abs(block).max(initial=0.0)))
        peaks = true_peaks(block, loud, self.frames)
        self.peak = max(self.peak, float(peaks.max(initial=0.0)))
        self._peaks.append(block_max(peaks, CHUNK).astype(np.float32))
        self.frames += len(block)

    def _chunk_powers(self, powers: NDArray[np.float64]) -> None:
        self._powers.append(powers.astype(np.float32))

    @classmethod
    def of_chunks(
        cls, powers: NDArray[np.float32], peaks: NDArray[np.float32], frames: int
    ) -> MasteringMeter:
        """The meter of `frames` whose chunks have these K-weighted energies and peaks."""
        meter = cls()
        steps = frames // METER_STEP
        whole = powers[: steps * (METER_STEP // CHUNK)]
        meter._powers = [whole.astype(np.float32, copy=False)]
        meter._peaks = [peaks.astype(np.float32, copy=False)]
        meter.add_energies(whole.reshape(steps, -1).sum(axis=1, dtype=np.float64) / METER_STEP)
        meter.peak, meter.frames = float(peaks.max(initial=0.0)), frames
        return meter

    def chunks(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Energies and peaks of every chunk, joined once (float32: 8 bytes a chunk, 19 MB
        for two hours)."""
        if len(self._powers) != 1 or len(self._peaks) != 1:
            powers = np.concatenate([np.zeros(0, np.float32), *self._powers])
            peaks = np.concatenate([np.zeros(0, np.float32), *self._peaks])
            self._powers, self._peaks = [powers], [peaks[: len(powers)]]
        return self._powers[0], self._peaks[0]

    def limited_loudness(
        self, gain_db: float, ceiling: float, slice_chunks: int = LIMIT_MODEL_SLICE
    ) -> float:
        """Loudness of Master(mix, gain_db): the limiter modelled chunk by chunk, a slice
        at a time (a whole two hours at once took 100 MB of temporaries)."""
        powers, peaks = self.chunks()
        gain = effects.db_to_gain(gain_db)
        hold, ahead = -(-LIMIT_HOLD // CHUNK), -(-LIMIT_LOOKAHEAD // CHUNK)
        reach = ahead + 1
        margin = hold + reach - 1  # what a slice's first chunk depends on before it
        per_step = METER_STEP // CHUNK
        whole = len(powers) // per_step * per_step
        energies = [np.zeros(0)]
        for start in range(0, whole, slice_chunks):
            stop = min(whole, start + slice_chunks)
            lo, hi = max(0, start - margin), min(len(peaks), stop + ahead)
            level = np.float32(ceiling / gain)
            limiter, running = limiter_gains(peaks[lo:hi], level, hold, ahead)
            if lo == 0:  # the session's first chunks: a mean over those there are
                limiter[: reach - 1] = running[: reach - 1] / np.arange(1, reach)
            limited = powers[start:stop] * limiter[start - lo : stop - lo] ** 2
            energies.append(limited.reshape(-1, per_step).sum(axis=1))
        return gated_loudness(np.concatenate(energies) * gain**2 / METER_STEP)

    def gain_for(self, target_lufs: float, ceiling: float) -> float:
        """The gain (dB) whose limited loudness is the target, by bracketing and false
        position on the model (loudness never falls as gain rises)."""
        low = target_lufs - self.integrated()  # without limiting: the least gain it can take
        loudness = self.limited_loudness(low, ceiling)
        if loudness >= target_lufs - GAIN_PRECISION_LU:
            return low
        high, high_loudness = low, loudness
        while high_loudness < target_lufs and high < low + MAX_BOOST_DB:
            high = min(low + MAX_BOOST_DB, high + 2 * (target_lufs - high_loudness))
            high_loudness = self.limited_loudness(high, ceiling)
        if high_loudness < target_lufs:
            return high  # as loud as limiting can make it
        for _ in range(60):
            if high - low < 1e-4:
                break
            step = (target_lufs - loudness) / (high_loudness - loudness) * (high - low)
            middle = low + min(max(step, 0.1 * (high - low)), 0.9 * (high - low))
            measured = self.limited_loudness(middle, ceiling)
            if abs(measured - target_lufs) <= GAIN_PRECISION_LU:
                return middle
            if measured < target_lufs:
                low, loudness = middle, measured
            else:
                high, high_loudness = middle, measured
        return low
