"""Real playback: the real program plays into devices that keep real time (a PulseAudio null
sink), heard either exactly (an ALSA file plugin in front of it) or as a recording of the
sink's monitor. Keys are typed into a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pexpect
import pytest

from conftest import (
    Pulse,
    ahead_of_others,
    boundary,
    children,
    cpu_times,
    load_report,
    read_raw,
    read_wav_int16,
    segments,
    write,
)
from guided_audio import session
from guided_audio.plan.timeline import Timeline
from guided_audio.play.player import END_FADE
from guided_audio.session import Options, Silent

RATE = 44100
TEN_MS = RATE // 100

SHORT = """\
title: Short
music: {bed: drone, level: -22dB, fade: 2s}
sections:
  - title: Hello
    steps:
      - say: This is a short playback test.
      - pause: 3s
  - title: Goodbye
    steps:
      - bell: chime
      - say: Goodbye.
      - pause: 2s
      - say: One more line after the pause.
"""

# A noise bed under everything: no exact silence, so every captured window has one source.
KEYS = """\
title: Keys
music: {bed: noise, level: -20dB, duck: 6dB, fade: 1s}
sections:
  - title: Arriving
    steps:
      - say: Welcome. Let the ground hold you.
      - pause: 24s
  - title: Breathing
    steps:
      - say: Now we breathe together.
      - breathe: {pattern: {in: 3s, out: 4s}, cycles: 3, cues: both}
      - pause: 4s
  - title: Closing
    steps:
      - say: Thank you for taking this time.
      - pause: 6s
