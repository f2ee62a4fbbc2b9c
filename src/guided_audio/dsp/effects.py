"""Small, named audio effects on float32 numpy arrays: one function, one effect.

Arrays are never modified in place, so cached audio can be shared safely.
"""

from __future__ import annotations

import functools
from math import gcd

import numpy as np
from numpy.typing import NDArray

Audio = NDArray[np.float32]

RATE = 44100  # every session renders at this rate; engines are resampled to it
CHANNELS = 2
VOICE_RMS_DB = -20.0  # every phrase is levelled to this; beds are set relative to it


def seconds_to_samples(seconds: float, rate: int = RATE) -> int:
    return round(seconds * rate)


def db_to_gain(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0))


def sounding_span(samples: Audio, threshold_db: float) -> tuple[int, int]:
    """[start, stop) of the samples from the first to the last as loud as `threshold_db`."""
    loud = np.flatnonzero(np.abs(samples) >= db_to_gain(threshold_db))
    if loud.size == 0:
        return 0, 0
    return int(loud[0]), int(loud[-1]) + 1


def trim_silence(samples: Audio, threshold_db: float) -> Audio:
    """Drop leading and trailing samples quieter than `threshold_db` (dBFS).

    Only the outer edges go: pauses inside the speech stay as the engine made them.
    """
    start, stop = sounding_span(samples, threshold_db)
    return samples[start:stop]


def _ramp(length: int) -> Audio:
    # Raised cosine: starts and ends with zero slope, so the fade itself cannot click.
    return (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length, dtype=np.float64))).astype(
        np.float32
    )


def fade_in(samples: Audio, fade_ms: float, rate: int = RATE) -> Audio:
    length = min(len(samples), seconds_to_samples(fade_ms / 1000.0, rate))
    out = samples.copy()
    if length > 0:
        ramp = _ramp(length)
        out[:length] *= ramp if out.ndim == 1 else ramp[:, None]
    return out


def fade_out(samples: Audio, fade_ms: float, rate: int = RATE) -> Audio:
    length = min(len(samples), seconds_to_samples(fade_ms / 1000.0, rate))
    out = samples.copy()
    if length > 0:
        ramp = _ramp(length)[::-1]
        out[len(out) - length :] *= ramp if out.ndim == 1 else ramp[:, None]
    return out


@functools.cache
def _line_steps(step: int) -> NDArray[np.float32]:
    steps = np.arange(step, dtype=np.float32) / np.float32(step)
    steps.setflags(write=False)
    return steps


def straight_lines(points: NDArray[np.float32], step: int) -> NDArray[np.float32]:
    """Values given every `step` samples, joined by straight lines: every sample from the
    first point up to the last (np.interp on a regular grid, without searching for each
    sample's points: a fifth of the time)."""
    fine = points[:-1, None] + (points[1:] - points[:-1])[:, None] * _line_steps(step)
    out: NDArray[np.float32] = fine.ravel()
    return out


def lowpass_fir(taps: int, cutoff: float, kaiser_beta: float) -> NDArray[np.float64]:
    """A windowed-sinc low-pass (cutoff relative to Nyquist), unity gain at DC: what
    scipy's firwin designs, without importing scipy.signal (it costs a second)."""
    centre = np.arange(taps) - (taps - 1) / 2
    fir = cutoff * np.sinc(cutoff * centre) * np.kaiser(taps, kaiser_beta)
    return np.asarray(fir / fir.sum(), dtype=np.float64)


RESAMPLE_HALF_TAPS = 10  # per unit of the rate ratio, as scipy's resample_poly designs it
RESAMPLE_KAISER_BETA = 5.0


