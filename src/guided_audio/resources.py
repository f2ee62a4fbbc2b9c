"""How much of the machine a process may use: decided once at the front door (the CLI, or
a library call's `session.Options`) and passed down to every stage that spends it.

Nothing else holds these numbers: no stage sets them on another's objects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

# The Piper decoder's memory grows with the length it decodes at once (~10 MiB a second of
# speech): it decodes this many latent frames at a time, with its receptive field of context
# either side. Lean chunks where speech is made beside other work (`play`'s player, a
# batch's files); a worker process that only makes speech takes larger ones, each context a
# smaller share (10% faster, +60 MiB).
DECODE_CHUNK_FRAMES = 128
AHEAD_DECODE_CHUNK_FRAMES = 512
DRONE_TILES_LIVE = 2  # a player keeps the drone's tile playing and the next, not its loop


@dataclass(frozen=True)
class Resources:
    """Cores and the shares of them: speech workers, encoders, inference threads, and the
    sizes of the pieces work is done in."""

    cores: int  # the machine's
    workers: int  # processes that make speech at once (GUIDED_AUDIO_JOBS, else one a core)
    files_at_once: int = 1  # a batch's files mixed and encoded at once, each in a process
    decode_frames: int = DECODE_CHUNK_FRAMES  # latent frames a Piper decoder takes at once
    drone_tiles: int | None = None  # drone tiles kept built (None: the whole loop)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Resources:
        cores = os.cpu_count() or 1
        return cls(cores, int(environ.get("GUIDED_AUDIO_JOBS") or cores))

    @property
    def encoders(self) -> int:
        """MP3 encoders one file may run at once: its share of the workers."""
        return max(1, self.workers // self.files_at_once)

    @property
    def inference_threads(self) -> int | None:
        """Inference threads of a voice loaded in this process: its share of the cores, or
        None (onnxruntime's own choice, every core) for a process that has them all.
        Speech workers load theirs with one thread each, whatever this says."""
        share = self.workers if self.files_at_once == 1 else self.cores // self.files_at_once
        share = max(1, share)
        return share if share < self.cores else None

    def for_batch_files(self, files: int) -> Resources:
        """A batch's worker process, one of `files` mixing and encoding at once."""
        return replace(self, files_at_once=files)

    def for_speech_worker(self) -> Resources:
        """A process that only makes speech: larger decoder chunks."""
        return replace(self, decode_frames=AHEAD_DECODE_CHUNK_FRAMES)

    def for_playing(self) -> Resources:
        """A player, which moves on in real time: little kept built ahead."""
        return replace(self, drone_tiles=DRONE_TILES_LIVE)