"""


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "guided_audio", *args]


def _run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args), input=stdin, capture_output=True, text=True, env=env, timeout=300,
        preexec_fn=ahead_of_others,
    )  # fmt: skip


def _export(script: Path, env: dict[str, str], *extra: str) -> np.ndarray:
    out = script.with_suffix(".wav")
    done = _run(["export", str(script), "-o", str(out), "--force", "-q", *extra], env)
    assert done.returncode == 0, done.stderr
    return read_wav_int16(out)


def _timeline(script: Path) -> Timeline:

    return session.timeline(script, Options(), Silent())


def _rms_steps(audio: np.ndarray, count: int = 6) -> np.ndarray:
    return np.array(
        [np.sqrt(np.mean(q.astype(np.float64) ** 2)) for q in np.array_split(audio, count)]
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("GUIDED_AUDIO_HOME", str(folder))
    return folder


def _spawn(args: list[str], env: dict[str, str]) -> pexpect.spawn[str]:
    return pexpect.spawn(
        sys.executable,
        ["-m", "guided_audio", *args],
        env=env,
        dimensions=(30, 120),
        encoding="utf-8",
        codec_errors="replace",  # Ctrl-C discards unread output, maybe half a character
        timeout=90,
        preexec_fn=ahead_of_others,
    )


# --- exactness -------------------------------------------------------------------------------
@pytest.mark.slow
def test_play_sounds_exactly_like_the_export(tmp_path: Path, pulse: Pulse, home: Path) -> None:
    script = write(tmp_path, SHORT)
    capture = tmp_path / "capture.raw"
    env = pulse.alsa_capture_env(tmp_path, capture)
    exported = _export(script, env)  # measures and remembers the loudness gain
    played = _run(["play", str(script)], env)
    assert played.returncode == 0, played.stderr
    lines = played.stderr.splitlines()
    assert lines[0].startswith("[1/2] Hello  00:00 / ") and lines[1].startswith("[2/2] Goodbye")
    assert "ALSA lib" not in played.stderr
    heard = read_raw(capture)
    assert len(heard) >= len(exported)
    assert np.array_equal(heard[: len(exported)], exported)  # one stream: no gap, no drift
    assert not heard[len(exported) :].any()
    assert not (home / "state" / "positions.json").exists() or (
        str(script.resolve()) not in json.loads((home / "state" / "positions.json").read_text())
    )


@pytest.mark.slow
def test_a_cold_start_plays_every_sound_where_the_export_puts_it(
    tmp_path: Path, pulse: Pulse, home: Path
) -> None:
    script = write(tmp_path, SHORT.replace("short playback test", "cold start test, new words"))
    capture = tmp_path / "capture.raw"
    env = {**pulse.alsa_capture_env(tmp_path, capture), "GUIDED_AUDIO_CACHE": str(tmp_path / "c")}
    played = _run(["play", str(script), "--loudness", "off"], env)
    assert played.returncode == 0, played.stderr
    # (The cache started empty: every phrase was synthesised while playing.)
    assert played.stderr.splitlines()[0].startswith("[1/2] Hello  00:00 / ")
    exported = _export(script, env, "--loudness", "off")  # the same takes, now cached
    heard = read_raw(capture)
    assert np.array_equal(heard[: len(exported)], exported)


@pytest.mark.slow
def test_real_time_playback_has_no_dropout(tmp_path: Path, pulse: Pulse, home: Path) -> None:
    script = write(
        tmp_path,
        "title: A minute\nmusic: {bed: drone, level: -20dB, fade: 3s}\nsections:\n"
        + "".join(
            f"  - title: Part {n}\n    steps:\n      - say: This is part {n} of the minute.\n"
            "      - pause: 12.5s\n"
            for n in range(1, 5)
        ),
    )
    env = pulse.native_env()
    exported = _export(script, env)
    assert 55 * RATE < len(exported) < 65 * RATE
    recording = tmp_path / "monitor.raw"
    before = cpu_times()
    with pulse.recording(recording):
        played = _run(["play", str(script), "-q"], env)
    assert played.returncode == 0, played.stderr
    heard = read_raw(recording)
    found = segments(heard, exported)
    # one run from start to end: nothing dropped or repeated
    assert len(found) == 1, f"{len(found)} runs: {found}; {load_report(before)}"
    start = found[0].start + found[0].shift  # where the recording first matches
    assert start < RATE  # (the drone fades in from zero: the first windows are silent)
    offset = found[0].start - start
    assert offset >= 0, "the recording began after the sound did"
    # Every sample, at its time: the played length is the session's, to the sample.
    assert np.array_equal(heard[offset : offset + len(exported)], exported)
    assert not heard[offset + len(exported) :].any()


# --- keys in a real terminal -----------------------------------------------------------------
def _play_keys_session(
    tmp_path: Path, pulse: Pulse
) -> tuple[Path, Path, np.ndarray, Timeline, pexpect.spawn[str]]:
    """KEYS exported (so its loudness is known), then playing in a terminal."""
    script = write(tmp_path, KEYS)
    capture = tmp_path / "capture.raw"
    env = pulse.alsa_capture_env(tmp_path, capture)
    exported = _export(script, env)
    child = _spawn(["play", str(script)], env)
    child.expect(r"\[1/3\] Arriving")
    return script, capture, exported, _timeline(script), child


@pytest.mark.slow
def test_keys_pause_seek_next_section_and_volume(tmp_path: Path, pulse: Pulse, home: Path) -> None:
    script, capture, exported, timeline, child = _play_keys_session(tmp_path, pulse)
    child.expect("“Welcome.")  # the caption shows the sentence being spoken
    child.expect("space pause")  # the key hint
    time.sleep(2.0)
    child.send(" ")
    child.expect("paused")
    time.sleep(1.5)
    child.send(" ")
    time.sleep(2.0)
    child.send("\x1b[C")  # → forward 10 s
    time.sleep(2.0)
    child.send("n")
    child.expect(r"\[2/3\] Breathing")
    child.expect("breathe in ")  # the pacer, in the breathing section
    child.send("-")
    child.expect("volume -3 dB")
    time.sleep(2.5)
    child.send("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before

    heard = read_raw(capture)
    runs = segments(heard, exported)
    assert len(runs) == 5, runs
    start, paused, seeked, section, quieter = runs
    assert start.shift == 0 and start.gain == pytest.approx(1.0)
    # Pause: the samples stop and resume with nothing lost (fades are 30 ms; no hole).
    last, first = boundary(heard, exported, start, paused)
    assert abs(first - last - 1) <= TEN_MS // 2
    assert paused.start - start.end > RATE  # it really was paused for a while
    # → lands 10 s further on.
    last, first = boundary(heard, exported, paused, seeked)
    assert abs(first - last - 1 - 10 * RATE) <= TEN_MS
    # n starts the next section at its plan time.
    _, first = boundary(heard, exported, seeked, section)
    assert abs(first - timeline.sections[1].start) <= TEN_MS
    # - lowers the level by what it says, without moving.
    assert quieter.shift == section.shift
    assert quieter.gain_db == pytest.approx(-3.0, abs=0.05)
    assert section.gain == pytest.approx(1.0)
    # q remembers the place.
    saved = json.loads((home / "state" / "positions.json").read_text())
    assert str(script.resolve()) in saved


@pytest.mark.slow
def test_end_gently_fades_out_and_goes_to_the_closing_section(
    tmp_path: Path, pulse: Pulse, home: Path
) -> None:
    script, capture, exported, timeline, child = _play_keys_session(tmp_path, pulse)
    time.sleep(5.0)  # past the speech: the bed alone shows the fade
    child.send("x")
    child.expect("ending gently")
    child.expect(r"\[3/3\] Closing", timeout=20)
    child.expect(pexpect.EOF, timeout=60)  # the closing section plays to its end
    child.close()
    assert child.exitstatus == 0

    heard = read_raw(capture)
    runs = segments(heard, exported)
    before, closing = runs[0], runs[-1]
    # A slow fade: seconds long, its gain (heard against exported) falling all the way.
    lo, hi = before.end, closing.start
    assert hi - lo >= (END_FADE / RATE - 0.5) * RATE
    heard_rms = _rms_steps(heard[lo : lo + 3 * RATE])
    gains = heard_rms / _rms_steps(exported[lo + before.shift : lo + before.shift + 3 * RATE])
    assert np.all(np.diff(gains) < 0) and gains[0] > 0.8 and gains[-1] < 0.3, gains
    _, landed = boundary(heard, exported, before, closing)
    assert abs(landed - timeline.sections[2].start) <= TEN_MS
    assert closing.end + closing.shift >= len(exported) - RATE  # ... and to the end
    positions = home / "state" / "positions.json"
    assert not positions.exists() or str(script.resolve()) not in positions.read_text()


@pytest.mark.parametrize(
    ("how", "status"),
    [
        pytest.param("ctrl-c", 130, id="ctrl-c"),
        pytest.param("hangup", 129, id="closed-terminal"),
    ],
)
@pytest.mark.slow
def test_leaving_restores_the_terminal_and_resume_continues_there(
    tmp_path: Path, pulse: Pulse, home: Path, how: str, status: int
) -> None:
    script = write(tmp_path, SHORT)
    capture = tmp_path / "capture.raw"
    env = pulse.alsa_capture_env(tmp_path, capture)
    exported = _export(script, env)
    shell = f"{sys.executable} -m guided_audio play {script}; echo STATUS=$?; stty -a"
    # On Ctrl-C the terminal discards output not yet read, maybe half a character: replace it.
    child = pexpect.spawn(
        "bash", ["-c", shell], env=env, encoding="utf-8", codec_errors="replace", timeout=60
    )
    child.expect(r"\[1/2\] Hello")
    time.sleep(3.0)
    if how == "ctrl-c":
        child.sendintr()
    else:  # the terminal closing sends SIGHUP to the player
        assert child.pid is not None
        for pid in children(child.pid):
            os.kill(pid, signal.SIGHUP)
    child.expect(r"STATUS=(\d+)")
    assert isinstance(child.match, re.Match)
    assert int(child.match[1]) == status
    child.expect(pexpect.EOF)
    settings = str(child.before)
    assert " icanon" in settings and " echo " in settings  # cbreak mode was undone
    assert "Traceback" not in settings

    state = home / "state"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "positions.json").stat().st_mode & 0o777 == 0o600
    saved = json.loads((state / "positions.json").read_text())[str(script.resolve())]["sample"]
    heard = read_raw(capture)
    stopped = segments(heard, exported)[-1]
    assert abs(saved - (stopped.end + stopped.shift)) < RATE  # the place where sound stopped

    for old in tmp_path.glob("capture.raw*"):
        old.unlink()
    resumed = _run(["play", str(script), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    first = segments(read_raw(capture), exported)[0]
    assert abs(first.start + first.shift - saved) < RATE  # within a second of the place


@pytest.mark.slow
def test_a_session_at_a_length_plays_exactly_like_its_export(
    tmp_path: Path, pulse: Pulse, home: Path
) -> None:
    script = write(tmp_path, SHORT.replace("short playback test", "test at another length"))
    capture = tmp_path / "capture.raw"
    env = {**pulse.alsa_capture_env(tmp_path, capture), "GUIDED_AUDIO_CACHE": str(tmp_path / "c")}
    played = _run(["play", str(script), "--loudness", "off", "--length", "30s"], env)
    assert played.returncode == 0, played.stderr
    assert played.stderr.splitlines()[0].startswith("[1/2] Hello  00:00 / 00:30")
    exported = _export(script, env, "--loudness", "off", "--length", "30s")
    assert len(exported) == 30 * RATE
    heard = read_raw(capture)
    assert np.array_equal(heard[: len(exported)], exported)
    assert not heard[len(exported) :].any()


# --- choosing where to start, and what goes wrong -------------------------------------------
@pytest.mark.parametrize(
    "wanted", [pytest.param("3", id="number"), pytest.param("closing", id="title")]
)
@pytest.mark.slow
def test_from_starts_at_a_section(tmp_path: Path, pulse: Pulse, home: Path, wanted: str) -> None:
    script = write(tmp_path, KEYS)
    capture = tmp_path / "capture.raw"
    env = pulse.alsa_capture_env(tmp_path, capture)
    exported = _export(script, env)
    played = _run(["play", str(script), "--from", wanted], env)
    assert played.returncode == 0, played.stderr
    assert played.stderr.startswith("[3/3] Closing")
    start = _timeline(script).sections[2].start
    heard = read_raw(capture)
    first = segments(heard, exported)[0]
    assert abs(first.shift - start) <= TEN_MS  # the capture begins at the section's start


def test_from_naming_no_section_lists_them(tmp_path: Path, home: Path) -> None:
    script = write(tmp_path, KEYS)
    played = _run(["play", str(script), "--from", "Elsewhere"], dict(os.environ))
    assert played.returncode == 2
    assert played.stderr.strip() == (
        "no section 'Elsewhere' in this session; its sections: "
        "1. Arriving; 2. Breathing; 3. Closing"
    )


@pytest.mark.slow
def test_a_damaged_resume_file_is_ignored_with_a_note(
    tmp_path: Path, pulse: Pulse, home: Path
) -> None:
    script = write(tmp_path, SHORT)
    (home / "state").mkdir(parents=True)
    (home / "state" / "positions.json").write_text("{not json")
    capture = tmp_path / "capture.raw"
    env = pulse.alsa_capture_env(tmp_path, capture)
    exported = _export(script, env)
    played = _run(["play", str(script), "--resume"], env)
    assert played.returncode == 0, played.stderr
    assert played.stderr.startswith("note: ignoring the damaged resume file")
    assert np.array_equal(read_raw(capture)[: len(exported)], exported)


def test_a_script_that_fails_validation_is_reported_as_validate_does(tmp_path: Path) -> None:
    script = write(
        tmp_path, "title: Bad\nsections:\n  - title: A\n    steps:\n      - pause: 7 parsecs\n"
    )
    validated = _run(["validate", str(script)], dict(os.environ))
    played = _run(["play", str(script)], dict(os.environ))
    assert played.returncode == validated.returncode == 2
    assert played.stderr == validated.stderr


def test_play_without_a_device_says_so_in_one_line(tmp_path: Path) -> None:
    script = write(tmp_path, SHORT)
    config = tmp_path / "asound.conf"
    config.write_text("pcm.!default { type hw card 7 }\n")
    env = {**os.environ, "ALSA_CONFIG_PATH": str(config), "PULSE_SERVER": "unix:/nonexistent"}
    played = _run(["play", str(script), "-q"], env)
    assert played.returncode == 1
    lines = played.stderr.strip().splitlines()
    assert len(lines) == 1, played.stderr
    assert lines[0].startswith("no audio output device is available")
    assert lines[0].endswith("export the session instead: guided-audio export FILE")


# --- the journal -----------------------------------------------------------------------------
JOURNAL = """\
title: Looking back
sections:
  - title: Reflection
    steps:
      - reflect: {question: "What did you notice?", silence: 1s}
      - reflect: {question: "What would you like to remember?", silence: 1s}
      - reflect: {question: "Anything else?", silence: 1s}
