"""The loudness gain of a mix, measured from its parts without rendering it.

K-weighting is linear, and the parts of a mix (speech, tones, bells, a bed) are unrelated
signals: the energy of their sum is the sum of their energies (the cross terms average out
within 100 ms; measured, the gain moves by under 0.02 dB), and its peak is at most the sum
of their peaks. So each event is measured once, as it is, and each bed's loop once, scaled
by its envelope; the mix is rendered only where the limiter may act.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

from guided_audio.dsp import effects
from guided_audio.dsp.effects import CHANNELS, RATE, Audio
from guided_audio.dsp.loudness import CHUNK, K_WEIGHTING_SOS, METER_STEP, Progress
from guided_audio.dsp.truepeak import (
    LIMIT_EDGE,
    TRUE_PEAK_MARGIN,
    block_max,
    sample_peaks,
    true_peaks,
)
from guided_audio.errors import GuidedAudioError
from guided_audio.mix.beds import bed_audio, bed_envelope_at, bed_loop_length, duck_depth_at
from guided_audio.mix.master import CEILING_DBTP, MasteringMeter
from guided_audio.mix.mixer import BLOCK, Mixer
from guided_audio.plan.timeline import BedSpan, Event

# --- the mix measured from its parts ---------------------------------------------------------
# K-weighting is linear, and the parts of a mix (speech, tones, bells, a bed) are unrelated
# signals: the energy of their sum is the sum of their energies (the cross terms average out
# within 100 ms; measured, the gain moves by under 0.02 dB), and its peak is at most the sum
# of their peaks. So the mix is measured without being rendered: each event once, as it is,
# and each bed's loop once, scaled by its envelope.
K_RING = METER_STEP  # a part's K-weighted tail past its end (the 38 Hz high-pass rings)
BED_CELL = 21  # a bed loop's energy and peaks are kept per 21 samples (7 to a CHUNK)
_CELLS_PER_CHUNK = -(-CHUNK // BED_CELL) + 1  # the most cells a chunk can touch
BED_SLICE = 65536  # chunks (3.6 minutes) of a bed measured at once
# A chunk's peak bound (the sum of its parts' sample peaks) is replaced by the mix's true
# peak where it comes within this of the ceiling: inter-sample peaks stay within a few dB.
PEAK_OVERSHOOT = 1 / TRUE_PEAK_MARGIN
MEASURE_THREADS = 2
MEASURE_FORMAT = 2  # bump when a measured gain may differ: remembered ones are then unused
T = TypeVar("T")
PEAK_WINDOW_GAP = 14  # chunks (a true-peak tile): nearer runs of them are rendered as one


def _weighted(audio: Audio) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A part's K-weighted energy per sample, both channels as it sounds in the mix, its
    ringing tail included; and its true peak per sample."""
    channels = audio.shape[1] if audio.ndim == 2 else 1
    samples = audio.reshape(len(audio), channels)
    k_weighting = effects.SectionFilter(K_WEIGHTING_SOS, channels)
    tail = np.zeros((K_RING + k_weighting.BLOCK, channels), dtype=np.float32)
    weighted = np.concatenate([k_weighting.planar(samples), k_weighting.planar(tail)], axis=1)
    weighted = weighted[:, : len(audio) + K_RING]
    energy = np.einsum("ij,ij->j", weighted, weighted, dtype=np.float64) * (CHANNELS // channels)
    stereo = np.broadcast_to(samples, (len(audio), CHANNELS))
    return energy, sample_peaks(stereo).astype(np.float64)


def _add_part(
    powers: NDArray[np.float32],
    peaks: NDArray[np.float32],
    start: int,
    energy: NDArray[np.float64],
    part_peaks: NDArray[np.float64],
) -> None:
    """Add a part's energy and peaks, from `start` in the session, to the chunks it falls in."""
    frames = min(len(energy), len(powers) * CHUNK - start)
    if frames <= 0:
        return
    first, last = start // CHUNK, -(-(start + frames) // CHUNK)
    edges = np.clip(np.arange(first, last + 1) * CHUNK - start, 0, frames)
    sums = np.concatenate([[0.0], np.cumsum(energy[:frames])])
    powers[first:last] += np.diff(sums[edges])
    sounding = np.zeros(frames)
    sounding[: min(frames, len(part_peaks))] = part_peaks[:frames]
    peaks[first:last] += np.maximum.reduceat(sounding, edges[:-1])


class _BedCells(NamedTuple):
    length: int  # the loop's, in samples
    edges: NDArray[np.int64]  # each cell's first sample (and the loop's end, last)
    sums: NDArray[np.float64]  # K-weighted energy from the loop's start to each edge
    reach_peaks: NDArray[np.float64]  # the peak of a chunk starting in each cell


@functools.lru_cache(maxsize=4)
def _bed_cells(bed: str | Path) -> _BedCells:
    """A bed's loop at unit gain, K-weighted as it runs on from its own end, in BED_CELLs
    (its peaks are sample peaks: beds are smooth sound, and oversampling a whole loop costs
    seconds)."""
    length = bed_loop_length(bed)
    k_weighting = effects.SectionFilter(K_WEIGHTING_SOS, CHANNELS)
    k_weighting(bed_audio(bed, length - min(length, RATE), length))  # settle the filter
    cell_energies, cell_peaks = [np.zeros(1)], [np.zeros(0)]
    pending = np.zeros(0)  # energies of a cell not yet whole (the filter's output lags)
    done = 0
    for at in range(0, length + k_weighting.BLOCK, BLOCK):  # past the end: the lag
        block = bed_audio(bed, at, min(length + k_weighting.BLOCK, at + BLOCK))
        weighted = k_weighting.planar(block)[:, : length - done]
        done += weighted.shape[1]
        energy = np.concatenate(
            [pending, np.einsum("ij,ij->j", weighted, weighted, dtype=np.float64)]
        )
        whole = len(energy) // BED_CELL * BED_CELL if done < length else len(energy)
        cell_energies.append(np.add.reduceat(energy[:whole], np.arange(0, whole, BED_CELL)))
        pending = energy[whole:]
        if at < length:
            cell_peaks.append(
                block_max(sample_peaks(block[: length - at]).astype(np.float64), BED_CELL)
            )
    cells = np.concatenate(cell_peaks)
    reach = functools.reduce(np.maximum, (np.roll(cells, -k) for k in range(_CELLS_PER_CHUNK)))
    sums = np.cumsum(np.concatenate(cell_energies))
    edges = np.minimum(np.arange(len(sums)) * BED_CELL, length)
    return _BedCells(length, edges, sums, reach)


def prepare_beds(beds: Iterable[str | Path]) -> None:
    """Measure the beds' loops ahead, for `measure` (a cold export does it while its
    speech is made, on a thread that would only wait)."""
    for bed in dict.fromkeys(beds):
        with suppress(GuidedAudioError):  # raised again where the mix needs the bed
            _bed_cells(bed)


def _add_bed(
    powers: NDArray[np.float32],
    peaks: NDArray[np.float32],
    mixer: Mixer,
    spans: list[BedSpan],
) -> None:
    """Add spans of one bed playing the same samples (one origin) to the chunks: their gains
    add up (a level change blends two gains of one signal), then the loop's energy is scaled;
    BED_SLICE chunks at a time (memory)."""
    start, end = min(s.start for s in spans), min(max(s.end for s in spans), len(powers) * CHUNK)
    for first in range(start // CHUNK, -(-end // CHUNK), BED_SLICE):
        last = min(first + BED_SLICE, -(-end // CHUNK))
        _add_bed_slice(powers, peaks, mixer, spans, first, last, (start, end))


def _add_bed_slice(
    powers: NDArray[np.float32],
    peaks: NDArray[np.float32],
    mixer: Mixer,
    spans: list[BedSpan],
    first: int,
    last: int,
    sounding: tuple[int, int],
) -> None:
    music_bed, origin = spans[0].music.bed, spans[0].origin
    centres = (np.arange(first, last, dtype=np.float64) + 0.5) * CHUNK
    depth = duck_depth_at(mixer.duck, mixer.duck_starts, centres)
    gain = np.zeros(len(centres))
    for span in spans:
        level = effects.db_to_gain(effects.VOICE_RMS_DB + span.music.level_db)
        ducked = np.exp(depth * np.log(effects.db_to_gain(-span.music.duck_db)))
        inside = (centres >= span.start) & (centres < span.end)
        gain += np.where(inside, level * ducked * bed_envelope_at(centres, span), 0.0)
    loop = _bed_cells(music_bed)
    edges = np.clip(np.arange(first, last + 1) * CHUNK, *sounding) - origin
    within = np.interp(edges % loop.length, loop.edges, loop.sums)
    within += edges // loop.length * loop.sums[-1]
    powers[first:last] += gain**2 * np.diff(within)
    peaks[first:last] += gain * loop.reach_peaks[(edges[:-1] % loop.length) // BED_CELL]


def on_threads(items: Iterable[T], work: Callable[[T, int], None]) -> None:
    """work(item, thread) for every item on MEASURE_THREADS threads (numpy lets go of the
    interpreter's lock while it filters), this one thread 0; the first error, or Ctrl-C,
    stops them all and is raised here. Items are dealt in turn (thread t takes items t,
    t + MEASURE_THREADS, ...), not as threads come free: each thread's sums then add the
    same parts in the same order every run, so a measured gain is the same to the bit."""
    dealt = list(items)
    failed: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            for item in dealt[thread::MEASURE_THREADS]:
                if failed:
                    return
                work(item, thread)
        except BaseException as exc:  # raised on this thread below
            failed.append(exc)

    helpers = [
        threading.Thread(target=run, args=(thread,), name="measure", daemon=True)
        for thread in range(1, MEASURE_THREADS)
    ]
    for helper in helpers:
        helper.start()
    run(0)
    for helper in helpers:
        helper.join()
    if failed:
        raise failed[0]


def measure(mixer: Mixer, progress: Progress = lambda _: None) -> MasteringMeter:
    """The mastering meter of the mix, from its parts (see above): each chunk's energy and
    peak, without rendering the mix."""
    timeline = mixer.timeline
    chunks = -(-timeline.total // CHUNK)
    beds: dict[tuple[object, int], list[BedSpan]] = {}
    for bed in timeline.beds:
        beds.setdefault((bed.music.bed, bed.origin), []).append(bed)
    # Parts add up: each thread adds its parts into arrays of its own (float32, as the meter
    # keeps them: 8 bytes a chunk, 19 MB for two hours). Beds first: the longest work.
    sums = [
        (np.zeros(chunks, np.float32), np.zeros(chunks, np.float32)) for _ in range(MEASURE_THREADS)
    ]
    reached = reported = 0

    def add(part: list[BedSpan] | Event, thread: int) -> None:
        nonlocal reached, reported
        if isinstance(part, list):
            _add_bed(*sums[thread], mixer, part)
            return
        energy, part_peaks = _weighted(mixer.event_audio(part)[: part.length])
        _add_part(*sums[thread], part.start, energy, part_peaks)
        reached = max(reached, part.start)
        if thread == 0:  # the progress bar is this thread's
            progress(max(0, reached - reported))
            reported = max(reported, reached)

    parts: list[list[BedSpan] | Event] = [*beds.values(), *timeline.events]
    on_threads(parts, add)
    progress(timeline.total - reported)
    powers, peaks = (functools.reduce(np.add, parts) for parts in zip(*sums, strict=True))
    return MasteringMeter.of_chunks(powers, peaks, timeline.total)


def _true_peaks_near_ceiling(
    mixer: Mixer, meter: MasteringMeter, gain_db: float, ceiling: float, exact: NDArray[np.bool_]
) -> bool:
    """Where the limiter may act at `gain_db` (a chunk's peak bound within PEAK_OVERSHOOT of
    the ceiling), render the mix and put its true peaks, as Master finds them, in place of
    the bounds. `exact` marks chunks already done; False when there were none to do."""
    peaks = meter.chunks()[1]
    threshold = ceiling / effects.db_to_gain(gain_db) / PEAK_OVERSHOOT
    hot = np.flatnonzero((peaks >= threshold) & ~exact[: len(peaks)])
    if not len(hot):
        return False

    def render(run: NDArray[np.intp], _thread: int) -> None:
        first, last = int(run[0]), int(run[-1]) + 1
        start, stop = first * CHUNK, min(last * CHUNK, mixer.total)
        raw = mixer.render(start - LIMIT_EDGE, stop + LIMIT_EDGE)
        found = true_peaks(raw, threshold * PEAK_OVERSHOOT, start - LIMIT_EDGE)
        peaks[first:last] = block_max(found[LIMIT_EDGE : LIMIT_EDGE + stop - start], CHUNK)
        exact[first:last] = True

    on_threads(np.split(hot, np.flatnonzero(np.diff(hot) > PEAK_WINDOW_GAP) + 1), render)
    meter.peak = float(peaks.max(initial=0.0))
    return True


def loudness_gain(mixer: Mixer, target_lufs: float, progress: Progress = lambda _: None) -> float:
    """The gain (dB) that brings the limited mix to `target_lufs`, measured from its parts.

    Without limiting, loudness moves 1:1 with gain: exact from the raw loudness (most speech
    sessions). Where the limiter must act it lowers loudness; the gain is then solved on
    the meter's chunk model of the limiter (within ~0.1 LU of the rendered result), with
    the true peaks of the few places it acts on rendered, until no new place comes in.
    """
    meter = measure(mixer, progress)
    raw = meter.integrated()
    if raw == float("-inf"):
        return 0.0
    ceiling = effects.db_to_gain(CEILING_DBTP)
    gain_db = target_lufs - raw
    exact = np.zeros(len(meter.chunks()[1]), dtype=bool)
    while _true_peaks_near_ceiling(mixer, meter, gain_db, ceiling, exact):
        gain_db = meter.gain_for(target_lufs, ceiling)
    return gain_db
