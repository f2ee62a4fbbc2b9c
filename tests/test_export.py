"""Exported audio, decoded and measured: pauses, gaps, section starts, formats, atomicity."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    RATE,
    cli,
    decode,
    interrupt_when_ready,
    on_a_small_disk,
    read_wav,
    silences,
    write,
)
from guided_audio import session
from guided_audio.export.encode import FORMATS
from guided_audio.session import Options, Silent

TIMING = """\
title: Timing
voice: {gap: 0.8s}
sections:
  - title: One
    steps:
      - say: Notice the ground beneath you.
      - pause: 7s
      - say: Let it hold you. [pause 3s] Breathe out slowly.
      - say: And rest here.
  - title: Two
    steps:
      - pause: 2.5s
      - say: Welcome back.
"""


@pytest.fixture(scope="module")
def timing_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("timing")
    script = write(tmp, TIMING)
    out = tmp / "timing.wav"
    result = cli("export", str(script), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    return script, out


def _pauses(audio: np.ndarray) -> list[float]:
    # Leading and trailing silence are the lead-in and tail, not pauses.
    return [length for _, length in silences(audio, min_s=0.5)[1:-1]]


def test_pauses_measure_exactly_in_the_wav(timing_wav: tuple[Path, Path]) -> None:
    _, out = timing_wav
    pauses = _pauses(read_wav(out))
    expected = [7.0, 3.0, 0.8, 2.5]
    assert len(pauses) == len(expected), pauses
    for measured, wanted in zip(pauses, expected, strict=True):
        assert measured == pytest.approx(wanted, abs=0.010)


def test_pauses_survive_mp3_encoding(tmp_path: Path, timing_wav: tuple[Path, Path]) -> None:
    script, _ = timing_wav
    out = tmp_path / "timing.mp3"
    result = cli("export", str(script), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    pauses = _pauses(decode(out))
    for measured, wanted in zip(pauses, [7.0, 3.0, 0.8, 2.5], strict=True):
        assert measured == pytest.approx(wanted, abs=0.010)


def test_sections_start_where_the_plan_says(timing_wav: tuple[Path, Path]) -> None:
    script, out = timing_wav
    timeline = session.timeline(script, Options(), Silent())
    audio = read_wav(out)
    assert len(audio) == timeline.total
    first_sound = [start for start, _ in silences(audio, min_s=0.2)]
    ends = [start + length for start, length in silences(audio, min_s=0.2)]
    # Section one starts with speech right after the lead-in.
    assert timeline.sections[0].start / RATE == pytest.approx(ends[0], abs=0.010)
    # Section two starts with its pause: right where the last speech of section one ended.
    assert any(abs(timeline.sections[1].start / RATE - s) < 0.010 for s in first_sound)
    plan = cli("plan", str(script))
    assert plan.exit_code == 0, plan.output
    assert f"total ({timeline.total / RATE:.2f} s)" in plan.stdout


def test_estimate_is_instant_and_close(timing_wav: tuple[Path, Path]) -> None:
    script, _ = timing_wav
    result = cli("plan", "--estimate", str(script))
    assert result.exit_code == 0, result.output
    assert "~" in result.stdout and "2. Two" in result.stdout


@pytest.mark.parametrize("suffix", [pytest.param(s, id=s[1:]) for s in FORMATS])
def test_formats_decode_to_the_same_length(tmp_path: Path, suffix: str) -> None:
    script = write(tmp_path, "title: F\nsections:\n  - title: A\n    steps:\n      - say: Hello.\n")
    out = tmp_path / f"f{suffix}"
    result = cli("export", str(script), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    timeline = session.timeline(script, Options(), Silent())
    assert len(decode(out)) == pytest.approx(timeline.total, abs=RATE * 0.06)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=channels,sample_rate",
         "-of", "csv=p=0", str(out)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    # Stereo 44.1 kHz everywhere; Opus always decodes at 48 kHz (it records 44.1 as the input).
    assert probe == [f"{48000 if suffix == '.opus' else 44100},2"]


def test_format_option_names_the_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    script = write(tmp_path, "title: F\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n")
    result = cli("export", str(script), "--format", "m4b", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sessions" / "session.m4b").is_file()
    clash = cli("export", str(script), "--format", "m4b", "-o", str(tmp_path / "x.mp3"))
    assert clash.exit_code == 2
    assert (
        clash.stderr.strip() == f"-o {tmp_path / 'x.mp3'} is not a .m4b file, as --format m4b asks"
    )


def test_default_output_goes_to_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = write(
        tmp_path, "title: D\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n", "calm.yaml"
    )
    monkeypatch.chdir(tmp_path)
    result = cli("export", str(script), "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sessions" / "calm.mp3").stat().st_size > 1000


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    script = write(tmp_path, "title: D\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n")
    out = tmp_path / "x.wav"
    out.write_bytes(b"precious")
    result = cli("export", str(script), "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{out} already exists; use --force to overwrite it"
    assert out.read_bytes() == b"precious"
    assert cli("export", str(script), "-o", str(out), "--force", "-q").exit_code == 0
    assert out.read_bytes()[:4] == b"RIFF"


def test_missing_output_folder_is_created(tmp_path: Path) -> None:
    script = write(tmp_path, "title: D\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n")
    out = tmp_path / "new" / "deeper" / "x.wav"
    assert cli("export", str(script), "-o", str(out), "-q").exit_code == 0
    assert out.exists()


def test_unknown_output_format_is_refused(tmp_path: Path) -> None:
    script = write(tmp_path, "title: D\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n")
    result = cli("export", str(script), "-o", str(tmp_path / "x.doc"))
    assert result.exit_code == 2
    assert "unknown format '.doc'" in result.stderr


def test_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from guided_audio.dsp import effects

    script = write(
        tmp_path,
        "title: D\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n      - pause: 30s\n",
    )
    calls = {"n": 0}
    real = effects.to_int16

    def explode(samples: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(samples)

    monkeypatch.setattr(effects, "to_int16", explode)
    for suffix in (".wav", ".mp3"):
        calls["n"] = 0
        result = cli("export", str(script), "-o", str(tmp_path / f"out{suffix}"))
        assert result.exit_code == 130, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.yaml"]


@pytest.mark.parametrize(
    ("signum", "status"),
    [
        pytest.param(signal.SIGINT, 130, id="ctrl-c"),
        pytest.param(signal.SIGTERM, 143, id="sigterm"),
        pytest.param(signal.SIGHUP, 129, id="closed-terminal"),
    ],
)
@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_a_signal_in_a_real_process_leaves_no_file(
    tmp_path: Path, signum: int, status: int, suffix: str
) -> None:
    script = write(
        tmp_path,
        "title: Long\nsections:\n  - title: A\n    steps:\n"
        "      - say: Hello.\n      - pause: 50m\n      - say: Goodbye.\n",
    )
    out = tmp_path / f"long{suffix}"
    process = subprocess.Popen(
        [sys.executable, "-m", "guided_audio", "export", str(script), "-o", str(out),
         "--loudness", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stderr = interrupt_when_ready(
        process, lambda: bool(list(tmp_path.glob(".long.*.partial"))), "the export", signum
    )
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted; nothing was left half-written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.yaml"]


@pytest.mark.parametrize(
    ("signum", "stopped"),
    [
        pytest.param(signal.SIGINT, KeyboardInterrupt, id="ctrl-c"),
        pytest.param(signal.SIGTERM, SystemExit, id="sigterm-in-a-worker"),
    ],
)
def test_a_stop_waits_for_a_step_that_must_not_be_cut_in_two(
    signum: int, stopped: type[BaseException]
) -> None:
    # Making a temp file is such a step (stopped before its cleanup is set up, it stays),
    # and starting ffmpeg (stopped inside Popen, it would run on, unseen).
    from guided_audio import files

    steps = []

    def step() -> None:
        with files.signals_deferred():
            os.kill(os.getpid(), signum)
            steps.append("the step goes on")

    before = {signum: signal.getsignal(signum) for signum in files.STOP_SIGNALS}
    files.exit_quietly_on_signals()  # SIGTERM as a worker has it; Ctrl-C as the CLI has it
    signal.signal(signal.SIGINT, before[signal.SIGINT])
    quietly = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(stopped):
            step()
        assert steps == ["the step goes on"]
        assert signal.getsignal(signal.SIGTERM) is quietly  # restored
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_a_stop_while_a_temp_file_is_made_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deferred signal is raised as the deferral ends: the file must be in hand by then.
    import tempfile

    from guided_audio import files

    made = tempfile.mkstemp

    def make_then_stop(dir: Path, prefix: str, suffix: str) -> tuple[int, str]:
        fd, name = made(dir=dir, prefix=prefix, suffix=suffix)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the file is being made
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", make_then_stop)
    with pytest.raises(KeyboardInterrupt), files.temp_beside(tmp_path / "long.mp3", ".stream"):
        pytest.fail("the block runs after the stop")
    assert list(tmp_path.iterdir()) == []


def test_the_leftover_check_sees_a_planted_partial_file(tmp_path: Path) -> None:
    """The check above would fail on a leftover with the names the code really writes."""
    from guided_audio.files import temp_beside

    out = tmp_path / "long.mp3"
    with temp_beside(out, ".partial") as temp:
        assert list(tmp_path.glob(".long.*.partial")) == [temp]
        assert sorted(p.name for p in tmp_path.iterdir()) != ["session.yaml"]


def test_cli_runs_as_a_real_subprocess(tmp_path: Path) -> None:
    script = write(tmp_path, "title: D\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n")
    out = tmp_path / "x.wav"
    env = {**os.environ}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "guided-audio"), "export", str(script), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        rf"{re.escape(str(out))}  00:0\d  1 chapter  -1\d\.\d LUFS  -\d+\.\d dBTP\n", done.stdout
    )
    bad = subprocess.run(
        [
            str(Path(sys.executable).parent / "guided-audio"),
            "validate",
            str(tmp_path / "nope.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr == f"{tmp_path / 'nope.yaml'}: no such file\n"


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, suffix: str) -> None:
    script = write(
        tmp_path,
        "title: Big\nsections:\n  - title: A\n    steps:\n"
        "      - say: Hello.\n      - pause: 20m\n      - say: Goodbye.\n",
    )
    disk = tmp_path / "disk"
    out = disk / f"big{suffix}"
    done = on_a_small_disk(
        disk, [sys.executable, "-m", "guided_audio", "export", str(script), "-o", str(out), "-q"]
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{out} was not written: the disk holding {disk} is full; "
        "free some space there or export elsewhere with -o"
    ]
    assert done.stdout == ""  # what `ls -A` saw on the small disk: nothing
