"""The speech cache: keyed by everything that changes the sound, atomic, private, shared."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write
from guided_audio.script.model import Phrase, VoiceSpec
from guided_audio.session import Options, Silent, render
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.engine import Reading, Take
from guided_audio.speech.piper import PiperEngine
from guided_audio.speech.speaker import Speaker

ROOT = Path(__file__).parent.parent
SCRIPT = """\
title: Cache
sections:
  - title: A
    steps:
      - say: The first line stays the same.
      - say: {second}
      - say: The third line stays the same too.
"""


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Texts the real piper engine was asked to synthesise."""
    calls: list[str] = []
    real = PiperEngine.synthesize

    def spy(self: PiperEngine, text: str, spec: VoiceSpec, reading: Reading) -> Take:
        calls.append(text)
        return real(self, text, spec, reading)

    monkeypatch.setattr(PiperEngine, "synthesize", spy)
    return calls


def _render(path: Path, cache: Path) -> None:
    render(path, Options(cache_dir=cache, loudness_lufs=None), Silent())


@pytest.mark.slow
def test_second_render_synthesises_nothing(tmp_path: Path, counted: list[str]) -> None:
    script = write(tmp_path, SCRIPT.format(second="A second line."))
    _render(script, tmp_path / "cache")
    assert len(set(counted)) == 3  # a rushed line may be read twice; each is rendered once
    before = len(counted)
    _render(script, tmp_path / "cache")
    assert len(counted) == before


@pytest.mark.slow
def test_changed_line_rerenders_only_that_line(tmp_path: Path, counted: list[str]) -> None:
    script = write(tmp_path, SCRIPT.format(second="A second line."))
    _render(script, tmp_path / "cache")
    before = len(counted)
    write(tmp_path, SCRIPT.format(second="A different second line."))
    _render(script, tmp_path / "cache")
    assert set(counted[before:]) == {"A different second line."}


def test_key_changes_with_what_changes_the_sound(tmp_path: Path) -> None:
    speaker = Speaker(SpeechCache(tmp_path))
    base = Phrase("Hello.", VoiceSpec())
    variants = [
        Phrase("Hello!", VoiceSpec()),
        Phrase("Hello.", VoiceSpec(pace=0.9)),
        Phrase("Hello.", VoiceSpec(engine="espeak")),
    ]
    keys = {speaker.key(p) for p in [base, *variants]}
    assert len(keys) == 4
    # The gap does not change the phrase's sound, so it shares the entry.
    assert speaker.key(Phrase("Hello.", VoiceSpec(gap_s=2.0))) == speaker.key(base)


@pytest.mark.slow
def test_entries_are_private_and_complete(tmp_path: Path) -> None:
    script = write(tmp_path, SCRIPT.format(second="Private words."))
    cache = tmp_path / "cache"
    _render(script, cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 3  # the phrases only: cut voice models are kept apart
    for path in files:
        assert path.suffix == ".wav" and not path.name.startswith(".")
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_existing_open_cache_folder_is_made_private(tmp_path: Path) -> None:
    cache = tmp_path / "audio_cache"
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)
    SpeechCache(cache).ensure_writable()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


@pytest.mark.slow
def test_corrupt_entry_is_rendered_again(tmp_path: Path) -> None:
    speaker = Speaker(SpeechCache(tmp_path))
    phrase = Phrase("Repair me.", VoiceSpec())
    assert speaker.length(phrase) > 0
    entry = speaker.cache.path(speaker.key(phrase))
    entry.write_bytes(b"RIFF broken")
    fresh = Speaker(SpeechCache(tmp_path))
    assert fresh.length(phrase) > 0
    assert speaker.cache.read(speaker.key(phrase)) is not None


