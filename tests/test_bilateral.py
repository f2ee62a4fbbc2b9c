"""The `bilateral` step, exported and measured per channel: each sound starts on its side
at its plan time (within 1 ms), the other channel is silent under it (or at its pan), sounds
start and end without clicks, the transcript tells the set, and --length moves whole passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from conftest import RATE, cli, read_wav, write
from guided_audio import session
from guided_audio.plan.timeline import Event, Pass, Timeline
from guided_audio.session import Options, Silent

SCRIPT = """\
title: Bilateral
voice: {gap: 1s}
sections:
  - title: A
    steps:
      - say: Notice your feet.
      - bilateral: {for: 10s, speed: 1.0, sound: tap}
      - say: And rest.
      - bilateral: {passes: 6, speed: 1.5, sound: tone, pan: 0.5, level: -12dB}
      - bilateral: {passes: 4, sound: bell, flex: none}
"""
ONSET_DB = -60.0
ONE_MS = RATE // 1000


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Timeline, NDArray[np.float64]]:
    tmp = tmp_path_factory.mktemp("bilateral")
    script = write(tmp, SCRIPT)
    out = tmp / "b.wav"
    result = cli("export", str(script), "-o", str(out), "--loudness", "off", "-q")
    assert result.exit_code == 0, result.output
    return session.timeline(script, Options(), Silent()), read_wav(out)


def _passes(timeline: Timeline) -> list[tuple[Event, Pass]]:
    return [(e, e.source) for e in timeline.events if isinstance(e.source, Pass)]


def test_each_sound_starts_on_its_side_at_its_plan_time(
    exported: tuple[Timeline, NDArray[np.float64]],
) -> None:
    timeline, audio = exported
    passes = _passes(timeline)
    assert len(passes) == 10 + 6 + 4
    loud = np.abs(audio) >= 10 ** (ONSET_DB / 20)
    for event, source in passes:
        channel = 0 if source.side < 0 else 1
        window = loud[event.start - 10 * ONE_MS : event.start + 10 * ONE_MS, channel]
        onset = event.start - 10 * ONE_MS + int(np.argmax(window))
        assert window.any() and abs(onset - event.start) <= ONE_MS, (event.start, onset)
    sides = [source.side for _, source in passes]
    assert sides[:4] == [-1, 1, -1, 1]  # alternating, the first on the left


def test_the_other_side_is_silent_or_at_its_pan(
    exported: tuple[Timeline, NDArray[np.float64]],
) -> None:
    timeline, audio = exported
    for event, source in _passes(timeline):
        piece = audio[event.start : event.end]
        near, far = (piece[:, 0], piece[:, 1]) if source.side < 0 else (piece[:, 1], piece[:, 0])
        energy_near, energy_far = float(np.sum(near**2)), float(np.sum(far**2))
        assert energy_near > 0
        # pan 1: nothing on the far side (16-bit rounding aside); pan 0.5: half the amplitude
        assert energy_far / energy_near == pytest.approx((1 - source.pan) ** 2, abs=1e-3)


def test_sounds_start_and_end_without_clicks(
    exported: tuple[Timeline, NDArray[np.float64]],
) -> None:
    timeline, audio = exported
    for event, _ in _passes(timeline):
        edges = np.abs(audio[[event.start, event.end - 1]])
        assert edges.max() < 0.01, event.start
        steps = np.abs(np.diff(audio[event.start : event.end], axis=0))
        assert steps.max() < 0.2, event.start


def test_the_transcript_tells_each_set(tmp_path: Path) -> None:
    script = write(tmp_path, SCRIPT)
    out = tmp_path / "b.mp3"
    assert cli("export", str(script), "-o", str(out), "-q").exit_code == 0
    vtt = out.with_suffix(".vtt").read_text(encoding="utf-8")
    assert [line for line in vtt.splitlines() if line.startswith("[bilateral")] == [
        "[bilateral, 10 s]",
        "[bilateral, 4 s]",
        "[bilateral, 4 s]",
    ]


def test_a_length_moves_whole_passes(tmp_path: Path) -> None:
    script = write(tmp_path, SCRIPT)
    natural = session.timeline(script, Options(), Silent())
    longer = session.timeline(script, Options(length_s=natural.seconds + 10), Silent())
    counts = [len([e for e in t.events if e.kind == "bilateral"]) for t in (natural, longer)]
    assert counts[1] > counts[0]
    assert longer.total == round((natural.seconds + 10) * RATE)
    last = [s for _, s in _passes(longer)][-4:]
    assert [s.sound for s in last] == ["bell"] * 4  # flex: none kept its four passes


def test_plan_shows_the_sets(tmp_path: Path) -> None:
    result = cli("plan", str(write(tmp_path, SCRIPT)))
    assert result.exit_code == 0, result.output
    sets = [line.split(None, 1)[1] for line in result.stdout.splitlines() if "bilateral" in line]
    assert sets == [
        "bilateral, 10 s (10 passes)",
        "bilateral, 4 s (6 passes)",
        "bilateral, 4 s (4 passes)",
    ]


def test_a_line_spoken_over_a_set(tmp_path: Path) -> None:
    over = (
        "title: Over\nsections:\n  - title: A\n    steps:\n      - say: Notice your feet.\n"
        '      - bilateral: {for: 12s, say: "Stay with the place. Let the taps go by."}\n'
        "      - say: And rest.\n"
    )
    timeline = session.timeline(write(tmp_path, over), Options(), Silent())
    [(start, end, passes)] = timeline.bilateral_sets()
    spoken = [e for e in timeline.events if e.kind == "speech" and start <= e.start < end]
    assert spoken and spoken[0].start == start  # the voice starts with the set
    assert passes == 12 and spoken[-1].end <= end
    plain = session.timeline(
        write(tmp_path, over.replace(', say: "Stay with the place. Let the taps go by."', "")),
        Options(),
        Silent(),
    )
    assert plain.total == timeline.total  # the line adds no time: the set carries it


def test_a_length_never_makes_a_set_shorter_than_its_line(tmp_path: Path) -> None:
    over = (
        "title: Over\nsections:\n  - title: A\n    steps:\n"
        '      - bilateral: {for: 10s, say: "Stay with the place. Let the taps go by, '
        'slowly, one side and then the other."}\n'
        "      - pause: 10s\n"
    )
    script = write(tmp_path, over)
    shortest, _ = session.reach(script, Options(), Silent())
    timeline = session.timeline(script, Options(length_s=shortest + 0.5), Silent())
    [(_, end, _)] = timeline.bilateral_sets()
    assert max(e.end for e in timeline.events if e.kind == "speech") <= end


def test_play_asks_for_headphones_when_a_session_has_a_set(tmp_path: Path) -> None:
    # Said before anything else (here before --from is refused: no device is needed).
    played = cli("play", str(write(tmp_path, SCRIPT)), "--from", "Nowhere")
    assert played.stderr.splitlines()[0] == (
        "headphones, please: this session moves sound between your ears"
    )
    plain = write(
        tmp_path, "title: P\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n", "p.yaml"
    )
    assert "headphones" not in cli("play", str(plain), "--from", "Nowhere").stderr
