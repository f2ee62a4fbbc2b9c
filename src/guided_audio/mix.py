"""Stage 4: the mix. Renders any window of a timeline on demand, in float, never whole.

`Mixer.render(start, stop)` places speech, cues, tones, bells and sound files, and the
music bed ducked under the voice. `Master` wraps a mixer with loudness normalisation
(a BS.1770 meter of the whole session, built from its parts without rendering it) and a look-ahead
true-peak limiter whose gain at any sample depends only on a fixed neighbourhood, so
rendering block by block gives exactly the same samples as rendering at once.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import shutil
import threading
import wave
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from guided_audio import effects, sounds
from guided_audio.effects import CHANNELS, RATE, Audio
from guided_audio.errors import DecodeError, GuidedAudioError, MissingProgramError
from guided_audio.model import Music, Phrase
from guided_audio.plan import CROSS, BedSpan, BellStrike, Event, Timeline, Tone
from guided_audio.voice import Speaker

BLOCK = RATE * 10  # samples per streamed block

DUCK_ATTACK_S = 0.15  # the bed starts going down this long before speech
DUCK_RELEASE_S = 0.5  # and comes back up over this long after it
DUCK_BRIDGE_S = 1.5  # gaps in speech shorter than this (a sentence pause) stay ducked
BED_LOOP_CROSSFADE_S = 2.0
GAIN_GRID = 32  # samples between the points a bed's gain is computed at (0.7 ms)
MIN_FILE_RATE, MAX_FILE_RATE = 1000, 768_000  # sample rates a readable audio file may have


# --- decoding files (pydub is the I/O layer) -------------------------------------------------
@functools.lru_cache(maxsize=16)
def decode(path: Path) -> Audio:
    """A whole audio file as stereo float32 at the session rate (read-only)."""
    if path.suffix.lower() == ".wav":
        native = _read_pcm_wav(path)
        if native is not None:
            return native
    if shutil.which("ffmpeg") is None:
        raise MissingProgramError(
            f"reading {path.name} needs ffmpeg, which is not installed (apt-get install ffmpeg)"
        )
    from pydub import AudioSegment  # only now: without ffmpeg it warns on import
    from pydub.exceptions import CouldntDecodeError

    try:
        with path.open("rb") as handle:  # pydub leaves files it opens itself unclosed
            segment = AudioSegment.from_file(handle)
    except (CouldntDecodeError, OSError, IndexError) as exc:
        raise DecodeError(f"{path}: cannot decode audio ({str(exc)[:200]})") from None
    segment = segment.set_frame_rate(RATE).set_channels(CHANNELS).set_sample_width(2)
    samples = np.frombuffer(segment.raw_data, dtype=np.int16).reshape(-1, CHANNELS)
    out = effects.from_int16(samples)
    out.setflags(write=False)
    return out


def _read_pcm_wav(path: Path) -> Audio | None:
    """A PCM WAV read without ffmpeg (None for other encodings, which ffmpeg reads)."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
    except RuntimeError:  # the wave module's word for a chunk that runs past the file's end
        raise DecodeError(f"{path}: cannot read audio (a damaged WAV file)") from None
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read audio ({exc.strerror})") from None
    if width not in (1, 2, 4) or channels < 1:
        return None
    if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:  # a damaged header: resampling it has no end
        raise DecodeError(f"{path}: cannot read audio (a sample rate of {rate} Hz)")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(data[: len(data) // (width * channels) * width * channels], dtype)
    floats = samples.astype(np.float64)
    floats = (floats - 128.0) / 128.0 if width == 1 else floats / float(2 ** (8 * width - 1))
    frames = floats.reshape(-1, channels)
    stereo = np.repeat(frames, 2, axis=1) if channels == 1 else frames[:, :2]
    left = effects.resample(stereo[:, 0].astype(np.float32), rate)
    right = effects.resample(stereo[:, 1].astype(np.float32), rate)
    out = np.stack([left, right], axis=1).astype(np.float32)
    out.setflags(write=False)
    return out


def file_length(path: Path) -> int:
    return len(decode(path))


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


def bed_audio(bed: str | Path, start: int, stop: int) -> Audio:
    """Unit-RMS stereo bed samples for [start, stop) of the bed's own time."""
    if isinstance(bed, str):
        return sounds.GENERATED_BEDS[bed](start, stop)
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

    def __init__(self, timeline: Timeline, speaker: Speaker) -> None:
        self.timeline = timeline
        self.speaker = speaker
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
        samples = bed_audio(music.bed, lo - bed.origin, hi - bed.origin)  # may be read-only
        out: Audio = samples * gain[:, None]
        return out


# --- loudness (ITU-R BS.1770 / EBU R128) -----------------------------------------------------
def _biquad(kind: str, gain_db: float, q: float, fc: float) -> tuple[NDArray[np.float64], ...]:
    """RBJ-cookbook biquad (b, a) at the session rate."""
    a_gain = 10 ** (gain_db / 40.0)
    w0 = 2 * np.pi * fc / RATE
    alpha = np.sin(w0) / (2 * q)
    cos = np.cos(w0)
    if kind == "high_shelf":
        sq = 2 * np.sqrt(a_gain) * alpha
        b = [
            a_gain * ((a_gain + 1) + (a_gain - 1) * cos + sq),
            -2 * a_gain * ((a_gain - 1) + (a_gain + 1) * cos),
            a_gain * ((a_gain + 1) + (a_gain - 1) * cos - sq),
        ]
        a = [
            (a_gain + 1) - (a_gain - 1) * cos + sq,
            2 * ((a_gain - 1) - (a_gain + 1) * cos),
            (a_gain + 1) - (a_gain - 1) * cos - sq,
        ]
    else:  # high pass
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.array(b) / a[0], np.array(a) / a[0]


# K-weighting: a high shelf then a high pass, as second-order sections (one filter call).
_K_SOS = np.array(
    [
        [*b, *a]
        for b, a in (
            _biquad("high_shelf", 4.0, 1 / np.sqrt(2), 1500.0),
            _biquad("high_pass", 0.0, 0.5, 38.0),
        )
    ]
)


def gated_loudness(energies: NDArray[np.float64]) -> float:
    """LUFS from mean squares per 100 ms: gated (-70 LUFS absolute, -10 LU relative); -inf
    for silence."""
    if len(energies) < 4:
        return float("-inf")
    windows = np.convolve(energies, np.ones(4) / 4, mode="valid")  # 400 ms, 75 % overlap
    with np.errstate(divide="ignore"):
        loud = -0.691 + 10 * np.log10(windows)
    gated = windows[loud > -70.0]
    if not len(gated):
        return float("-inf")
    relative = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    gated = windows[(loud > -70.0) & (loud > relative)]
    return float(-0.691 + 10 * np.log10(gated.mean()))


METER_STEP = RATE // 10  # loudness is gated over 100 ms energies
CHUNK = 147  # 100 ms is 30 of these (3.3 ms): the limiter's model works on them
LIMIT_MODEL_SLICE = 30 * 8192  # chunks (13.7 minutes) the limiter's model takes at once


class LoudnessMeter:
    """Integrated loudness fed block by block; keeps only 100 ms energies.

    Filtered and squared in float32 (half the memory traffic of float64; the energies agree
    to 1e-4, 0.0004 dB), with numpy alone: `play` and the export's meter skip scipy.
    """

    def __init__(self) -> None:
        self._k_weighting = effects.SectionFilter(_K_SOS, CHANNELS)
        self._pending = np.zeros((CHANNELS, 0), dtype=np.float32)  # channel by channel
        self._energies: list[NDArray[np.float64]] = []  # mean square per 100 ms, both channels

    def feed(self, block: Audio) -> None:
        x = np.concatenate([self._pending, self._k_weighting.planar(block)], axis=1)
        whole = x.shape[1] // METER_STEP * METER_STEP
        self._pending = x[:, whole:]
        if whole:
            chunks = x[:, :whole].reshape(CHANNELS, -1, CHUNK)
            powers = np.einsum("kij,kij->i", chunks, chunks).astype(np.float64)
            self._chunk_powers(powers)
            self._energies.append(powers.reshape(-1, METER_STEP // CHUNK).sum(axis=1) / METER_STEP)

    def _chunk_powers(self, powers: NDArray[np.float64]) -> None:
        """K-weighted energy of each CHUNK, in order (kept by the mastering meter)."""

    def energies(self) -> NDArray[np.float64]:
        return np.concatenate([np.zeros(0), *self._energies])

    def integrated(self) -> float:
        """LUFS, gated (-70 LUFS absolute, -10 LU relative); -inf for silence."""
        return gated_loudness(self.energies())


MIX_FORMAT = 9  # bump when anything here or in sounds.py changes the mix for the same timeline


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


class PeakMeter(LoudnessMeter):
    """Loudness, the true peak (linear) of everything fed, and how many frames that was."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0
        self.peak = 0.0

    def feed(self, block: Audio) -> None:
        super().feed(block)
        self.peak = true_peak(block, self.peak, self.frames)
        self.frames += len(block)


def loudness_and_peak(
    blocks: Iterable[Audio], progress: Progress = lambda _: None
) -> tuple[int, float, float]:
    """Frames, integrated loudness (LUFS) and true peak (linear) of a stream of blocks."""
    meter = PeakMeter()
    for block in blocks:
        meter.feed(block)
        progress(len(block))
    return meter.frames, meter.integrated(), meter.peak


# --- mastering -------------------------------------------------------------------------------
CEILING_DBTP = -2.0  # below the -1 dBTP promise: MP3 encoding lifts peaks ~0.5 dB
LIMIT_LOOKAHEAD = effects.seconds_to_samples(0.02)  # gain ramps down over this, before a peak
LIMIT_HOLD = effects.seconds_to_samples(0.08)  # and stays down this long after it
OVERSAMPLE = 4
_GAIN_STEPS = float(2**20)
LIMIT_EDGE = 64  # extra samples so oversampling edges never touch the window


_TILE = 2048
# Inter-sample peaks of real audio stay within a few dB of the sample peaks, so only
# tiles whose sample peak comes within this of the ceiling are oversampled.
_TRUE_PEAK_MARGIN = 0.5  # -6 dB


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
    for tile_index in np.flatnonzero(tiles >= ceiling * _TRUE_PEAK_MARGIN):
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
    """The samples before x's first tile starts (tiles lie on the session's _TILE grid),
    and each tile's largest sample peak."""
    lead = offset % _TILE
    padded = np.concatenate(
        [np.zeros(lead, peaks.dtype), peaks, np.zeros(-(lead + len(peaks)) % _TILE, peaks.dtype)]
    )
    return lead, padded.reshape(-1, _TILE).max(axis=1)


def _tile_span(tile_index: int, lead: int, length: int) -> tuple[int, int]:
    return max(0, tile_index * _TILE - lead), min((tile_index + 1) * _TILE - lead, length)


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
        required = np.minimum(1.0, self.ceiling / np.maximum(peaks, 1e-12))
        # min over [t - hold, t + lookahead], then a trailing mean over the lookahead:
        # smooth, and never above what any sample in reach requires.
        held = running_min(required, LIMIT_HOLD, LIMIT_LOOKAHEAD)
        # Whole steps of 2^-20 (rounded down: never above what is required) make the running
        # sums exact, so every window gives bit-identical gains.
        held = np.floor(held * _GAIN_STEPS) / _GAIN_STEPS
        sums = np.concatenate([[0.0], np.cumsum(held)])
        idx = np.arange(before, before + stop - start)
        gain = (sums[idx + 1] - sums[idx + 1 - (LIMIT_LOOKAHEAD + 1)]) / (LIMIT_LOOKAHEAD + 1)
        limited: Audio = (raw[before : before + stop - start] * gain[:, None]).astype(np.float32)
        return limited


Progress = Callable[[int], None]

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
        meter._energies = [whole.reshape(steps, -1).sum(axis=1, dtype=np.float64) / METER_STEP]
        meter.peak, meter.frames = float(peaks.max(initial=0.0)), frames
        return meter

    def _chunks(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Energies and peaks of every chunk, joined once (float32: 8 bytes a chunk, 19 MB
        for two hours)."""
        if len(self._powers) != 1 or len(self._peaks) != 1:
            powers = np.concatenate([np.zeros(0, np.float32), *self._powers])
            peaks = np.concatenate([np.zeros(0, np.float32), *self._peaks])
            self._powers, self._peaks = [powers], [peaks[: len(powers)]]
        return self._powers[0], self._peaks[0]

    def limited_loudness(self, gain_db: float, ceiling: float) -> float:
        """Loudness of Master(mix, gain_db): the limiter modelled chunk by chunk, a slice
        at a time (a whole two hours at once took 100 MB of temporaries)."""
        powers, peaks = self._chunks()
        gain = effects.db_to_gain(gain_db)
        hold, ahead = -(-LIMIT_HOLD // CHUNK), -(-LIMIT_LOOKAHEAD // CHUNK)
        reach = ahead + 1
        margin = hold + reach - 1  # what a slice's first chunk depends on before it
        per_step = METER_STEP // CHUNK
        whole = len(powers) // per_step * per_step
        energies = [np.zeros(0)]
        for start in range(0, whole, LIMIT_MODEL_SLICE):
            stop = min(whole, start + LIMIT_MODEL_SLICE)
            lo, hi = max(0, start - margin), min(len(peaks), stop + ahead)
            required = np.minimum(
                np.float32(1.0), np.float32(ceiling / gain) / np.maximum(peaks[lo:hi], 1e-12)
            )
            held = running_min(required, hold, ahead)
            sums = np.concatenate([np.zeros(reach), np.cumsum(held, dtype=np.float64)])
            limiter = (sums[reach:] - sums[:-reach]) / reach  # trailing mean, as Master's
            if lo == 0:
                limiter[: reach - 1] = sums[reach : 2 * reach - 1] / np.arange(1, reach)
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
PEAK_OVERSHOOT = 1 / _TRUE_PEAK_MARGIN
MEASURE_THREADS = 2
T = TypeVar("T")
PEAK_WINDOW_GAP = 14  # chunks (a true-peak tile): nearer runs of them are rendered as one


def _weighted(audio: Audio) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A part's K-weighted energy per sample, both channels as it sounds in the mix, its
    ringing tail included; and its true peak per sample."""
    channels = audio.shape[1] if audio.ndim == 2 else 1
    samples = audio.reshape(len(audio), channels)
    k_weighting = effects.SectionFilter(_K_SOS, channels)
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
    k_weighting = effects.SectionFilter(_K_SOS, CHANNELS)
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


def _on_threads(items: Iterable[T], work: Callable[[T, int], None]) -> None:
    """work(item, thread) for every item, MEASURE_THREADS threads taking the next item as
    they come free (numpy lets go of the interpreter's lock while it filters), this one
    thread 0; the first error, or Ctrl-C, stops them all and is raised here."""
    pending, lock = iter(items), threading.Lock()
    failed: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            while not failed:
                with lock:
                    item = next(pending, None)
                if item is None:
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
    _on_threads(parts, add)
    progress(timeline.total - reported)
    powers, peaks = (functools.reduce(np.add, parts) for parts in zip(*sums, strict=True))
    return MasteringMeter.of_chunks(powers, peaks, timeline.total)


def _true_peaks_near_ceiling(
    mixer: Mixer, meter: MasteringMeter, gain_db: float, ceiling: float, exact: NDArray[np.bool_]
) -> bool:
    """Where the limiter may act at `gain_db` (a chunk's peak bound within PEAK_OVERSHOOT of
    the ceiling), render the mix and put its true peaks, as Master finds them, in place of
    the bounds. `exact` marks chunks already done; False when there were none to do."""
    peaks = meter._chunks()[1]
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

    _on_threads(np.split(hot, np.flatnonzero(np.diff(hot) > PEAK_WINDOW_GAP) + 1), render)
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
    exact = np.zeros(len(meter._chunks()[1]), dtype=bool)
    while _true_peaks_near_ceiling(mixer, meter, gain_db, ceiling, exact):
        gain_db = meter.gain_for(target_lufs, ceiling)
    return gain_db
