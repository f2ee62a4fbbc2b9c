"""Every rule of the contract's Errors section: one fixture file per failure, exact messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import cli, write
from guided_audio.dsp.effects import RATE
from guided_audio.plan.builder import CUE_WORDS, cue_phrases
from guided_audio.script.grammar import ENGINES
from guided_audio.script.model import Phrase, VoiceSpec
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.speaker import Speaker

FIXTURES = Path(__file__).parent / "fixtures" / "invalid"
CASES = sorted(FIXTURES.glob("*.yaml"))


def _expected(path: Path, shared_cache: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# expect: "):
            lines.append(f"{path}:{line.removeprefix('# expect: ')}")
    text = "\n".join(lines).replace("{DIR}", str(path.parent.resolve()))
    if "{CUE}" in text:  # the cue's real rendered length
        speaker = Speaker(SpeechCache(shared_cache))
        length = speaker.length(Phrase(CUE_WORDS["in"], VoiceSpec(pace=0.25)))
        text = text.replace("{CUE}", f"{length / RATE:.2f}")
    return text


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CASES])
def test_invalid_script_gives_exact_message(path: Path, shared_cache: Path) -> None:
    result = cli("validate", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == _expected(path, shared_cache)
    assert "Traceback" not in result.output


def test_python_tag_is_never_executed(tmp_path: Path) -> None:
    marker = Path("/tmp/guided-audio-pwned")
    marker.unlink(missing_ok=True)
    result = cli("validate", str(FIXTURES / "python-tag.yaml"))
    assert result.exit_code == 2
    assert not marker.exists()


def _oversize(tmp_path: Path) -> Path:
    return write(tmp_path, "title: Big\n# " + "x" * 1_000_100 + "\n")


def _binary(tmp_path: Path) -> Path:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"title: x\n\x00\x01\x02")
    return path


def _latin1(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: Caf\u00e9\n".encode("latin-1"))
    return path


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "folder.yaml").mkdir()
    return tmp_path / "folder.yaml"


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nowhere.yaml"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            _oversize,
            ":1:1: the file is 1,000,114 bytes; scripts are limited to 1,000,000 "
            "(split the session into several scripts)",
            id="oversize",
        ),
        pytest.param(_binary, ":2:1: this is a binary file, not a YAML script", id="binary"),
        pytest.param(
            _latin1,
            ":1:11: the file is not UTF-8 text (byte 0xe9) (save it as UTF-8)",
            id="not-utf8",
        ),
        pytest.param(_directory, ": is a directory, not a script file", id="directory"),
        pytest.param(_missing, ": no such file", id="missing-path"),
    ],
)
def test_unreadable_files(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    result = cli("validate", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"{path}{message}"


def test_validate_takes_several_files_and_reports_each(tmp_path: Path) -> None:
    good = Path(__file__).parent.parent / "scripts" / "grounding.yaml"
    bad1, bad2 = FIXTURES / "unknown-bell.yaml", FIXTURES / "pause-words.yaml"
    result = cli("validate", str(good), str(bad1), str(bad2))
    assert result.exit_code == 2
    assert f"{good}: ok" in result.stdout
    assert f"{bad1}:6:15:" in result.stderr
    assert f"{bad2}:7:16:" in result.stderr


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    shutil.copy(FIXTURES / "unknown-step.yaml", bad)
    out = tmp_path / "out" / "x.wav"
    result = cli("export", str(bad), "-o", str(out))
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--var", "clinet=Sam"],
            "--var clinet: the script has no variable 'clinet' (it defines: client)",
            id="unknown-var",
        ),
        pytest.param(
            ["--var", "client"],
            "--var 'client': expected name=value, like --var client=Sam",
            id="no-equals",
        ),
    ],
)
def test_bad_var_options(tmp_path: Path, args: list[str], message: str) -> None:
    path = write(
        tmp_path,
        "title: T\nvariables: {client: friend}\nsections:\n"
        "  - title: A\n    steps:\n      - say: Hi {client}\n",
    )
    result = cli("validate", str(path), *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == message


def test_var_overrides_the_default(tmp_path: Path) -> None:
    from guided_audio.script.loader import load_script
    from guided_audio.script.model import Say

    path = write(
        tmp_path,
        "title: For {client}\nvariables: {client: friend}\nsections:\n"
        "  - title: A\n    steps:\n      - say: Hi {client}, {{literal}}\n",
    )
    script = load_script(path, {"client": "Sam"})
    step = script.sections[0].steps[0].kind
    assert isinstance(step, Say)
    assert step.text == "Hi Sam, {literal}"
    assert script.title == "For Sam"


def test_values_are_read_as_yaml_1_2_reads_them(tmp_path: Path) -> None:
    """As an editor reads them: yes/no/on/off are text, numbers may be 1e3 or 0x10, and
    `music: off` (or no, none, false) is no bed."""
    from guided_audio.script.loader import load_script
    from guided_audio.script.model import Pause, Say

    path = write(
        tmp_path,
        "title: Readings\nvariables: {consent: yes, mood: on}\nmusic: off\nsections:\n"
        "  - title: A\n    music: no\n    steps:\n      - say: yes\n"
        "      - say: '{consent}, {mood} we go'\n      - pause: 1e1\n      - pause: 0x10\n"
        "  - title: B\n    music: false\n    steps:\n      - pause: 1m30.5s\n",
    )
    script = load_script(path, {})
    kinds = [step.kind for section in script.sections for step in section.steps]
    assert [k.text for k in kinds[:2] if isinstance(k, Say)] == ["yes", "yes, on we go"]
    assert [k.seconds for k in kinds[2:] if isinstance(k, Pause)] == [10.0, 16.0, 90.5]
    assert script.music is None
    assert [section.music for section in script.sections] == [None, None]


def test_every_bundled_script_is_valid() -> None:
    scripts = sorted((Path(__file__).parent.parent / "scripts").glob("*.yaml"))
    assert len(scripts) >= 2
    result = cli("validate", *map(str, scripts))
    assert result.exit_code == 0, result.output


def test_engines_listed_in_validation_match_voice_module() -> None:
    assert ENGINES == ("piper", "espeak", "gtts")


def test_timing_error_found_while_exporting_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "quick.yaml"
    shutil.copy(FIXTURES / "cue-too-long.yaml", bad)
    result = cli("export", str(bad), "-o", str(tmp_path / "new" / "x.mp3"))
    assert result.exit_code == 2, result.output
    assert "longer than its 0.5s 'in' phase" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quick.yaml"]


def test_output_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    good = Path(__file__).parent.parent / "scripts" / "grounding.yaml"
    result = cli("export", str(good), "-o", str(tmp_path / "plain" / "x.wav"))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"cannot write to the folder {tmp_path / 'plain'}"


def test_every_spoken_cue_is_measured_including_the_sigh_top_up(tmp_path: Path) -> None:
    from guided_audio.script.loader import load_script

    path = write(
        tmp_path,
        "title: S\nsections:\n  - title: A\n    steps:\n"
        "      - breathe: {pattern: sigh, cycles: 1, cues: voice}\n",
    )
    words = sorted(p.text for p in cue_phrases(load_script(path)))
    assert words == ["in", "more", "out"]