"""


@pytest.mark.slow
def test_journal_keeps_every_answer_given_even_when_interrupted(
    tmp_path: Path, pulse: Pulse, home: Path
) -> None:
    script = write(tmp_path, JOURNAL, "looking-back.yaml")
    env = pulse.alsa_capture_env(tmp_path, tmp_path / "capture.raw")
    child = _spawn(["play", str(script), "--journal"], env)
    child.expect(r"What did you notice\?\r?\n> ", timeout=120)  # asked after the audio
    child.sendline("My shoulders dropped.")
    child.expect(r"What would you like to remember\?\r?\n> ")
    child.sendline("")  # an empty answer is skipped
    child.expect(r"Anything else\?\r?\n> ")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130

    journal = home / "journal" / "looking-back.md"
    assert journal.stat().st_mode & 0o777 == 0o600
    assert (home / "journal").stat().st_mode & 0o777 == 0o700
    text = journal.read_text()
    assert re.match(r"## \d{4}-\d\d-\d\d \d\d:\d\d · Looking back\n", text)
    assert "**What did you notice?**\n\nMy shoulders dropped.\n" in text
    assert "remember" not in text
    assert not list(home.glob("journal/.*"))  # no temp file left

    listed = _run(["journal"], dict(os.environ))
    assert re.search(r"1  \d{4}-\d\d-\d\d \d\d:\d\d  Looking back  \(1 answer\)", listed.stdout)
    shown = _run(["journal", "1"], dict(os.environ))
    assert "My shoulders dropped." in shown.stdout


# --- backends and the bell preview -----------------------------------------------------------
@pytest.mark.slow
def test_simpleaudio_backend_where_it_works(tmp_path: Path, pulse: Pulse, home: Path) -> None:
    script = write(tmp_path, SHORT)
    capture = tmp_path / "capture.raw"
    env = pulse.alsa_capture_env(tmp_path, capture)
    if sys.version_info < (3, 12):
        pytest.importorskip("simpleaudio", reason="simpleaudio needs a compiler to install")
    exported = _export(script, env)
    played = _run(["play", str(script), "--backend", "simpleaudio", "-q"], env)
    if sys.version_info >= (3, 12):
        assert played.returncode == 1
        assert played.stderr.strip() == (
            "simpleaudio crashes on Python 3.12 and later (a known upstream bug); "
            "use the default backend: --backend miniaudio"
        )
        return
    assert played.returncode == 0, played.stderr
    heard = read_raw(capture)
    assert len(heard) >= len(exported)
    assert np.array_equal(heard[: len(exported)], exported)


@pytest.mark.slow
def test_bell_preview_plays_one_strike(tmp_path: Path, pulse: Pulse) -> None:
    from guided_audio.dsp import sounds

    capture = tmp_path / "bell.raw"
    played = _run(["bells", "--preview", "chime"], pulse.alsa_capture_env(tmp_path, capture))
    assert played.returncode == 0, played.stderr
    heard = read_raw(capture).astype(np.float64) / 32768
    bell = sounds.bell("chime")
    assert len(heard) >= len(bell)
    assert np.abs(heard[: len(bell), 0] - bell).max() < 2 / 32767
    assert not heard[len(bell) :].any()
