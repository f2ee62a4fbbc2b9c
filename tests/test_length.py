"""Sessions at a --length, exported and measured: every bundled script at three lengths, its
total to the sample, its pauses where the fitted plan puts them (to 10 ms), its speech moved
but sample for sample the same; chapters and the transcript follow; and the answers to
lengths a session cannot be."""

from __future__ import annotations

import json
import math
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from numpy.typing import NDArray

from conftest import RATE, cli, write
from guided_audio import session
from guided_audio.dsp.effects import seconds_to_samples
from guided_audio.plan.timeline import Event, Timeline
from guided_audio.play.home import Positions
from guided_audio.session import Options, Silent
from guided_audio.speech.piper import PiperEngine

SCRIPTS = sorted((Path(__file__).parent.parent / "scripts").glob("*.yaml"))
QUIET = 32768 * 10 ** (-60 / 20)  # -60 dBFS: below it a sample counts as silence
SHORTEST_PAUSE_S = 0.5  # shorter silences (a clause's) are not measured here
TOLERANCE = round(0.010 * RATE)
BLOCK = 1 << 20  # frames read at once: a half-hour WAV is never held whole


def _without_music(path: Path, folder: Path) -> Path:
    """The script with its beds taken out, so its silences are silent and its speech alone."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.pop("music", None)
    for section in data["sections"]:
        section.pop("music", None)
    return write(folder, yaml.safe_dump(data, sort_keys=False, allow_unicode=True), path.name)


def _three_lengths(shortest: float, natural: float, longest: float) -> list[float]:
    """The shortest the session can be, a moderate stretch, and the longest (at most twice
    its natural length), in whole seconds."""
    low = math.ceil(shortest)
    high = math.floor(min(longest, 2 * natural))
    middle = round(natural * 1.3) if round(natural * 1.3) < high else round((natural + high) / 2)
    return [low, middle, high]


def _export(script: Path, out: Path, *args: str) -> Path:
    result = cli("export", str(script), "-o", str(out), "-q", *args)
    assert result.exit_code == 0, result.output + result.stderr
    return out


def _quiet_mask(path: Path) -> NDArray[np.bool_]:
    """For every frame of a WAV, whether all its channels are below -60 dBFS."""
    parts = []
    with wave.open(str(path), "rb") as wav:
        channels = wav.getnchannels()
        while data := wav.readframes(BLOCK):
            frames = np.frombuffer(data, dtype=np.int16).reshape(-1, channels)
            parts.append(np.abs(frames.astype(np.int32)).max(axis=1) < QUIET)
    return np.concatenate(parts)


def _frames(path: Path, start: int, count: int) -> bytes:
    with wave.open(str(path), "rb") as wav:
        wav.setpos(start)
        return wav.readframes(count)


def _runs(quiet: NDArray[np.bool_]) -> dict[int, int]:
    """Each run of silence: its first frame and its length."""
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return {int(s): int(e - s) for s, e in zip(starts, ends, strict=True)}


def _planned_pauses(timeline: Timeline) -> list[tuple[int, int]]:
    """Silences the plan puts between two spoken fragments (start, length), where nothing
    else sounds: what the ear hears as the pauses."""
    pauses, end, last = [], 0, None
    for event in timeline.events:
        spoken = last is not None and last.kind == event.kind == "speech"
        if spoken and event.start - end >= SHORTEST_PAUSE_S * RATE:
            pauses.append((end, event.start - end))
        if event.end >= end:
            end, last = event.end, event
    return pauses


def _alone(timeline: Timeline) -> list[Event]:
    """Spoken fragments that no other sound overlaps."""
    return [
        e
        for e in timeline.events
        if e.kind == "speech" and timeline.events_between(e.start, e.end) == [e]
    ]


def _stamp_ms(stamp: str) -> int:
    hours, minutes, seconds = stamp.split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)


@pytest.mark.slow
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in SCRIPTS])
def test_a_bundled_session_at_three_lengths(tmp_path: Path, path: Path) -> None:
    script = _without_music(path, tmp_path)
    natural = session.timeline(script, Options(), Silent())
    shortest, longest = session.reach(script, Options(), Silent())
    assert shortest < natural.seconds < longest, (shortest, natural.seconds, longest)
    reference = _export(script, tmp_path / "natural.wav", "--loudness", "off")
    voice = {e.source: _frames(reference, e.start, e.length) for e in _alone(natural)}
    assert voice
    for seconds in _three_lengths(shortest, natural.seconds, longest):
        out = _export(script, tmp_path / f"{seconds}s.wav", "--loudness", "off", "--length",
                      f"{seconds}s")  # fmt: skip
        plan = session.timeline(script, Options(length_s=seconds), Silent())
        quiet = _quiet_mask(out)
        assert len(quiet) == plan.total == seconds_to_samples(seconds), seconds

        runs = _runs(quiet)
        pauses = _planned_pauses(plan)
        assert pauses, seconds
        for start, length in pauses:
            # Silent from the voice's planned end (a take may fade out a little before it)
            # to the next voice's planned start, which is on time to 10 ms.
            silent = [(s, s + n) for s, n in runs.items() if s <= start + TOLERANCE < s + n]
            assert silent, (seconds, start / RATE, length / RATE)
            end = silent[0][1]
            assert abs(end - (start + length)) <= TOLERANCE, (seconds, start / RATE, end / RATE)

        moved = 0
        for event in _alone(plan):
            if event.source in voice:
                assert _frames(out, event.start, event.length) == voice[event.source]
                moved += 1
        assert moved >= len(voice) // 2, (moved, len(voice))
        assert [e.start for e in plan.events] != [e.start for e in natural.events]

        # As a client gets it: with its music, mastered, its chapters and transcript on the
        # fitted plan.
        full = _export(path, tmp_path / f"{path.stem}-{seconds}s.wav", "--length", f"{seconds}s")
        with wave.open(str(full), "rb") as wav:
            assert wav.getnframes() == seconds_to_samples(seconds)
        chapters = json.loads(full.with_suffix(".chapters.json").read_text())["chapters"]
        assert [(c["title"], c["startTime"]) for c in chapters] == [
            (s.title, round(s.start / RATE, 3)) for s in plan.sections
        ]
        vtt = full.with_suffix(".vtt").read_text(encoding="utf-8")
        cues = re.findall(r"^(\d\d:\d\d:\d\d\.\d\d\d) --> \S+\n(?!\[)", vtt, re.MULTILINE)
        starts = [round(s[0].start / RATE * 1000) for s in plan.sentences]
        assert [_stamp_ms(c) for c in cues] == starts


# --- the commands, on a small session --------------------------------------------------------
SMALL = """\
title: Small
voice: {gap: 0.8s}
sections:
  - title: One
    steps:
      - say: Notice the ground beneath you.
      - pause: {for: 7s, min: 3s, max: 20s}
      - say: Let it hold you.
  - title: Two
    optional: true
    steps:
      - pause: 2.5s
      - say: Welcome back.
  - title: Three
    steps:
      - breathe: {pattern: box, cycles: 2, min_cycles: 1, max_cycles: 4, cues: tone}
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = write(tmp_path_factory.mktemp("small"), SMALL)
    result = cli("plan", str(script), "-q")  # its speech, into the shared cache
    assert result.exit_code == 0, result.output
    return script


