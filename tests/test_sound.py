"""The sound of a session, measured on decoded exports: breath timing, bells, beds, ducking,
loudness, true peak, clicks and flat memory."""

from __future__ import annotations

import itertools
import subprocess
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly, sosfilt

from conftest import RATE, cli, decode, read_wav, silences, write
from guided_audio import session
from guided_audio.dsp import effects, sounds
from guided_audio.dsp.loudness import K_WEIGHTING_SOS, LoudnessMeter
from guided_audio.dsp.truepeak import TILE, lowpass_fir, true_peak, true_peaks, upsample
from guided_audio.mix.beds import bed_audio, duck_depth_at, duck_spans
from guided_audio.mix.gain import MEASURE_THREADS, loudness_gain, measure, on_threads
from guided_audio.mix.master import (
    CEILING_DBTP,
    LIMIT_HOLD,
    LIMIT_LOOKAHEAD,
    Master,
    MasteringMeter,
    running_min,
)
from guided_audio.mix.mixer import BLOCK, Mixer
from guided_audio.plan.builder import CUE_WORDS
from guided_audio.resources import DRONE_TILES_LIVE
from guided_audio.script.model import BREATH_PATTERNS, VoiceSpec
from guided_audio.session import Options, Silent

GAP_S = VoiceSpec().gap_s


def export(tmp_path: Path, text: str, *args: str, suffix: str = ".wav", name: str = "s") -> Path:
    script = write(tmp_path, text, f"{name}.yaml")
    out = tmp_path / f"{name}{suffix}"
    result = cli("export", str(script), "-o", str(out), "-q", "--force", *args)
    assert result.exit_code == 0, result.output
    return out


def onsets(audio: np.ndarray, threshold_db: float = -50.0, min_gap_s: float = 0.1) -> list[float]:
    """Seconds where sound starts after at least `min_gap_s` of quiet."""
    return [start + length for start, length in silences(audio, threshold_db, min_gap_s)][:-1]


def breath_script(pattern: str, cues: str, cycles: int = 4) -> str:
    return (
        f"title: Breath\nsections:\n  - title: A\n    steps:\n"
        f"      - breathe: {{pattern: {pattern}, cycles: {cycles}, cues: {cues}}}\n"
    )


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[np.argmax(spectrum)])


# --- breathwork ------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["box", "4-7-8", "resonance", "sigh"])
def test_inhale_tones_start_on_the_cycle(tmp_path: Path, pattern: str) -> None:
    audio = read_wav(export(tmp_path, breath_script(pattern, "tone")))
    phases = BREATH_PATTERNS[pattern].phases
    cycle = BREATH_PATTERNS[pattern].cycle_s
    sounding = [p for p in phases if p.kind in ("in", "out")]
    starts = onsets(audio)
    assert len(starts) == 4 * len(sounding)
    inhale_offset = 0.0  # the first phase of every pattern is an inhale
    for k in range(4):
        measured = starts[k * len(sounding)] - starts[0]
        assert measured == pytest.approx(k * cycle + inhale_offset, abs=0.010)


def test_tones_rise_for_in_and_fall_for_out(tmp_path: Path) -> None:
    audio = read_wav(export(tmp_path, breath_script("resonance", "tone", cycles=1)))[:, 0]
    first = int(onsets(audio[:, None])[0] * RATE)
    inhale = audio[first : first + int(5.3 * RATE)]
    exhale = audio[first + int(5.5 * RATE) : first + int(10.8 * RATE)]
    window = int(0.25 * RATE)
    assert dominant_hz(inhale[:window]) < dominant_hz(inhale[-2 * window : -window]) - 60
    assert dominant_hz(exhale[:window]) > dominant_hz(exhale[-2 * window : -window]) + 60


def test_voice_cues_sit_inside_their_phases(tmp_path: Path) -> None:
    audio = read_wav(export(tmp_path, breath_script("box", "voice", cycles=3)))
    starts = onsets(audio)
    assert len(starts) == 12  # in, hold, out, hold: a spoken cue each
    for index, start in enumerate(starts):
        assert start - starts[0] == pytest.approx(4.0 * index, abs=0.010)


def test_breathe_step_lasts_exactly_its_cycles(tmp_path: Path) -> None:
    text = (
        "title: B\nsections:\n  - title: A\n    steps:\n      - say: Begin.\n"
        "      - breathe: {pattern: {in: 3, hold: 1.5, out: 4.5, rest: 1}, for: 1m, cues: both}\n"
        "      - say: End.\n"
    )
    timeline = session.timeline(write(tmp_path, text), Options(), Silent())
    begin, end = (e for e in timeline.events if e.kind == "speech")
    cues = [e for e in timeline.events if e.kind in ("cue", "tone")]
    gap = round(GAP_S * RATE)
    assert cues[0].start == begin.end + gap
    assert end.start - gap - cues[0].start == 6 * 10 * RATE  # for: 1m -> 6 whole 10 s cycles