@pytest.mark.slow
def test_two_processes_share_one_cache(tmp_path: Path) -> None:
    script = write(tmp_path, SCRIPT.format(second="Two renders at once."))
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "guided_audio", "export", str(script), "-q", "--force"]
    procs = [
        subprocess.Popen(
            [*command, "-o", str(tmp_path / f"out{i}.wav")],
            env={**__import__("os").environ, "GUIDED_AUDIO_CACHE": str(cache)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    # Piper is not deterministic; first-writer-wins means both exports used the same takes.
    assert (tmp_path / "out0.wav").read_bytes() == (tmp_path / "out1.wav").read_bytes()
    assert not list(cache.rglob(".*.tmp"))  # the names temp_beside gives (see test_robustness)


def test_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    from conftest import cli

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    script = write(tmp_path, SCRIPT.format(second="x y z"))
    import os

    os.environ["GUIDED_AUDIO_CACHE"], old = str(blocker / "cache"), os.environ["GUIDED_AUDIO_CACHE"]
    try:
        result = cli("export", str(script), "-o", str(tmp_path / "o.wav"))
    finally:
        os.environ["GUIDED_AUDIO_CACHE"] = old
    assert result.exit_code == 1
    assert result.stderr.startswith(f"cannot write the speech cache in {blocker / 'cache'}:")
    assert "GUIDED_AUDIO_CACHE" in result.stderr
    assert not (tmp_path / "o.wav").exists()


PARALLEL = """
import os, sys
from pathlib import Path
from guided_audio.resources import Resources
from guided_audio.script.model import Phrase, VoiceSpec
from guided_audio.speech import registry
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.piper import PiperEngine
from guided_audio.speech.speaker import Speaker
from guided_audio.speech.workers import speaking

renderers = Path(sys.argv[1]) / "renderers"
parent = os.getpid()


class Recorded(PiperEngine):
    def synthesize(self, text, spec, reading):
        if os.getpid() != parent:
            if sys.argv[2] == "dies" and "3" in text:
                os._exit(1)  # as if killed by the system
            with renderers.open("a") as record:
                record.write(f"{os.getpid()}\\n")
        return super().synthesize(text, spec, reading)


piper = Recorded()
speaker = Speaker(
    SpeechCache(Path(sys.argv[1])), resources=Resources(cores=2, workers=2),
    engines=lambda name: piper if name == "piper" else registry.engine(name),
)
phrases = [Phrase(f"Line number {n} is here.", VoiceSpec()) for n in range(1, 10)]
advanced = []
with speaking(speaker, phrases, advanced.append):
    pass
assert sum(advanced) == len(phrases), advanced
assert speaker.missing(phrases) == []  # every entry whole, checksum and all
workers = set(renderers.read_text().split())
assert len(workers) == 2 and str(os.getpid()) not in workers, workers  # two forked workers
# They shared the voice the parent loaded, with one inference thread each.
assert piper.fork_safe()
"""


@pytest.mark.parametrize("how", ["workers", "dies"])
@pytest.mark.slow
def test_speech_renders_on_several_workers_into_one_cache(tmp_path: Path, how: str) -> None:
    # In a fresh process (here the engine is loaded already, and forking is then avoided).
    # "dies": a worker that is killed leaves the rest to the parent, which finishes them.
    done = subprocess.run([sys.executable, "-c", PARALLEL, str(tmp_path), how],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.slow
def test_validate_leaves_nothing_where_it_runs(tmp_path: Path) -> None:
    """Outside a project the cache is the user's ($XDG_CACHE_HOME/guided-audio), made once;
    inside one (a folder with audio_cache/, here or above) it is the project's."""
    script = tmp_path / "box.yaml"
    script.write_text((ROOT / "scripts" / "box-breathing.yaml").read_text(encoding="utf-8"))
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    env = {k: v for k, v in os.environ.items() if k != "GUIDED_AUDIO_CACHE"}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(xdg)}

    def validate(where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "guided_audio", "validate", str(script)],
            cwd=where, env=env, capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    validate(home)
    assert _tree(home) == set()
    cache = xdg / "guided-audio"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    made = _tree(cache)
    assert any(name.endswith(".wav") for name in made)  # the cue words, measured
    validate(home)
    assert _tree(cache) == made and _tree(home) == set()  # nothing made twice

    practice = tmp_path / "practice"
    (practice / "audio_cache").mkdir(parents=True)
    validate(practice / "clients" / "sam")
    assert _tree(practice / "clients") == {"sam"}
    assert _tree(practice / "audio_cache") >= {n for n in made if n.endswith(".wav")}
    assert _tree(cache) == made