def _total(output: str) -> float:
    found = re.search(r"total \((\d+\.\d\d) s\)", output)
    assert found, output
    return float(found[1])


def test_plan_at_a_length_uses_the_cached_speech(
    small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("synthesised again")

    monkeypatch.setenv("GUIDED_AUDIO_JOBS", "1")  # any synthesis would happen here
    monkeypatch.setattr(PiperEngine, "synthesize", refuse)
    natural = cli("plan", str(small))
    longer = cli("plan", str(small), "--length", "1m")
    assert natural.exit_code == 0 and longer.exit_code == 0, longer.output
    assert _total(longer.stdout) == 60.0 != _total(natural.stdout)
    assert "2. Two" in longer.stdout


def test_plan_estimate_at_a_length_renders_nothing(
    tmp_path: Path, small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUIDED_AUDIO_CACHE", str(tmp_path / "empty"))
    result = cli("plan", str(small), "--estimate", "--length", "45s")
    assert result.exit_code == 0, result.output
    assert _total(result.stdout) == 45.0 and "~" in result.stdout
    assert not (tmp_path / "empty").exists()


def test_a_short_length_leaves_the_optional_section_out(small: Path) -> None:
    shortest, _ = session.reach(small, Options(), Silent())
    plan = session.timeline(small, Options(length_s=math.ceil(shortest)), Silent())
    assert [s.title for s in plan.sections] == ["One", "Three"]
    assert plan.total == seconds_to_samples(math.ceil(shortest))


def test_export_at_a_length_carries_it_in_the_name(tmp_path: Path, small: Path) -> None:
    result = cli("export", str(small), "-o", str(tmp_path), "--format", "wav", "-q",
                 "--length", "1m30s")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "session-1m30s.wav"
    with wave.open(str(out), "rb") as wav:
        assert wav.getnframes() == 90 * RATE


def _into(command: str, folder: Path) -> list[str]:
    return ["-o", str(folder)] if command == "export" else []


def test_out_of_range_names_the_lengths_it_can_be(tmp_path: Path, small: Path) -> None:
    shortest, longest = session.reach(small, Options(), Silent())
    can_be = (
        f"{math.ceil(shortest) // 60}:{math.ceil(shortest) % 60:02d} to "
        f"{math.floor(longest) // 60}:{math.floor(longest) % 60:02d}"
    )
    for command in ("plan", "export", "play"):
        result = cli(command, str(small), "--length", "10m", *_into(command, tmp_path))
        assert result.exit_code == 2, result.output
        assert result.stderr == f"session.yaml: --length 10m: this session can be {can_be}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("length", "message"),
    [
        ("soon", "--length soon: expected a duration like 12m, 1h05m or 90s"),
        ("0", "--length 0: a session is at least 10s long"),
        ("5s", "--length 5s: a session is at least 10s long"),
        ("-5m", "--length -5m: a length is more than zero, like 12m"),
        ("30s12m", "--length 30s12m: its parts go once each, largest first"),
    ],
)
def test_a_length_that_is_no_length_is_refused(
    tmp_path: Path, small: Path, length: str, message: str
) -> None:
    for command in ("plan", "export"):
        result = cli(command, str(small), f"--length={length}", *_into(command, tmp_path))
        assert result.exit_code == 2, result.output
        assert message in result.stderr and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_section_left_out_at_a_length_cannot_be_played_from(small: Path) -> None:
    shortest, _ = session.reach(small, Options(), Silent())
    length = f"{math.ceil(shortest)}s"
    result = cli("play", str(small), "--length", length, "--from", "Two")
    assert result.exit_code == 2, result.output
    assert "One" in result.stderr and "Three" in result.stderr, result.stderr


def test_each_length_keeps_its_own_resume_place(tmp_path: Path, small: Path) -> None:
    saved = tmp_path / "positions.json"
    Positions(saved).set(small, 3 * RATE)
    Positions(saved, length_s=60).set(small, 40 * RATE)
    assert Positions(saved).get(small) == 3 * RATE
    assert Positions(saved, length_s=60).get(small) == 40 * RATE
    assert Positions(saved, length_s=90).get(small) is None
    Positions(saved, length_s=60).clear(small)
    assert Positions(saved).get(small) == 3 * RATE
