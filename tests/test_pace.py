"""A guide's pace, measured on the real offline engines: each `say` step's words over the
time from its first sound to its last, and the narration over consecutive steps; the pauses
between sentences and clauses are exact; `say` and `plan --words` help an author hear it."""

from __future__ import annotations

import itertools
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import RATE, cli, read_wav, silences, write
from guided_audio import session
from guided_audio.plan.builder import phrases
from guided_audio.plan.pace import (
    NARRATION_WPM,
    SENTENCE_WPM,
    SENTENCE_WPM_MAX,
    narration_wpm,
    step_paces,
)
from guided_audio.script.loader import load_script
from guided_audio.script.model import Phrase, VoiceSpec
from guided_audio.session import Options, Silent
from guided_audio.speech import piper_cut, registry
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.engine import Reading, Take
from guided_audio.speech.piper import PiperEngine
from guided_audio.speech.speaker import Speaker

SCRIPTS = sorted((Path(__file__).parent.parent / "scripts").glob("*.yaml"))
ENGINES = [
    pytest.param("piper", id="piper"),
    pytest.param(
        "espeak",
        id="espeak",
        marks=pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng"),
    ),
]


def _in_engine(path: Path, engine: str, folder: Path) -> Path:
    """The script as written, or the same script with its voice set to `engine`."""
    if engine == "piper":
        return path
    text = path.read_text(encoding="utf-8").replace("voice: {engine: piper}\n", "")
    head, _, rest = text.partition("sections:\n")
    return write(folder, f"{head}voice: {{engine: {engine}}}\nsections:\n{rest}", path.name)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.slow
def test_bundled_scripts_speak_at_a_guides_pace(tmp_path: Path, engine: str) -> None:
    report = []
    for original in SCRIPTS:
        path = _in_engine(original, engine, tmp_path)
        script = load_script(path)
        timeline = session.timeline(path, Options(), Silent())
        paces = step_paces(script, timeline)
        mean = statistics.mean(p.wpm for p in paces)
        fastest = max(paces, key=lambda p: p.wpm)
        narration = narration_wpm(script, paces)
        report.append((original.stem, round(mean), round(fastest.wpm), narration))
        assert SENTENCE_WPM[0] <= mean <= SENTENCE_WPM[1], report
        assert fastest.wpm <= SENTENCE_WPM_MAX, (fastest.text, report)
        if narration is not None:
            assert NARRATION_WPM[0] <= narration <= NARRATION_WPM[1], report
    # Most bundled scripts have consecutive `say` steps, so the narration rate is measured.
    assert sum(1 for *_, narration in report if narration is not None) >= 5, report


PAUSES = """\
title: Pauses
voice: {{sentence_pause: {sentence}, clause_pause: {clause}, gap: 2s}}
sections:
  - title: A
    steps:
      - say: Let the ground hold you. Breathe out slowly, and rest here.
      - say: Welcome back. [pause 3s] Stay a while.
"""


@pytest.mark.parametrize(
    ("cut", "most_readings_per_line"),
    [
        pytest.param(True, 1.15, id="from-phoneme-lengths"),
        pytest.param(False, 1.6, id="from-letters"),  # a model that cannot be cut
    ],
)
@pytest.mark.slow
def test_most_lines_are_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: bool, most_readings_per_line: float
) -> None:
    # Piper rushes four lines in five at its own pace; the first reading is slowed as far
    # as its phoneme lengths say (else as its letters predict), so a line is rarely
    # synthesised twice (cold exports).
    registry.engine("piper").unload()  # loaded again below, cut or not, with these models
    monkeypatch.setenv("GUIDED_AUDIO_MODELS", str(tmp_path / "models"))
    if not cut:
        failing = "raise ValueError('not a VITS graph')"
        monkeypatch.setattr(
            piper_cut, "command", lambda model, stages: [sys.executable, "-c", failing]
        )
    readings: list[str] = []
    synthesize = PiperEngine.synthesize

    def counted(engine: PiperEngine, line: str, spec: VoiceSpec, reading: Reading) -> Take:
        readings.append(line)
        return synthesize(engine, line, spec, reading)

    monkeypatch.setattr(PiperEngine, "synthesize", counted)
    monkeypatch.setenv("GUIDED_AUDIO_JOBS", "1")  # counted here, not in worker processes
    path = SCRIPTS[0]
    options = Options(cache_dir=tmp_path / "cache")
    timeline = session.timeline(path, options, Silent())
    lines = {phrase.text for phrase in phrases(load_script(path))}
    assert len(lines) >= 10
    assert any((tmp_path / "models").glob("*.front.onnx")) is cut
    # 1.9x unpredicted; 1.0x from the phoneme lengths, 1.4-1.5x from the letters
    assert len(readings) <= most_readings_per_line * len(lines), (len(readings), len(lines))
    paces = step_paces(load_script(path), timeline)
    assert SENTENCE_WPM[0] <= statistics.mean(p.wpm for p in paces) <= SENTENCE_WPM[1]


