"""True peaks: 4x oversampling (inter-sample peaks) where a peak could come near a
ceiling, on tiles fixed in the session so every window finds the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from guided_audio.dsp import effects
from guided_audio.dsp.effects import Audio

OVERSAMPLE = 4
LIMIT_EDGE = 64  # extra samples so oversampling edges never touch the window


TILE = 2048
# Inter-sample peaks of real audio stay within a few dB of the sample peaks, so only
# tiles whose sample peak comes within this of the ceiling are oversampled.
TRUE_PEAK_MARGIN = 0.5  # -6 dB


# Interpolation filter for 4x oversampling, designed once (as resample_poly would design it).
lowpass_fir = effects.lowpass_fir


def upsample(x: NDArray[Any], factor: int, fir: NDArray[np.float64]) -> NDArray[Any]:
    """Zero-stuff by `factor` and filter along axis 0 (scipy's upfirdn, up only), in x's
    float type, as `factor` polyphase filters (each output phase is x convolved with every
    factor-th tap: a quarter of the work of filtering the zeros too), all phases in one
    matrix product over x's sliding windows (in float32, 2x faster than a convolution per
    phase and channel)."""
    taps = -(-len(fir) // factor)
    bank = np.zeros((taps, factor), x.dtype)  # column p: phase p's taps, latest sample first
    for phase in range(factor):
        phase_taps = fir[phase::factor]
        bank[taps - len(phase_taps) :, phase] = phase_taps[::-1]
    edge = np.zeros((taps - 1, x.shape[1]), x.dtype)
    planar = np.concatenate([edge, x, edge]).T
    out = np.empty((len(x) + taps - 1, factor, x.shape[1]), x.dtype)
    for channel, samples in enumerate(planar):
        out[:, :, channel] = sliding_window_view(samples, taps) @ bank
    upsampled: NDArray[Any] = out.reshape(-1, x.shape[1])[: (len(x) - 1) * factor + len(fir)]
    return upsampled


_OVERSAMPLE_FIR = lowpass_fir(2 * 10 * OVERSAMPLE + 1, 1.0 / OVERSAMPLE, 5.0) * OVERSAMPLE


def block_max(values: NDArray[np.float64], size: int) -> NDArray[np.float64]:
    """The largest of each `size` values in turn (the last block padded with zeros)."""
    blocks: NDArray[np.float64] = np.pad(values, (0, -len(values) % size)).reshape(-1, size)
    most: NDArray[np.float64] = blocks.max(axis=1)
    return most


def sample_peaks(x: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """Per-sample peak over the channels (faster than a reduce along the short axis)."""
    peaks: NDArray[np.floating[Any]] = np.maximum(np.abs(x[:, 0]), np.abs(x[:, 1]))
    return peaks


def true_peaks(x: Audio, ceiling: float, offset: int = 0) -> NDArray[np.float64]:
    """Per-sample peak over channels, 4x-oversampled (inter-sample peaks) near the ceiling.

    Tiles sit at absolute positions (`offset` is x's first sample in the session), so a
    sample's peak is the same whichever window it is rendered in.
    """
    peaks = sample_peaks(x).astype(np.float64)
    lead, tiles = _tile_maxima(peaks, offset)
    for tile_index in np.flatnonzero(tiles >= ceiling * TRUE_PEAK_MARGIN):
        start, stop = _tile_span(int(tile_index), lead, len(x))
        peaks[start:stop] = np.maximum(peaks[start:stop], _oversampled(x, start, stop))
    return peaks


# An oversampled sample is a sum of at most this many times the largest sample the filter
# reaches (each phase's taps, in absolute value): a tile whose neighbourhood is quieter than
# the peak found over this cannot hold a higher one.
_OVERSAMPLED_GAIN = float(
    max(np.abs(_OVERSAMPLE_FIR[phase::OVERSAMPLE]).sum() for phase in range(OVERSAMPLE))
)


def true_peak(x: Audio, at_least: float = 0.0, offset: int = 0) -> float:
    """The largest true peak of x, as true_peaks finds it, or `at_least` if none is larger:
    a meter's whole need. Only tiles that could beat the highest so far are oversampled,
    loudest first (exact: see _OVERSAMPLED_GAIN)."""
    lead, tiles = _tile_maxima(sample_peaks(x), offset)
    best = max(at_least, float(tiles.max(initial=0.0)))  # a true peak is at least the sample's
    reach = tiles.copy()  # a tile's filter reaches LIMIT_EDGE samples into its neighbours
    reach[1:] = np.maximum(reach[1:], tiles[:-1])
    reach[:-1] = np.maximum(reach[:-1], tiles[1:])
    for tile_index in np.argsort(-reach):
        if reach[tile_index] * _OVERSAMPLED_GAIN <= best:
            break
        start, stop = _tile_span(int(tile_index), lead, len(x))
        best = max(best, float(_oversampled(x, start, stop).max(initial=0.0)))
    return best


def _tile_maxima(peaks: NDArray[np.floating[Any]], offset: int) -> tuple[int, NDArray[Any]]:
    """The samples before x's first tile starts (tiles lie on the session's TILE grid),
    and each tile's largest sample peak."""
    lead = offset % TILE
    padded = np.concatenate(
        [np.zeros(lead, peaks.dtype), peaks, np.zeros(-(lead + len(peaks)) % TILE, peaks.dtype)]
    )
    return lead, padded.reshape(-1, TILE).max(axis=1)


def _tile_span(tile_index: int, lead: int, length: int) -> tuple[int, int]:
    return max(0, tile_index * TILE - lead), min((tile_index + 1) * TILE - lead, length)


def _oversampled(x: Audio, start: int, stop: int) -> NDArray[np.float64]:
    """Each of samples [start, stop)'s largest 4x-oversampled value over channels."""
    lo, hi = max(0, start - LIMIT_EDGE), min(len(x), stop + LIMIT_EDGE)
    up = sample_peaks(upsample(x[lo:hi], OVERSAMPLE, _OVERSAMPLE_FIR))
    delay = len(_OVERSAMPLE_FIR) // 2  # the filter's group delay, in oversampled samples
    up = up[delay : delay + (hi - lo) * OVERSAMPLE]
    phases = np.maximum(
        np.maximum(up[0::4], up[1::4]), np.maximum(up[2::4], up[3::4])
    )  # along the long axis: a reduce over the short one is slow
    out: NDArray[np.float64] = phases[start - lo : stop - lo]
    return out
