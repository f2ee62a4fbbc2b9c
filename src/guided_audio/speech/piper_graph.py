"""A cut Piper voice's stages run one after another: the front's phoneme lengths, the
flow's latent (its noise seeded by the line), the decoder's audio a chunk at a time; and
the samples each phoneme lasts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from guided_audio.dsp.effects import Audio
from guided_audio.speech.piper_cut import FLOW_NOISE

DECODE_CONTEXT_FRAMES = 16
PIPER_SILENT_PEAK = 1e-8


@dataclass(frozen=True)
class Front:
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


class Stages(NamedTuple):
    """A cut model's sessions: phoneme lengths, then the sound's latent, then the audio."""

    front: Any
    flow: Any
    decoder: Any


def add_flow_noise(flow: Any, values: dict[str, Any], width_name: str, seed: object) -> None:
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


def run_stage(session: Any, values: dict[str, Any]) -> list[Any]:
    """A stage, fed from what earlier stages made; its outputs join `values`."""
    outputs: list[Any] = session.run(None, {i.name: values[i.name] for i in session.get_inputs()})
    values.update(zip((o.name for o in session.get_outputs()), outputs, strict=True))
    return outputs


def decode_latent(
    decoder: Any,
    values: dict[str, Any],
    latent_name: str,
    chunk_frames: int,
    context_frames: int | None = None,
) -> Audio:
    """The decoder's audio, `chunk_frames` of the latent at a time, each with
    `context_frames` either side (None: the decoder's receptive field)."""
    context = DECODE_CONTEXT_FRAMES if context_frames is None else context_frames
    feed = {i.name: values[i.name] for i in decoder.get_inputs()}
    latent = feed[latent_name]
    frames = int(latent.shape[-1])
    timed = [n for n, v in feed.items() if n != latent_name and np.shape(v)[-1:] == (frames,)]
    if timed or frames <= chunk_frames:  # only the latent can be cut in time
        return np.asarray(decoder.run(None, feed)[0], np.float32).reshape(-1)
    pieces = []
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        low, high = max(0, start - context), min(frames, stop + context)
        feed[latent_name] = np.ascontiguousarray(latent[..., low:high])
        audio = np.asarray(decoder.run(None, feed)[0], np.float32).reshape(-1)
        hop = len(audio) // (high - low)
        pieces.append(audio[(start - low) * hop : (stop - low) * hop])
    return np.concatenate(pieces)


def stage_session(model: Path, threads: int | None = None) -> Any:
    """An inference session for a cut stage (`threads`: None is onnxruntime's choice)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        set_threads(options, threads)
    # Planned memory patterns suit fixed shapes; here every line has its own, and the arena
    # kept blocks planned for the longest line seen (measured: 359 -> 262 MiB reading 18
    # lines, at the same speed).
    options.enable_mem_pattern = False
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def model_inputs(
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


def as_piper_does(audio: Audio) -> Audio:
    """A sentence's audio normalised to full scale, as Piper's own synthesis returns it."""
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak < PIPER_SILENT_PEAK:
        return np.zeros_like(audio)
    out: Audio = np.clip(audio / peak, -1.0, 1.0).astype(np.float32)
    return out


def phoneme_samples(
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


def set_threads(options: Any, threads: int) -> None:
    """`threads` for one inference, none beside it (one graph runs at a time)."""
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