@pytest.mark.parametrize("pace", [pytest.param(1.0, id="pace-1"), pytest.param(0.8, id="pace-0.8")])
@pytest.mark.slow
def test_piper_knows_a_lines_length_before_reading_it(tmp_path: Path, pace: float) -> None:
    speaker = Speaker(SpeechCache(tmp_path))
    speaker.cache.ensure_writable()
    piper = registry.engine("piper")
    spec = VoiceSpec(pace=pace)
    errors = []
    for line in (
        "Let your shoulders soften, and your jaw release.",
        "What do you notice now?",
        "Feel the breath moving in, and moving out, as the body settles into the ground.",
    ):
        assert piper.voiced_seconds(line, spec, speaker.reading) is not None  # cut in stages
        heard = len(speaker.render(Phrase(line, spec))) / RATE
        # as read: the first reading's pace, which the prediction chose
        first = speaker.first_reading(Phrase(line, spec))
        predicted_first = piper.voiced_seconds(line, first, speaker.reading)
        assert predicted_first is not None
        errors.append((predicted_first - heard) / heard)
    # Frames are exact; what is trimmed as silence at the two ends varies by ~0.1 s.
    assert max(abs(e) for e in errors) < 0.06, errors


def test_sentence_and_clause_pauses_are_exact(tmp_path: Path) -> None:
    script = write(tmp_path, PAUSES.format(sentence="1.7s", clause="0.9s"))
    out = tmp_path / "p.wav"
    result = cli("export", str(script), "-o", str(out), "--loudness", "off", "-q")
    assert result.exit_code == 0, result.output
    # the lead-in (0.5 s) is too short to count; the tail is the last silence
    pauses = [length for _, length in silences(read_wav(out), min_s=0.6)[:-1]]
    # sentence, clause, the gap between steps, sentence, the inline pause (which replaces
    # the sentence pause it stands in)
    expected = [1.7, 0.9, 2.0, 3.0]
    assert len(pauses) == len(expected), pauses
    for measured, wanted in zip(pauses, expected, strict=True):
        assert measured == pytest.approx(wanted, abs=0.010)


def test_zero_pauses_leave_fragments_touching(tmp_path: Path) -> None:
    script = write(tmp_path, PAUSES.format(sentence="0s", clause="0s"))
    timeline = session.timeline(script, Options(), Silent())
    first_step = [e for e in timeline.events if e.step == 0]
    assert len(first_step) == 3
    for before, after in itertools.pairwise(first_step):
        assert after.start == before.end


def test_pronounce_changes_what_is_said_not_what_is_written(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "title: Names\npronounce: {Reyes: RAY-ess}\nsections:\n  - title: A\n"
        "    pronounce: {Dana: DAH-na}\n    steps:\n      - say: Hello, Dana Reyes.\n",
    )
    timeline = session.timeline(script, Options(), Silent())
    (event,) = [e for e in timeline.events if e.kind == "speech"]
    assert isinstance(event.source, Phrase)
    assert event.source.text == "Hello, DAH-na RAY-ess."
    assert timeline.sentence_at(event.start) == "Hello, Dana Reyes."


def test_say_writes_one_line_as_a_session_would(tmp_path: Path) -> None:
    out = tmp_path / "line.wav"
    result = cli("say", "Count 5-4-3-2-1. Then rest.", "--pace", "0.9", "-o", str(out))
    assert result.exit_code == 0, result.output
    audio = read_wav(out)
    loud = np.flatnonzero(np.abs(audio[:, 0]) > 10 ** (-40 / 20))
    assert loud.size and (loud[-1] - loud[0]) / RATE > 2.0
    inner = [length for _, length in silences(audio, min_s=0.9)[:-1]]
    assert inner == [pytest.approx(1.0, abs=0.010)]  # the default sentence pause


def test_say_in_a_scripts_voice_with_its_variables(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "title: T\nvariables: {client: Sam}\nvoice: {engine: piper, pace: 1.2}\n"
        "sections:\n  - title: A\n    steps:\n      - say: Hi.\n",
    )
    out = tmp_path / "line.wav"
    result = cli("say", "Welcome, {client}.", "--script", str(script), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 44


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["Hi [pause 2"], "<text>:1:5: unclosed '[' in text", id="bad-text"),
        pytest.param(["Hi {who}"], "<text>:1:5: undefined variable '{who}'", id="variable"),
        pytest.param(["Hi", "--engine", "espeak", "--voice", "nope"],
                     "--voice nope: unknown espeak voice", id="voice"),
    ],
)  # fmt: skip
def test_say_refuses_bad_input_in_one_line(args: list[str], message: str) -> None:
    result = cli("say", *args, "-o", "never.wav")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message), result.stderr
    assert not Path("never.wav").exists()


def test_plan_words_shows_each_steps_pace(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "title: W\nsections:\n  - title: A\n    steps:\n"
        "      - say: Let the ground hold you. Breathe out slowly.\n"
        "      - say: And rest here, as long as you like.\n",
    )
    result = cli("plan", str(script), "--words", "-q")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("words a minute (a calm speaker: 130-170; narration: 90-120)")
    steps = lines[start + 1 : start + 3]
    assert [line.split("words")[0].split()[-1] for line in steps] == ["8", "8"]
    assert steps[0].endswith("Let the ground hold you. Breathe out slowly.")
    assert lines[start + 3].startswith("  narration: ")
