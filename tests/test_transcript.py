"""The transcript beside an export, read with webvtt-py and checked against the decoded
audio: sentence cues where the voice starts and stops, word times where the words are."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import webvtt
from numpy.typing import NDArray

from conftest import RATE, cli, read_wav, write
from guided_audio.dsp.effects import RATE as SESSION_RATE
from guided_audio.plan.timeline import timestamp
from guided_audio.script.model import Phrase, VoiceSpec
from guided_audio.session import Options, Silent, timeline
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.engine import Take
from guided_audio.speech.piper_words import phoneme_words, word_starts
from guided_audio.speech.speaker import Speaker

SCRIPT = """\
title: Transcript
sections:
  - title: Arriving
    steps:
      - say: Welcome, friend. Notice the ground beneath you... and let it hold you.
      - bell: bowl
      - pause: 12s
  - title: Breathing & resting
    steps:
      - breathe: {pattern: box, cycles: 1, cues: voice}
      - reflect: {question: "What do you notice, right now?", silence: 15s}
"""
SENTENCES = [
    "Welcome, friend.",
    "Notice the ground beneath you... and let it hold you.",
    "What do you notice, right now?",
]
ONSET_DB = -60.0  # the voice is levelled to -20 dBFS RMS; its trimmed edges are at -55


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("transcript")
    script = write(tmp, SCRIPT)
    out = tmp / "t.wav"
    result = cli("export", str(script), "-o", str(out), "--loudness", "off", "-q")
    assert result.exit_code == 0, result.output
    return script, out


def _captions(vtt: Path) -> list[webvtt.Caption]:
    return list(webvtt.read(str(vtt)).captions)


def _speech(vtt: Path) -> list[webvtt.Caption]:
    return [c for c in _captions(vtt) if not c.text.startswith("[")]


def test_one_cue_per_sentence_with_the_written_words(exported: tuple[Path, Path]) -> None:
    _, out = exported
    assert [c.text for c in _speech(out.with_suffix(".vtt"))] == SENTENCES


def test_sentence_cues_start_and_end_where_the_voice_does(exported: tuple[Path, Path]) -> None:
    _, out = exported
    level = np.abs(read_wav(out)).max(axis=1)
    loud = level >= 10 ** (ONSET_DB / 20)
    window = round(0.2 * RATE)
    for cue in _speech(out.with_suffix(".vtt")):
        start = round(_seconds(cue.start) * RATE)  # webvtt-py's *_in_seconds drop the ms
        end = round(_seconds(cue.end) * RATE)
        around = np.flatnonzero(loud[start - window : end + window]) + start - window
        assert around.size, cue.text
        assert abs(around[0] - start) / RATE <= 0.020, cue.text
        assert abs(around[-1] + 1 - end) / RATE <= 0.020, cue.text
        # and nothing is spoken in the gap just before the cue
        assert not loud[start - window : start - round(0.02 * RATE)].any(), cue.text


def test_every_word_after_the_first_has_a_time_inside_its_cue(exported: tuple[Path, Path]) -> None:
    _, out = exported
    raw = out.with_suffix(".vtt").read_text(encoding="utf-8")
    for cue in _captions(out.with_suffix(".vtt")):
        if cue.text.startswith("["):
            continue
        line = next(line for line in raw.splitlines() if re.sub(r"<[^>]+>", "", line) == cue.text)
        times = [_seconds(t) for t in re.findall(r"<(\d\d:\d\d:\d\d\.\d\d\d)>", line)]
        assert len(times) == len(cue.text.split()) - 1, line
        assert times == sorted(times) and len(set(times)) == len(times), line
        assert _seconds(cue.start) < times[0] and times[-1] < _seconds(cue.end), line


def test_breaths_bells_silences_and_sections_are_told(exported: tuple[Path, Path]) -> None:
    script, out = exported
    plan = timeline(script, Options(), Silent())
    cues = [
        (c.text, _seconds(c.start), _seconds(c.end)) for c in _captions(out.with_suffix(".vtt"))
    ]
    bell = next(e for e in plan.events if e.kind == "bell")
    assert ("[bell]", round(bell.start / RATE, 3), round(bell.end / RATE, 3)) in cues
    breaths = [(t, s) for t, s, _ in cues if t in ("[breathe in]", "[hold]", "[breathe out]")]
    assert [t for t, _ in breaths] == ["[breathe in]", "[hold]", "[breathe out]", "[hold]"]
    assert [s for _, s in breaths] == [round(b.start / RATE, 3) for b in plan.breaths]
    assert [t for t, _, _ in cues if t.startswith("[silence")] == [
        "[silence, 12 s]",
        "[silence, 15 s]",
    ]
    raw = out.with_suffix(".vtt").read_text(encoding="utf-8")
    second = plan.sections[1]
    assert f"NOTE Chapter 2: Breathing & resting ({timestamp(second.start)})" in raw


def _onsets(audio: NDArray[np.float32], min_gap_s: float) -> list[int]:
    """Where sound starts after at least `min_gap_s` of quiet (and at the very start)."""
    loud = np.flatnonzero(np.abs(audio) >= 10 ** (ONSET_DB / 20))
    gaps = np.flatnonzero(np.diff(loud) > min_gap_s * SESSION_RATE)
    return [int(loud[0]), *(int(loud[g + 1]) for g in gaps)]


@pytest.mark.slow
def test_piper_word_times_match_the_words_heard(tmp_path: Path) -> None:
    # Piper pauses at commas inside one phrase: each word after a pause starts with an
    # onset that can be measured, and its alignment time must agree within 50 ms.
    speaker = Speaker(SpeechCache(tmp_path))
    phrase = Phrase("One, two, three, four, five.", VoiceSpec(pace=0.6))
    audio = speaker.audio(phrase)
    words = speaker.words(phrase)
    assert words is not None and len(words) == 5
    onsets = _onsets(audio, min_gap_s=0.08)
    assert len(onsets) == 5, [o / SESSION_RATE for o in onsets]
    for word, onset in zip(words, onsets, strict=True):
        assert abs(word - onset) / SESSION_RATE <= 0.050


def test_word_starts_follow_resampling_and_trimming(tmp_path: Path) -> None:
    # A synthetic take at 22050 Hz: 0.3 s of silence, then three tone bursts at known places.
    rate = 22050
    take = np.zeros(rate * 2, np.float32)
    starts = [int(rate * 0.3), int(rate * 0.8), int(rate * 1.4)]
    for start in starts:
        t = np.arange(int(rate * 0.3)) / rate
        take[start : start + t.size] = 0.3 * np.sin(2 * np.pi * 220 * t)
    speaker = Speaker(SpeechCache(tmp_path))
    entry = speaker.store(Phrase("x", VoiceSpec()), Take(take, rate, tuple(starts)))
    assert entry.words is not None
    assert entry.words[0] == 0
    for stored, onset in zip(entry.words, _onsets(entry.samples, 0.1), strict=True):
        assert abs(stored - onset) <= SESSION_RATE * 0.002


def test_no_transcript_writes_none(tmp_path: Path) -> None:
    script = write(tmp_path, "title: T\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n")
    out = tmp_path / "t.wav"
    result = cli("export", str(script), "-o", str(out), "--no-transcript", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "session.yaml",
        "t.chapters.json",
        "t.wav",
    ]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_other_engines_get_sentence_cues_only(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "title: T\nvoice: {engine: espeak}\nsections:\n  - title: A\n    steps:\n"
        "      - say: Breathe in slowly. Then, let it go.\n",
    )
    out = tmp_path / "t.wav"
    result = cli("export", str(script), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    raw = out.with_suffix(".vtt").read_text(encoding="utf-8")
    assert [c.text for c in _captions(out.with_suffix(".vtt"))] == [
        "Breathe in slowly.",
        "Then, let it go.",
    ]
    assert "<00:" not in raw


def test_cue_text_is_escaped_and_titles_cannot_end_a_note(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "title: A --> B\nsections:\n  - title: x --> y\n    steps:\n"
        "      - say: Rest <here> & now.\n",
    )
    out = tmp_path / "t.wav"
    result = cli("export", str(script), "-o", str(out), "-q")
    assert result.exit_code == 2, result.output  # markup in text is refused by the validator
    script.write_text(script.read_text().replace("<here> ", ""), encoding="utf-8")
    result = cli("export", str(script), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    raw = out.with_suffix(".vtt").read_text(encoding="utf-8")
    assert re.sub(r"<[^>]+>", "", raw).count("Rest &amp; now.") == 1
    assert raw.count("-->") == 1  # the cue's own arrow only
    assert [c.text for c in _captions(out.with_suffix(".vtt"))] == ["Rest &amp; now."]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["grounding", "box-breathing", "body-scan", "self-compassion", "pendulation"]
)
def test_every_word_piper_speaks_has_its_own_time(tmp_path: Path, name: str) -> None:
    # espeak runs "on the" together: before, such a fragment's words had no time at all.
    script = Path(__file__).parent.parent / "scripts" / f"{name}.yaml"
    out = tmp_path / "x.wav"
    result = cli("export", str(script), "-o", str(out), "--loudness", "off", "-q")
    assert result.exit_code == 0, result.output
    raw = out.with_suffix(".vtt").read_text(encoding="utf-8")
    for cue in _speech(out.with_suffix(".vtt")):
        line = next(line for line in raw.splitlines() if re.sub(r"<[^>]+>", "", line) == cue.text)
        stamps = re.findall(r"<(\d\d:\d\d:\d\d\.\d\d\d)>", line)
        assert len(stamps) == len(cue.text.split()) - 1, line


def test_words_espeak_runs_together_start_at_their_own_phonemes() -> None:
    # espeak reads "feet on the floor" as three words: "on the" is one, ɔnðə.
    alone = {"feet": "fˈit", "on": "ˈɔn", "the": "ðə", "floor": "flˈɔɹ"}
    line = "fˈit ɔnðə flˈɔɹ"
    aligned = [("^", 100), *((p, 10) for p in line), (".", 20), ("$", 50)]
    found = phoneme_words(aligned, 1000)
    assert [len(word) for word in found] == [4, 4, 5]
    said = ["feet", "on", "the", "floor"]
    starts = word_starts(found, said, lambda word: list(alone[word]))
    # each at its first phoneme's aligned sample: ð is the line's 8th symbol
    assert starts == (1100, 1150, 1170, 1200)
    assert word_starts([], said, lambda word: list(alone[word])) is None  # nothing to match


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grounding", "box-breathing"])
def test_every_word_piper_speaks_is_aligned_and_timed_in_its_cue(tmp_path: Path, name: str) -> None:
    # espeak runs "on the" together into one phoneme word: the engine then aligned one
    # word fewer than it spoke, and words after it went untimed (or got times made up).
    script = Path(__file__).parent.parent / "scripts" / f"{name}.yaml"
    out = tmp_path / "x.wav"
    result = cli("export", str(script), "-o", str(out), "--loudness", "off", "-q")
    assert result.exit_code == 0, result.output
    speaker = Speaker(SpeechCache.default())  # the cache the export filled
    for event in timeline(script, Options(), Silent()).events:
        if event.caption is not None and isinstance(event.source, Phrase):
            starts = speaker.words(event.source)
            spoken = sum(w.spoken for w in event.caption.words)
            assert starts is not None and len(starts) == spoken, event.source.text
    raw = out.with_suffix(".vtt").read_text(encoding="utf-8")
    for cue in _speech(out.with_suffix(".vtt")):
        line = next(line for line in raw.splitlines() if re.sub(r"<[^>]+>", "", line) == cue.text)
        times = [_seconds(t) for t in re.findall(r"<(\d\d:\d\d:\d\d\.\d\d\d)>", line)]
        assert len(times) == len(cue.text.split()) - 1, line
        bounds = [_seconds(cue.start), *times, _seconds(cue.end)]
        assert all(a < b for a, b in itertools.pairwise(bounds)), line