# --- bells -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(sounds.BELLS))
def test_bell_step_lasts_its_ring_and_strikes(tmp_path: Path, name: str) -> None:
    text = (
        f"title: Bell\nsections:\n  - title: A\n    steps:\n"
        f"      - bell: {{name: {name}, strikes: 3}}\n      - say: After the bell.\n"
    )
    audio = read_wav(export(tmp_path, text))
    design = sounds.BELLS[name]
    timeline = session.timeline(tmp_path / "s.yaml", Options(), Silent())
    strikes = [e.start / RATE for e in timeline.events if e.kind == "bell"]
    speech = next(e for e in timeline.events if e.kind == "speech")
    assert np.diff(strikes) == pytest.approx([design.strike_interval_s] * 2, abs=1e-4)
    assert speech.start / RATE - strikes[0] == pytest.approx(
        2 * design.strike_interval_s + design.ring_s + GAP_S, abs=1e-4
    )
    # Measured: the speech after the bell starts where the plan says.
    level = np.abs(audio).max(axis=1)
    window = level[speech.start - 2000 : speech.start + 2000]
    assert window[:1990].max() < 10 ** (-50 / 20)  # the bell has rung out by then
    assert window[2000 : 2000 + RATE // 200].max() > 10 ** (-60 / 20)  # within its 3 ms fade-in
    assert window[2000 : 2000 + RATE // 50].max() > 10 ** (-40 / 20)  # and is speech in 20 ms


@pytest.mark.parametrize("name", sorted(sounds.BELLS))
def test_bells_are_inharmonic_decaying_and_deterministic(name: str) -> None:
    design = sounds.BELLS[name]
    samples = sounds.bell(name)
    assert np.array_equal(samples, sounds.bell.__wrapped__(name))
    spectrum = np.abs(np.fft.rfft(samples[: RATE * 2]))
    freqs = np.fft.rfftfreq(RATE * 2, 1 / RATE)

    def energy(hz: float) -> float:
        return float(spectrum[(freqs > hz - 8) & (freqs < hz + 8)].max())

    f0 = design.fundamental_hz
    inharmonic = [r for r in design.ratios if abs(r - round(r)) > 0.1]
    assert len(inharmonic) >= len(design.ratios) / 2
    strongest = max(energy(f0 * r) for r in inharmonic)
    assert strongest > energy(f0) / 30  # the inharmonic partials are really there
    empty = [k for k in range(2, 7) if all(abs(r - k) > 0.1 for r in design.ratios)]
    assert empty
    assert all(energy(f0 * k) < strongest / 10 for k in empty)  # not a harmonic tone
    head = np.sqrt(np.mean(samples[: RATE // 2] ** 2))
    tail = np.sqrt(np.mean(samples[-RATE : -RATE // 2] ** 2))
    assert 20 * np.log10(head / tail) > 20  # a natural decay, not a gate
    assert samples[-1] == 0.0


def test_bells_command_lists_them() -> None:
    result = cli("bells")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["bowl", "chime", "gong"]
    assert "bowl   rings 8 s; strikes every 5 s" in result.stdout


# --- music beds ------------------------------------------------------------------------------
DUCKING = """\
title: Ducking
{music}
sections:
  - title: A
    steps:
      - pause: 6s
      - say: Notice the ground beneath you, and let your shoulders soften as you breathe out slowly.
      - pause: 6s
      - say: Let your attention rest on the breath, moving in, and moving out, all by itself.
      - pause: 6s
"""


def test_bed_ducks_under_the_voice_by_duck_db(tmp_path: Path) -> None:
    music = "music: {bed: noise, level: -18dB, duck: 10dB, fade: 1s}"
    with_bed = read_wav(
        export(tmp_path, DUCKING.format(music=music), "--loudness", "off", name="a")
    )
    voice_only = read_wav(export(tmp_path, DUCKING.format(music=""), "--loudness", "off", name="b"))
    bed = with_bed - voice_only  # the same cached speech: what is left is the bed alone
    timeline = session.timeline(tmp_path / "b.yaml", Options(), Silent())
    spoken = duck_spans(timeline.voice_spans())  # a say step's clauses: one span
    assert len(spoken) == 2

    def rms_db(x: np.ndarray) -> float:
        return float(20 * np.log10(np.sqrt(np.mean(x**2))))

    def active_rms_db(x: np.ndarray) -> float:
        """Speech level as docs/design.md defines it: 20 ms frames within 30 dB of the loudest."""
        frames = x[: len(x) // 882 * 882, 0].reshape(-1, 882)
        levels = np.sqrt(np.mean(frames**2, axis=1))
        return rms_db(frames[levels >= levels.max() * 10 ** (-30 / 20)])

    for start, end in spoken:
        middle = (start + end) // 2
        under = rms_db(bed[middle - RATE // 2 : middle + RATE // 2])
        pause = rms_db(bed[end + 2 * RATE : end + 4 * RATE])
        assert pause - under == pytest.approx(10.0, abs=1.5)
        voice = active_rms_db(voice_only[start:end])
        assert pause - voice == pytest.approx(-18.0, abs=1.5)


def test_bed_fades_in_and_out(tmp_path: Path) -> None:
    text = (
        "title: F\nmusic: {bed: drone, level: -10dB, fade: 3s}\n"
        "sections:\n  - title: A\n    steps:\n      - pause: 12s\n"
    )
    audio = read_wav(export(tmp_path, text, "--loudness", "off"))
    level = np.abs(audio).max(axis=1)
    assert level[0] == 0.0 and level[-1] == 0.0
    assert level[: RATE // 10].max() < level[3 * RATE : 4 * RATE].max() / 20
    assert level[-RATE // 10 :].max() < level[-4 * RATE : -3 * RATE].max() / 20


def write_wav(path: Path, samples: np.ndarray) -> None:
    stereo = np.repeat(samples[:, None], 2, axis=1)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes((stereo * 32767).astype(np.int16).tobytes())


def test_file_bed_loops_without_a_seam(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rain = np.convolve(rng.normal(size=3 * RATE), np.ones(8) / 8, mode="same") * 0.2
    rain[-200:] += np.linspace(0, 0.5, 200)  # a cliff at the file's end: a naive loop clicks
    write_wav(tmp_path / "rain.wav", rain)
    text = (
        "title: Rain\nmusic: {bed: rain.wav, level: -6dB, duck: 0dB, fade: 0}\n"
        "sections:\n  - title: A\n    steps:\n      - pause: 12s\n"
    )
    audio = read_wav(export(tmp_path, text, "--loudness", "off"))[:, 0]
    steps = np.abs(np.diff(audio))
    period = 3 * RATE - 2 * RATE // 4  # the loop period: length minus the crossfade
    seams = [n * period for n in range(1, 5) if n * period < len(steps)]
    seam_steps = max(steps[s - 500 : s + 500].max() for s in seams)
    body = steps[RATE // 10 : period - 1000].max()
    assert seam_steps <= body * 1.5


def test_a_compressed_bed_decodes_to_the_same_samples(tmp_path: Path) -> None:
    # Beds that are not PCM WAV go through pydub (which needs audioop-lts from CPython 3.13).
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * RATE) / RATE)
    write_wav(tmp_path / "tone.wav", tone)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "tone.wav"), str(tmp_path / "tone.flac")],
        check=True,
    )
    text = (
        "title: Tone\nmusic: {bed: tone.BED, level: -6dB, duck: 0dB, fade: 0}\n"
        "sections:\n  - title: A\n    steps:\n      - pause: 3s\n"
    )
    wav = read_wav(export(tmp_path, text.replace("BED", "wav"), "--loudness", "off"))
    flac = read_wav(export(tmp_path, text.replace("BED", "flac"), "--loudness", "off"))
    assert wav.shape == flac.shape
    assert np.abs(wav).max() > 0.05
    np.testing.assert_allclose(wav, flac, rtol=0, atol=2 / 32768)  # lossless: within an LSB


def test_sound_step_plays_at_its_own_length(tmp_path: Path) -> None:
    write_wav(
        tmp_path / "chirp.wav", 0.3 * np.sin(2 * np.pi * 500 * np.arange(int(1.234 * RATE)) / RATE)
    )
    text = (
        "title: S\nsections:\n  - title: A\n    steps:\n"
        "      - sound: chirp.wav\n      - say: After.\n"
    )
    audio = read_wav(export(tmp_path, text))
    starts = onsets(audio, min_gap_s=0.2)
    gaps = silences(audio, -50, 0.2)
    assert len(starts) == 2
    assert starts[1] - starts[0] == pytest.approx(1.234 + GAP_S, abs=0.010)
    assert gaps[1][1] == pytest.approx(GAP_S, abs=0.010)


# --- mastering -------------------------------------------------------------------------------
def _loudness(audio: np.ndarray) -> float:
    import pyloudnorm

    return float(pyloudnorm.Meter(RATE).integrated_loudness(audio))


def _true_peak_db(audio: np.ndarray) -> float:
    up = resample_poly(audio, 4, 1, axis=0)
    return float(20 * np.log10(np.abs(up).max()))


@pytest.mark.parametrize(
    ("script", "args", "target"),
    [
        pytest.param("box-breathing.yaml", [], -16.0, id="box-mp3-default"),
        pytest.param("body-scan.yaml", ["--loudness", "-19"], -19.0, id="body-scan-mp3-19"),
    ],
)
@pytest.mark.slow
def test_exports_meet_loudness_and_true_peak(
    tmp_path: Path, script: str, args: list[str], target: float
) -> None:
    out = tmp_path / "out.mp3"
    source = Path(__file__).parent.parent / "scripts" / script
    result = cli("export", str(source), "-o", str(out), "-q", *args)
    assert result.exit_code == 0, result.output
    audio = decode(out)
    assert _loudness(audio) == pytest.approx(target, abs=1.0)
    assert _true_peak_db(audio) <= -1.0


LOUD_OVERLAYS = """\
title: Loud
music: {bed: drums.wav, level: 0dB, duck: 0dB, fade: 0}
sections:
  - title: A
    steps:
      - bell: gong
      - breathe: {pattern: resonance, cycles: 2, cues: both}
      - say: Loud words over a loud bed, all at once.
"""


def _drums(tmp_path: Path) -> None:
    """A bed with real transients: decaying low bursts twice a second (high crest factor)."""
    t = np.arange(RATE // 2) / RATE
    burst = np.sin(2 * np.pi * 70 * t) * np.exp(-t * 80)
    write_wav(tmp_path / "drums.wav", np.tile(burst, 8) * 0.9)


@pytest.mark.slow
def test_overlays_never_clip_and_the_limiter_holds_peaks(tmp_path: Path) -> None:
    _drums(tmp_path)
    script = write(tmp_path, LOUD_OVERLAYS)
    rendered = session.render(script, Options(), Silent())
    assert isinstance(rendered.source, Master)
    raw_peak = max(float(np.abs(b).max()) for b in rendered.source.mixer.blocks())
    assert raw_peak > 1.0  # the float mix goes over full scale here
    gained = raw_peak * 10 ** (rendered.gain_db / 20)
    assert gained > 10 ** (-1 / 20)  # gain alone would break the ceiling: the limiter must act
    audio = decode(export(tmp_path, LOUD_OVERLAYS, suffix=".mp3"))
    assert _true_peak_db(audio) <= -1.0
    assert _loudness(audio) == pytest.approx(-16.0, abs=1.0)
    assert np.count_nonzero(np.abs(audio) >= 32767 / 32768) == 0


def test_blocks_render_the_same_samples_as_one_window(tmp_path: Path) -> None:
    _drums(tmp_path)
    script = write(tmp_path, LOUD_OVERLAYS)
    source = session.render(script, Options(), Silent()).source
    whole = source.render(0, source.total)
    for block in (RATE, 12345, RATE * 7):
        pieces = np.concatenate(list(source.blocks(block)))
        assert np.array_equal(pieces, whole)


def test_meter_agrees_with_an_independent_one() -> None:
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(RATE * 20, 2)).astype(np.float32) * 0.05
    signal[RATE * 5 : RATE * 8] *= 4
    meter = LoudnessMeter()
    for start in range(0, len(signal), 10_000):
        meter.feed(signal[start : start + 10_000])
    assert meter.integrated() == pytest.approx(_loudness(signal.astype(np.float64)), abs=0.1)


@pytest.mark.parametrize("pieces", [[RATE * 3], [5, 64, 1000, 3, RATE * 2, 63, RATE]], ids=str)
def test_block_filter_agrees_with_scipy_sample_by_sample(pieces: list[int]) -> None:
    # The K-weighting runs as matrix products over 64-sample runs (scipy.signal would cost a
    # second to import); scipy's sosfilt is the reference, fed in uneven pieces.
    rng = np.random.default_rng(5)
    signal = (rng.normal(size=(sum(pieces), 2)) * 0.1).astype(np.float32)
    signal[:, 0] += 0.5 * np.sin(np.arange(len(signal)) * 2 * np.pi * 30 / RATE)
    signal[RATE // 2 : RATE] = 0.0  # the state must carry across a silence, too
    expected = sosfilt(K_WEIGHTING_SOS, signal.astype(np.float64), axis=0)
    block_filter = effects.SectionFilter(K_WEIGHTING_SOS, 2)
    starts = np.cumsum([0, *pieces])
    got = np.concatenate([block_filter(signal[a:b]) for a, b in itertools.pairwise(starts)])
    assert len(signal) - len(got) < effects.SectionFilter.BLOCK
    assert np.abs(got - expected[: len(got)]).max() < 1e-4


# --- no clicks -------------------------------------------------------------------------------
def test_no_join_steps_larger_than_the_speech_itself(tmp_path: Path) -> None:
    source = Path(__file__).parent.parent / "scripts" / "box-breathing.yaml"
    out = tmp_path / "box.wav"
    assert cli("export", str(source), "-o", str(out), "-q").exit_code == 0
    audio = read_wav(out)
    steps = np.abs(np.diff(audio, axis=0)).max(axis=1)
    timeline = session.timeline(source, Options(), Silent())
    margin = int(0.01 * RATE)
    speech = [e for e in timeline.events if e.kind == "speech"]
    inside = max(steps[e.start + margin : e.end - margin].max() for e in speech)
    joins = {e.start for e in timeline.events} | {e.end for e in timeline.events}
    joins |= {b.start for b in timeline.beds} | {b.end - 1 for b in timeline.beds}
    joins |= set(range(0, timeline.total, BLOCK))
    worst = max(steps[max(0, j - 220) : j + 220].max() for j in joins)
    assert worst <= inside


# --- never quadratic, never whole ------------------------------------------------------------
@pytest.mark.slow
def test_an_hour_streams_in_flat_memory(tmp_path: Path) -> None:
    steps = "".join(
        f"      - say: Minute {m % 3}.\n      - pause: 58s\n      - bell: chime\n"
        for m in range(58)
    )
    script = write(
        tmp_path,
        f"title: Hour\nmusic: {{bed: noise}}\nsections:\n  - title: A\n    steps:\n{steps}",
    )
    rendered = session.render(script, Options(), Silent())
    assert rendered.timeline.seconds > 3600
    tracemalloc.start()
    blocks = 0
    for block in rendered.source.blocks():
        blocks += 1
        assert len(block) <= BLOCK
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert blocks == -(-rendered.timeline.total // BLOCK)
    assert peak < 64 * 2**20  # an hour of float stereo would be 1.3 GB


def test_a_player_keeps_two_drone_tiles_and_plays_the_same_samples() -> None:
    # A player moves on in real time: it keeps the tile playing and the next built, not the
    # whole loop (42 MB); the samples are the loop's own, across tiles and the loop's end.
    length = sounds.DRONE_LOOP + 2 * sounds.DRONE_TILE + 1234
    whole = sounds.drone(0, length)
    assert sounds.drone_tiles_built() == sounds.DRONE_LOOP // sounds.DRONE_TILE
    step = effects.seconds_to_samples(0.25)
    live = []
    for at in range(0, length, step):
        live.append(sounds.drone(at, min(at + step, length), DRONE_TILES_LIVE))
        assert sounds.drone_tiles_built() <= DRONE_TILES_LIVE
    np.testing.assert_array_equal(np.concatenate(live), whole)


def test_events_between_returns_only_overlapping_events(tmp_path: Path) -> None:
    steps = "".join(f"      - say: Line {i}.\n      - pause: 5s\n" for i in range(40))
    script = write(tmp_path, f"title: Many\nsections:\n  - title: A\n    steps:\n{steps}")
    timeline = session.timeline(script, Options(), Silent(), estimate=True)
    window = timeline.events_between(100 * RATE, 110 * RATE)
    assert window
    assert all(e.end > 100 * RATE and e.start < 110 * RATE for e in window)
    assert len(window) == sum(
        1 for e in timeline.events if e.end > 100 * RATE and e.start < 110 * RATE
    )


def test_bundled_scripts_cover_every_pattern_and_a_generated_bed() -> None:
    from guided_audio.script.loader import load_script
    from guided_audio.script.model import Breathe

    scripts = [
        load_script(p) for p in sorted((Path(__file__).parent.parent / "scripts").glob("*.yaml"))
    ]
    patterns = {
        step.kind.pattern.name
        for s in scripts
        for section in s.sections
        for step in section.steps
        if isinstance(step.kind, Breathe)
    }
    assert patterns >= {"box", "4-7-8", "resonance", "sigh"}
    assert any(s.music and s.music.bed in sounds.GENERATED_BEDS for s in scripts)
    assert CUE_WORDS["in"] == "in"


# --- ducking envelope shape ------------------------------------------------------------------
def test_duck_ramps_and_bridges_short_gaps() -> None:
    second = RATE
    spans = duck_spans([(10 * second, 12 * second), (12 * second + RATE // 2, 14 * second)])
    assert spans == [(10 * second, 14 * second)]  # a 0.5 s gap stays ducked
    apart = duck_spans([(10 * second, 12 * second), (14 * second, 15 * second)])
    assert len(apart) == 2  # a 2 s gap lets the bed come back up
    positions = np.arange(9 * second, 16 * second, dtype=np.float64)
    depth = duck_depth_at(spans, [s for s, _ in spans], positions)

    def at(seconds: float) -> float:
        return float(depth[round((seconds - 9) * RATE)])

    assert at(9.80) == 0.0  # not yet
    assert 0.0 < at(9.93) < 1.0  # going down over the 150 ms before speech
    assert at(10.0) == 1.0 and at(12.25) == 1.0 and at(14.0) == 1.0
    assert 0.0 < at(14.3) < 1.0  # coming back over 500 ms
    assert at(14.55) == 0.0


# --- every bundled session exports ---------------------------------------------------------
BUNDLED = sorted((Path(__file__).parent.parent / "scripts").glob("*.yaml"))


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in BUNDLED])
@pytest.mark.slow
def test_bundled_session_exports(tmp_path: Path, path: Path) -> None:
    out = tmp_path / f"{path.stem}.flac"
    result = cli("export", str(path), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    audio = decode(out)
    timeline = session.timeline(path, Options(), Silent())
    assert len(audio) == pytest.approx(timeline.total, abs=RATE * 0.06)
    assert _loudness(audio) == pytest.approx(-16.0, abs=1.0)
    assert _true_peak_db(audio) <= -1.0


@pytest.mark.slow
def test_loudness_holds_when_the_limiter_dominates(tmp_path: Path) -> None:
    """Mostly silence and peaky bells: reaching -16 LUFS needs heavy limiting.

    No speech, so the premise does not depend on a (non-deterministic) Piper take."""
    steps = "      - pause: 20s\n      - bell: chime\n" * 4
    text = f"title: Bells\nmusic: {{bed: noise}}\nsections:\n  - title: A\n    steps:\n{steps}"
    script = write(tmp_path, text)
    rendered = session.render(script, Options(), Silent())
    assert isinstance(rendered.source, Master)
    raw = max(float(np.abs(b).max()) for b in rendered.source.mixer.blocks())
    assert 20 * np.log10(raw) + rendered.gain_db - CEILING_DBTP > 4  # 4+ dB to limit
    audio = decode(export(tmp_path, text, suffix=".mp3"))
    assert _loudness(audio) == pytest.approx(-16.0, abs=1.0)
    assert _true_peak_db(audio) <= -1.0


def _raw_mix(folder: Path, steps: str, bed: str) -> Mixer:
    """The unmastered mix of one section of `steps` over a bed."""
    text = f"title: Bells\nmusic: {{bed: {bed}}}\nsections:\n  - title: A\n    steps:\n{steps}"
    options = Options(loudness_lufs=None)
    mixer = session.render(write(folder, text), options, Silent()).source
    assert isinstance(mixer, Mixer)
    return mixer


def _count_renders(mixer: Mixer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of the windows of the mix rendered from now on."""
    rendered: list[int] = []
    render = mixer.render

    def counted(start: int, stop: int) -> np.ndarray:
        rendered.append(stop - start)
        return render(start, stop)

    monkeypatch.setattr(mixer, "render", counted)
    return rendered


@pytest.mark.parametrize("target", [-16.0, -19.0])
def test_the_gain_is_found_even_under_heavy_limiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: float
) -> None:
    # Bells over silence need 20+ dB of gain and a limiter working hard: the gain comes
    # from the parts (the limiter modelled on 3.3 ms chunks, the mix rendered only around
    # its peaks), and rendering with it lands on the target.
    mixer = _raw_mix(tmp_path, "      - pause: 20s\n      - bell: chime\n" * 4, "noise")
    rendered = _count_renders(mixer, monkeypatch)
    gain_db = loudness_gain(mixer, target)
    assert sum(rendered) < mixer.total / 2  # less than one pass
    monkeypatch.undo()
    peak = max(float(np.abs(b).max()) for b in mixer.blocks())
    assert 20 * np.log10(peak) + gain_db - CEILING_DBTP > 10  # the limiter works hard
    meter = LoudnessMeter()
    for block in Master(mixer, gain_db).blocks():
        meter.feed(block)
    assert meter.integrated() == pytest.approx(target, abs=0.1)


def test_the_limiters_model_is_the_same_a_slice_at_a_time(tmp_path: Path) -> None:
    # Two hours of chunks are modelled a slice at a time (memory): each slice starts with
    # the hold and lookahead it depends on, so the loudness is the one of a single slice.
    mixer = _raw_mix(tmp_path, "      - pause: 20s\n      - bell: chime\n" * 4, "noise")
    meter = measure(mixer)
    ceiling = effects.db_to_gain(CEILING_DBTP)
    gains = (0.0, 20.0, 30.0)
    whole = [meter.limited_loudness(gain, ceiling) for gain in gains]
    assert whole[2] < whole[1] + 10.0 - 1.0  # the limiter works: 10 dB more is far less
    sliced = [meter.limited_loudness(gain, ceiling, 30 * 7) for gain in gains]  # 0.7 s each
    assert sliced == pytest.approx(whole, abs=1e-9)


def test_measuring_reports_progress_up_to_the_sessions_length(tmp_path: Path) -> None:
    # The events are shared between two threads; the bar still ends at the session's end.
    mixer = _raw_mix(tmp_path, "      - pause: 20s\n      - bell: chime\n" * 5, "noise")
    reported: list[int] = []
    measure(mixer, reported.append)
    assert sum(reported) == mixer.total
    assert all(step >= 0 for step in reported)


_PARTS = """title: Parts
music: {bed: drone, level: -14dB}
sections:
  - title: Speech, a bell and breath tones over the drone
    steps:
      - say: Let the ground hold you.
      - bell: chime
      - breathe: {pattern: box, cycles: 1, cues: tone}
  - title: The same drone, louder (two gains of one signal blend)
    music: {bed: drone, level: -6dB}
    steps:
      - pause: 6s
      - say: And rest.
  - title: Another bed (an equal-power crossfade)
    music: {bed: noise, level: -10dB}
    steps:
      - pause: 6s
      - bell: bowl
  - title: A file looped (its loop no whole number of chunks)
    music: {bed: rain.wav, level: -8dB}
    steps:
      - pause: 9s
"""


def _parts_mix(folder: Path) -> Mixer:
    rain = np.random.default_rng(7).normal(size=3 * RATE + 7) * 0.1
    write_wav(folder / "rain.wav", np.convolve(rain, np.ones(8) / 8, mode="same"))
    options = Options(loudness_lufs=None)
    mixer = session.render(write(folder, _PARTS), options, Silent()).source
    assert isinstance(mixer, Mixer)
    return mixer


def _pass_over(mixer: Mixer) -> MasteringMeter:
    """The meter fed the rendered mix block by block: what measuring the parts stands for."""
    meter = MasteringMeter()
    for block in mixer.blocks():
        meter.feed(block)
    return meter


def test_the_mix_is_measured_from_its_parts_as_a_pass_over_it_would_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Speech, tones, bells and beds are measured one by one, each bed's loop once: the
    # 100 ms energies are those of the rendered mix but for the parts' cross terms (which
    # move a 100 ms energy by up to ~20 %, and the loudness by ~0.001 LU), and the
    # mix itself is rendered only where the limiter may act.
    mixer = _parts_mix(tmp_path)
    whole = _pass_over(mixer)
    rendered = _count_renders(mixer, monkeypatch)
    parts = measure(mixer)
    assert not rendered
    assert parts.frames == whole.frames == mixer.total
    loud = whole.energies() > whole.energies().max() * 1e-3  # the -30 dB below is the gate's
    np.testing.assert_allclose(parts.energies()[loud], whole.energies()[loud], rtol=0.25)
    assert parts.integrated() == pytest.approx(whole.integrated(), abs=0.02)
    ceiling = effects.db_to_gain(CEILING_DBTP)
    for target in (-16.0, -30.0):
        assert loudness_gain(mixer, target) == pytest.approx(
            whole.gain_for(target, ceiling), abs=0.02
        )
    assert sum(rendered) < mixer.total / 4


@pytest.mark.parametrize("offset", [0, 777, TILE - 1])
def test_a_meters_true_peak_is_the_highest_of_every_samples(offset: int) -> None:
    # The report's meter oversamples only tiles that could beat the peak found so far; it
    # must find what oversampling everything finds. Quarter-rate tones between samples
    # peak 3 dB over them; clicks and quiet noise around them.
    rng = np.random.default_rng(offset)
    t = np.arange(5 * TILE)
    quiet = 0.05 * rng.standard_normal((len(t), 2))
    for at in rng.integers(0, len(t) - 64, 4):
        quiet[at : at + 64] += 0.5 * np.sin(np.pi / 2 * t[:64] + np.pi / 4)[:, None]
    audio = quiet.astype(np.float32)
    everywhere = float(true_peaks(audio, ceiling=0.0, offset=offset).max())
    assert everywhere > 1.1 * float(np.abs(audio).max())  # inter-sample peaks are there
    assert true_peak(audio, 0.0, offset) == everywhere
    assert true_peak(audio, 2 * everywhere, offset) == 2 * everywhere


def test_work_on_threads_takes_every_item_once_and_raises_the_first_error() -> None:
    done: list[tuple[int, int]] = []
    on_threads(range(1, 200), lambda item, thread: done.append((item, thread)))
    assert sorted(item for item, _ in done) == list(range(1, 200))
    assert {thread for _, thread in done} <= set(range(MEASURE_THREADS))

    def fail(item: int, _thread: int) -> None:
        if item == 7:
            raise ValueError("seven")

    with pytest.raises(ValueError, match="seven"):
        on_threads(range(1, 200), fail)


def test_numpy_dsp_helpers_match_scipy() -> None:
    """`play` starts without importing scipy.signal; its replacements must agree with it."""
    from scipy.ndimage import minimum_filter1d
    from scipy.signal import firwin, upfirdn

    rng = np.random.default_rng(7)
    hold, ahead = LIMIT_HOLD, LIMIT_LOOKAHEAD
    size = hold + ahead + 1
    for length in (1, 5, size - 1, size, 20000):
        x = rng.random(length)
        expected = minimum_filter1d(x, size, origin=hold - size // 2, mode="nearest")
        assert np.array_equal(running_min(x, hold, ahead), expected)
    fir = lowpass_fir(81, 0.25, 5.0)
    assert np.allclose(fir, firwin(81, 0.25, window=("kaiser", 5.0)), atol=1e-15)
    signal = rng.standard_normal((3000, 2))
    assert np.allclose(upsample(signal, 4, fir), upfirdn(fir, signal, 4, axis=0), atol=1e-12)
    for length in (1, 7, 22050 * 2 + 3):  # Piper's 22050 Hz to the session's 44100 Hz
        speech = rng.standard_normal(length).astype(np.float32)
        for rate in (22050, 14700):
            ours = effects.resample(speech, rate, RATE)
            theirs = resample_poly(speech.astype(np.float64), RATE // rate, 1)
            assert len(ours) == len(theirs) and np.abs(ours - theirs).max() < 1e-6


def _bed_session(first: str, second: str | None = None) -> str:
    """Two 20 s sections of silence over a bed; the second may change it."""
    music = f"    music: {{bed: {second}, duck: 0dB, fade: 5s}}\n" if second else ""
    return (
        f"title: Beds\nmusic: {{bed: {first}, duck: 0dB, fade: 5s}}\nsections:\n"
        "  - title: A\n    steps:\n      - pause: 20s\n"
        f"  - title: B\n{music}    steps:\n      - pause: 20s\n"
    )


def _power(audio: np.ndarray, seconds: float = 0.1) -> np.ndarray:
    size = round(seconds * RATE)
    frames = audio[: len(audio) // size * size, 0].reshape(-1, size)
    return np.asarray(np.mean(frames**2, axis=1))


def _handover(tmp_path: Path, text: str, name: str) -> tuple[np.ndarray, slice]:
    """Windowed power of a session, and the windows from 8 s before its second section to
    8 s after (the handover and some either side; the session's own fades are outside)."""
    power = _power(read_wav(export(tmp_path, text, "--loudness", "off", name=name)))
    timeline = session.timeline(tmp_path / f"{name}.yaml", Options(), Silent())
    boundary = timeline.sections[1].start / RATE
    return power, slice(round((boundary - 8) / 0.1), round((boundary + 8) / 0.1))


def test_a_level_change_moves_the_same_bed_smoothly(tmp_path: Path) -> None:
    # The same drone, 2 dB up from the second section: against the drone left alone (its
    # own slow swell divides out), the level moves from +0 to +2 dB and never dips.
    changed, around = _handover(
        tmp_path, _bed_session("drone, level: -22dB", "drone, level: -20dB"), "a"
    )
    alone, _ = _handover(tmp_path, _bed_session("drone, level: -22dB"), "b")
    ratio_db = 10 * np.log10(changed[around] / alone[around])
    assert ratio_db.min() >= -0.2, ratio_db.min()
    assert ratio_db.max() <= 2.2, ratio_db.max()
    assert ratio_db[0] == pytest.approx(0.0, abs=0.2)
    assert ratio_db[-1] == pytest.approx(2.0, abs=0.2)
    assert np.all(np.diff(ratio_db) >= -0.05)  # a move, not a wobble


def test_another_bed_crossfades_at_constant_power(tmp_path: Path) -> None:
    # Noise, then the drone: through the crossfade the power stays at least that of the
    # quieter of the two beds at each moment (equal power: cos² + sin² = 1).
    text = _bed_session("noise, level: -22dB", "drone, level: -22dB")
    crossed, around = _handover(tmp_path, text, "a")
    timeline = session.timeline(tmp_path / "a.yaml", Options(), Silent())
    noise_bed, drone_bed = timeline.beds
    gain = 10 ** ((-20 - 22) / 20)  # the voice's level, and the bed's 22 dB under it
    total = len(crossed) * round(0.1 * RATE)
    noise = _power(gain * bed_audio("noise", noise_bed.origin, total))
    silence_before = np.zeros((drone_bed.origin, 2), np.float32)  # the drone starts here
    drone = _power(
        gain * np.vstack([silence_before, bed_audio("drone", 0, total - drone_bed.origin)])
    )
    floor = np.minimum(noise[around], drone[around])
    assert np.all(crossed[around] >= floor * 10 ** (-1.0 / 10))


def test_the_body_scan_bed_never_drops_out(tmp_path: Path) -> None:
    # The bundled body scan changes its bed's level for the last section: the mastered file
    # keeps the bed audible from the end of its fade-in to the start of its fade-out.
    script = Path(__file__).parent.parent / "scripts" / "body-scan.yaml"
    out = tmp_path / "body-scan.wav"
    result = cli("export", str(script), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    levels = 10 * np.log10(_power(read_wav(out), seconds=0.05) + 1e-24)
    fade_s = 5.0
    inside = levels[round(fade_s / 0.05) : len(levels) - round((fade_s + 2) / 0.05)]
    assert inside.min() > -60.0, inside.min()