def resample(samples: Audio, from_rate: int, to_rate: int = RATE) -> Audio:
    """Band-limited polyphase resampling (exact length ratio), as scipy's resample_poly."""
    if from_rate == to_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    if to_rate % from_rate == 0 and samples.ndim == 1:
        return _upsample_by(samples, to_rate // from_rate)  # Piper's 22050 Hz, say
    from scipy.signal import resample_poly

    divisor = gcd(from_rate, to_rate)
    out = resample_poly(samples.astype(np.float64), to_rate // divisor, from_rate // divisor)
    return np.asarray(out, dtype=np.float32)


def _upsample_by(x: Audio, factor: int) -> Audio:
    """resample_poly(x, factor, 1) in numpy (no scipy import in a synthesis worker): the same
    filter, one short convolution per output phase instead of filtering zeros."""
    half = RESAMPLE_HALF_TAPS * factor
    fir = lowpass_fir(2 * half + 1, 1.0 / factor, RESAMPLE_KAISER_BETA) * factor
    x64 = x.astype(np.float64)
    out = np.empty(len(x) * factor)
    for phase in range(factor):
        shift, first = divmod(phase + half, factor)
        out[phase::factor] = np.convolve(x64, fir[first::factor])[shift : shift + len(x)]
    return out.astype(np.float32)


def to_int16(samples: Audio) -> NDArray[np.int16]:
    """The one float→16-bit conversion, shared by files and speakers (so they match exactly)."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)


def from_int16(samples: NDArray[np.int16]) -> Audio:
    return (samples.astype(np.float32) / 32767.0).astype(np.float32)


def level_speech(samples: Audio, level_db: float = VOICE_RMS_DB, peak_max: float = 0.95) -> Audio:
    """Scale speech so its active RMS (20 ms frames within 30 dB of the loudest) is `level_db`.

    Engines differ by 10 dB or more; levelling makes every voice sit the same in the mix.
    """
    frame = RATE // 50
    usable = len(samples) // frame * frame
    if usable == 0:
        return samples
    frames = np.sqrt(np.mean(samples[:usable].reshape(-1, frame).astype(np.float64) ** 2, axis=1))
    active = frames[frames >= frames.max() * db_to_gain(-30.0)]
    rms = float(np.sqrt(np.mean(active**2)))
    gain = db_to_gain(level_db) / max(rms, 1e-9)
    gain = min(gain, peak_max / max(float(np.max(np.abs(samples))), 1e-9))
    return (samples * gain).astype(np.float32)


def _state_space(sos: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """(A, B, C, D) of second-order sections in cascade (each in transposed direct form II)."""
    order = 2 * len(sos)
    a_matrix, b_vector = np.zeros((order, order)), np.zeros(order)
    c_vector, d_scalar = np.zeros(order), 1.0
    for index, (b0, b1, b2, _, a1, a2) in enumerate(sos):  # rows normalised: a0 == 1
        at = 2 * index
        # This section's input is the cascade so far: C x + D u.
        a_matrix[at : at + 2, at : at + 2] = [[-a1, 1.0], [-a2, 0.0]]
        feed = np.array([b1 - a1 * b0, b2 - a2 * b0])
        a_matrix[at : at + 2, :at] = np.outer(feed, c_vector[:at])
        b_vector[at : at + 2] = feed * d_scalar
        c_vector = np.concatenate([b0 * c_vector[:at], [1.0, 0.0], np.zeros(order - at - 2)])
        d_scalar *= b0
    return a_matrix, b_vector, c_vector, np.array(d_scalar)


@functools.lru_cache(maxsize=8)  # a filter per part of a mix: designed once
def _block_design(
    sos_bytes: bytes, sections: int, m: int
) -> tuple[Audio, Audio, Audio, NDArray[np.float64]]:
    """SectionFilter's matrices for runs of `m` samples: a run's outputs from its inputs and
    from its starting state, its end state from its inputs, and the state carried across."""
    a, b, c, d = _state_space(np.frombuffer(sos_bytes).reshape(sections, 6))
    powers = [np.eye(len(a))]
    for _ in range(m):
        powers.append(powers[-1] @ a)
    response = np.array([float(d)] + [float(c @ powers[i] @ b) for i in range(m - 1)])
    rows, cols = np.indices((m, m))
    toeplitz = np.where(rows >= cols, response[np.abs(rows - cols)], 0.0)
    from_input = toeplitz.T.astype(np.float32)  # a run's own outputs
    from_state = np.stack([c @ powers[i] for i in range(m)], axis=1).astype(np.float32)  # (n, m)
    to_state = np.stack([powers[m - 1 - j] @ b for j in range(m)]).astype(np.float32)
    across = powers[m].T  # a state carried over one run (transposed: row vectors)
    for shared in (from_input, from_state, to_state, across):
        shared.setflags(write=False)
    return from_input, from_state, to_state, across


class SectionFilter:
    """Second-order sections run over blocks as matrix products: numpy only (importing
    scipy.signal costs a second), streamed call by call with the state carried.

    Each run of BLOCK samples is its impulse response (a Toeplitz product) plus the state it
    starts in; the states at the runs' edges are a linear recurrence, solved for all runs at
    once by a prefix scan (log2(runs) products). It agrees with a sample-by-sample filter to
    float32 precision. Output lags input by under BLOCK samples (the rest waits for the
    next call).
    """

    BLOCK = 64

    def __init__(self, sos: NDArray[np.float64], channels: int) -> None:
        design = _block_design(sos.tobytes(), sos.shape[0], self.BLOCK)
        self._from_input, self._from_state, self._to_state, self._across = design
        self._state = np.zeros((channels, self._across.shape[0]))
        self._pending = np.zeros((0, channels), dtype=np.float32)

    def __call__(self, samples: Audio) -> Audio:
        return np.ascontiguousarray(self.planar(samples).T)

    def planar(self, samples: Audio) -> Audio:
        """The filtered samples channel by channel, shape (channels, n): for a meter, which
        needs no interleaving back."""
        x = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        m, channels = self.BLOCK, x.shape[1]
        runs = len(x) // m
        self._pending = x[runs * m :]
        if runs == 0:
            return np.zeros((channels, 0), dtype=np.float32)
        blocks = np.ascontiguousarray(x[: runs * m].T).reshape(channels, runs, m)
        ends = (blocks @ self._to_state).astype(np.float64)  # each run's end, from zero
        ends[:, 0] += self._state @ self._across
        step, across = 1, self._across
        while step < runs:  # ends[k] += sum over j < k of ends[j] carried k - j runs
            carried = ends[:, :-step] @ across
            ends[:, step:] += carried
            step, across = 2 * step, across @ across
        starts = np.concatenate([self._state[:, None], ends[:, :-1]], axis=1)
        self._state = ends[:, -1]
        # Added in place, in float32: a second (runs, m) array in float64 took half the time.
        out = blocks @ self._from_input
        out += starts.astype(np.float32) @ self._from_state
        planar: Audio = out.reshape(channels, runs * m)
        return planar
